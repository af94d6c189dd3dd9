"""``rlscale.train(spec)``: build the algorithm, loop ``train()`` until a stop rule holds.

Ctrl-C stops after the iteration in flight and still writes the final checkpoint; a second
Ctrl-C aborts at once.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from rlscale.errors import SpecError
from rlscale.platform.episode_stats import EpisodeWindow
from rlscale.platform.experiment import (
    PreparedExperiment,
    learner_cpus,
    place_on_cluster,
    prepare,
)
from rlscale.platform.outputs import (
    CheckpointWriter,
    IterationMetrics,
    MetricsLog,
    create_run_dir,
)
from rlscale.platform.plots import plot_learning_curve
from rlscale.platform.progress import TrainingProgress
from rlscale.platform.runtime import ray_session
from rlscale.platform.spec import ExperimentSpec, StopRules


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


INTERRUPTED = "interrupted by Ctrl-C"


def train(
    spec: ExperimentSpec,
    address: str | None = None,
    console: Console | None = None,
    dashboard: bool = False,
) -> TrainResult:
    """Train ``spec`` to its stop rules on an embedded Ray or the cluster at ``address``."""
    prepared = prepare(spec)
    run_dir = create_run_dir(prepared.spec)
    with ray_session(address, include_dashboard=dashboard) as session:
        place_on_cluster(prepared.config, prepared.spec, session.num_cpus, session.num_gpus)
        result = _run(prepared, run_dir, console)
        result.ray_start_s = session.start_s
        return result


def first_stop_reason(stop: StopRules, metrics: IterationMetrics) -> str | None:
    if stop.reward is not None and metrics.has_return and metrics.return_mean >= stop.reward:
        return f"mean return {metrics.return_mean:.1f} >= {stop.reward:g}"
    if stop.iterations and metrics.iteration >= stop.iterations:
        return f"{metrics.iteration} iterations"
    if stop.timesteps and metrics.env_steps >= stop.timesteps:
        return f"{metrics.env_steps:,} env steps"
    if stop.time_s and metrics.time_s >= stop.time_s:
        return f"{metrics.time_s:.0f}s of training"
    return None


def _run(prepared: PreparedExperiment, run_dir: Path, console: Console | None) -> TrainResult:
    spec = prepared.spec
    started = time.perf_counter()
    algo = _build(prepared)
    log = MetricsLog(run_dir)
    episodes = EpisodeWindow(*_evaluation_window(prepared))
    checkpoints = CheckpointWriter(run_dir, spec)
    title = f"{spec.algorithm} on {spec.env} (seed {spec.seed})"
    reason = None
    try:
        with (
            TrainingProgress(spec.stop, title, console) as progress,
            _stop_on_sigint(progress) as stop,
        ):
            while reason is None:
                raw = algo.train()
                episodes.add_from(raw.get("evaluation", {}) if prepared.dataset else raw)
                previous = log.history[-1] if log.history else None
                metrics = IterationMetrics.from_result(
                    raw, episodes, time.perf_counter() - started, previous
                )
                if prepared.dataset and metrics.has_return:
                    metrics.normalized_return = prepared.normalized_return(metrics.return_mean)
                log.record(metrics, raw)
                progress.update(metrics)
                if checkpoints.maybe_save(algo, metrics):
                    plot_learning_curve(log.history, run_dir / "learning_curve.png", title)
                reason = first_stop_reason(spec.stop, metrics) or (
                    INTERRUPTED if stop.is_set() else None
                )
            wall_s = time.perf_counter() - started
            progress.message(f"stopped: {reason}; writing the final checkpoint")
            final = checkpoints.save_final(algo, log.history[-1])
            plot_learning_curve(log.history, run_dir / "learning_curve.png", title)
    finally:
        log.close()
        algo.stop()
    return TrainResult(
        run_dir=run_dir,
        checkpoint=final,
        spec=spec,
        stop_reason=reason,
        history=log.history,
        wall_s=wall_s,
    )


def _evaluation_window(prepared: PreparedExperiment) -> tuple[int, ...]:
    """Offline algorithms never sample online: their returns are the latest evaluation's."""
    if prepared.dataset is None:
        return ()
    return (int(prepared.config.evaluation_duration),)


def _build(prepared: PreparedExperiment):
    _size_local_learner_threads(prepared.config)
    try:
        return prepared.config.build_algo()
    except ValueError as exc:
        # RLlib's config validation: a hyper-parameter combination it rejects.
        raise SpecError(
            f"RLlib rejected the configuration of '{prepared.spec.algorithm}': {exc}"
        ) from None


def _size_local_learner_threads(config) -> None:
    """Give a Learner that runs in this process the torch threads its CPU reservation allows.

    Ray starts each actor with as many OpenMP threads as CPUs it reserves; the driver gets one
    per core. A local Learner at that width competes with the env runners and Ray Data tasks
    for the same cores, and its threads spin at every barrier: on 2 loaded cores, CQL's update
    ran 8x slower with 2 threads than with 1.
    """
    if config.num_learners > 0:
        return
    import torch

    torch.set_num_threads(max(1, int(learner_cpus(config))))


@contextmanager
def _stop_on_sigint(progress: TrainingProgress) -> Iterator[threading.Event]:
    """First Ctrl-C: finish the iteration, then stop cleanly. Second: abort."""
    requested = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield requested
        return

    def handler(signum, frame):
        if requested.is_set():
            raise KeyboardInterrupt
        requested.set()
        progress.message("Ctrl-C: stopping after this iteration and saving (Ctrl-C again aborts)")

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield requested
    finally:
        signal.signal(signal.SIGINT, previous)
