"""Experts and behaviour policies: scripted controllers, a checkpoint's greedy policy, noise.

Dataset collection rolls them out and DAgger queries one as its expert, so they sit below both
algorithms and datasets. Nothing here imports ``rlscale.algorithms``, ``rlscale.datasets`` or
``rlscale.platform``: what a policy needs from the runtime (a checked checkpoint folder) is handed
to it as an argument. See :mod:`rlscale.policies.base` for what a policy and a factory are.
"""

from rlscale.policies.base import Policy, PolicyFactory, sample_space
from rlscale.policies.checkpoint import CheckpointPolicy
from rlscale.policies.named import named_policy
from rlscale.policies.noise import Noisy
from rlscale.policies.scripted import (
    RANDOM,
    SCRIPTED,
    cartpole_balance,
    pendulum_swing_up,
    random_policy,
    register_scripted,
    scripted_policy,
)

__all__ = [
    "RANDOM",
    "SCRIPTED",
    "CheckpointPolicy",
    "Noisy",
    "Policy",
    "PolicyFactory",
    "cartpole_balance",
    "named_policy",
    "pendulum_swing_up",
    "random_policy",
    "register_scripted",
    "sample_space",
    "scripted_policy",
]
