"""Tabular family: Q-learning and SARSA (expected SARSA with ``expected: true``)."""

from rlscale.algorithms.registry import (
    AlgorithmEntry,
    discrete_actions_only,
    discrete_observations_only,
    register_algorithm,
)
from rlscale.algorithms.tabular.grid_policy import describe_greedy_policy
from rlscale.algorithms.tabular.q_learning import QLearning, QLearningConfig
from rlscale.algorithms.tabular.sarsa import Sarsa, SarsaConfig
from rlscale.algorithms.tabular.td import TabularConfig, TabularTD, TabularTDLearner

TABULAR_SPACE_CHECKS = (discrete_observations_only, discrete_actions_only)

register_algorithm(
    AlgorithmEntry(
        name="q_learning",
        family="tabular",
        summary="Tabular Q-learning (ε-greedy, SGD step = TD update); Discrete obs and actions",
        config_class=QLearningConfig,
        space_checks=TABULAR_SPACE_CHECKS,
        describe_policy=describe_greedy_policy,
    )
)
register_algorithm(
    AlgorithmEntry(
        name="sarsa",
        family="tabular",
        summary="Tabular SARSA (expected=true: expected SARSA); Discrete obs and actions",
        config_class=SarsaConfig,
        space_checks=TABULAR_SPACE_CHECKS,
        describe_policy=describe_greedy_policy,
    )
)

__all__ = [
    "QLearning",
    "QLearningConfig",
    "Sarsa",
    "SarsaConfig",
    "TabularConfig",
    "TabularTD",
    "TabularTDLearner",
]
