"""What a run writes under ``<output>/<name>/``.

``spec.yaml`` (the spec as run), ``metrics.csv``, ``tensorboard/`` events, periodic checkpoints
under ``checkpoints/``, ``checkpoint_final/``, ``learning_curve.png`` and ``ray.log`` (Ray's own
messages, see :mod:`rlscale.platform.ray_output`). Checkpoints are written
to a hidden temporary folder and renamed into place, so an interrupted save never leaves a
folder that loads as a checkpoint; the ``rlscale.json`` marker inside is written last.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rlscale import __version__
from rlscale.errors import (
    CheckpointError,
    OutputError,
    SpecError,
    UnknownAlgorithmError,
    UnknownEnvironmentError,
)
from rlscale.platform.episode_stats import EpisodeWindow
from rlscale.platform.spec import ExperimentSpec, spec_from_dict
from rlscale.policies.checkpoint import DAMAGED_STATE_ERRORS

if TYPE_CHECKING:
    from ray.rllib.algorithms.algorithm import Algorithm

CHECKPOINT_MARKER = "rlscale.json"
FINAL_CHECKPOINT = "checkpoint_final"
PERIODIC_CHECKPOINTS = "checkpoints"
CHECKPOINT_FORMAT = 1
ALGORITHM_CLASS_KEY = "algorithm_class"
STEP_STATE_KEY = "step_state"


@dataclass
class IterationMetrics:
    """The headline numbers of one training iteration (one row of metrics.csv).

    Returns and lengths are over the last ``RETURN_WINDOW`` whole episodes (see episode_stats).
    """

    iteration: int
    env_steps: int
    episodes: int
    return_mean: float
    return_min: float
    return_max: float
    episode_len_mean: float
    time_s: float
    steps_per_s: float
    normalized_return: float = math.nan
    """Offline algorithms: 100 (R - R_random) / (R_collector - R_random), from the dataset."""

    @classmethod
    def from_result(
        cls,
        result: dict[str, Any],
        window: EpisodeWindow,
        time_s: float,
        previous: IterationMetrics | None,
    ) -> IterationMetrics:
        runners = result.get("env_runners", {})
        returns = window.returns or [math.nan]
        env_steps = int(
            result.get("num_env_steps_sampled_lifetime")
            or runners.get("num_env_steps_sampled_lifetime", 0)
        )
        last_steps, last_time = (previous.env_steps, previous.time_s) if previous else (0, 0.0)
        elapsed = max(time_s - last_time, 1e-9)
        return cls(
            iteration=int(result["training_iteration"]),
            env_steps=env_steps,
            episodes=int(runners.get("num_episodes_lifetime", 0)),
            return_mean=float(np.mean(returns)),
            return_min=float(np.min(returns)),
            return_max=float(np.max(returns)),
            episode_len_mean=float(np.mean(window.lengths)) if window.lengths else math.nan,
            time_s=time_s,
            steps_per_s=(env_steps - last_steps) / elapsed,
        )

    @property
    def has_return(self) -> bool:
        return not math.isnan(self.return_mean)


SPEC_FILE = "spec.yaml"
RUN_FILES = (SPEC_FILE, "metrics.csv", FINAL_CHECKPOINT, PERIODIC_CHECKPOINTS)
"""What a run writes into its folder; a folder holding any of them holds an earlier run."""


UNSTARTED_RUN_FILES = frozenset({SPEC_FILE, "ray.log"})
"""What a run folder holds before its first iteration: the spec, and Ray's log."""


def discard_unstarted_run_dir(run_dir: Path) -> None:
    """Delete ``run_dir`` if it holds nothing but what ``create_run_dir`` and the Ray log wrote
    (a run refused before its first iteration); a folder with anything else stays."""
    present = {path.name for path in run_dir.iterdir()} if run_dir.is_dir() else set()
    if present <= UNSTARTED_RUN_FILES:
        shutil.rmtree(run_dir, ignore_errors=True)


