"""Keeping a point on the centre line of a winding lane whose drift grows on its own: a task on
which behaviour cloning's errors compound and DAgger's do not (``rlscale/LaneKeeping-v0``).

The state is the point's offset ``d`` from the centre line and its sideways velocity ``v``; the
lane's curvature ``c(t) = CURVE_AMPLITUDE * sin(2 pi t / CURVE_PERIOD + phase)`` pushes it
sideways, and the offset pushes it further out in proportion (``DRIFT``, like an inverted
pendulum's angle). Each step of ``DT`` the action ``u`` in ``[-1, 1]`` steers against both::

    v <- v + DT * (u - c(t) + DRIFT * d)        d <- d + DT * v

The observation is ``(d, v, c(t))``; every step in the lane earns 1, leaving it (``|d| >
LANE_HALF_WIDTH``) ends the episode, and the time limit is ``MAX_EPISODE_STEPS``.

Every episode starts on the centre line at rest, only the curve's phase drawn from the seed.
The scripted expert ``lane_keeping`` (``rlscale.policies``) steers with the curve and holds the
point there exactly, so its demonstrations never show a deviation nor how to correct one. A
cloned policy that errs slightly (they all do) leaves those states, the drift grows, and it has
no data there: the compounding errors of Ross, Gordon & Bagnell (2011), "A Reduction of
Imitation Learning and Structured Prediction to No-Regret Online Learning" (AISTATS), Sec. 2.
DAgger labels the states its own policy reaches and learns the correction; the learning check
of ``dagger`` against behaviour cloning runs here. (Pendulum-v1 and CartPole-v1 start from
random states, so their demonstrations already cover deviations, and cloning them reaches the
expert.)
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

ENV_ID = "rlscale/LaneKeeping-v0"
DT = 0.05
DRIFT = 4.0
"""How fast an offset grows on its own (per second squared, per unit of offset): at 4 an
uncorrected error doubles within about 0.35 s (7 steps)."""
CURVE_AMPLITUDE = 0.5
"""Half of the steering range, so the expert can always follow the curve and correct."""
CURVE_PERIOD = 80
"""Steps per period of the curve: 2.5 periods an episode."""
LANE_HALF_WIDTH = 1.0
MAX_SPEED = 4.0
"""The sideways speed is clipped here, which bounds the observation."""
MAX_EPISODE_STEPS = 200


class LaneKeepingEnv(gym.Env):
    """Observation: ``(offset, sideways velocity, curvature)``; action: the steering."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self) -> None:
        offset_bound = LANE_HALF_WIDTH + DT * MAX_SPEED
        high = np.array([offset_bound, MAX_SPEED, CURVE_AMPLITUDE], dtype=np.float32)
        self.observation_space = gym.spaces.Box(-high, high, dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self._offset = self._speed = self._phase = 0.0
        self._step = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._offset, self._speed, self._step = 0.0, 0.0, 0
        self._phase = float(self.np_random.uniform(0.0, 2.0 * np.pi))
        return self._observation(), {}

    def step(self, action):
        steer = float(np.asarray(action, dtype=np.float64).reshape(-1)[0])
        if not np.isfinite(steer):
            raise ValueError(f"the action must be a finite number, got {action!r}")
        steer = float(np.clip(steer, -1.0, 1.0))
        acceleration = steer - self.curvature() + DRIFT * self._offset
        self._speed = float(np.clip(self._speed + DT * acceleration, -MAX_SPEED, MAX_SPEED))
        self._offset += DT * self._speed
        self._step += 1
        left_the_lane = abs(self._offset) > LANE_HALF_WIDTH
        return self._observation(), 1.0, left_the_lane, False, {}

    def curvature(self) -> float:
        """The curve's push at the current step."""
        angle = 2.0 * np.pi * self._step / CURVE_PERIOD + self._phase
        return CURVE_AMPLITUDE * float(np.sin(angle))

    def _observation(self) -> np.ndarray:
        return np.array([self._offset, self._speed, self.curvature()], dtype=np.float32)


def register() -> None:
    """Register the task with Gymnasium (once; importing ``rlscale.envs`` calls this)."""
    if ENV_ID not in gym.registry:
        gym.register(
            id=ENV_ID,
            entry_point=f"{__name__}:LaneKeepingEnv",
            max_episode_steps=MAX_EPISODE_STEPS,
            reward_threshold=float(MAX_EPISODE_STEPS),
        )
