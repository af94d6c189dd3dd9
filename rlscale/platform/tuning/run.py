"""``rlscale.tune(sweep)``: run a sweep under a Ray Tune ``Tuner`` and summarize it.

Everything lands under ``DIR/NAME/``: Tune's experiment state and one folder per trial (its
``progress.csv`` has the columns of metrics.csv, its ``checkpoint_*`` folders are rlscale
checkpoints), the sweep file as run (``sweep.yaml``), and at the end ``trials.csv`` (ranked),
``best_spec.yaml`` (a plain spec that ``rlscale train --config`` takes), ``summary.json`` and
``learning_curves.png``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from rlscale.errors import OutputError, RlscaleError, SpecError
from rlscale.platform.outputs import CHECKPOINT_MARKER, write_atomically
from rlscale.platform.runtime import check_address, ray_session, resolve_gpus_per_learner
from rlscale.platform.spec import ExperimentSpec, folder_name_problem
from rlscale.platform.tuning.logs import OneRowPerIteration
from rlscale.platform.tuning.progress import TrialTable
from rlscale.platform.tuning.sweep import FifoOptions, Sweep, load_sweep

SWEEP_COPY = "sweep.yaml"
BEST_SPEC = "best_spec.yaml"
TRIALS_CSV = "trials.csv"
SUMMARY_JSON = "summary.json"
CURVES_PNG = "learning_curves.png"
EXPERIMENT_STATE_PERIOD_S = "5"
"""How often Tune saves the experiment state, so a killed driver loses little on --resume."""


@dataclass
class TrialSummary:
    trial_id: str
    status: str
    params: dict[str, Any]
    metric: float | None
    iterations: int
    env_steps: int
    checkpoint: Path | None
    path: Path
    error: str | None = None


@dataclass
class SweepResult:
    experiment_dir: Path
    metric: str
    mode: str
    trials: list[TrialSummary] = field(default_factory=list)
    """Ranked, best first; trials without a finite metric last."""
    best_spec_path: Path | None = None
    curves_path: Path | None = None

    @property
    def best(self) -> TrialSummary | None:
        return self.trials[0] if self.trials and self.trials[0].metric is not None else None


def default_name(sweep_path: Path) -> str:
    return f"{sweep_path.stem}-{datetime.now():%Y%m%d-%H%M%S}"


def tune(
    sweep_file: str | Path,
    name: str | None = None,
    output: str | Path | None = None,
    resume: bool = False,
    address: str | None = None,
    console: Console | None = None,
) -> SweepResult:
    """Run (or with ``resume``, continue) the sweep in ``sweep_file`` under ``output/name``."""
    check_address(address)  # before anything is written
    sweep_file = Path(sweep_file)
    sweep = load_sweep(sweep_file)
    root = Path(output or sweep.base.get("output") or "runs").expanduser().resolve()
    if resume and not name:
        raise SpecError("--resume needs --name: the name of the experiment to continue.")
    problem = folder_name_problem(name, "sweep") if name is not None else None
    if problem:
        raise SpecError(f"{problem}.")
    experiment_dir = root / (name or default_name(sweep_file))
    if resume:
        sweep = _sweep_to_resume(experiment_dir)
    else:
        _check_new_experiment(experiment_dir)
        _check_writable(experiment_dir)
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", EXPERIMENT_STATE_PERIOD_S)
    # Frequent state saves are intended (see above); Tune would warn about each.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    with ray_session(address) as session:
        base = _resolve_gpus(sweep, session.num_gpus)
        resources = trial_resources(sweep, base)
        check_bundles_fit(resources.bundles, _cluster_nodes())
        # Only now, with the cluster checked, does the experiment folder appear.
        if not resume:
            _start_experiment_dir(experiment_dir, sweep_file)
        tuner = _tuner(sweep, base, resources, experiment_dir, resume, console)
        results = tuner.fit()
        result = summarize(sweep, results, experiment_dir)
    if result.trials and all(trial.error for trial in result.trials):
        raise RlscaleError(
            f"all {len(result.trials)} trials failed; the first error:\n"
            f"{result.trials[0].error}\nTrial folders are under {experiment_dir}."
        )
    return result


def _check_new_experiment(experiment_dir: Path) -> None:
    if (experiment_dir / SWEEP_COPY).exists():
        raise OutputError(
            f"{experiment_dir} already holds a sweep. Continue it with --resume --name "
            f"{experiment_dir.name}, or pick another --name."
        )


def _check_writable(experiment_dir: Path) -> None:
    """The folder can be made and written, checked before Ray starts; nothing is made yet."""
    existing = experiment_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        what = "is a file" if existing.exists() and not existing.is_dir() else "is not writable"
        raise OutputError(
            f"cannot write the sweep's output to {experiment_dir}: {existing} {what}. Choose a "
            "writable directory with --output."
        )


def _start_experiment_dir(experiment_dir: Path, sweep_file: Path) -> None:
    try:
        experiment_dir.mkdir(parents=True, exist_ok=True)
        write_atomically(experiment_dir / SWEEP_COPY, sweep_file.read_text())
    except OSError as exc:
        raise OutputError(
            f"cannot write the sweep's output to {experiment_dir}: {exc.strerror or exc}. "
            "Choose a writable directory with --output."
        ) from None


def _sweep_to_resume(experiment_dir: Path) -> Sweep:
    from ray.tune import Tuner

    if not (experiment_dir / SWEEP_COPY).is_file() or not Tuner.can_restore(str(experiment_dir)):
        raise OutputError(
            f"nothing to resume at {experiment_dir}: no sweep was started there (or it was "
            "killed before its first state save). Check --name and --output."
        )
    # The sweep continues as it was started, whatever the file given now says.
    return load_sweep(experiment_dir / SWEEP_COPY)


def _resolve_gpus(sweep: Sweep, cluster_gpus: float) -> dict[str, Any]:
    """The base spec with ``gpus_per_learner: auto`` replaced by what the cluster has."""
    requested = sweep.base_spec().resources.gpus_per_learner
    gpus = resolve_gpus_per_learner(requested, cluster_gpus)
    resources = {**sweep.base.get("resources", {}), "gpus_per_learner": gpus}
    return {**sweep.base, "resources": resources}


def trial_resources(sweep: Sweep, base: dict[str, Any]):
    """The placement group of one trial: its own process, its EnvRunners and Learners."""
    from rlscale.platform.tuning.trainable import prepare_trial

    values = {path: d.representative() for path, d in sweep.param_space.items()}
    prepared = prepare_trial(base, values, sweep.tune.resources_per_trial.cpus)
    return prepared.config.algo_class.default_resource_request(prepared.config)


def check_bundles_fit(bundles: list[dict[str, float]], nodes: list[dict[str, float]]) -> None:
    """Fail now if a trial can never be placed, instead of Tune waiting for it forever."""
    wanted = {key: sum(b.get(key, 0) for b in bundles) for key in ("CPU", "GPU")}
    have = {key: sum(n.get(key, 0) for n in nodes) for key in ("CPU", "GPU")}
    for bundle in bundles:
        need = {k: v for k, v in bundle.items() if v}
        if not any(all(node.get(k, 0) >= v for k, v in need.items()) for node in nodes):
            raise RlscaleError(
                f"a trial needs {_describe(need)} in one place, but no node of the Ray cluster "
                f"has that much (nodes: {'; '.join(_describe(n) for n in nodes) or 'none'}). "
                "Lower tune.resources_per_trial.cpus or resources.gpus_per_learner, or add "
                "bigger nodes."
            )
    for key in wanted:
        if wanted[key] > have[key]:
            raise RlscaleError(
                f"one trial needs {wanted[key]:g} {key}s (its process, EnvRunners and Learners) "
                f"but the Ray cluster has {have[key]:g}. Lower resources.num_env_runners / "
                "num_learners or tune.resources_per_trial, or use a bigger cluster."
            )


def _describe(resources: dict[str, float]) -> str:
    shown = {k: v for k, v in resources.items() if k in ("CPU", "GPU") and v}
    return ", ".join(f"{v:g} {k}" for k, v in shown.items()) or "nothing"


def _cluster_nodes() -> list[dict[str, float]]:
    import ray

    return [node["Resources"] for node in ray.nodes() if node.get("Alive")]


def _tuner(
    sweep: Sweep,
    base: dict[str, Any],
    resources,
    experiment_dir: Path,
    resume: bool,
    console: Console | None,
):
    from ray import tune as ray_tune

    from rlscale.platform.tuning.search import (
        expected_trials,
        param_space,
        scheduler,
        search_algorithm,
    )
    from rlscale.platform.tuning.trainable import RlscaleTrainable

    trainable = ray_tune.with_resources(
        ray_tune.with_parameters(
            RlscaleTrainable, base=base, trial_cpus=sweep.tune.resources_per_trial.cpus
        ),
        resources,
    )
    if resume:
        return ray_tune.Tuner.restore(
            str(experiment_dir), trainable=trainable, resume_unfinished=True, resume_errored=True
        )
    spec = sweep.base_spec()
    plain_fifo = isinstance(sweep.scheduler, FifoOptions) and sweep.tune.search != "optuna"
    tune_config = ray_tune.TuneConfig(
        trial_dirname_creator=trial_dirname,
        num_samples=sweep.tune.num_samples,
        max_concurrent_trials=sweep.tune.max_concurrent_trials,
        search_alg=search_algorithm(sweep, spec.seed),
        scheduler=scheduler(sweep),
        # Schedulers and searchers carry metric and mode themselves; Tune refuses both.
        metric=sweep.tune.metric if plain_fifo else None,
        mode=sweep.tune.mode if plain_fifo else None,
    )
    run_config = ray_tune.RunConfig(
        name=experiment_dir.name,
        storage_path=str(experiment_dir.parent),
        checkpoint_config=ray_tune.CheckpointConfig(
            num_to_keep=spec.checkpoint.keep,
            checkpoint_frequency=spec.checkpoint.every,
            checkpoint_at_end=True,
        ),
        failure_config=ray_tune.FailureConfig(max_failures=sweep.tune.max_failures),
        verbose=0,
        callbacks=[
            TrialTable(sweep.tune.metric, list(sweep.param_space), console, expected_trials(sweep)),
            OneRowPerIteration(),
        ],
    )
    return ray_tune.Tuner(
        trainable, param_space=param_space(sweep), tune_config=tune_config, run_config=run_config
    )


def trial_dirname(trial) -> str:
    return f"trial_{trial.trial_id}"


def summarize(sweep: Sweep, results, experiment_dir: Path) -> SweepResult:
    """Rank the trials and write trials.csv, best_spec.yaml, summary.json and the curves PNG."""
    metric, mode = sweep.tune.metric, sweep.tune.mode
    trials = [_trial_summary(result, metric) for result in results]
    trials.sort(key=lambda t: _rank_key(t.metric, mode))
    summary = SweepResult(experiment_dir=experiment_dir, metric=metric, mode=mode, trials=trials)
    _write_trials_csv(summary, experiment_dir / TRIALS_CSV)
    if summary.best is not None:
        summary.best_spec_path = experiment_dir / BEST_SPEC
        spec = best_spec(sweep, summary.best)
        write_atomically(summary.best_spec_path, spec.to_yaml())
    from rlscale.platform.tuning.plots import plot_trial_curves

    summary.curves_path = plot_trial_curves(
        results,
        metric,
        experiment_dir / CURVES_PNG,
        title=f"{experiment_dir.name}: {metric}",
        params=list(sweep.param_space),
    )
    write_atomically(experiment_dir / SUMMARY_JSON, json.dumps(_summary_dict(summary), indent=2))
    return summary


def best_spec(sweep: Sweep, best: TrialSummary) -> ExperimentSpec:
    """The best trial's spec as a plain spec: the one saved in its checkpoint (seed included)."""
    if best.checkpoint is not None and (best.checkpoint / CHECKPOINT_MARKER).is_file():
        data = json.loads((best.checkpoint / CHECKPOINT_MARKER).read_text())["spec"]
        spec = ExperimentSpec.model_validate(data)
    else:
        spec = sweep.spec_for(best.params)
    # Keep the sweep's own GPU setting (e.g. `auto`), not what this cluster resolved it to.
    resources = spec.resources.model_copy(
        update={"gpus_per_learner": sweep.base_spec().resources.gpus_per_learner}
    )
    output = Path(sweep.base.get("output", "runs"))
    return spec.model_copy(update={"name": None, "output": output, "resources": resources})