def create_run_dir(spec: ExperimentSpec) -> Path:
    """Make ``<output>/<name>/`` and prove it is writable, before any training starts.

    A run never writes into an earlier run's folder: a ``--name`` whose folder holds a run is
    refused (nothing of it is touched; ``--overwrite`` moves it aside first, see
    :func:`move_earlier_run_aside`), and a generated name that is taken (two runs started in
    the same second) gets a ``-2``, ``-3``, ... suffix.
    """
    output = Path(spec.output).expanduser()
    run_dir = output / spec.run_name()
    if spec.name:
        _refuse_earlier_run(run_dir)
    else:
        run_dir = _free_folder(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=run_dir, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise OutputError(
            f"cannot write the run's output to {run_dir}: {exc.strerror or exc}. "
            "Choose a writable directory with --output (or `output:` in the spec)."
        ) from None
    write_atomically(run_dir / SPEC_FILE, spec.to_yaml())
    return run_dir


def _earlier_run_files(run_dir: Path) -> list[str]:
    return [name for name in RUN_FILES if (run_dir / name).exists()]


def _refuse_earlier_run(run_dir: Path) -> None:
    found = _earlier_run_files(run_dir)
    if found:
        raise OutputError(
            f"{run_dir} already holds a run ({', '.join(found)}); a new run would overwrite it. "
            f"Continue that run with `rlscale train --resume {run_dir}`, choose another --name "
            "(`name:` in the spec) or leave it out for a fresh timestamped folder, or pass "
            "--overwrite to move the old run aside first."
        )


def move_earlier_run_aside(spec: ExperimentSpec) -> Path | None:
    """If the folder of ``spec``'s ``name`` holds a run, rename it whole to
    ``<name>.replaced-<time>`` beside it (nothing of it is deleted) and return where it went."""
    if not spec.name:
        return None
    run_dir = Path(spec.output).expanduser() / spec.run_name()
    if not _earlier_run_files(run_dir):
        return None
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    aside = _free_folder(run_dir.with_name(f"{run_dir.name}.replaced-{stamp}"))
    os.replace(run_dir, aside)
    return aside


def _free_folder(run_dir: Path) -> Path:
    candidate, suffix = run_dir, 1
    while _earlier_run_files(candidate):
        suffix += 1
        candidate = run_dir.with_name(f"{run_dir.name}-{suffix}")
    return candidate


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(text)
    os.replace(tmp, path)


class MetricsLog:
    """Appends one row per iteration to metrics.csv and every numeric result to TensorBoard.

    ``resume_after`` continues a run from the checkpoint of that iteration: the rows after it
    (iterations whose training the checkpoint does not hold, and which run again) are dropped
    from metrics.csv, and TensorBoard hides its events after it (``purge_step``), so no
    iteration appears twice.
    """

    def __init__(self, run_dir: Path, resume_after: IterationMetrics | None = None):
        self.csv_path = run_dir / "metrics.csv"
        self._columns = [field.name for field in fields(IterationMetrics)]
        self.history: list[IterationMetrics] = []
        purge_step = None
        if resume_after is not None:
            self.history = [
                row
                for row in read_metrics(self.csv_path)
                if row.iteration <= resume_after.iteration
            ]
            purge_step = resume_after.env_steps + 1
        write_atomically(self.csv_path, _csv_text(self._columns, self.history))
        self._file = self.csv_path.open("a", newline="")
        self._csv = csv.DictWriter(self._file, fieldnames=self._columns)
        self._tensorboard = _tensorboard_writer(run_dir / "tensorboard", purge_step)

    def record(self, metrics: IterationMetrics, result: dict[str, Any]) -> None:
        self.history.append(metrics)
        self._csv.writerow(asdict(metrics))
        self._file.flush()
        if self._tensorboard is not None:
            # rlscale's own columns first, under their metrics.csv names (the return here is
            # the 100-episode mean the console and the plot show, not RLlib's per-iteration one).
            scalars = {f"{RLSCALE_TENSORBOARD_PREFIX}{k}": v for k, v in _numbers(metrics).items()}
            for key, value in (scalars | flatten_numbers(result)).items():
                self._tensorboard.add_scalar(key, value, global_step=metrics.env_steps)
            self._tensorboard.flush()

    def close(self) -> None:
        self._file.close()
        if self._tensorboard is not None:
            self._tensorboard.close()


def _tensorboard_writer(log_dir: Path, purge_step: int | None = None):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)


