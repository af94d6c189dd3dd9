"""Uniform replay of one-step transitions, kept as flat arrays (SAC's replay).

RLlib's ``EpisodeReplayBuffer`` stores episodes; each sampled row is cut out of its episode as a
one-step episode, and the Learner's connector pipeline turns those back into a batch. For a
minibatch of 256 rows that costs several times a SAC gradient step of 256-wide networks on CPU.
Here each transition (s, a, r, s', terminated) is one row of a set of arrays, and a minibatch is
one fancy-indexing per column, ready for ``LearnerGroup.update(batch=...)``.

Actions are the module's (in [-1, 1] with ``normalize_actions``), as RLlib's episodes record
them; observations are the ones the module saw (after any env-to-module filter that writes
them back into the episode).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from ray.rllib.core.columns import Columns
from ray.rllib.env.single_agent_episode import SingleAgentEpisode

TRANSITION_COLUMNS = (
    Columns.OBS,
    Columns.ACTIONS,
    Columns.REWARDS,
    Columns.NEXT_OBS,
    Columns.TERMINATEDS,
)


def episode_transitions(episode: SingleAgentEpisode) -> dict[str, np.ndarray]:
    """The one-step transitions of an episode (or of one sampled chunk of it).

    Only the chunk's last step can end the episode; a truncated end (a time limit) is not
    terminal, so its transition still bootstraps from s'.
    """
    steps = len(episode)
    observations = np.asarray(episode.get_observations(slice(0, steps + 1)))
    terminateds = np.zeros(steps, dtype=bool)
    terminateds[-1:] = episode.is_terminated
    return {
        Columns.OBS: observations[:-1],
        Columns.ACTIONS: np.asarray(episode.get_actions(slice(0, steps))),
        Columns.REWARDS: np.asarray(episode.get_rewards(slice(0, steps)), dtype=np.float32),
        Columns.NEXT_OBS: observations[1:],
        Columns.TERMINATEDS: terminateds,
    }


class TransitionReplay:
    """The last ``capacity`` transitions, sampled uniformly with replacement.

    Arrays grow (doubling) up to ``capacity`` rows, so a large capacity costs memory only as
    the buffer fills.
    """

    def __init__(self, capacity: int, seed: int | None = None):
        if capacity < 1:
            raise ValueError(f"replay capacity must be >= 1 transition, got {capacity}.")
        self.capacity = int(capacity)
        self.rng = np.random.default_rng(seed)
        self._columns: dict[str, np.ndarray] = {}
        self._size = 0
        self._next = 0  # the row the next transition overwrites once the buffer is full

    def __len__(self) -> int:
        return self._size

    def add_episodes(self, episodes: Iterable[SingleAgentEpisode]) -> int:
        """Add every step of ``episodes``; returns how many transitions were added."""
        added = 0
        for episode in episodes:
            if len(episode) > 0:
                added += self.add(episode_transitions(episode))
        return added

    def add(self, transitions: dict[str, np.ndarray]) -> int:
        """Add rows of ``TRANSITION_COLUMNS`` arrays; the oldest rows go once it is full."""
        rows = len(transitions[Columns.REWARDS])
        if rows > self.capacity:  # only the newest capacity rows would survive
            transitions = {key: value[-self.capacity :] for key, value in transitions.items()}
            rows = self.capacity
        self._reserve(transitions, min(self.capacity, self._size + rows))
        indices = (self._next + np.arange(rows)) % self.capacity
        for column in TRANSITION_COLUMNS:
            self._columns[column][indices] = transitions[column]
        self._next = (self._next + rows) % self.capacity
        self._size = min(self.capacity, self._size + rows)
        return rows

    def sample(self, rows: int) -> dict[str, np.ndarray]:
        """``rows`` transitions drawn uniformly (with replacement) from the stored ones."""
        if self._size == 0:
            raise ValueError("cannot sample from an empty replay; add transitions first.")
        indices = self.rng.integers(self._size, size=rows)
        return {column: values[indices] for column, values in self._columns.items()}

    def stored(self) -> dict[str, np.ndarray]:
        """Every stored transition (views of the buffer's arrays; copy before changing them)."""
        return {column: values[: self._size] for column, values in self._columns.items()}

    def _reserve(self, example: dict[str, np.ndarray], rows: int) -> None:
        """Make room for ``rows`` rows, shaped like ``example``'s columns."""
        allocated = len(self._columns[Columns.REWARDS]) if self._columns else 0
        if rows <= allocated:
            return
        grown = min(self.capacity, max(rows, 2 * allocated))
        for column in TRANSITION_COLUMNS:
            values = np.asarray(example[column])
            new = np.zeros((grown, *values.shape[1:]), dtype=values.dtype)
            if allocated:
                new[:allocated] = self._columns[column]
            self._columns[column] = new

    # Algorithm checkpoints (RLlib's ``store_buffer_in_checkpoints``).

    def get_state(self) -> dict[str, Any]:
        return {
            "columns": {key: values[: self._size].copy() for key, values in self._columns.items()},
            "next": self._next,
            "rng": self.rng.bit_generator.state,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        columns = state["columns"]
        self._size = len(columns[Columns.REWARDS]) if columns else 0
        self._columns = {key: np.array(values) for key, values in columns.items()}
        self._next = state["next"]
        self.rng.bit_generator.state = state["rng"]
