"""Exploration noise around any policy: how collection makes "medium" data from an expert."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from rlscale.policies.base import Policy, PolicyFactory, sample_space


@dataclass(frozen=True)
class Noisy:
    """Wrap a policy factory with exploration noise of size ``scale`` (itself a factory).

    Discrete actions: with probability ``scale`` a uniformly random action (ε-greedy).
    Box actions: Gaussian noise with standard deviation ``scale`` times half the action range,
    clipped to the bounds. ``scale`` 0 returns the wrapped policy itself.
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
