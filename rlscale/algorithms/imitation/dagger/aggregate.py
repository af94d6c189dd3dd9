"""DAgger's aggregate data set: every labelled state, kept in order of arrival, writable as a
Minari dataset."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from rlscale.algorithms.imitation.dagger.module import EXPERT_ACTIONS
from rlscale.datasets.store import EpisodeArrays

AGGREGATE_COLUMNS = (
    "observations",
    "actions",
    "next_observations",
    "rewards",
    "terminated",
    "truncated",
    "episodes",
)
"""Per labelled state: the state, the expert's label, what followed the action actually taken
(next state, reward, termination, truncation), and the number of the episode it belongs to."""


class LabelledStates:
    """The aggregate data set: visited states and the expert's action in each, grown in place.

    Each row also keeps what followed it in the env and its episode's number, so that the
    aggregate can be written out as whole episodes (:meth:`episodes`).
    """

    def __init__(self, capacity: int | None) -> None:
        self.capacity = capacity
        self.columns: dict[str, np.ndarray] = {}
        self.episodes_seen = 0
        """Episodes numbered so far; the next new episode gets this number."""
        self._open_episodes: dict[str, int] = {}
        """RLlib episode id -> number, for episodes that may go on in the next round's sample."""

    def __len__(self) -> int:
        return len(self.columns.get("observations", ()))

    @property
    def observations(self) -> np.ndarray | None:
        return self.columns.get("observations")

    @property
    def actions(self) -> np.ndarray | None:
        return self.columns.get("actions")

    def add(self, observations: np.ndarray, actions: np.ndarray, **following: np.ndarray) -> None:
        """Append rows: states and their labels, with the :data:`AGGREGATE_COLUMNS` that follow
        them when known (rows added without them cannot be written out as episodes)."""
        if len(observations) == 0:
            return
        rows = {"observations": observations, "actions": actions, **following}
        if self.columns and set(rows) != set(self.columns):
            raise ValueError(f"rows with columns {sorted(rows)} join {sorted(self.columns)}")
        for name, values in rows.items():
            old = self.columns.get(name)
            self.columns[name] = values.copy() if old is None else np.concatenate([old, values])
        if self.capacity is not None and len(self) > self.capacity:
            self.columns = {k: v[-self.capacity :] for k, v in self.columns.items()}

    def add_episodes(self, episodes) -> int:
        """Append every step of RLlib episode chunks, each labelled by the expert; returns the
        number of labelled states. Chunks of one episode sampled in successive rounds keep one
        episode number."""
        chunks = [episode for episode in episodes if len(episode)]
        if not chunks:
            return 0
        numbers = [self._episode_number(chunk.id_) for chunk in chunks]
        self._open_episodes = {
            chunk.id_: number
            for chunk, number in zip(chunks, numbers, strict=True)
            if not chunk.is_done
        }
        columns = [
            _chunk_columns(chunk, number) for chunk, number in zip(chunks, numbers, strict=True)
        ]
        self.add(**{name: np.concatenate([c[name] for c in columns]) for name in columns[0]})
        return sum(len(chunk) for chunk in chunks)

    def _episode_number(self, episode_id: str) -> int:
        number = self._open_episodes.get(episode_id)
        if number is None:
            number, self.episodes_seen = self.episodes_seen, self.episodes_seen + 1
        return number

    def episodes(self) -> Iterator[EpisodeArrays]:
        """The aggregate as whole episodes, in the order they began: the visited states, the
        expert's labels as the actions, and the rewards and ends of the actions taken. An
        episode still running when the run stopped ends truncated; one whose first rows fell
        out at capacity starts at its oldest kept state."""
        if "episodes" not in self.columns:
            raise ValueError("this aggregate holds no episode structure to write out")
        numbers = self.columns["episodes"]
        order = np.argsort(numbers, kind="stable")
        starts = np.flatnonzero(np.diff(numbers[order], prepend=-1))
        for rows in np.split(order, starts[1:]):
            yield self._episode(rows)

    def _episode(self, rows: np.ndarray) -> EpisodeArrays:
        column = {name: values[rows] for name, values in self.columns.items()}
        truncations = column["truncated"].copy()
        truncations[-1] |= not column["terminated"][-1]
        return EpisodeArrays(
            observations=np.concatenate([column["observations"], column["next_observations"][-1:]]),
            actions=column["actions"],
            rewards=column["rewards"],
            terminations=column["terminated"],
            truncations=truncations,
        )


def _chunk_columns(chunk, number: int) -> dict[str, np.ndarray]:
    """One episode chunk's rows, in the :data:`AGGREGATE_COLUMNS`."""
    steps = len(chunk)
    observations = np.asarray(chunk.get_observations(slice(0, steps + 1)))
    ended = np.zeros(steps, dtype=bool)
    terminated, truncated = ended.copy(), ended.copy()
    terminated[-1], truncated[-1] = chunk.is_terminated, chunk.is_truncated
    return {
        "observations": observations[:-1],
        "actions": np.asarray(chunk.get_extra_model_outputs(EXPERT_ACTIONS)),
        "next_observations": observations[1:],
        "rewards": np.asarray(chunk.get_rewards(), dtype=np.float64),
        "terminated": terminated,
        "truncated": truncated,
        "episodes": np.full(steps, number, dtype=np.int64),
    }
