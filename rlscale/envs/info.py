"""What rlscale knows about an environment without running it: names, kinds, spaces."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import gymnasium as gym

GYMNASIUM = "gymnasium"
PETTINGZOO = "pettingzoo"

RECORD_VIDEO_KEY = "record_video_dir"
"""Reserved ``env_config`` key: record every episode as video into this folder.

:func:`rlscale.envs.make_env` takes it out of the config before the environment is built, so
the environment itself never sees it. Only single-agent Gymnasium environments can record.
"""


@dataclass(frozen=True)
class EnvInfo:
    """An environment's name, kind and spaces, read by building it once.

    For multi-agent (PettingZoo) environments both spaces are ``gym.spaces.Dict`` mapping each
    agent id to that agent's space, and ``agent_ids`` lists the agents in the environment's own
    order (``possible_agents``).
    """

    name: str
    kind: str
    observation_space: gym.Space
    action_space: gym.Space
    agent_ids: tuple[str, ...] = ()
    family: str = ""
    """Group for listing and filtering, e.g. ``classic_control``, ``mujoco``, ``mpe2``."""

    @property
    def is_multi_agent(self) -> bool:
        return bool(self.agent_ids)


@dataclass(frozen=True)
class EnvListing:
    """An environment listed by name only: its spaces were not read (or could not be).

    ``note`` says why, e.g. ``needs: pip install "gymnasium[box2d]"``; it is empty when the
    listing simply skipped building environments.
    """

    name: str
    kind: str
    family: str
    note: str = ""
