"""One training iteration, the same for ``rlscale train`` and for every Ray Tune trial.

:class:`IterationStep` builds the RLlib Algorithm of a prepared experiment, runs one
``algo.train()`` per call and turns the raw result into the :class:`IterationMetrics` row that
metrics.csv and a sweep's progress.csv both hold; it also says which stop rule, if any, now
holds. The runner and the Tune trainable only add what is theirs around it (progress bar,
checkpoints and Ctrl-C for the runner; Tune's counter and trial checkpoints for the trainable),
so a metric means the same thing in a run and in a sweep.

Online algorithms report the mean over the last ``RETURN_WINDOW`` whole training episodes.
Offline algorithms never sample online: their returns are those of the latest evaluation
(the ``evaluation`` section of the result), with the dataset's normalized score beside them.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from ray.rllib.core import ALL_MODULES
from ray.rllib.utils.metrics import (
    DATASET_NUM_ITERS_TRAINED,
    DATASET_NUM_ITERS_TRAINED_LIFETIME,
    EVALUATION_RESULTS,
    LEARNER_RESULTS,
    NUM_ENV_STEPS_TRAINED,
)

from rlscale.errors import SpecError, TrainingDivergedError
from rlscale.platform.episode_stats import EpisodeWindow
from rlscale.platform.experiment import PreparedExperiment, learner_cpus
from rlscale.platform.outputs import IterationMetrics
from rlscale.platform.spec import StopRules

if TYPE_CHECKING:
    from ray.rllib.algorithms.algorithm import Algorithm
    from ray.rllib.algorithms.algorithm_config import AlgorithmConfig


@dataclass
class IterationOutcome:
    metrics: IterationMetrics
    result: dict[str, Any]
    """RLlib's raw result of the iteration (TensorBoard logs its numeric leaves)."""
    stop_reason: str | None
    """The first of the spec's stop rules that holds after this iteration, if any."""
    non_finite_losses: dict[str, float] = field(default_factory=dict)
    """The losses the learners reported NaN or infinite this iteration (``module/key``): the
    weights they updated can no longer be trusted (:func:`diverged_error`)."""


