"""Policy-gradient family: A2C, TRPO and PPO on one actor-critic module and one GAE."""

import gymnasium as gym

from rlscale.algorithms.policy_gradient.a2c import A2C, A2CConfig, A2CLearner
from rlscale.algorithms.policy_gradient.actor_critic import ActorCriticConfig, ActorCriticLearner
from rlscale.algorithms.policy_gradient.ppo import PPO, PPOConfig, PPOLearner
from rlscale.algorithms.policy_gradient.trpo import TRPO, TRPOConfig, TRPOLearner
from rlscale.algorithms.registry import (
    AlgorithmEntry,
    register_algorithm,
    vector_observations_only,
)


def discrete_or_box_actions(_: gym.Space, action_space: gym.Space) -> str | None:
    if isinstance(action_space, (gym.spaces.Discrete, gym.spaces.Box)):
        return None
    return f"it needs a Discrete or Box action space, and the action space is {action_space}"


_SPACE_CHECKS = (vector_observations_only, discrete_or_box_actions)

for _name, _config, _summary in (
    ("a2c", A2CConfig, "Advantage actor-critic (synchronous A3C); Discrete or Box actions"),
    ("trpo", TRPOConfig, "Trust Region Policy Optimization; Discrete or Box actions"),
    ("ppo", PPOConfig, "Proximal Policy Optimization; Discrete or Box actions"),
):
    register_algorithm(
        AlgorithmEntry(
            name=_name,
            family="policy_gradient",
            summary=_summary,
            config_class=_config,
            space_checks=_SPACE_CHECKS,
        )
    )

__all__ = [
    "A2C",
    "PPO",
    "TRPO",
    "A2CConfig",
    "A2CLearner",
    "ActorCriticConfig",
    "ActorCriticLearner",
    "PPOConfig",
    "PPOLearner",
    "TRPOConfig",
    "TRPOLearner",
]
