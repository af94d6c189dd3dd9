"""Environments by name: Gymnasium (classic control, toy text, MuJoCo, ...) and PettingZoo.

``resolve_env`` checks a name and reads its spaces, ``make_env`` builds the environment (an RLlib
``MultiAgentEnv`` for PettingZoo names), ``register_with_rllib`` gives RLlib a creator it can call
on every EnvRunner, and ``list_envs`` backs ``rlscale envs``. Ray and PettingZoo load lazily.

Importing this package registers rlscale's own Gymnasium ids (``rlscale/ContinuousCartPole-v0``,
``rlscale/ContinuousCartPoleSwingUp-v0``, see :mod:`rlscale.envs.continuous_cartpole`;
``rlscale/PointMassObstacle-v1``, see :mod:`rlscale.envs.point_mass`; ``rlscale/LaneKeeping-v0``,
see :mod:`rlscale.envs.lane_keeping`), so every
process that builds environments through rlscale, RLlib's EnvRunners included, finds them.
"""

from rlscale.envs import continuous_cartpole, lane_keeping, point_mass
from rlscale.envs.info import RECORD_VIDEO_KEY, EnvInfo, EnvListing
from rlscale.envs.registry import list_envs, make_env, resolve_env
from rlscale.envs.rllib import MULTI_AGENT_MODES, multi_agent_policies, register_with_rllib

continuous_cartpole.register()
lane_keeping.register()
point_mass.register()

__all__ = [
    "MULTI_AGENT_MODES",
    "RECORD_VIDEO_KEY",
    "EnvInfo",
    "EnvListing",
    "list_envs",
    "make_env",
    "multi_agent_policies",
    "register_with_rllib",
    "resolve_env",
]