def _csv_text(columns: list[str], rows: list[IterationMetrics]) -> str:
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(asdict(row) for row in rows)
    return buffer.getvalue()


def read_metrics(path: Path) -> list[IterationMetrics]:
    """The rows of a run's metrics.csv (none if it has no file yet)."""
    if not path.is_file():
        return []
    integer = {f.name for f in fields(IterationMetrics) if f.type in ("int", int)}
    try:
        with path.open(newline="") as file:
            return [
                IterationMetrics(
                    **{k: int(float(v)) if k in integer else float(v) for k, v in row.items()}
                )
                for row in csv.DictReader(file)
            ]
    except (TypeError, ValueError) as exc:
        raise OutputError(
            f"{path} is damaged ({exc}); the run cannot be resumed with its metrics. Move it "
            "away to resume with a metrics.csv that starts at the checkpoint."
        ) from None


RLSCALE_TENSORBOARD_PREFIX = "rlscale/"
"""TensorBoard tag prefix of the metrics.csv columns (``rlscale/return_mean``, ...)."""


def _numbers(metrics: IterationMetrics) -> dict[str, float]:
    return {
        key: float(value)
        for key, value in asdict(metrics).items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    }


_RESULT_SECTIONS = ("env_runners", "learners", "timers", "evaluation")


