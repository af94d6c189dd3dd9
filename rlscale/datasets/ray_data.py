"""Minari episodes as a lazy Ray Data dataset of transitions.

The dataset starts as one small row per *shard* (a range of episode indices); a ``map_batches``
step opens the HDF5 file on the Ray Data worker and turns one shard's episodes into columns of
transitions (``obs``, ``actions``, ``rewards``, ``new_obs``, ``terminateds``, ``truncateds``,
``eps_id``) — the column layout RLlib's ``OfflinePreLearner`` reads. Ray Data streams the shards
with backpressure, so at most a few shards are in memory at a time, whatever the dataset's size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

EPISODES_PER_SHARD = 8
READER_CPUS = 0.25
"""Reading a shard is light; a whole CPU per read task would starve the learner's pipeline."""


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
):
    """A lazy ``ray.data.Dataset`` of the dataset's transitions (Ray must be initialized).

    With a ``seed`` the shards come in a random order and the rows of each shard shuffled
    (reproducibly); without, in order.
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
        num_cpus=READER_CPUS,
        fn_kwargs={"data_dir": str(data_dir), "seed": seed},
    )
