"""Where Minari datasets live, and how rlscale writes, finds, opens and lists them.

Datasets sit under a root folder: ``MINARI_DATASETS_PATH`` when set, else Minari's default
``~/.minari/datasets``, or any folder given with ``--root``. A dataset ``ns/name-v0`` is the
folder ``<root>/ns/name-v0/data`` with Minari's ``metadata.json`` and ``main_data.hdf5``.

Writes are atomic: everything is written into a hidden folder under the root (Minari skips
hidden folders) and renamed into place at the end, so an interrupted write never leaves a folder
that Minari's ``load_dataset`` or ``list_local_datasets`` sees as a dataset.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from rlscale.errors import DatasetError

DATA_DIR = "data"
METADATA_FILE = "metadata.json"
NAMESPACE_METADATA_FILE = "namespace_metadata.json"
RLSCALE_KEY = "rlscale"
"""Metadata key under which rlscale records how a dataset was made (policy, seeds, sources)."""
DATASET_ID = re.compile(r"^(?:[-_\w]+/)*[-_\w]+-v\d+$")


def datasets_root(root: str | Path | None = None) -> Path:
    """The folder datasets live in: ``root``, else ``MINARI_DATASETS_PATH``, else Minari's."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("MINARI_DATASETS_PATH")
    return Path(env).expanduser() if env else Path.home() / ".minari" / "datasets"


def check_writable_root(root: str | Path | None = None) -> None:
    """The datasets root is a folder, or can be made as one (nothing is made here)."""
    base = datasets_root(root)
    existing = base
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        what = "a file" if existing.exists() and not existing.is_dir() else "not writable"
        raise DatasetError(
            f"cannot write datasets under {base}: {existing} is {what}. Pass a writable "
            "folder with --root (or set MINARI_DATASETS_PATH)."
        )


def check_dataset_id(dataset_id: str) -> None:
    if not DATASET_ID.match(dataset_id):
        raise DatasetError(
            f"'{dataset_id}' is not a Minari dataset id. Use NAMESPACE/NAME-vN (e.g. "
            "cartpole/expert-v0): letters, digits, '-' and '_', with a version suffix."
        )


def resolve_dataset(name_or_path: str | Path, root: str | Path | None = None) -> Path:
    """The ``data`` folder of a dataset given by id (under the root) or by a path.

    A path may name the dataset folder or its ``data`` folder.
    """
    text = str(name_or_path)
    candidates = [Path(text).expanduser()]
    if not Path(text).is_absolute():
        candidates.append(datasets_root(root) / text)
    for candidate in candidates:
        for data_dir in (candidate / DATA_DIR, candidate):
            if (data_dir / METADATA_FILE).is_file():
                return data_dir
    raise DatasetError(
        f"dataset '{text}' not found: no Minari dataset at that path nor under "
        f"{datasets_root(root)} (set MINARI_DATASETS_PATH or pass --root). "
        "`rlscale datasets list` shows the local datasets; a remote Minari id must be fetched "
        "first with `rlscale datasets download ID`."
    )


