"""The Python API for Minari datasets; ``rlscale datasets ...`` only formats what it returns.

::

    import rlscale
    result = rlscale.collect_dataset("CartPole-v1", "cartpole_balance", 100, "cartpole/expert-v0")
    rlscale.validate_dataset("cartpole/expert-v0", env="CartPole-v1").ok
    [d.dataset_id for d in rlscale.list_datasets()]

``rlscale.datasets`` does the work (reading, writing, validating, rolling out on Ray actors) and
knows nothing of the runtime; this module adds what needs the platform: a Ray connection, an
environment or a checkpoint resolved from its name. Every function returns a plain object and
prints nothing but collection's progress (on stderr). ``root`` is the datasets folder: by
default ``MINARI_DATASETS_PATH``, else Minari's ``~/.minari/datasets``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rlscale.datasets.collect import (
    CollectionRequest,
    CollectionResult,
    check_collection,
    collect,
)
from rlscale.datasets.combine import combine
from rlscale.datasets.store import (
    DatasetSummary,
    DatasetWrite,
    UnreadableDataset,
    datasets_root,
    download,
    list_datasets,
    summarize,
)
from rlscale.datasets.validate import ValidationReport
from rlscale.datasets.validate import validate_dataset as _validate
from rlscale.envs import make_env, resolve_env
from rlscale.errors import DatasetError
from rlscale.platform.runtime import check_address, ray_session
from rlscale.policies import PolicyFactory

__all__ = [
    "CollectionResult",
    "DatasetSummary",
    "DatasetWrite",
    "UnreadableDataset",
    "ValidationReport",
    "collect_dataset",
    "combine_datasets",
    "dataset_info",
    "datasets_root",
    "download_dataset",
    "list_datasets",
    "validate_dataset",
]


def collect_dataset(
    env: str,
    policy: str | PolicyFactory,
    episodes: int,
    dataset_id: str,
    workers: int = 1,
    noise: float = 0.0,
    seed: int = 0,
    root: str | Path | None = None,
    address: str | None = None,
    env_config: dict[str, Any] | None = None,
) -> CollectionResult:
    """Collect ``episodes`` episodes of ``env`` with ``policy`` into the dataset ``dataset_id``.

    ``policy`` is ``'random'``, a scripted policy's name, an rlscale checkpoint folder, or a
    picklable policy factory (see :mod:`rlscale.policies`; its ``__name__`` goes into the
    metadata). Episodes roll out on ``workers`` Ray actors of the cluster at ``address`` (default
    ``RAY_ADDRESS``, else an embedded local Ray); the dataset appears whole or not at all.
    """
    check_address(address)  # before anything is written
    check_collection(dataset_id, episodes, workers, noise, root)  # before any env or actor
    env_info = resolve_env(env, env_config or {})
    if env_info.is_multi_agent:
        raise DatasetError(
            f"{env} is multi-agent; collection supports single-agent envs only. Pick one from "
            "`rlscale envs --family gymnasium`."
        )
    if isinstance(policy, str):
        # Reading a checkpoint loads RLlib (seconds): list, info and validate never pay for it.
        from rlscale.platform.experts import resolve_policy

        factory, policy_name = resolve_policy(policy, env, env_config=env_config)
    else:
        factory, policy_name = policy, getattr(policy, "__name__", type(policy).__name__)
    request = CollectionRequest(
        env=env,
        dataset_id=dataset_id,
        policy_factory=factory,
        policy_name=policy_name,
        episodes=episodes,
        workers=workers,
        noise=noise,
        seed=seed,
        env_config=dict(env_config or {}),
        root=root,
    )
    with ray_session(address) as session:
        if workers > session.num_cpus:
            raise DatasetError(
                f"--workers {workers} needs {workers} CPUs and the Ray cluster has "
                f"{session.num_cpus:g}; use at most {int(session.num_cpus)} workers."
            )
        return collect(request, make_env)


def dataset_info(name_or_path: str | Path, root: str | Path | None = None) -> DatasetSummary:
    """Size, spaces, env, reference returns and provenance of a dataset (by id or folder)."""
    return summarize(name_or_path, root)


def validate_dataset(
    name_or_path: str | Path,
    root: str | Path | None = None,
    env: str | None = None,
    env_config: dict[str, Any] | None = None,
) -> ValidationReport:
    """Check every episode of a dataset; with ``env``, also that its spaces match the env's.

    Problems in the data are listed in the report (``report.ok`` is False), not raised; a
    dataset that cannot be found or opened raises :class:`~rlscale.errors.DatasetError`.
    """
    spaces = None
    if env is not None:
        info = resolve_env(env, env_config or {})
        spaces = (info.observation_space, info.action_space)
    return _validate(name_or_path, root, env_spaces=spaces)


def combine_datasets(
    sources: list[str], dataset_id: str, root: str | Path | None = None
) -> DatasetWrite:
    """Write ``dataset_id`` holding every episode of ``sources`` (same spaces), in order."""
    return combine(sources, dataset_id, root=root)


def download_dataset(dataset_id: str) -> Path:
    """Fetch a remote Minari dataset into the datasets folder (needs a network); its folder."""
    return download(dataset_id)