def _trial_summary(result, metric: str) -> TrialSummary:
    last = result.metrics or {}
    checkpoint = Path(result.checkpoint.path) if result.checkpoint is not None else None
    return TrialSummary(
        trial_id=str(last.get("trial_id") or Path(result.path).name),
        status="ERROR" if result.error else "TERMINATED",
        params=dict(result.config or {}),
        metric=_finite(last.get(metric)),
        iterations=int(last.get("training_iteration", 0) or 0),
        env_steps=int(last.get("env_steps", 0) or 0),
        checkpoint=checkpoint,
        path=Path(result.path),
        error=str(result.error).strip().splitlines()[-1] if result.error else None,
    )


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _rank_key(value: float | None, mode: str) -> tuple[int, float]:
    if value is None:
        return (1, 0.0)
    return (0, -value if mode == "max" else value)


def _write_trials_csv(summary: SweepResult, path: Path) -> None:
    import csv
    import io

    params = sorted({key for trial in summary.trials for key in trial.params})
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        [
            "rank",
            "trial_id",
            "status",
            summary.metric,
            "iterations",
            "env_steps",
            *params,
            "checkpoint",
        ]
    )
    for rank, trial in enumerate(summary.trials, start=1):
        writer.writerow(
            [
                rank,
                trial.trial_id,
                trial.status,
                "" if trial.metric is None else trial.metric,
                trial.iterations,
                trial.env_steps,
                *(trial.params.get(p, "") for p in params),
                trial.checkpoint or "",
            ]
        )
    write_atomically(path, buffer.getvalue())


def _summary_dict(summary: SweepResult) -> dict[str, Any]:
    best = summary.best
    return {
        "experiment_dir": str(summary.experiment_dir),
        "metric": summary.metric,
        "mode": summary.mode,
        "best_trial": best.trial_id if best else None,
        "best_metric": best.metric if best else None,
        "best_checkpoint": str(best.checkpoint) if best and best.checkpoint else None,
        "best_spec": str(summary.best_spec_path) if summary.best_spec_path else None,
        "learning_curves": str(summary.curves_path) if summary.curves_path else None,
        "trials": [
            {
                "trial_id": t.trial_id,
                "status": t.status,
                "metric": t.metric,
                "iterations": t.iterations,
                "env_steps": t.env_steps,
                "params": t.params,
                "checkpoint": str(t.checkpoint) if t.checkpoint else None,
                "error": t.error,
            }
            for t in summary.trials
        ],
    }