class IterationStep:
    """The algorithm of one experiment, its episode window and its clock.

    The clock starts before the algorithm is built, so ``time_s`` (and the ``time_s`` stop
    rule) counts the build, in a run and in a trial alike. :meth:`state` and
    :meth:`load_state` carry the window, the clock and the previous row across a Tune
    checkpoint (PBT, ``--resume``).
    """

    def __init__(self, prepared: PreparedExperiment):
        self.prepared = prepared
        self._elapsed_before = 0.0
        self._started = time.perf_counter()
        self.algo: Algorithm = build_algorithm(prepared)
        self.window = EpisodeWindow(*evaluation_window(prepared))
        self.previous: IterationMetrics | None = None

    @property
    def offline(self) -> bool:
        return self.prepared.dataset is not None

    def __call__(self, iteration: int | None = None) -> IterationOutcome:
        """Train one iteration; ``iteration`` numbers the row instead of RLlib's own counter."""
        raw = self.algo.train()
        if self.offline:
            self._evaluate_from_the_first_iteration(raw)
        self.window.add_from(raw.get(EVALUATION_RESULTS, {}) if self.offline else raw)
        metrics = IterationMetrics.from_result(raw, self.window, self.time_s(), self.previous)
        if iteration is not None:
            metrics = replace(metrics, iteration=iteration)
        if self.offline and metrics.has_return:
            metrics.normalized_return = self.prepared.normalized_return(metrics.return_mean)
        self.previous = metrics
        return IterationOutcome(
            metrics=metrics,
            result=raw,
            stop_reason=first_stop_reason(self.prepared.spec.stop, metrics),
            non_finite_losses=non_finite_losses(raw),
        )

    def _evaluate_from_the_first_iteration(self, raw: dict[str, Any]) -> None:
        """Add an evaluation after iteration 1, so that an offline run's progress line, plot
        and metrics show a return from the start: RLlib evaluates only at iterations N, 2N, ...
        (``evaluation_interval``). ``evaluation_interval: 0`` switches evaluation off, this
        one included."""
        iteration = raw["training_iteration"]
        interval = self.algo.config.evaluation_interval
        if not interval or iteration % interval == 0:
            return  # no evaluation at all, or RLlib's own
        if iteration == 1:
            raw[EVALUATION_RESULTS] = self._first_evaluation()
        elif iteration == 2:
            # RLlib reduces the first evaluation's metrics into its next result: they were
            # reported at iteration 1 already.
            raw.pop(EVALUATION_RESULTS, None)

    def _first_evaluation(self) -> dict[str, Any]:
        """``algo.evaluate()``, with the random streams that training draws from put back
        afterwards, so a seeded run trains exactly as it would without this evaluation (later
        evaluations start from the same states either way: RLlib reseeds the evaluation env
        whenever it samples whole episodes)."""
        streams = random.getstate(), np.random.get_state(), torch.get_rng_state()
        try:
            return self.algo.evaluate()
        finally:
            random.setstate(streams[0])
            np.random.set_state(streams[1])
            torch.set_rng_state(streams[2])

    def time_s(self) -> float:
        """Seconds of training so far, including time before a restore."""
        return self._elapsed_before + time.perf_counter() - self._started

    def state(self) -> dict[str, Any]:
        """What a checkpoint must carry besides the algorithm's own state; JSON-serializable."""
        return {
            "returns": [float(r) for r in self.window.returns],
            "lengths": [int(n) for n in self.window.lengths],
            "time_s": self.time_s(),
            "previous": asdict(self.previous) if self.previous else None,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state`: same window, clock and previous row."""
        self.window = EpisodeWindow(*evaluation_window(self.prepared))
        self.window.returns.extend(state["returns"])
        self.window.lengths.extend(state["lengths"])
        self._elapsed_before = float(state["time_s"])
        self._started = time.perf_counter()
        previous = state.get("previous")
        self.previous = IterationMetrics(**previous) if previous else None

    def stop(self) -> None:
        self.algo.stop()


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


def non_finite_losses(result: dict[str, Any]) -> dict[str, float]:
    """Every loss (a learner metric whose name ends in ``loss``) that is NaN or infinite, in an
    iteration that updated the learner.

    An iteration without an update (its EnvRunners failed and sampled nothing, say) reports
    the losses of no batch, which RLlib's metrics give as NaN: that is no sign of divergence.
    """
    learners = result.get(LEARNER_RESULTS, {})
    trained = learners.get(ALL_MODULES, {}).get(NUM_ENV_STEPS_TRAINED)
    if trained is not None and (not _finite(trained) or trained == 0):
        return {}
    found = {}
    for module_id, values in learners.items():
        if not isinstance(values, dict):
            continue
        for key, value in values.items():
            if key.endswith("loss") and not _finite(value):
                found[f"{module_id}/{key}"] = float(value)
    return found


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):  # not a number: nothing to judge
        return True


def diverged_error(
    outcome: IterationOutcome, last_checkpoint: Path | None
) -> TrainingDivergedError:
    """The error that stops a run whose losses went NaN or infinite, naming the iteration, its
    updates (where the learners count them) and the last checkpoint written before it."""
    iteration = outcome.metrics.iteration
    losses = ", ".join(f"{name} = {value}" for name, value in outcome.non_finite_losses.items())
    updates = ""
    counts = outcome.result.get(LEARNER_RESULTS, {}).get(ALL_MODULES, {})
    if DATASET_NUM_ITERS_TRAINED_LIFETIME in counts and DATASET_NUM_ITERS_TRAINED in counts:
        last = int(counts[DATASET_NUM_ITERS_TRAINED_LIFETIME])
        first = last - int(counts[DATASET_NUM_ITERS_TRAINED]) + 1
        updates = f" (updates {first}-{last})"
    if last_checkpoint is None:
        saved = "No checkpoint of this run was written before it"
    else:
        saved = f"The last checkpoint written before it, with finite losses, is {last_checkpoint}"
    return TrainingDivergedError(
        f"training stopped: in iteration {iteration}{updates} the learner's loss became NaN or "
        f"infinite ({losses}), so the policy's weights are no longer finite and no final "
        f"checkpoint was written. {saved}; metrics.csv holds every iteration up to this one. "
        "Lower the learning rate (--set lr=...), check the dataset's values and scale "
        "(`rlscale datasets validate`), then train again."
    )


def evaluation_window(prepared: PreparedExperiment) -> tuple[int, ...]:
    """``EpisodeWindow`` arguments: offline returns are the latest evaluation's episodes only."""
    if prepared.dataset is None:
        return ()
    return (int(prepared.config.evaluation_duration),)


def build_algorithm(prepared: PreparedExperiment) -> Algorithm:
    """``config.build_algo()``, with RLlib's rejection of the config as a user error."""
    _size_local_learner_threads(prepared.config)
    try:
        return prepared.config.build_algo()
    except ValueError as exc:
        # RLlib's config validation: a hyper-parameter combination it rejects.
        raise SpecError(
            f"RLlib rejected the configuration of '{prepared.spec.algorithm}': {exc}"
        ) from None


def _size_local_learner_threads(config: AlgorithmConfig) -> None:
    """Give a Learner that runs in this process the torch threads its CPU reservation allows.

    Ray starts each actor with as many OpenMP threads as CPUs it reserves; the driver gets one
    per core. A local Learner at that width competes with the env runners and Ray Data tasks
    for the same cores, and its threads spin at every barrier (an update can run several times
    slower with 2 threads than with 1 on 2 loaded cores).
    """
    if config.num_learners > 0:
        return
    import torch

    torch.set_num_threads(max(1, int(learner_cpus(config))))
