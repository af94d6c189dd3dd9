"""Expert demonstrations from a Minari dataset, within an explicit budget.

The imitation papers state how much expert data a result used, and so does a run here:

- ``num_demos``: the first ``num_demos`` episodes of the dataset (None: all of them);
- ``subsample_every``: keep every ``k``-th transition of each episode, from a random offset in
  ``[0, k)`` drawn per episode with the run's seed (GAIL, Ho & Ermon 2016, and IQ-Learn, Garg
  et al. 2021, subsample their MuJoCo demonstrations every 20 steps). A transition stays whole:
  ``(s_t, a_t, s_t+1)`` with its own next observation, never a ``k``-step jump.

Episodes are read with Minari's own reader (:func:`rlscale.datasets.store.open_dataset`); the
demonstration sets of these methods are small, so they are held in memory as arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rlscale.algorithms.common.offline import attach_in_memory_dataset, dataset_dir_problem
from rlscale.datasets.store import open_dataset
from rlscale.errors import DatasetError

if TYPE_CHECKING:
    from ray.rllib.algorithms.algorithm_config import AlgorithmConfig


DEMONSTRATION_TRANSITIONS = "demonstration_transitions"
"""Metric: the transitions of the demonstrations within the budget."""


@dataclass(frozen=True)
class Demonstrations:
    """Transitions ``[N, ...]``: flat float32 observations and next observations, the actions as
    stored, ``terminated`` (the next observation ends the episode: its value is 0) and the env's
    rewards (for metrics only: imitation never trains on them)."""

    observations: np.ndarray
    actions: np.ndarray
    next_observations: np.ndarray
    terminated: np.ndarray
    rewards: np.ndarray
    episodes: int

    def __len__(self) -> int:
        return len(self.observations)


def budget_problem(num_demos: int | None, subsample_every: int) -> str | None:
    """Why the budget's settings are malformed (not positive integers), or None."""
    if num_demos is not None and not _positive_int(num_demos):
        return f"num_demos must be a positive number of episodes (None: all), got {num_demos!r}"
    if not _positive_int(subsample_every):
        return f"subsample_every must be a positive integer, got {subsample_every!r}"
    return None


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def settings_problem(config: AlgorithmConfig) -> str | None:
    """Why a config's demonstration settings (budget, ``dataset_dir``) are malformed, or None."""
    return budget_problem(config.num_demos, config.subsample_every) or dataset_dir_problem(
        config.dataset_dir
    )


def demonstrations_of(config: AlgorithmConfig) -> Demonstrations | None:
    """The config's demonstrations within its budget; None when it has no dataset (a checkpoint
    restored to act in the env, where they are not needed)."""
    if not config.dataset_dir:
        return None
    return load_demonstrations(
        config.dataset_dir, config.num_demos, config.subsample_every, config.seed
    )


def required(demonstrations: Demonstrations | None, algorithm: str) -> Demonstrations:
    """``demonstrations``, or a clear error for a training step that has none."""
    if demonstrations is None:
        raise ValueError(
            f"{algorithm} learns from demonstrations: give a Minari dataset with --dataset "
            "(`dataset:` in the spec)"
        )
    return demonstrations


def check_budget_fits(num_demos: int | None, data_dir: str | Path) -> None:
    """Raise ``DatasetError`` when the dataset holds fewer episodes than ``num_demos``."""
    available = open_dataset(data_dir).total_episodes
    if num_demos is not None and num_demos > available:
        raise DatasetError(
            f"num_demos={num_demos} asks for more demonstrations than the dataset holds "
            f"({available} episodes in {data_dir}); set num_demos to at most {available}, or "
            "collect more episodes (`rlscale datasets collect ... --episodes N`)."
        )


def attach_demonstrations(config: AlgorithmConfig, data_dir: Path) -> None:
    """``attach_dataset`` of the imitation entries: the dataset is read into memory by the
    algorithm (``attach_in_memory_dataset``), after its budget is checked against it, so that a
    budget larger than the dataset is refused before Ray starts."""
    problem = budget_problem(config.num_demos, config.subsample_every)
    if problem:
        raise DatasetError(problem)
    check_budget_fits(config.num_demos, data_dir)
    attach_in_memory_dataset(config, data_dir)


def load_demonstrations(
    data_dir: str | Path, num_demos: int | None, subsample_every: int, seed: int | None
) -> Demonstrations:
    """The budget's transitions of the Minari dataset in ``data_dir`` (see the module doc)."""
    problem = budget_problem(num_demos, subsample_every)
    if problem:
        raise DatasetError(problem)
    check_budget_fits(num_demos, data_dir)
    rng = np.random.default_rng(seed)
    parts: list[dict[str, np.ndarray]] = []
    for episode in open_dataset(data_dir).iterate_episodes():
        if num_demos is not None and len(parts) == num_demos:
            break
        steps = len(episode.rewards)
        if steps == 0:
            continue
        kept = np.arange(rng.integers(min(subsample_every, steps)), steps, subsample_every)
        observations = np.asarray(episode.observations, dtype=np.float32).reshape(steps + 1, -1)
        terminated = np.asarray(episode.terminations, dtype=bool)
        parts.append(
            {
                "observations": observations[kept],
                "actions": np.asarray(episode.actions)[kept],
                "next_observations": observations[kept + 1],
                "terminated": terminated[kept],
                "rewards": np.asarray(episode.rewards, dtype=np.float32)[kept],
            }
        )
    if not parts:
        raise DatasetError(f"the dataset in {data_dir} holds no steps to imitate")
    return Demonstrations(
        **{field: np.concatenate([part[field] for part in parts]) for field in parts[0]},
        episodes=len(parts),
    )
