"""Policies that collect data: random, scripted controllers, and noise around any of them.

A policy is a callable ``(observation, rng) -> action``. A *policy factory* is a picklable
zero-argument callable that builds one; collection workers call it once on their own process,
so a policy that holds a torch module (a checkpoint) is built where it runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from rlscale.errors import DatasetError, did_you_mean

Policy = Callable[[Any, np.random.Generator], Any]
PolicyFactory = Callable[[gym.Space, gym.Space], Policy]
"""(observation_space, action_space) -> policy."""

RANDOM = "random"


def random_policy(_: gym.Space, action_space: gym.Space) -> Policy:
    def act(observation: Any, rng: np.random.Generator) -> Any:
        return sample_space(action_space, rng)

    return act


def cartpole_balance(_: gym.Space, __: gym.Space) -> Policy:
    """Push towards where the pole falls: a PD rule on angle and angular velocity.

    With the small cart-position terms it balances CartPole-v1 for the whole 500 steps.
    """

    def act(observation: Any, rng: np.random.Generator) -> int:
        x, x_dot, theta, theta_dot = (float(v) for v in observation)
        push = theta + 0.5 * theta_dot + 0.01 * x + 0.1 * x_dot
        return int(push > 0)

    return act


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


SCRIPTED: dict[str, PolicyFactory] = {
    RANDOM: random_policy,
    "cartpole_balance": cartpole_balance,
    "pendulum_swing_up": pendulum_swing_up,
}


def scripted_policy(name: str) -> PolicyFactory:
    """The factory of a built-in policy by name; an unknown name lists the known ones."""
    if name in SCRIPTED:
        return SCRIPTED[name]
    raise DatasetError(
        f"unknown policy '{name}'.{did_you_mean(name, SCRIPTED)} Use a checkpoint folder, "
        f"'random', or a scripted policy: {', '.join(sorted(SCRIPTED))}."
    )


@dataclass(frozen=True)
class Noisy:
    """Wrap a policy factory with exploration noise of size ``scale``.

    Discrete actions: with probability ``scale`` a uniformly random action (ε-greedy).
    Box actions: Gaussian noise with standard deviation ``scale`` times half the action range,
    clipped to the bounds.
    """

    factory: PolicyFactory
    scale: float

    def __call__(self, observation_space: gym.Space, action_space: gym.Space) -> Policy:
        base = self.factory(observation_space, action_space)
        if self.scale <= 0:
            return base
        scale = self.scale

        def act(observation: Any, rng: np.random.Generator) -> Any:
            action = base(observation, rng)
            if isinstance(action_space, gym.spaces.Discrete):
                if rng.random() < scale:
                    return sample_space(action_space, rng)
                return action
            half_range = (action_space.high - action_space.low) / 2.0
            noisy = np.asarray(action) + rng.normal(size=action_space.shape) * scale * half_range
            return np.clip(noisy, action_space.low, action_space.high).astype(action_space.dtype)

        return act


def sample_space(space: gym.Space, rng: np.random.Generator) -> Any:
    """A uniform sample from ``space`` drawn with ``rng`` (reproducible, unlike space.sample)."""
    if isinstance(space, gym.spaces.Discrete):
        return int(space.start + rng.integers(space.n))
    if isinstance(space, gym.spaces.Box):
        return rng.uniform(space.low, space.high).astype(space.dtype)
    raise DatasetError(f"random actions in {space} are not supported (Discrete and Box are).")
