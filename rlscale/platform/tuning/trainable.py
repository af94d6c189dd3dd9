"""One Tune trial = one rlscale training run: the same spec -> config path, metrics and checkpoints.

The trainable prepares the trial's spec with :func:`prepare` and runs the platform's
:class:`IterationStep`, the one ``rlscale train`` runs: each Tune step reports the same
``IterationMetrics`` row (the columns of a run's metrics.csv, so the sweep's metric means what it
means in ``rlscale train``, offline evaluations included) and ends the trial when one of the
spec's stop rules holds. Its checkpoints are rlscale checkpoints (``rlscale evaluate`` takes
them) and carry the step's episode window and clock, so PBT and ``--resume`` continue a trial
where it left off.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import ray
from ray import tune

from rlscale.platform.experiment import PreparedExperiment, prepare
from rlscale.platform.iteration import IterationStep, diverged_error
from rlscale.platform.outputs import CheckpointWriter, read_checkpoint
from rlscale.platform.spec import ExperimentSpec
from rlscale.platform.tuning.sweep import apply_dotted

TRIAL_STATE = "trial_state.json"
"""Where earlier versions kept a trial's step state; the checkpoint's marker holds it now."""
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
    """A Tune class trainable: one :class:`IterationStep` per trial, as ``rlscale train`` runs."""

    def setup(self, config: dict[str, Any], base: dict[str, Any], trial_cpus: float) -> None:
        self.prepared: PreparedExperiment = prepare_trial(base, config, trial_cpus)
        self.spec = self.prepared.spec
        self.iteration_step = IterationStep(self.prepared)
        self.placement = {
            NODE_KEY: ray.get_runtime_context().get_node_id(),
            ENV_RUNNER_NODES_KEY: ",".join(self._env_runner_nodes()),
        }

    def step(self) -> dict[str, Any]:
        # Tune's own counter survives restores (PBT, --resume); RLlib's restarts on rebuild.
        outcome = self.iteration_step(iteration=self.iteration + 1)
        if outcome.non_finite_losses:
            # Tune keeps the trial's earlier checkpoints; this one is not saved.
            raise diverged_error(outcome, None)
        return {
            **asdict(outcome.metrics),
            **self.placement,
            STOP_REASON_KEY: outcome.stop_reason or "",
            "done": outcome.stop_reason is not None,
        }

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        destination = Path(checkpoint_dir)
        step = self.iteration_step
        CheckpointWriter(destination.parent, self.spec).save(
            step.algo, destination, step.previous, step.state()
        )

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        self.iteration_step.algo.restore_from_path(str(Path(checkpoint_dir).resolve()))
        state = read_checkpoint(checkpoint_dir).step_state
        # Trials of earlier versions saved it in a file of its own beside the marker.
        state_file = Path(checkpoint_dir) / TRIAL_STATE
        if state is None and state_file.is_file():
            state = json.loads(state_file.read_text())
        if state is not None:
            self.iteration_step.load_state(state)

    def cleanup(self) -> None:
        self.iteration_step.stop()

    def _env_runner_nodes(self) -> list[str]:
        group = self.iteration_step.algo.env_runner_group
        if group is None or group.num_remote_env_runners() == 0:
            return []
        return group.foreach_env_runner(
            lambda _: ray.get_runtime_context().get_node_id(), local_env_runner=False
        )