def flatten_numbers(result: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of the result sections, keyed by path (``env_runners/episode_len_mean``)."""
    flat: dict[str, float] = {}
    for key, value in result.items():
        if not prefix and key not in _RESULT_SECTIONS:
            continue
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_numbers(value, prefix=f"{name}/"))
        elif (
            isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        ):
            flat[name] = float(value)
    return flat


class CheckpointWriter:
    """Periodic checkpoints (the last ``keep`` kept) and the final one, all written atomically."""

    def __init__(self, run_dir: Path, spec: ExperimentSpec):
        self.run_dir = run_dir
        self.spec = spec
        self.periodic_dir = run_dir / PERIODIC_CHECKPOINTS

    def maybe_save(
        self, algo: Algorithm, metrics: IterationMetrics, step_state: dict | None = None
    ) -> Path | None:
        every = self.spec.checkpoint.every
        if not every or metrics.iteration % every:
            return None
        destination = self.periodic_dir / f"iter_{metrics.iteration:06d}"
        path = self.save(algo, destination, metrics, step_state)
        self._prune()
        return path

    def latest(self) -> Path | None:
        """The newest periodic checkpoint, if one was written."""
        periodic = sorted(self.periodic_dir.glob("iter_*"))
        return periodic[-1] if periodic else None

    def save_final(
        self, algo: Algorithm, metrics: IterationMetrics | None, step_state: dict | None = None
    ) -> Path:
        return self.save(algo, self.run_dir / FINAL_CHECKPOINT, metrics, step_state)

    def save(
        self,
        algo: Algorithm,
        destination: Path,
        metrics: IterationMetrics | None,
        step_state: dict | None = None,
    ) -> Path:
        """Write the algorithm's state and the marker; ``step_state`` (the runner's episode
        window and clock, ``IterationStep.state``) lets ``rlscale train --resume`` continue
        from this checkpoint as if the run had never stopped."""
        destination.parent.mkdir(parents=True, exist_ok=True)
        partial = destination.with_name(f".{destination.name}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        algo.save_to_path(str(partial.resolve()))
        marker = {
            "format": CHECKPOINT_FORMAT,
            "algorithm": self.spec.algorithm,
            ALGORITHM_CLASS_KEY: class_path(type(algo)),
            "rlscale_version": __version__,
            "env": self.spec.env,
            "metrics": asdict(metrics) if metrics else None,
            STEP_STATE_KEY: step_state,
            "spec": self.spec.model_dump(mode="json"),
        }
        (partial / CHECKPOINT_MARKER).write_text(json.dumps(marker, indent=2, allow_nan=True))
        _swap_in(partial, destination)
        return destination

    def _prune(self) -> None:
        periodic = sorted(self.periodic_dir.glob("iter_*"))
        for old in periodic[: -self.spec.checkpoint.keep]:
            shutil.rmtree(old, ignore_errors=True)


def _swap_in(complete: Path, destination: Path) -> None:
    """Put the complete folder ``complete`` at ``destination``, replacing any folder there.

    A folder cannot replace a non-empty one in one rename, so the old one is first renamed
    aside and deleted only once the new one is in place: at every moment one complete
    checkpoint exists, at ``destination`` or (between the two renames) at its ``.previous``
    name, which :func:`read_checkpoint` points to.
    """
    previous = _previous_name(destination)
    if destination.exists():
        shutil.rmtree(previous, ignore_errors=True)  # left by a crash after a completed swap
        os.replace(destination, previous)
    os.replace(complete, destination)
    shutil.rmtree(previous, ignore_errors=True)


def _previous_name(destination: Path) -> Path:
    return destination.with_name(f".{destination.name}.previous")


@dataclass(frozen=True)
class CheckpointInfo:
    path: Path
    spec: ExperimentSpec
    metrics: dict[str, Any] | None
    algorithm_class: str | None = None
    """The saved Algorithm's class (``module.QualName``); None in checkpoints from before the
    marker recorded it."""
    step_state: dict[str, Any] | None = None
    """The runner's episode window and clock at the save (``IterationStep.state``); None in
    checkpoints from before the marker recorded it."""

    def check_algorithm_class(self, algorithm_class: type) -> None:
        """Refuse to restore a checkpoint whose saved state is another algorithm's than the one
        its marker names (a marker edited, or copied from another checkpoint)."""
        expected = class_path(algorithm_class)
        if self.algorithm_class is not None and self.algorithm_class != expected:
            raise CheckpointError(
                f"checkpoint {self.path} names algorithm '{self.spec.algorithm}' ({expected}), "
                f"but its saved state is a {self.algorithm_class}: its {CHECKPOINT_MARKER} does "
                "not belong to it. Use the folder `rlscale train` wrote, unedited."
            )


def class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def restore_or_explain(algo: Algorithm, info: CheckpointInfo) -> None:
    """``algo.restore_from_path`` of the checkpoint, with a damaged file (truncated, emptied,
    not a pickle) reported as such instead of a traceback."""
    try:
        algo.restore_from_path(str(info.path))
    except DAMAGED_STATE_ERRORS as exc:
        raise CheckpointError(
            f"checkpoint {info.path} is damaged: a saved state does not load "
            f"({type(exc).__name__}: {exc}). Use another of the run's checkpoints "
            "(checkpoints/iter_*) or train again."
        ) from None


def _is_run_folder(path: Path) -> bool:
    """A run's folder (its spec beside its checkpoints) rather than a checkpoint."""
    return (path / SPEC_FILE).is_file() and not (path / CHECKPOINT_MARKER).exists()


