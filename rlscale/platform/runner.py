"""``rlscale.train(spec)``: run the experiment's :class:`IterationStep` until a stop rule holds.

The step (shared with the Tune trainable) trains and measures one iteration; the runner adds
the run's outputs around it: progress, metrics.csv and TensorBoard, checkpoints, the learning
curve, and Ray's own messages in ``ray.log``. Ctrl-C stops after the iteration in flight and
still writes the final checkpoint; a second Ctrl-C aborts at once.

``resume(run_dir)`` continues an interrupted or killed run from its latest complete checkpoint
(the algorithm's state, RLlib's counters and the runner's episode window and clock), in the
same folder: metrics.csv and TensorBoard continue from that iteration, so none appears twice.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from rlscale.errors import CheckpointError, EnvRunnersLostError, OutputError, RlscaleError
from rlscale.platform.experiment import PreparedExperiment, place_on_cluster, prepare
from rlscale.platform.iteration import IterationStep, diverged_error, first_stop_reason
from rlscale.platform.outputs import (
    SPEC_FILE,
    CheckpointInfo,
    CheckpointWriter,
    IterationMetrics,
    MetricsLog,
    create_run_dir,
    discard_unstarted_run_dir,
    latest_checkpoint,
    move_earlier_run_aside,
    restore_or_explain,
    write_atomically,
)
from rlscale.platform.plots import plot_learning_curve
from rlscale.platform.progress import TrainingProgress
from rlscale.platform.ray_output import RAY_LOG, RayOutput
from rlscale.platform.runtime import check_address, ray_session
from rlscale.platform.spec import ExperimentSpec, load_spec


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
    env_runner_restarts: int = 0
    """EnvRunners that failed during the run and were restarted by RLlib."""

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
    overwrite: bool = False,
) -> TrainResult:
    """Train ``spec`` to its stop rules on an embedded Ray or the cluster at ``address``.

    Ray's own log lines, warnings and worker output go to the run folder's ``ray.log``
    (errors still show); ``verbose`` shows them on the console too. A ``name`` whose folder
    holds an earlier run is refused, unless ``overwrite`` moves that run aside first.
    """
    check_address(address)  # before anything is written
    prepared = prepare(spec)
    moved_to = move_earlier_run_aside(prepared.spec) if overwrite else None
    if moved_to is not None:
        (console or Console(stderr=True)).print(
            f"--overwrite: moved the earlier run to {moved_to}", highlight=False, markup=False
        )
    run_dir = create_run_dir(prepared.spec)
    title = f"rlscale train {prepared.spec.algorithm} --env {prepared.spec.env}"
    try:
        with (
            RayOutput(run_dir / RAY_LOG, console=verbose, title=title) as ray_output,
            ray_session(address, include_dashboard=dashboard) as session,
        ):
            ray_output.capture_worker_output()
            if verbose and console is not None:  # which EnvRunner samples, and why
                console.print(f"sampling with {prepared.config.sampling_runner()}", markup=False)
            place_on_cluster(prepared.config, prepared.spec, session.num_cpus, session.num_gpus)
            step = IterationStep(prepared)
            result = _run(prepared, run_dir, console, step, MetricsLog(run_dir))
            result.ray_start_s = session.start_s
            return result
    except RlscaleError:
        # Refused before training started (the cluster cannot place the run, Ray cannot be
        # reached): leave no run folder that holds only the spec behind.
        discard_unstarted_run_dir(run_dir)
        raise


def resume(
    run_dir: str | Path,
    stop: dict | None = None,
    address: str | None = None,
    console: Console | None = None,
    dashboard: bool = False,
    verbose: bool = False,
) -> TrainResult:
    """Continue the run in ``run_dir`` from its latest complete checkpoint to its stop rules
    (``stop``, e.g. ``{"iterations": 200}``, replaces the rules it names, to train further).

    Refused, before Ray starts, for a folder that holds no run, a run with no complete
    checkpoint, and a run whose checkpoint already meets the stop rules.
    """
    check_address(address)  # before anything is written
    run_dir = Path(run_dir).expanduser()
    spec = _resumed_spec(run_dir, stop or {})
    info = latest_checkpoint(run_dir)
    _check_resumable(run_dir, spec, info)
    prepared = prepare(spec)
    if stop:
        write_atomically(run_dir / SPEC_FILE, spec.to_yaml())
    resumed_from = IterationMetrics(**info.metrics)
    title = f"rlscale train --resume {run_dir}"
    with (
        RayOutput(run_dir / RAY_LOG, console=verbose, title=title) as ray_output,
        ray_session(address, include_dashboard=dashboard) as session,
    ):
        ray_output.capture_worker_output()
        place_on_cluster(prepared.config, prepared.spec, session.num_cpus, session.num_gpus)
        step = IterationStep(prepared)
        try:
            info.check_algorithm_class(type(step.algo))
            restore_or_explain(step.algo, info)
        except RlscaleError:
            step.stop()
            raise
        step.load_state(info.step_state or _state_from_metrics(info.metrics))
        (console or Console(stderr=True)).print(
            f"resuming from {info.path} (iteration {resumed_from.iteration}, "
            f"{resumed_from.env_steps:,} env steps)",
            highlight=False,
            markup=False,
        )
        log = MetricsLog(run_dir, resume_after=resumed_from)
        result = _run(prepared, run_dir, console, step, log)
        result.ray_start_s = session.start_s
        return result


def _resumed_spec(run_dir: Path, stop: dict) -> ExperimentSpec:
    if not (run_dir / SPEC_FILE).is_file():
        what = "does not exist" if not run_dir.exists() else f"holds no run (no {SPEC_FILE})"
        raise OutputError(
            f"cannot resume {run_dir}: it {what}. Pass the run folder that `rlscale train` "
            "printed (`run folder: ...`)."
        )
    stop = {key: value for key, value in stop.items() if value is not None}
    return load_spec(run_dir / SPEC_FILE, {"stop": stop} if stop else None)


def _check_resumable(run_dir: Path, spec: ExperimentSpec, info: CheckpointInfo) -> None:
    if (info.spec.algorithm, info.spec.env) != (spec.algorithm, spec.env):
        raise CheckpointError(
            f"checkpoint {info.path} is of {info.spec.algorithm} on {info.spec.env}, but the "
            f"run's {SPEC_FILE} is {spec.algorithm} on {spec.env}: the folder mixes two runs. "
            "Resume a folder that `rlscale train` wrote, unedited."
        )
    reached = first_stop_reason(spec.stop, IterationMetrics(**info.metrics))
    if reached:
        raise CheckpointError(
            f"the run has already finished ({reached} at its checkpoint {info.path}); nothing "
            "to resume. To train it further, give a later stop rule, e.g. "
            f"`rlscale train --resume {run_dir} --stop-iters "
            f"{info.metrics['iteration'] * 2}`."
        )


def _state_from_metrics(metrics: dict) -> dict:
    """The step state of a checkpoint written before markers held one: its clock and last
    row, with an empty episode window (the return refills as episodes finish)."""
    return {"returns": [], "lengths": [], "time_s": metrics["time_s"], "previous": metrics}


def _run(
    prepared: PreparedExperiment,
    run_dir: Path,
    console: Console | None,
    step: IterationStep,
    log: MetricsLog,
) -> TrainResult:
    spec = prepared.spec
    checkpoints = CheckpointWriter(run_dir, spec)
    title = f"{spec.algorithm} on {spec.env} (seed {spec.seed})"
    reason = None
    runners = EnvRunnerWatch(step.algo, run_dir / RAY_LOG)
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
                for message in runners.after_iteration(metrics.iteration):
                    progress.message(message)
                if outcome.non_finite_losses:
                    raise diverged_error(outcome, checkpoints.latest())
                if checkpoints.maybe_save(step.algo, metrics, step.state()):
                    plot_learning_curve(log.history, run_dir / "learning_curve.png", title)
                reason = outcome.stop_reason or (INTERRUPTED if stop.is_set() else None)
                if runners.none_left and reason is None:
                    reason = NO_ENV_RUNNERS_LEFT
            wall_s = step.time_s()
            progress.message(f"stopped: {reason}; writing the final checkpoint")
            final = checkpoints.save_final(step.algo, log.history[-1], step.state())
            plot_learning_curve(log.history, run_dir / "learning_curve.png", title)
    finally:
        log.close()
        step.stop()
    if reason == NO_ENV_RUNNERS_LEFT:
        raise EnvRunnersLostError(
            f"training stopped after iteration {log.history[-1].iteration}: every EnvRunner "
            "failed and Ray could not restart them, so no iteration could sample. The policy "
            f"so far is saved in {final}. Continue with `rlscale train --resume {run_dir}` "
            f"(fresh EnvRunners); Ray's messages are in {run_dir / RAY_LOG}."
        )
    return TrainResult(
        run_dir=run_dir,
        checkpoint=final,
        spec=spec,
        stop_reason=reason,
        history=log.history,
        wall_s=wall_s,
        env_runner_restarts=runners.restarted,
    )


NO_ENV_RUNNERS_LEFT = "every EnvRunner failed"


class EnvRunnerWatch:
    """Turns RLlib's handling of failed EnvRunners into one line each for the user.

    RLlib takes a remote EnvRunner that died out of service (logging several ERROR lines,
    which go to ray.log) and asks Ray to restart it; training goes on with the healthy ones.
    Ray cannot always restart it (an actor whose constructor arguments sat in the object store,
    Ray issue 53727): with none left an online run samples nothing, and its iterations would
    pass without training, so the run stops (``none_left``) and can be resumed.
    """

    def __init__(self, algo, ray_log: Path):
        group = getattr(algo, "env_runner_group", None)
        online = getattr(algo.config, "is_online", True)
        self._group = group if online and group and group.num_remote_workers() else None
        self._ray_log = ray_log
        self._healthy = self._group.num_healthy_remote_workers() if self._group else 0
        self._restarts = self._group.num_remote_worker_restarts() if self._group else 0
        self.restarted = 0
        """EnvRunners RLlib restarted during the run."""

    @property
    def none_left(self) -> bool:
        return self._group is not None and self._healthy == 0

    def after_iteration(self, iteration: int) -> list[str]:
        if self._group is None:
            return []
        healthy = self._group.num_healthy_remote_workers()
        restarts = self._group.num_remote_worker_restarts()
        messages = []
        if restarts > self._restarts:
            self.restarted += restarts - self._restarts
            messages.append(
                f"{restarts - self._restarts} failed EnvRunner(s) restarted by iteration "
                f"{iteration}; training goes on (Ray's messages: {self._ray_log})"
            )
        elif healthy < self._healthy:
            messages.append(
                f"{self._healthy - healthy} EnvRunner(s) failed in iteration {iteration}; "
                f"{healthy} of {self._group.num_remote_workers()} left (Ray's messages: "
                f"{self._ray_log})"
            )
        self._healthy, self._restarts = healthy, restarts
        return messages


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
