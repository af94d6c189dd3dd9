"""Minari episodes as a lazy Ray Data dataset of transitions.

The dataset starts as one small row per *shard* (a range of episode indices); a ``map_batches``
step opens the HDF5 file on the Ray Data worker and turns one shard's episodes into columns of
transitions (``obs``, ``actions``, ``rewards``, ``new_obs``, ``terminateds``, ``truncateds``,
``eps_id``) — the column layout RLlib's ``OfflinePreLearner`` reads. Ray Data streams the shards
with backpressure, so at most a few shards are in memory at a time, whatever the dataset's size.

This module runs on every Ray Data worker, so it imports neither RLlib nor torch: importing
``ray.rllib`` takes a worker about 7 s of CPU, and with eight read workers doing so on 2 cores
the first CQL iteration on 1M Hopper transitions took 27.3 s, against 16.9 s without.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

EPISODES_PER_SHARD = 8
READER_CPUS = 0.25
"""Reading a shard is light; a whole CPU per read task would starve the learner's pipeline."""
READ_TASKS_PER_CONSUMER = 2
"""Read tasks in flight per learner that consumes the stream.

One read task turns about 150k Hopper transitions a second into columns, some ten times what a
CPU learner trains on. Left to Ray Data, 2 CPUs / 0.25 ran eight at once: six Ray workers
had to start before the first batch, which then came after 13.6 s instead of 6.0 s (1M Hopper
transitions, 100k-row shuffle buffer, 2 cores)."""


def episode_shards(
    total_episodes: int, episodes_per_shard: int = EPISODES_PER_SHARD
) -> list[dict[str, int]]:
    return [
        {"start": start, "stop": min(start + episodes_per_shard, total_episodes)}
        for start in range(0, total_episodes, episodes_per_shard)
    ]


def read_transitions(data_dir: str | Path, start: int, stop: int) -> dict[str, np.ndarray]:
    """Episodes ``start..stop-1`` of the dataset at ``data_dir`` as transition columns."""
    from minari.dataset.minari_storage import MinariStorage

    storage = MinariStorage.read(data_dir)
    columns: dict[str, list[Any]] = {
        key: [] for key in ("obs", "actions", "rewards", "new_obs", "terminateds", "truncateds")
    }
    episode_ids = []
    for episode in storage.get_episodes(range(start, stop)):
        observations = np.asarray(episode["observations"])
        steps = len(episode["rewards"])
        columns["obs"].append(observations[:-1])
        columns["new_obs"].append(observations[1:])
        columns["actions"].append(np.asarray(episode["actions"]))
        columns["rewards"].append(np.asarray(episode["rewards"], dtype=np.float32))
        columns["terminateds"].append(np.asarray(episode["terminations"], dtype=bool))
        columns["truncateds"].append(np.asarray(episode["truncations"], dtype=bool))
        episode_ids.append(np.full(steps, episode["id"], dtype=np.int64))
    batch = {key: np.concatenate(parts) for key, parts in columns.items()}
    batch["eps_id"] = np.concatenate(episode_ids)
    return batch


def _read_shard_batch(
    shards: dict[str, np.ndarray], data_dir: str, seed: int | None
) -> dict[str, np.ndarray]:
    parts = [
        read_transitions(data_dir, int(start), int(stop))
        for start, stop in zip(shards["start"], shards["stop"], strict=True)
    ]
    batch = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    if seed is None:
        return batch
    # Shuffle rows within the shard, so that a training batch is not one stretch of an episode.
    order = np.random.default_rng([seed, int(shards["start"][0])]).permutation(len(batch["eps_id"]))
    return {key: column[order] for key, column in batch.items()}


def transitions_dataset(
    data_dir: str | Path,
    total_episodes: int,
    episodes_per_shard: int = EPISODES_PER_SHARD,
    seed: int | None = None,
    consumers: int = 1,
):
    """A lazy ``ray.data.Dataset`` of the dataset's transitions (Ray must be initialized).

    With a ``seed`` the shards come in a random order and the rows of each shard shuffled
    (reproducibly); without, in order. ``consumers`` (the learners reading the stream) sets how
    many read tasks run at once: :func:`read_options`.
    """
    import ray.data

    shards = episode_shards(total_episodes, episodes_per_shard)
    if seed is not None:
        # Shuffled here, before anything is read: Ray Data's randomize_block_order is an
        # all-to-all step that would wait for (and hold) every block read.
        shards = [shards[i] for i in np.random.default_rng(seed).permutation(len(shards))]
    return ray.data.from_items(shards, override_num_blocks=len(shards)).map_batches(
        _read_shard_batch,
        batch_size=1,
        fn_kwargs={"data_dir": str(data_dir), "seed": seed},
        **read_options(consumers),
    )


def read_options(consumers: int = 1) -> dict[str, Any]:
    """``map_batches`` resources of a read task; a map given the same ones fuses into it."""
    from ray.data import TaskPoolStrategy

    tasks = READ_TASKS_PER_CONSUMER * max(1, consumers)
    return {"num_cpus": READER_CPUS, "compute": TaskPoolStrategy(size=tasks)}


def to_learner_batch(
    batch: dict[str, np.ndarray],
    keys: dict[str, str],
    action_bounds: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """The transition columns named in ``keys`` (column -> learner batch key), renamed.

    Float64 columns become float32, as RLlib's own numpy-to-torch conversion does (MuJoCo envs
    log float64 observations; the nets are float32). With ``action_bounds`` (low, high), the
    ``actions`` column is mapped from the env's units to [-1, 1] (see :func:`to_unit_range`).
    """
    columns = {column: batch[column] for column in keys}
    if action_bounds is not None:
        columns["actions"] = to_unit_range(columns["actions"], *action_bounds)
    return {
        keys[column]: values.astype(np.float32) if values.dtype == np.float64 else values
        for column, values in columns.items()
    }


def to_unit_range(actions: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """The inverse of RLlib's action unsquashing: env units in [low, high] to [-1, 1].

    Actions on a bound land a hair inside it, where a tanh-squashed policy's log-likelihood
    (CQL's behavior-cloning warm-up) is finite.
    """
    unit = 2.0 * (actions - low) / (high - low) - 1.0
    return np.clip(unit, -1.0 + 1e-4, 1.0 - 1e-4).astype(np.float32)
