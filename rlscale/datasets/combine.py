"""Mixed datasets: several datasets of one environment combined into one (D4RL's
"medium-replay" / "medium-expert" style). Episodes are copied source by source, streaming.

The reference returns of the mix are the lowest random reference and the highest collecting
policy's reference among the sources, so that scores stay comparable to the best source's.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from rlscale.datasets.store import (
    RLSCALE_KEY,
    DatasetWrite,
    EpisodeArrays,
    check_dataset_id,
    check_writable_root,
    datasets_root,
    open_dataset,
    read_metadata,
    write_dataset,
)
from rlscale.datasets.validate import space_mismatches
from rlscale.errors import DatasetError


def combine(sources: list[str], dataset_id: str, root: str | Path | None = None) -> DatasetWrite:
    """Write ``dataset_id`` holding every episode of ``sources``, in order."""
    if len(sources) < 2:
        raise DatasetError(
            f"combining needs at least two source datasets, got {len(sources)} "
            f"({', '.join(sources)}); name two or more, e.g. `rlscale datasets combine "
            "cartpole/expert-v0 cartpole/random-v0 --name cartpole/mixed-v0`."
        )
    # The target's id and the root first: cheap, and nothing is opened for a doomed write.
    check_dataset_id(dataset_id)
    check_writable_root(root)
    if (datasets_root(root) / dataset_id).exists():
        raise DatasetError(
            f"a dataset {dataset_id} already exists under {datasets_root(root)}. Choose another "
            "name or version for the combination."
        )
    datasets = [open_dataset(source, root) for source in sources]
    first = datasets[0]
    for source, dataset in zip(sources[1:], datasets[1:], strict=True):
        problems = space_mismatches(
            dataset.observation_space,
            dataset.action_space,
            first.observation_space,
            first.action_space,
        )
        if problems:
            raise DatasetError(
                f"cannot combine {source} with {sources[0]}: "
                + "; ".join(problems).replace("the environment's", f"{sources[0]}'s")
                + ". Only datasets of one environment (the same spaces) can be combined."
            )
    metadatas = [read_metadata(Path(d.storage.data_path)) for d in datasets]
    return write_dataset(
        dataset_id,
        _all_episodes(datasets),
        first.observation_space,
        first.action_space,
        first.env_spec,
        _combined_metadata(sources, metadatas),
        root=root,
    )


def _all_episodes(datasets) -> Iterator[EpisodeArrays]:
    for dataset in datasets:
        storage = dataset.storage
        for episode in storage.get_episodes(range(storage.total_episodes)):
            yield EpisodeArrays(
                observations=episode["observations"],
                actions=episode["actions"],
                rewards=episode["rewards"],
                terminations=episode["terminations"],
                truncations=episode["truncations"],
            )


def _combined_metadata(sources: list[str], metadatas: list[dict]) -> dict:
    ids = [str(m.get("dataset_id", s)) for s, m in zip(sources, metadatas, strict=True)]
    metadata: dict = {
        "combined_datasets": ids,
        "algorithm_name": "mixed: "
        + ", ".join(str(m.get("algorithm_name", "?")) for m in metadatas),
        "description": f"combination of {', '.join(ids)}",
        RLSCALE_KEY: {"sources": ids, "env": metadatas[0].get(RLSCALE_KEY, {}).get("env")},
    }
    mins = [m["ref_min_score"] for m in metadatas if m.get("ref_min_score") is not None]
    maxes = [m["ref_max_score"] for m in metadatas if m.get("ref_max_score") is not None]
    if mins and maxes:
        metadata["ref_min_score"] = float(np.min(mins))
        metadata["ref_max_score"] = float(np.max(maxes))
    return metadata
