"""A point mass that must pass a round obstacle on either side: a task whose demonstrations are
multimodal (``rlscale/PointMassObstacle-v1``).

Every episode starts at ``(0, -0.5)``, just below a disc of radius ``OBSTACLE_RADIUS`` around
the origin, and moves up by ``FORWARD_STEP`` every step; the action, in ``[-1, 1]``, steers it
sideways by ``LATERAL_STEP`` times the action. The goal is the disc of radius ``GOAL_RADIUS``
around ``(0, 1)``, beyond the obstacle. Reaching the goal ends the episode with reward 1 and
``info["is_success"]``; touching the obstacle ends it with reward 0; otherwise the reward is 0
and the time limit is ``MAX_EPISODE_STEPS``. The return is thus the success (0 or 1).

Both ways around the obstacle are equally good, and the scripted expert
``point_mass_two_ways`` (``rlscale.policies``) takes them in turn, one episode each: its first
action is a full step to its side (+-1), and only a firm step clears the obstacle. The mean of
the two (0) runs straight into it, and so does any first action within half of it. A policy
that averages the modes (behaviour cloning with a Gaussian) fails, and one that keeps them (a
diffusion policy) succeeds: the test of ``diffusion_bc``.

(``-v0`` started further down, from a start that varied, and steered in both coordinates. The
point could hesitate on the way up, and Gaussian BC learned to break the tie from the way its
start leaned, and succeeded.)
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

ENV_ID = "rlscale/PointMassObstacle-v1"
START = np.array([0.0, -0.5])
"""The same start for every episode: no start can hint at a side. (With starts that varied by
0.005, Gaussian BC fitted the demonstrator's side to each start and so went both ways too.)"""
GOAL = np.array([0.0, 1.0])
GOAL_RADIUS = 0.15
OBSTACLE_RADIUS = 0.45
FORWARD_STEP = 0.1
LATERAL_STEP = 0.4
ARENA = 2.0
MAX_EPISODE_STEPS = 25
"""The expert needs 14 steps; by 25 the point has passed the goal's height."""


class PointMassObstacleEnv(gym.Env):
    """Observation: the position ``(x, y)``; action: the sideways velocity, ``[-1, 1]``."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(-ARENA, ARENA, (2,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self._position = START.copy()

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._position = START.copy()
        return self._observation(), {}

    def step(self, action):
        steer = float(np.clip(np.asarray(action, dtype=np.float64).reshape(-1)[0], -1.0, 1.0))
        if not np.isfinite(steer):
            raise ValueError(f"the action must be a finite number, got {action!r}")
        move = np.array([LATERAL_STEP * steer, FORWARD_STEP])
        self._position = np.clip(self._position + move, -ARENA, ARENA)
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
