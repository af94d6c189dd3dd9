"""A point mass that must pass a round obstacle on either side: a task whose demonstrations are
multimodal (``rlscale/PointMassObstacle-v0``).

The point starts near ``(0, -1)``; the goal is the disc of radius ``GOAL_RADIUS`` around
``(0, 1)``; a disc of radius ``OBSTACLE_RADIUS`` around the origin stands in between. An action
is a velocity in ``[-1, 1]^2``; the point moves ``STEP_SIZE`` times it per step (clipped to the
arena ``[-ARENA, ARENA]^2``). Reaching the goal ends the episode with reward 1 and
``info["is_success"]``; touching the obstacle ends it with reward 0; otherwise the reward is 0
and the time limit is ``MAX_EPISODE_STEPS``. The return is thus the success (0 or 1).

Both ways around the obstacle are equally good, and the scripted expert
``point_mass_two_ways`` (``rlscale.policies``) takes either with probability 1/2. The mean of
its two actions at the start points straight at the obstacle, so a policy that averages the
modes (behaviour cloning with a Gaussian) fails, and one that keeps them (a diffusion policy)
succeeds: the test of ``diffusion_bc``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

ENV_ID = "rlscale/PointMassObstacle-v0"
START = np.array([0.0, -1.0])
START_NOISE = 0.02
"""Half-width of the uniform noise on each start coordinate."""
GOAL = np.array([0.0, 1.0])
GOAL_RADIUS = 0.15
OBSTACLE_RADIUS = 0.4
STEP_SIZE = 0.1
ARENA = 2.0
MAX_EPISODE_STEPS = 50
"""The expert needs about 23 steps."""


class PointMassObstacleEnv(gym.Env):
    """Observation: the position ``(x, y)``; action: the velocity, ``[-1, 1]^2``."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(-ARENA, ARENA, (2,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self._position = START.copy()

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._position = START + self.np_random.uniform(-START_NOISE, START_NOISE, 2)
        return self._observation(), {}

    def step(self, action):
        velocity = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        self._position = np.clip(self._position + STEP_SIZE * velocity, -ARENA, ARENA)
        reached = bool(np.linalg.norm(self._position - GOAL) <= GOAL_RADIUS)
        collided = bool(np.linalg.norm(self._position) <= OBSTACLE_RADIUS)
        info = {"is_success": reached}
        return self._observation(), float(reached), reached or collided, False, info

    def _observation(self) -> np.ndarray:
        return self._position.astype(np.float32)


def register() -> None:
    """Register the task with Gymnasium (once; importing ``rlscale.envs`` calls this)."""
    if ENV_ID not in gym.registry:
        gym.register(
            id=ENV_ID,
            entry_point=f"{__name__}:PointMassObstacleEnv",
            max_episode_steps=MAX_EPISODE_STEPS,
            reward_threshold=0.9,
        )
