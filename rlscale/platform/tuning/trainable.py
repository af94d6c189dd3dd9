"""One Tune trial = one rlscale training run: the same spec -> config path, metrics and checkpoints.

The trainable builds the RLlib Algorithm from the trial's spec with :func:`prepare`, reports one
``IterationMetrics`` row per iteration (the columns of a run's metrics.csv, so the sweep's metric
means what it means in ``rlscale train``) and ends the trial when one of the spec's stop rules
holds. Its checkpoints are rlscale checkpoints (``rlscale evaluate`` takes them) and carry the
episode window and clock, so PBT and ``--resume`` continue a trial where it left off.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import ray
from ray import tune

from rlscale.platform.episode_stats import EpisodeWindow
from rlscale.platform.experiment import PreparedExperiment, prepare
from rlscale.platform.outputs import CheckpointWriter, IterationMetrics
from rlscale.platform.runner import _build, first_stop_reason
from rlscale.platform.spec import ExperimentSpec
from rlscale.platform.tuning.sweep import apply_dotted

TRIAL_STATE = "trial_state.json"
STOP_REASON_KEY = "stop_reason"
NODE_KEY = "node_id"
ENV_RUNNER_NODES_KEY = "env_runner_nodes"


def trial_spec(base: dict[str, Any], config: dict[str, Any]) -> ExperimentSpec:
    """The spec one trial runs: the sweep's base with the trial's sampled dotted paths set."""
    return ExperimentSpec.model_validate(apply_dotted(base, config))


def prepare_trial(base: dict[str, Any], config: dict[str, Any], trial_cpus: float):
    """Spec -> AlgorithmConfig for a trial; the trial's own process gets ``trial_cpus``."""
    prepared = prepare(trial_spec(base, config))
    gpus = prepared.spec.resources.gpus_per_learner
    # The driver resolves `auto` against the cluster before any trial starts.
    prepared.config.learners(num_gpus_per_learner=0.0 if gpus == "auto" else float(gpus))
    prepared.config.resources(num_cpus_for_main_process=trial_cpus)
    if prepared.config.num_learners == 0:
        # Updates run in the trial's process; it is the learner.
        prepared.config.learners(num_cpus_per_learner=trial_cpus)
    return prepared


class RlscaleTrainable(tune.Trainable):
    """A Tune class trainable wrapping one rlscale-configured RLlib Algorithm."""

    def setup(self, config: dict[str, Any], base: dict[str, Any], trial_cpus: float) -> None:
        self.prepared: PreparedExperiment = prepare_trial(base, config, trial_cpus)
        self.spec = self.prepared.spec
        self.algo = _build(self.prepared)
        self.window = EpisodeWindow()
        self.previous: IterationMetrics | None = None
        self.elapsed_before = 0.0
        self.started = time.perf_counter()
        self.placement = {
            NODE_KEY: ray.get_runtime_context().get_node_id(),
            ENV_RUNNER_NODES_KEY: ",".join(self._env_runner_nodes()),
        }

    def step(self) -> dict[str, Any]:
        raw = self.algo.train()
        self.window.add_from(raw)
        metrics = IterationMetrics.from_result(
            raw, self.window, self._time_s(), self.previous
        )
        # Tune's own counter survives restores (PBT, --resume); RLlib's restarts on rebuild.
        metrics = replace(metrics, iteration=self.iteration + 1)
        self.previous = metrics
        reason = first_stop_reason(self.spec.stop, metrics)
        return {
            **asdict(metrics),
            **self.placement,
            STOP_REASON_KEY: reason or "",
            "done": reason is not None,
        }

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        destination = Path(checkpoint_dir)
        CheckpointWriter(destination.parent, self.spec).save(
            self.algo, destination, self.previous
        )
        state = {
            "returns": list(self.window.returns),
            "lengths": [int(n) for n in self.window.lengths],
            "time_s": self._time_s(),
            "previous": asdict(self.previous) if self.previous else None,
        }
        (destination / TRIAL_STATE).write_text(json.dumps(state, allow_nan=True))

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        self.algo.restore_from_path(str(Path(checkpoint_dir).resolve()))
        state_file = Path(checkpoint_dir) / TRIAL_STATE
        if not state_file.is_file():
            return
        state = json.loads(state_file.read_text())
        self.window = EpisodeWindow()
        self.window.returns.extend(state["returns"])
        self.window.lengths.extend(state["lengths"])
        self.elapsed_before = float(state["time_s"])
        self.started = time.perf_counter()
        previous = state.get("previous")
        self.previous = IterationMetrics(**previous) if previous else None

    def cleanup(self) -> None:
        self.algo.stop()

    def _time_s(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started

    def _env_runner_nodes(self) -> list[str]:
        group = self.algo.env_runner_group
        if group is None or group.num_remote_env_runners() == 0:
            return []
        return group.foreach_env_runner(
            lambda _: ray.get_runtime_context().get_node_id(), local_env_runner=False
        )