def read_metadata(data_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((data_dir / METADATA_FILE).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(
            f"{data_dir / METADATA_FILE} is unreadable ({exc}); the dataset is damaged."
        ) from None


def open_dataset(name_or_path: str | Path, root: str | Path | None = None):
    """A ``minari.MinariDataset`` for an id or path, with clear errors for damaged data."""
    from minari import MinariDataset

    data_dir = resolve_dataset(name_or_path, root)
    read_metadata(data_dir)
    try:
        dataset = MinariDataset(data_dir)
        if dataset.total_episodes:
            # Opens the data file: a damaged one fails here rather than in the middle of a run.
            list(dataset.storage.get_episode_metadata([0]))
    except Exception as exc:  # Minari raises ValueError, AssertionError, OSError, KeyError...
        raise DatasetError(
            f"cannot open the dataset at {data_dir}: {type(exc).__name__}: {exc}. "
            "Its files are damaged or not a Minari dataset's; collect or download it again."
        ) from None
    return dataset


@dataclass(frozen=True)
class EpisodeArrays:
    """One episode as plain arrays (observations has one more row than actions)."""

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray
    seed: int | None = None

    @property
    def total_return(self) -> float:
        return float(np.sum(self.rewards))

    def __len__(self) -> int:
        return len(self.rewards)


@dataclass(frozen=True)
class DatasetWrite:
    dataset_id: str
    data_dir: Path
    episodes: int
    steps: int


def write_dataset(
    dataset_id: str,
    episodes: Iterable[EpisodeArrays],
    observation_space: gym.Space,
    action_space: gym.Space,
    env_spec: gym.envs.registration.EnvSpec | None,
    metadata: dict[str, Any] | Callable[[], dict[str, Any]],
    root: str | Path | None = None,
) -> DatasetWrite:
    """Write ``episodes`` as a Minari (HDF5) dataset, atomically; ``metadata`` is merged in.

    ``episodes`` may be a generator: episodes are written as they come, never held all at once.
    ``metadata`` may be a callable, called once every episode is written (for figures that
    depend on the episodes, such as their mean return) and before the dataset becomes visible.
    """
    from minari import __version__ as minari_version
    from minari.data_collector import EpisodeBuffer
    from minari.dataset.minari_storage import MinariStorage

    check_dataset_id(dataset_id)
    base = datasets_root(root)
    final = base / dataset_id
    if final.exists():
        raise DatasetError(
            f"a dataset {dataset_id} already exists at {final}. Choose another name or version "
            "(…-v1), or delete the old one first."
        )
    with _partial_folder(base) as partial:
        storage = MinariStorage.new(
            partial / DATA_DIR,
            observation_space=observation_space,
            action_space=action_space,
            env_spec=env_spec,
            data_format="hdf5",
        )
        count = 0
        for chunk in _chunks(episodes, 32):
            storage.update_episodes(
                EpisodeBuffer(
                    seed=episode.seed,
                    observations=episode.observations,
                    actions=episode.actions,
                    rewards=episode.rewards,
                    terminations=episode.terminations,
                    truncations=episode.truncations,
                )
                for episode in chunk
            )
            count += len(chunk)
        if count == 0:
            raise DatasetError(
                f"no episodes to write to {dataset_id}; nothing was written. Ask for at least "
                "one episode."
            )
        extra = metadata() if callable(metadata) else metadata
        storage.update_metadata(
            {"dataset_id": dataset_id, "minari_version": minari_version, **extra}
        )
        steps = int(storage.total_steps)
        _ensure_namespaces(base, dataset_id)
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(partial, final)
        except OSError as exc:
            raise DatasetError(f"cannot move the finished dataset into {final}: {exc}") from None
    return DatasetWrite(dataset_id, final / DATA_DIR, count, steps)


PARTIAL_PREFIX = ".partial-"


@contextmanager
def _partial_folder(base: Path) -> Iterator[Path]:
    """A hidden folder under ``base`` (same filesystem, so the final rename is atomic), named
    after this process; the partial folders of writers that were killed are removed first."""
    if base.is_dir():
        remove_stale_partials(base)
    partial = base / f"{PARTIAL_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}"
    try:
        partial.mkdir(parents=True)
    except OSError as exc:
        raise DatasetError(
            f"cannot write datasets under {base}: {exc.strerror or exc}. Choose a writable "
            "folder with --root or MINARI_DATASETS_PATH."
        ) from None
    try:
        yield partial
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def remove_stale_partials(base: Path) -> list[Path]:
    """Delete the partial folders under ``base`` whose writing process is gone (killed before
    its clean-up ran); a live writer's, another process's on this machine, is left alone."""
    removed = []
    for folder in base.glob(f"{PARTIAL_PREFIX}*"):
        writer = folder.name[len(PARTIAL_PREFIX) :].split("-", 1)[0]
        if folder.is_dir() and (not writer.isdigit() or not _process_alive(int(writer))):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _ensure_namespaces(base: Path, dataset_id: str) -> None:
    """Minari's namespaces are folders holding a namespace_metadata.json; make missing ones."""
    parts = dataset_id.split("/")[:-1]
    for depth in range(1, len(parts) + 1):
        folder = base.joinpath(*parts[:depth])
        folder.mkdir(exist_ok=True)
        marker = folder / NAMESPACE_METADATA_FILE
        if not marker.exists():
            marker.write_text("{}")


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@dataclass(frozen=True)
class DatasetSummary:
    dataset_id: str
    data_dir: Path
    episodes: int
    steps: int
    size_mb: float
    env: str | None
    observation_space: str
    action_space: str
    ref_min_score: float | None
    ref_max_score: float | None
    rlscale: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset_id": self.dataset_id,
            "path": str(self.data_dir.parent),
            "episodes": self.episodes,
            "steps": self.steps,
            "size_mb": self.size_mb,
            "env": self.env,
            "observation_space": self.observation_space,
            "action_space": self.action_space,
            "ref_min_score": self.ref_min_score,
            "ref_max_score": self.ref_max_score,
            "rlscale": self.rlscale,
        }


def summarize(name_or_path: str | Path, root: str | Path | None = None) -> DatasetSummary:
    """What `rlscale datasets info` shows: counts, spaces, env, reference scores, provenance."""
    dataset = open_dataset(name_or_path, root)
    data_dir = Path(dataset.storage.data_path)
    metadata = read_metadata(data_dir)
    spec = dataset.env_spec
    return DatasetSummary(
        dataset_id=str(metadata.get("dataset_id")),
        data_dir=data_dir,
        episodes=int(dataset.total_episodes),
        steps=int(dataset.total_steps),
        size_mb=float(dataset.storage.get_size()),
        env=spec.id if spec is not None else None,
        observation_space=str(dataset.observation_space),
        action_space=str(dataset.action_space),
        ref_min_score=metadata.get("ref_min_score"),
        ref_max_score=metadata.get("ref_max_score"),
        rlscale=metadata.get(RLSCALE_KEY, {}),
    )


@dataclass(frozen=True)
class UnreadableDataset:
    """A folder that looks like a dataset but cannot be opened, and why."""

    dataset_id: str
    data_dir: Path
    problem: str


def list_datasets(root: str | Path | None = None) -> list[DatasetSummary | UnreadableDataset]:
    """Every dataset under the root, whoever wrote it, sorted by id; a damaged one is listed as
    an :class:`UnreadableDataset` rather than failing the whole listing."""
    base = datasets_root(root)
    if base.exists() and not base.is_dir():
        raise DatasetError(
            f"the datasets root {base} is a file, not a folder; pass the folder that holds "
            "the datasets (--root, or MINARI_DATASETS_PATH)."
        )
    found: list[DatasetSummary | UnreadableDataset] = []
    for data_dir in _dataset_dirs(base):
        try:
            found.append(summarize(data_dir))
        except DatasetError as exc:
            dataset_id = data_dir.parent.relative_to(base).as_posix()
            found.append(UnreadableDataset(dataset_id, data_dir, str(exc)))
    return found


def _dataset_dirs(folder: Path) -> Iterator[Path]:
    """As Minari's own listing: a folder holding ``data`` is a dataset; hidden ones are skipped."""
    if not folder.is_dir():
        return
    if (folder / DATA_DIR).is_dir():
        yield folder / DATA_DIR
        return
    for child in sorted(folder.iterdir()):
        if child.is_dir() and not child.name.startswith("."):
            yield from _dataset_dirs(child)


def normalized_score(
    raw_return: float, ref_min_score: float | None, ref_max_score: float | None
) -> float | None:
    """D4RL's normalized score: 100 * (R - R_random) / (R_reference - R_random)."""
    if ref_min_score is None or ref_max_score is None or ref_max_score == ref_min_score:
        return None
    return 100.0 * (raw_return - ref_min_score) / (ref_max_score - ref_min_score)


def download(dataset_id: str) -> Path:
    """Fetch a remote Minari dataset into the root with Minari's own download."""
    import minari

    check_dataset_id(dataset_id)
    try:
        minari.download_dataset(dataset_id)
    except Exception as exc:  # network errors come as many types (requests, google, hf)
        raise DatasetError(
            f"could not download the Minari dataset {dataset_id}: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}. Downloading needs a network "
            "connection to Minari's remote; without one, collect data locally with "
            "`rlscale datasets collect`."
        ) from None
    return datasets_root() / dataset_id
