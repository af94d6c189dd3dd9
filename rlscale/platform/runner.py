"""``rlscale.train(spec)``: run the experiment's :class:`IterationStep` until a stop rule holds.

The step (shared with the Tune trainable) trains and measures one iteration; the runner adds
the run's outputs around it: progress, metrics.csv and TensorBoard, checkpoints, the learning
curve, and Ray's own messages in ``ray.log``. Ctrl-C stops after the iteration in flight and
still writes the final checkpoint; a second Ctrl-C aborts at once.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from rlscale.errors import RlscaleError
from rlscale.platform.experiment import PreparedExperiment, place_on_cluster, prepare
from rlscale.platform.iteration import IterationStep, diverged_error
from rlscale.platform.outputs import (
    CheckpointWriter,
    IterationMetrics,
    MetricsLog,
    create_run_dir,
    discard_unstarted_run_dir,
)
from rlscale.platform.plots import plot_learning_curve
from rlscale.platform.progress import TrainingProgress
from rlscale.platform.ray_output import RAY_LOG, RayOutput
from rlscale.platform.runtime import ray_session
from rlscale.platform.spec import ExperimentSpec


@dataclass
class TrainResult:
    run_dir: Path
    checkpoint: Path
    spec: ExperimentSpec
    stop_reason: str
    history: list[IterationMetrics] = field(default_factory=list)
    ray_start_s: float = 0.0
    """Starting or connecting to Ray; not part of ``wall_s``."""
    wall_s: float = 0.0
    """From building the algorithm to the end of the last iteration."""

    @property
    def final(self) -> IterationMetrics | None:
        return self.history[-1] if self.history else None

    @property
    def interrupted(self) -> bool:
        return self.stop_reason == INTERRUPTED

    @property
    def learning_curve(self) -> Path:
        return self.run_dir / "learning_curve.png"

    @property
    def ray_log(self) -> Path:
        """Ray's own messages during the run (see :mod:`rlscale.platform.ray_output`)."""
        return self.run_dir / RAY_LOG


INTERRUPTED = "interrupted by Ctrl-C"


def train(
    spec: ExperimentSpec,
    address: str | None = None,
    console: Console | None = None,
    dashboard: bool = False,
    verbose: bool = False,
) -> TrainResult:
    """Train ``spec`` to its stop rules on an embedded Ray or the cluster at ``address``.

    Ray's own log lines, warnings and worker output go to the run folder's ``ray.log``
    (errors still show); ``verbose`` shows them on the console too.
    """
    prepared = prepare(spec)
    run_dir = create_run_dir(prepared.spec)
    title = f"rlscale train {prepared.spec.algorithm} --env {prepared.spec.env}"
    try:
        with (
            RayOutput(run_dir / RAY_LOG, console=verbose, title=title) as ray_output,
            ray_session(address, include_dashboard=dashboard) as session,
        ):
            ray_output.capture_worker_output()
            place_on_cluster(prepared.config, prepared.spec, session.num_cpus, session.num_gpus)
            result = _run(prepared, run_dir, console)
            result.ray_start_s = session.start_s
            return result
    except RlscaleError:
        # Refused before training started (the cluster cannot place the run, Ray cannot be
        # reached): leave no run folder that holds only the spec behind.
        discard_unstarted_run_dir(run_dir)
        raise


def _run(prepared: PreparedExperiment, run_dir: Path, console: Console | None) -> TrainResult:
    spec = prepared.spec
    step = IterationStep(prepared)
    log = MetricsLog(run_dir)
    checkpoints = CheckpointWriter(run_dir, spec)
    title = f"{spec.algorithm} on {spec.env} (seed {spec.seed})"
    reason = None
    try:
        with (
            TrainingProgress(spec.stop, title, console) as progress,
            _stop_on_sigint(progress) as stop,
        ):
            while reason is None:
                outcome = step()
                metrics = outcome.metrics
                log.record(metrics, outcome.result)
                progress.update(metrics)
                if outcome.non_finite_losses:
                    raise diverged_error(outcome, checkpoints.latest())
                if checkpoints.maybe_save(step.algo, metrics):
                    plot_learning_curve(log.history, run_dir / "learning_curve.png", title)
                reason = outcome.stop_reason or (INTERRUPTED if stop.is_set() else None)
            wall_s = step.time_s()
            progress.message(f"stopped: {reason}; writing the final checkpoint")
            final = checkpoints.save_final(step.algo, log.history[-1])
            plot_learning_curve(log.history, run_dir / "learning_curve.png", title)
    finally:
        log.close()
        step.stop()
    return TrainResult(
        run_dir=run_dir,
        checkpoint=final,
        spec=spec,
        stop_reason=reason,
        history=log.history,
        wall_s=wall_s,
    )


@contextmanager
def _stop_on_sigint(progress: TrainingProgress) -> Iterator[threading.Event]:
    """First Ctrl-C: finish the iteration, then stop cleanly. Second: abort."""
    requested = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield requested
        return

    def handler(signum, frame):
        if requested.is_set():
            progress.message(
                "Ctrl-C again: aborting now; no final checkpoint is written (the run folder "
                "keeps metrics.csv and any periodic checkpoints already written)"
            )
            raise KeyboardInterrupt
        requested.set()
        progress.message("Ctrl-C: stopping after this iteration and saving (Ctrl-C again aborts)")

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield requested
    finally:
        signal.signal(signal.SIGINT, previous)