def _final_checkpoint_of_run(run_dir: Path) -> Path:
    """The run's final checkpoint; where it has none, say which checkpoints it does have."""
    final = run_dir / FINAL_CHECKPOINT
    if final.is_dir() or _previous_name(final).is_dir():
        return final
    periodic = sorted((run_dir / PERIODIC_CHECKPOINTS).glob("iter_*"))
    if periodic:
        raise CheckpointError(
            f"run {run_dir} has no final checkpoint (it stopped before writing one); its latest "
            f"periodic checkpoint is {periodic[-1]}: pass that folder."
        )
    raise CheckpointError(
        f"run {run_dir} holds no checkpoint: it stopped before writing one. Train again (with "
        "--set checkpoint.every=N to save every N iterations on the way)."
    )


def read_checkpoint(path: str | Path) -> CheckpointInfo:
    """Check that ``path`` is a complete rlscale checkpoint; read the spec it was trained with."""
    path = Path(path).expanduser()
    if not path.exists() and _previous_name(path).is_dir():
        raise CheckpointError(
            f"checkpoint {path} is missing: a save was interrupted while replacing it, and the "
            f"previous checkpoint is intact at {_previous_name(path)}. Rename that folder back "
            f"to {path.name} to use it."
        )
    if path.is_file():
        raise CheckpointError(
            f"checkpoint {path} is a file; pass the checkpoint folder that `rlscale train` "
            "printed last (…/checkpoint_final), or its run folder."
        )
    if not path.is_dir():
        raise CheckpointError(
            f"checkpoint {path} does not exist. Pass the folder that `rlscale train` printed last "
            "(…/checkpoint_final), or its run folder."
        )
    if _is_run_folder(path):
        path = _final_checkpoint_of_run(path)
    marker = path / CHECKPOINT_MARKER
    if not marker.is_file():
        raise CheckpointError(
            f"{path} is not a complete rlscale checkpoint (no {CHECKPOINT_MARKER}); it may be "
            "from an interrupted save. Use the run's checkpoint_final or a checkpoints/iter_* "
            "folder."
        )
    another = "Use the run's checkpoint_final or another of its checkpoints/iter_* folders."
    try:
        data = json.loads(marker.read_text())
        spec = spec_from_dict(data["spec"], source=str(marker))
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CheckpointError(
            f"{marker} is unreadable ({exc}); the checkpoint is damaged. {another}"
        ) from None
    except (UnknownAlgorithmError, UnknownEnvironmentError):
        raise  # a name this installation lacks (a plugin's env, say): not damage
    except SpecError as exc:
        raise CheckpointError(
            f"the spec in {marker} is not valid ({exc}); the checkpoint is damaged. {another}"
        ) from None
    for key, recorded in (("algorithm", spec.algorithm), ("env", spec.env)):
        if data.get(key, recorded) != recorded:
            raise CheckpointError(
                f"{marker} names {key} '{data[key]}' but holds the spec of '{recorded}'; the "
                f"checkpoint is damaged. {another}"
            )
    return CheckpointInfo(
        path=path.resolve(),
        spec=spec,
        metrics=data.get("metrics"),
        algorithm_class=data.get(ALGORITHM_CLASS_KEY),
        step_state=data.get(STEP_STATE_KEY),
    )


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """The run's checkpoints that hold their marker (written last): its final one, if any, and
    its periodic ones; interrupted saves (hidden ``.partial`` folders) are not among them."""
    candidates = [run_dir / FINAL_CHECKPOINT, *(run_dir / PERIODIC_CHECKPOINTS).glob("iter_*")]
    return [path for path in candidates if (path / CHECKPOINT_MARKER).is_file()]


def latest_checkpoint(run_dir: Path) -> CheckpointInfo:
    """The run's checkpoint of the highest iteration, to resume from; a clear error when it
    has none."""
    infos = [read_checkpoint(path) for path in complete_checkpoints(run_dir)]
    infos = [info for info in infos if info.metrics]
    if not infos:
        raise CheckpointError(
            f"run {run_dir} has no complete checkpoint to resume from: it stopped before "
            "writing one. Train it again (with --set checkpoint.every=N to save every N "
            "iterations, so that a killed run can resume)."
        )
    return max(infos, key=lambda info: info.metrics["iteration"])
