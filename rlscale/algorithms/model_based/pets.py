"""PETS: probabilistic ensembles with trajectory sampling (Chua, Calandra, McAllister & Levine
2018, "Deep Reinforcement Learning in a Handful of Trials using Probabilistic Dynamics Models",
https://arxiv.org/abs/1805.12114).

The loop of their Algorithm 1, on RLlib:

1. the first ``random_warmup_steps`` env steps take uniformly random actions;
2. every iteration the Learner refits the ensemble on minibatches drawn from *all*
   transitions seen so far (each member on its own bootstrap resample of every minibatch,
   Gaussian NLL with learned log-variance bounds;
   :class:`~rlscale.modules.dynamics.ensemble.ProbabilisticEnsemble`), on its GPU when it has
   one. Refitting on the data the current controller produced is what keeps the
   model right where the controller goes (the DAgger-like argument of Ross & Bagnell 2012,
   "Agnostic System Identification for Model-Based Reinforcement Learning");
3. the refitted weights are synced to the EnvRunners, whose
   :class:`~rlscale.algorithms.model_based.planning_module.PlanningModule` plans every step
   with CEM through the ensemble, propagating particles by TS-inf, on the env's observation
   cost (:mod:`rlscale.modules.planning.costs`), and acts with the plan's first action;
4. the new transitions join the store.

Given a Minari dataset (``--dataset``, ``dataset_dir``) the store holds its transitions from the
start and nothing is sampled for training: an iteration is step 2 alone (model fitting), and
greedy episodes in the env evaluate the controller every few iterations.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.core.learner.torch.torch_learner import TorchLearner
from ray.rllib.policy.sample_batch import SampleBatch
from ray.rllib.utils.metrics import (
    ENV_RUNNER_RESULTS,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
)

from rlscale.algorithms.common.offline import dataset_dir_problem, log_trained_transitions
from rlscale.algorithms.common.sampling import sample_env_steps, update_and_sync
from rlscale.algorithms.model_based.mpc import MPC, MPCConfig
from rlscale.algorithms.model_based.planning_module import ensemble_settings
from rlscale.algorithms.model_based.systems import action_interface
from rlscale.algorithms.model_based.transitions import (
    TransitionStore,
    transitions_from_dataset,
    transitions_from_episodes,
)
from rlscale.modules.dynamics.ensemble import bootstrap_indices, dynamics_optimizer

MODEL_LOSS = "model_loss"


class PETSConfig(MPCConfig):
    """PETS's defaults: a 5-member ensemble, CEM with TS-inf particles, one episode an iteration."""

    RLSCALE_KEYS: ClassVar[tuple[str, ...]] = (
        "ensemble",
        "random_warmup_steps",
        "model_updates",
        "model_batch_size",
        "model_weight_decay",
        "dataset_dir",
    )
    MODEL: ClassVar[str] = "ensemble"
    # A smaller CEM population than PETS's 400 (and narrower networks than its 200-unit
    # layers, ``hidden_sizes``) so that a control step stays near 0.1 s on one CPU core.
    PLANNER_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {
        **MPCConfig.PLANNER_DEFAULTS,
        "cem": {
            "population": 100,
            "elites": 10,
            "iterations": 3,
            "particles": 10,
            "propagation": "tsinf",
        },
        "mppi": {"samples": 100, "particles": 10, "propagation": "tsinf"},
    }
    ENSEMBLE_DEFAULTS: ClassVar[dict[str, Any]] = {"members": 5}
    """PETS's ensemble here, over ``EnsembleSettings``'s defaults; ``ensemble`` goes over it
    (the networks' width is ``hidden_sizes`` and ``activation``, as for every algorithm)."""

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or PETS)
        self.hidden_sizes = [128, 128]
        self.activation = "silu"
        self.ensemble: dict[str, Any] = {}
        """Overrides of ``ENSEMBLE_DEFAULTS`` (``EnsembleSettings`` fields)."""
        self.random_warmup_steps = 200
        # Gradient steps on the ensemble per iteration (minibatches drawn with replacement from
        # every transition so far): enough to fit a small data set well in the first
        # iterations, where PETS's 5 epochs would be a handful of steps.
        self.model_updates = 500
        self.model_batch_size = 256
        self.model_weight_decay = 5e-5
        self.lr = 1e-3
        self.planner = "cem"
        self.horizon = 30
        self.cold_start_rounds = 2
        self.dataset_dir: str | None = None
        """A Minari dataset's ``data`` folder: fit the ensemble on its transitions instead of
        sampling (set by ``--dataset``, which checks the dataset first)."""

    @property
    def _model_config_auto_includes(self) -> dict[str, Any]:
        return super()._model_config_auto_includes | {"ensemble": self.effective_ensemble()}

    def effective_ensemble(self) -> dict[str, Any]:
        """What the ensemble gets: ``ENSEMBLE_DEFAULTS``, ``ensemble``, the network width."""
        return {
            **self.ENSEMBLE_DEFAULTS,
            **dict(self.ensemble),
            "hidden_sizes": list(self.hidden_sizes),
            "activation": self.activation,
        }

    def get_default_learner_class(self) -> type[TorchLearner]:
        return PETSLearner

    def validate_model(self) -> None:
        """PETS learns its model: the ensemble's and its fitting's keys."""
        smallest = {"random_warmup_steps": 0, "model_updates": 1, "model_batch_size": 1}
        for key, least in smallest.items():
            value = getattr(self, key)
            if not isinstance(value, int) or value < least:
                self._value_error(f"{key} must be an integer of at least {least}, got {value!r}")
        if not self.model_weight_decay >= 0:
            self._value_error(f"model_weight_decay must be >= 0, got {self.model_weight_decay}")
        problem = dataset_dir_problem(self.dataset_dir)
        if problem:
            self._value_error(problem)
        for key in ("hidden_sizes", "activation"):
            if key in self.ensemble:
                self._value_error(f"set the ensemble's {key} with {key}, not inside ensemble")
        try:
            ensemble_settings(self.effective_ensemble())
        except (TypeError, ValueError) as exc:
            self._value_error(str(exc))


