"""What a policy is, for every user of ``rlscale.policies`` (collection, DAgger, demonstrations).

A policy is a callable ``(observation, rng) -> action`` acting on one unbatched observation; the
``numpy`` generator is its only source of randomness, so a rollout is reproducible from a seed.
A *policy factory* is a picklable callable ``(observation_space, action_space) -> policy``: it
travels to a Ray actor and builds the policy there, so that a policy holding a torch module (a
checkpoint) is built in the process that runs it rather than pickled across.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from rlscale.errors import PolicyError

Policy = Callable[[Any, np.random.Generator], Any]
"""(observation, rng) -> action."""
PolicyFactory = Callable[[gym.Space, gym.Space], Policy]
"""(observation_space, action_space) -> policy; picklable."""


def sample_space(space: gym.Space, rng: np.random.Generator) -> Any:
    """A uniform sample from ``space`` drawn with ``rng`` (reproducible, unlike space.sample)."""
    if isinstance(space, gym.spaces.Discrete):
        return int(space.start + rng.integers(space.n))
    if isinstance(space, gym.spaces.Box):
        return rng.uniform(space.low, space.high).astype(space.dtype)
    raise PolicyError(f"random actions in {space} are not supported (Discrete and Box are).")
