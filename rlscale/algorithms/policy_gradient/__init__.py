"""Policy-gradient family (PPO now; A2C and TRPO join it with a shared actor-critic module)."""

from rlscale.algorithms.policy_gradient.ppo import RlscalePPOConfig
from rlscale.algorithms.registry import AlgorithmEntry, register_algorithm

register_algorithm(
    AlgorithmEntry(
        name="ppo",
        family="policy_gradient",
        summary="Proximal Policy Optimization (RLlib PPO, rlscale defaults); any action space",
        config_class=RlscalePPOConfig,
    )
)
