"""Fixed-length sequences of real experience for training world models.

A world model is trained on batches of sequences ``[B, L]`` (PlaNet, Hafner et al. 2019,
Sec. 5: "batches of 50 sequence chunks of length 50"; Dreamer the same). ``SequenceReplay``
keeps whole episodes and cuts each sequence out of one episode, at a start drawn uniformly
over every window that fits, so that all steps of the replay are about equally likely to be
trained on (the ends of episodes only slightly less).

Steps are aligned as ``WorldModel.loss`` expects them: step ``t`` of an episode holds the
observation ``o_t``, the action that led to it (zeros at ``t = 0``), the reward received on
arriving at it (0 at ``t = 0``), ``continue = 0`` only for the final observation of a
terminated episode (not of a truncated one: its future goes on), and ``is_first`` at ``t = 0``.
An episode of ``T`` transitions is ``T + 1`` steps, so it holds sequences of length ``L`` when
``L <= T + 1``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rlscale.algorithms.common.offline import dataset_dir_problem
from rlscale.datasets.store import open_dataset
from rlscale.errors import DatasetError

SEQUENCE_KEYS = ("observations", "actions", "rewards", "continues", "is_first")


@dataclass
class _Episode:
    """One stored episode, its arrays aligned per step (module docstring)."""

    observations: np.ndarray  # [T + 1, ...]
    actions: np.ndarray  # [T + 1, A], zeros first
    rewards: np.ndarray  # [T + 1], 0 first
    terminated: bool
    key: Any = None

    @property
    def steps(self) -> int:
        return len(self.observations)

    def window(self, start: int, length: int) -> dict[str, np.ndarray]:
        stop = start + length
        continues = np.ones(length, dtype=np.float32)
        if self.terminated and stop == self.steps:
            continues[-1] = 0.0
        is_first = np.zeros(length, dtype=bool)
        is_first[0] = start == 0
        return {
            "observations": self.observations[start:stop],
            "actions": self.actions[start:stop],
            "rewards": self.rewards[start:stop],
            "continues": continues,
            "is_first": is_first,
        }


class SequenceReplay:
    """Episodes in, fixed-length sequences out; the oldest episodes leave once the replay
    holds more than ``capacity_steps`` steps."""

    def __init__(self, capacity_steps: int, sequence_length: int, seed: int | None = None):
        if not isinstance(sequence_length, int) or sequence_length < 1:
            raise ValueError(f"sequence_length must be a positive integer, got {sequence_length!r}")
        if not isinstance(capacity_steps, int) or capacity_steps < sequence_length:
            raise ValueError(
                f"capacity_steps must be an integer of at least sequence_length "
                f"({sequence_length}), got {capacity_steps!r}"
            )
        self.capacity_steps = capacity_steps
        self.sequence_length = sequence_length
        self._episodes: deque[_Episode] = deque()
        self._by_id: dict[Any, _Episode] = {}
        self._steps = 0
        self._rng = np.random.default_rng(seed)

    def num_steps(self) -> int:
        """Steps (observations) held, over every episode."""
        return self._steps

    def num_episodes(self) -> int:
        return len(self._episodes)

    def longest_episode(self) -> int:
        """Steps of the longest episode held (0 when empty)."""
        return max((episode.steps for episode in self._episodes), default=0)

    def add_episode(
        self,
        observations: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        terminated: bool,
        episode_id: Any = None,
    ) -> None:
        """Store an episode: ``observations [T + 1, ...]``, ``actions [T, A]`` (or ``[T]`` for
        one dimension), ``rewards [T]``, whether it ended by termination.

        ``episode_id``: when an episode of that id is held, these steps continue it (a chunk
        an EnvRunner returned before the episode ended, from any of its vectorized envs): their
        first observation is the stored last one and is not repeated.
        """
        observations = np.asarray(observations)
        actions = np.asarray(actions, dtype=np.float32)
        actions = actions.reshape(len(actions), -1)
        rewards = np.asarray(rewards, dtype=np.float32).reshape(-1)
        if not len(observations) == len(actions) + 1 == len(rewards) + 1:
            raise ValueError(
                f"an episode needs one more observation than actions and rewards; got "
                f"{len(observations)} observations, {len(actions)} actions, {len(rewards)} rewards"
            )
        held = self._by_id.get(episode_id) if episode_id is not None else None
        if held is not None:
            self._extend(held, observations, actions, rewards, terminated)
        else:
            zero_action = np.zeros((1, actions.shape[1]), dtype=np.float32)
            episode = _Episode(
                observations=observations,
                actions=np.concatenate([zero_action, actions]),
                rewards=np.concatenate([np.zeros(1, dtype=np.float32), rewards]),
                terminated=bool(terminated),
                key=episode_id,
            )
            self._episodes.append(episode)
            if episode_id is not None:
                self._by_id[episode_id] = episode
            self._steps += episode.steps
        self._evict()

    def _extend(self, episode: _Episode, observations, actions, rewards, terminated) -> None:
        episode.observations = np.concatenate([episode.observations, observations[1:]])
        episode.actions = np.concatenate([episode.actions, actions])
        episode.rewards = np.concatenate([episode.rewards, rewards])
        episode.terminated = bool(terminated)
        self._steps += len(actions)

    def _evict(self) -> None:
        # Never the newest episode, so that one longer than the capacity is still kept.
        while self._steps > self.capacity_steps and len(self._episodes) > 1:
            oldest = self._episodes.popleft()
            self._steps -= oldest.steps
            if oldest.key is not None:
                self._by_id.pop(oldest.key, None)

    def get_state(self) -> dict[str, Any]:
        """The stored episodes and the sampling generator (for checkpoints)."""
        return {
            "sequence_length": self.sequence_length,
            "episodes": [
                (e.observations, e.actions, e.rewards, e.terminated, e.key) for e in self._episodes
            ],
            "rng": self._rng.bit_generator.state,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        if state["sequence_length"] != self.sequence_length:
            raise ValueError(
                f"the saved replay cuts sequences of {state['sequence_length']} steps, this one "
                f"{self.sequence_length}; restore it with sequence_length="
                f"{state['sequence_length']}."
            )
        self._episodes = deque(_Episode(*fields) for fields in state["episodes"])
        self._by_id = {e.key: e for e in self._episodes if e.key is not None}
        self._steps = sum(e.steps for e in self._episodes)
        self._rng.bit_generator.state = state["rng"]
        self._evict()

    def can_sample(self) -> bool:
        """Some episode holds a whole sequence."""
        return self.longest_episode() >= self.sequence_length

    def sample(self, batch_size: int) -> dict[str, np.ndarray]:
        """``batch_size`` sequences, each key ``[B, L, ...]`` (``SEQUENCE_KEYS``)."""
        length = self.sequence_length
        windows = np.array([max(0, e.steps - length + 1) for e in self._episodes], dtype=float)
        if windows.sum() == 0:
            raise ValueError(
                f"no stored episode holds a sequence of {length} steps (the longest has "
                f"{self.longest_episode()}); add longer episodes or lower sequence_length"
            )
        # An episode with more windows is drawn more often: uniform over all windows.
        chosen = self._rng.choice(len(windows), size=batch_size, p=windows / windows.sum())
        parts = []
        for index in chosen:
            episode = self._episodes[index]
            start = int(self._rng.integers(episode.steps - length + 1))
            parts.append(episode.window(start, length))
        return {key: np.stack([part[key] for part in parts]) for key in SEQUENCE_KEYS}


def sequences_from_dataset(
    data_dir: str | Path,
    sequence_length: int,
    capacity_steps: int | None = None,
    seed: int | None = None,
    action_encoder=None,
) -> SequenceReplay:
    """A replay holding every episode of the Minari dataset in ``data_dir``.

    ``capacity_steps`` defaults to the dataset's size (every step kept); ``action_encoder``
    maps an episode's env actions to the model's ``[T, A]`` (e.g. one-hot for Discrete).
    A ``DatasetError`` when no episode holds a sequence of ``sequence_length`` steps.
    """
    dataset = open_dataset(data_dir)
    episodes = []
    for episode in dataset.iterate_episodes():
        actions = np.asarray(episode.actions)
        if action_encoder is not None:
            actions = action_encoder(actions)
        terminated = bool(np.asarray(episode.terminations)[-1]) if len(actions) else False
        episodes.append((np.asarray(episode.observations), actions, episode.rewards, terminated))
    longest = max((len(episode[0]) for episode in episodes), default=0)
    if longest < sequence_length:
        raise DatasetError(
            f"the dataset at {data_dir} has no episode long enough for sequences of "
            f"{sequence_length} steps: its longest episode has {max(longest - 1, 0)} "
            f"transitions ({longest} observations). Set sequence_length to at most {longest}, "
            f"or use a dataset with longer episodes."
        )
    total = sum(len(episode[0]) for episode in episodes)
    replay = SequenceReplay(max(capacity_steps or total, sequence_length), sequence_length, seed)
    for observations, actions, rewards, terminated in episodes:
        replay.add_episode(observations, actions, rewards, terminated)
    return replay


def longest_episode_in_dataset(data_dir: str | Path) -> int:
    """Transitions of the dataset's longest episode, from Minari's episode metadata (no data
    read)."""
    dataset = open_dataset(data_dir)
    metadata = dataset.storage.get_episode_metadata(range(dataset.total_episodes))
    return max((int(entry["total_steps"]) for entry in metadata), default=0)


def sequence_dataset_problem(dataset_dir: str | None, sequence_length: int) -> str | None:
    """What is wrong with ``dataset_dir`` as the sequences of a world model (it is not a
    dataset, or no episode holds ``sequence_length`` observations); None when nothing is (or
    there is no dataset)."""
    problem = dataset_dir_problem(dataset_dir)
    if problem or not dataset_dir:
        return problem
    longest = longest_episode_in_dataset(dataset_dir)
    if longest + 1 >= sequence_length:
        return None
    return (
        f"sequence_length is {sequence_length} steps, and the longest episode of the dataset "
        f"has {longest} transitions ({longest + 1} observations): no sequence fits. Set "
        f"sequence_length to at most {longest + 1}, or use a dataset with longer episodes"
    )
