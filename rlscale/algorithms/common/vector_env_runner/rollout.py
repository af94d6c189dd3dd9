"""Preallocated ``[T, N, ...]`` buffers of one ``sample()`` call and the per-env state that
carries an episode across calls."""

from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np


def lookback_like(earlier: np.ndarray | None, values: np.ndarray) -> np.ndarray | None:
    """The lookback of an extra-output column, if the new steps can continue it.

    A column may change its per-step shape between calls: a greedy Box draw's log-prob is
    [1] per step, an exploring one's a scalar. RLlib's lookback buffer then appends the new
    steps in the old shape; when the sizes differ too, the chunk starts without that lookback.
    """
    if earlier is None or earlier.shape[1:] == values.shape[1:]:
        return earlier
    if int(np.prod(earlier.shape[1:])) == int(np.prod(values.shape[1:])):
        return earlier
    return None


def reduce_type(array: np.ndarray) -> np.ndarray:
    """RLlib's ``TensorToNumpy`` dtypes: every float to float32, int64 to int32."""
    kind = array.dtype.kind
    if kind == "f" and array.dtype != np.float32:
        return array.astype(np.float32)
    if array.dtype == np.int64:  # np.issubdtype(dtype, int), as RLlib asks, holds for it alone
        return array.astype(np.int32)
    return array


@dataclass
class Ongoing:
    """One env's episode between two ``sample()`` calls: what ``SingleAgentEpisode.cut`` keeps."""

    id_: str | None = None
    """None: the env's next step is a reset step (its episode ended on the last step)."""
    t: int = 0
    observations: np.ndarray | None = None
    """The last ``lookback + 1`` observations, the current one last."""
    infos: list = field(default_factory=list)
    actions: np.ndarray | None = None
    rewards: np.ndarray | None = None
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    start_time: float | None = None
    """When the episode was reset, if that was after its last returned chunk."""


class Rollout:
    """Preallocated ``[T (+1), N, ...]`` buffers of one ``sample()`` call; grown by doubling."""

    def __init__(self, num_envs: int, observation_space: gym.Space, action_space: gym.Space):
        self.num_envs = num_envs
        self.observation_space = observation_space
        self.action_space = action_space
        self.capacity = 0
        self.columns: dict[str, np.ndarray] = {}
        """The actions and the extra model outputs, allocated at their first write (their
        dtypes are RLlib's: the module's outputs reduced to float32 / int32)."""
        self.written: set[str] = set()
        """The columns written by the current call (random actions write no model outputs)."""

    def ensure(self, steps: int) -> None:
        if steps <= self.capacity:
            return
        capacity = max(steps, 2 * self.capacity, 16)
        n = self.num_envs
        old = self.capacity
        fresh = {
            "observations": np.zeros(
                (capacity + 1, n, *self.observation_space.shape), self.observation_space.dtype
            ),
            "rewards": np.zeros((capacity, n), np.float64),
            "terminated": np.zeros((capacity, n), bool),
            "truncated": np.zeros((capacity, n), bool),
            "reset": np.zeros((capacity, n), bool),
            "stamps": np.zeros(capacity, np.float64),
        }
        for name, array in fresh.items():
            if old:
                kept = old + 1 if name == "observations" else old
                array[:kept] = getattr(self, name)[:kept]
            setattr(self, name, array)
        for key, array in list(self.columns.items()):
            grown = np.zeros((capacity, *array.shape[1:]), array.dtype)
            grown[:old] = array[:old]
            self.columns[key] = grown
        self.capacity = capacity

    def store(self, key: str, step: int, value: np.ndarray) -> None:
        """Column ``key`` (the actions or an extra model output) of all envs at ``step``."""
        buffer = self.columns.get(key)
        if buffer is None or buffer.shape[1:] != value.shape or buffer.dtype != value.dtype:
            buffer = np.zeros((self.capacity, *value.shape), value.dtype)
            self.columns[key] = buffer
        buffer[step] = value
        self.written.add(key)

    def fill(self, key: str, steps: int, value: int) -> None:
        """Column ``key`` = ``value`` (an int, stored as int64) for all envs and ``steps``."""
        buffer = self.columns.get(key)
        if buffer is None or buffer.shape != (self.capacity, self.num_envs):
            buffer = np.zeros((self.capacity, self.num_envs), np.int64)
            self.columns[key] = buffer
        buffer[:steps] = value
        self.written.add(key)

    def fits(self, num_envs: int, observation_space: gym.Space, action_space: gym.Space) -> bool:
        return (num_envs, observation_space, action_space) == (
            self.num_envs,
            self.observation_space,
            self.action_space,
        )
