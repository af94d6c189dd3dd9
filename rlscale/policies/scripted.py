"""Scripted experts: hand-written controllers, and the uniformly random policy, by name.

Each one is a policy factory registered under the name users pass (``--policy cartpole_balance``).
Adding an expert for a new environment is one decorated function::

    @register_scripted("acrobot_swing_up")
    def acrobot_swing_up(observation_space, action_space) -> Policy:
        def act(observation, rng):
            ...
        return act

Factories are module-level functions, so they pickle by reference onto Ray actors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from rlscale.envs import lane_keeping, point_mass
from rlscale.errors import PolicyError, did_you_mean
from rlscale.policies.base import Policy, PolicyFactory, sample_space

RANDOM = "random"

SCRIPTED: dict[str, PolicyFactory] = {}
"""Name -> factory of every scripted policy, filled by :func:`register_scripted`."""


def register_scripted(name: str) -> Callable[[PolicyFactory], PolicyFactory]:
    """Register the decorated policy factory under ``name`` (names are unique)."""

    def register(factory: PolicyFactory) -> PolicyFactory:
        if name in SCRIPTED:
            raise ValueError(f"a scripted policy named '{name}' is already registered")
        SCRIPTED[name] = factory
        return factory

    return register


def scripted_policy(name: str) -> PolicyFactory:
    """The factory of a built-in policy by name; an unknown name lists the known ones."""
    if name in SCRIPTED:
        return SCRIPTED[name]
    raise PolicyError(
        f"unknown policy '{name}'.{did_you_mean(name, SCRIPTED)} Use a checkpoint folder, "
        f"'random', or a scripted policy: {', '.join(sorted(SCRIPTED))}."
    )


@register_scripted(RANDOM)
def random_policy(_: gym.Space, action_space: gym.Space) -> Policy:
    """Uniform actions: the reference policy of normalized scores."""

    def act(observation: Any, rng: np.random.Generator) -> Any:
        return sample_space(action_space, rng)

    return act


@register_scripted("cartpole_balance")
def cartpole_balance(_: gym.Space, __: gym.Space) -> Policy:
    """Push towards where the pole falls: a PD rule on angle and angular velocity.

    With the small cart-position terms it balances CartPole-v1 for the whole 500 steps.
    """

    def act(observation: Any, rng: np.random.Generator) -> int:
        x, x_dot, theta, theta_dot = (float(v) for v in observation)
        push = theta + 0.5 * theta_dot + 0.01 * x + 0.1 * x_dot
        return int(push > 0)

    return act


@register_scripted("cartpole_centered")
def cartpole_centered(_: gym.Space, __: gym.Space) -> Policy:
    """``cartpole_balance`` with a five times stronger pull towards the track's centre.

    ``cartpole_balance`` lets the cart drift (to x = -1.67 of the track's ±2.4 in a seed-0
    episode), so one of its episodes never shows how to bring the cart back; this rule keeps
    it within about ±1 and balances for the whole 500 steps as well. Imitation from a single
    demonstration uses it.
    """

    def act(observation: Any, rng: np.random.Generator) -> int:
        x, x_dot, theta, theta_dot = (float(v) for v in observation)
        push = theta + 0.5 * theta_dot + 0.05 * x + 0.1 * x_dot
        return int(push > 0)

    return act


@register_scripted("inverted_pendulum_balance")
def inverted_pendulum_balance(_: gym.Space, action_space: gym.Space) -> Policy:
    """A linear state-feedback law for MuJoCo's InvertedPendulum (-v4, -v5): force
    ``0.5 x + 10 θ + ẋ + θ̇`` on the cart, clipped to the action bounds.

    The observation is (cart position x, pole angle θ, their velocities); pushing the cart the
    way the pole leans keeps it under the pole, and the small position term brings it back
    to the centre. It balances for the whole 1,000 steps from every start the env draws.
    """
    gains = np.array([0.5, 10.0, 1.0, 1.0])
    low, high = action_space.low, action_space.high

    def act(observation: Any, rng: np.random.Generator) -> np.ndarray:
        force = float(gains @ np.asarray(observation, dtype=np.float64))
        return np.clip([force], low, high).astype(action_space.dtype)

    return act


LANE_POSITION_GAIN = 4.0
LANE_VELOCITY_GAIN = 3.0
"""``lane_keeping``'s feedback: with the drift and the curve cancelled, the offset obeys
``d'' = -4 d - 3 v``, which settles without overshoot to speak of within about 2 s."""


@register_scripted("lane_keeping")
def lane_keeping_expert(_: gym.Space, __: gym.Space) -> Policy:
    """Steers with the curve of ``rlscale/LaneKeeping-v0``, cancels the drift, and pulls the
    offset back with a PD law. From the env's start (on the centre line, at rest) it stays
    there exactly, steering by the curvature alone."""

    def act(observation: Any, rng: np.random.Generator) -> np.ndarray:
        offset, speed, curvature = (float(v) for v in observation)
        correction = (lane_keeping.DRIFT + LANE_POSITION_GAIN) * offset + LANE_VELOCITY_GAIN * speed
        return np.array([np.clip(curvature - correction, -1.0, 1.0)], dtype=np.float32)

    return act


@register_scripted("pendulum_swing_up")
def pendulum_swing_up(_: gym.Space, action_space: gym.Space) -> Policy:
    """Energy pumping far from the top, a PD controller near it (Pendulum-v1, torque in [-2, 2]).

    Observation is (cos θ, sin θ, θ̇) with θ = 0 upright. Pendulum-v1's dynamics are
    θ̈ = 15 sin θ + 3 u, so E = ½ θ̇² + 15 cos θ changes as dE/dt = 3 u θ̇: pushing along θ̇ adds
    energy until E reaches 15, the energy of resting upright; near the top a PD law holds it.
    """
    low, high = float(action_space.low[0]), float(action_space.high[0])

    def act(observation: Any, rng: np.random.Generator) -> np.ndarray:
        cos_t, sin_t, theta_dot = (float(v) for v in observation)
        theta = float(np.arctan2(sin_t, cos_t))
        if cos_t > 0.9:
            torque = -10.0 * theta - 2.0 * theta_dot
        else:
            energy = 0.5 * theta_dot**2 + 15.0 * cos_t
            direction = 1.0 if theta_dot >= 0 else -1.0
            torque = direction * (high if energy < 15.0 else 0.0)
        return np.array([np.clip(torque, low, high)], dtype=np.float32)

    return act


PASSING_OFFSET = 0.8
"""How far to the side ``point_mass_two_ways`` passes the obstacle (0.35 clear of it at the
level of its centre)."""
RETURN_HEIGHT = 0.35
"""Above this height the expert steers back to ``x = 0``, below the goal."""


@register_scripted("point_mass_two_ways")
def point_mass_two_ways(_: gym.Space, __: gym.Space) -> Policy:
    """Around the obstacle of ``rlscale/PointMassObstacle-v1``, on each side equally often.

    The first episode's side is drawn with probability 1/2 from ``rng``; each later episode
    (a new start: the point is back at ``START``, where no later step returns) takes the other
    side, so demonstrations hold the two modes in equal shares, whatever their number. It
    steers at full speed toward ``±PASSING_OFFSET`` up to ``RETURN_HEIGHT`` and back to
    ``x = 0`` above it. Its first action is thus ``±1``, and the mean of the two, 0, runs into
    the obstacle.
    """
    side = {"sign": 0.0}

    def act(observation: Any, rng: np.random.Generator) -> np.ndarray:
        position = np.asarray(observation, dtype=np.float64)
        if np.array_equal(position, point_mass.START):
            if side["sign"] == 0.0:
                side["sign"] = 1.0 if rng.random() < 0.5 else -1.0
            else:
                side["sign"] = -side["sign"]
        return point_mass_steering(position, side["sign"])

    return act


def point_mass_steering(position: np.ndarray, sign: float) -> np.ndarray:
    """``point_mass_two_ways``'s action at ``position`` on the side ``sign`` (+1 right)."""
    x, y = position
    target = sign * PASSING_OFFSET if y < RETURN_HEIGHT else 0.0
    steer = np.clip((target - x) / point_mass.LATERAL_STEP, -1.0, 1.0)
    return np.array([steer], dtype=np.float32)