class PETSLearner(TorchLearner):
    """Fits the module's ensemble: NLL on bootstrapped minibatches, Adam with weight decay."""

    def configure_optimizers_for_module(self, module_id, config=None) -> None:
        ensemble = self.module[module_id].dynamics
        self.register_optimizer(
            module_id=module_id,
            optimizer=dynamics_optimizer(ensemble, config.lr, config.model_weight_decay),
            params=list(ensemble.parameters()),
            lr_or_lr_schedule=config.lr,
        )

    def fit_normalization(self, transitions: dict[str, np.ndarray]) -> None:
        """Set the ensemble's input/target statistics from every transition so far."""
        for module in self.module.values():
            ensemble = module.dynamics
            dtype = next(ensemble.parameters()).dtype
            ensemble.update_normalization(
                *(
                    torch.as_tensor(transitions[name], dtype=dtype, device=self._device)
                    for name in ("obs", "actions", "next_obs")
                )
            )

    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out):
        ensemble = self.module[module_id].dynamics
        rows = batch["obs"].shape[0]
        # Each member trains on its own resample of the minibatch (PETS's bootstrap).
        indices = bootstrap_indices(rows, ensemble.members, rows, device=batch["obs"].device)
        loss = ensemble.loss(
            batch["obs"][indices],
            batch["actions"][indices],
            batch["next_obs"][indices],
            member_batches=True,
        )
        self.metrics.log_value((module_id, MODEL_LOSS), loss.item(), window=1)
        return loss


class PETS(MPC):
    """Random warm-up, then sample with the planner, refit the ensemble, sync, repeat."""

    @classmethod
    def get_default_config(cls) -> PETSConfig:
        return PETSConfig()

    def setup(self, config) -> None:
        super().setup(config)
        self.transitions = TransitionStore()
        self._rng = np.random.default_rng(self.config.seed)
        env = gym.make(self.config.system_id, **dict(self.config.env_config or {}))
        self.planned_actions = action_interface(self.config.system_id, env.action_space)
        env.close()
        if self.config.dataset_dir:
            self.transitions.add(
                transitions_from_dataset(self.config.dataset_dir, self.planned_actions)
            )

    def training_step(self) -> None:
        if self.config.dataset_dir:
            self._fit_model()
            trained = self.config.model_updates * self.config.model_batch_size
            log_trained_transitions(self.metrics, trained, len(self.transitions))
            return
        self._sample_transitions()
        if len(self.transitions) > 0:
            self._fit_model()

    def _sample_transitions(self) -> None:
        """One iteration's env steps (random for the first ``random_warmup_steps``) -> store."""
        sampled = self.metrics.peek((ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), default=0)
        episodes = sample_env_steps(
            self,
            self.config.total_train_batch_size,
            random_actions=sampled < self.config.random_warmup_steps,
        )
        self.transitions.add(transitions_from_episodes(episodes, self.planned_actions))

    def _fit_model(self) -> None:
        """``model_updates`` minibatches drawn with replacement from every transition so far."""
        data = self.transitions.data
        batch_size, updates = self.config.model_batch_size, self.config.model_updates
        rows = self._rng.integers(len(data["obs"]), size=updates * batch_size)
        # The planning module is recurrent (its plan), so RLlib slices minibatches by
        # sequence: every transition is a sequence of one step.
        sampled = SampleBatch(
            {
                **{key: value[rows] for key, value in data.items()},
                SampleBatch.SEQ_LENS: np.ones(len(rows), dtype=np.int32),
            }
        )
        self.learner_group.foreach_learner(lambda learner: learner.fit_normalization(data))
        update_and_sync(self, sampled, batch_size)
