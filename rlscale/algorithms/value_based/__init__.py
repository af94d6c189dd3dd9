"""Value-based family: DQN (double Q, dueling, n-step, prioritized replay)."""

from rlscale.algorithms.registry import (
    AlgorithmEntry,
    discrete_actions_only,
    register_algorithm,
    vector_observations_only,
)
from rlscale.algorithms.value_based.dqn import DQN, DQNConfig

__all__ = ["DQN", "DQNConfig"]

register_algorithm(
    AlgorithmEntry(
        name="dqn",
        family="value_based",
        summary="Deep Q-Network (RLlib DQN: double Q, dueling, n-step); discrete actions",
        config_class=DQNConfig,
        space_checks=(discrete_actions_only, vector_observations_only),
    )
)
