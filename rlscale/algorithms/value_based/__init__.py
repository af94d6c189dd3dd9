"""Value-based family: DQN (double Q, dueling, n-step, prioritized replay) and SAC."""

from rlscale.algorithms.registry import (
    AlgorithmEntry,
    continuous_actions_only,
    discrete_actions_only,
    register_algorithm,
    vector_observations_only,
)
from rlscale.algorithms.value_based.dqn import DQN, DQNConfig
from rlscale.algorithms.value_based.sac import SAC, SACConfig, SACLearner

__all__ = ["DQN", "SAC", "DQNConfig", "SACConfig", "SACLearner"]

register_algorithm(
    AlgorithmEntry(
        name="dqn",
        family="value_based",
        summary="Deep Q-Network (RLlib DQN: double Q, dueling, n-step); discrete actions",
        config_class=DQNConfig,
        space_checks=(discrete_actions_only, vector_observations_only),
    )
)
register_algorithm(
    AlgorithmEntry(
        name="sac",
        family="value_based",
        summary="Soft actor-critic (Haarnoja et al. 2018): twin critics, auto temperature; "
        "Box actions",
        config_class=SACConfig,
        space_checks=(continuous_actions_only, vector_observations_only),
    )
)
