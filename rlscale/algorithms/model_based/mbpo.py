"""MBPO: model-based policy optimization, SAC trained mostly on short rollouts of a learned model.

Janner, Fu, Zhang & Levine 2019, "When to Trust Your Model: Model-Based Policy Optimization",
https://arxiv.org/abs/1906.08253, Algorithm 2, on rlscale's SAC (:mod:`rlscale.algorithms.
value_based.sac`). Once ``num_steps_sampled_before_learning_starts`` random env steps are in
the real replay D_env, every ``training_step``:

1. SAC's policy acts in the env on the EnvRunners; the new transitions join D_env;
2. every ``model_train_interval`` env steps the Learner refits the probabilistic ensemble
   (:class:`~rlscale.modules.dynamics.ensemble.ProbabilisticEnsemble` with a reward head:
   ``model_updates`` Adam steps of the Gaussian NLL on bootstrapped minibatches of all of D_env)
   and keeps the ``elites`` members with the lowest held-out error;
3. for each new env step, ``rollouts_per_step`` branched rollouts of ``rollout_horizon`` steps
   start from states drawn uniformly from D_env, acting with the current (stochastic) policy,
   each step through a randomly drawn elite, ending where the env's known termination rule
   says (:mod:`rlscale.modules.dynamics.branched`); their transitions join the model replay
   D_model, which keeps the rollouts of the last ``model_retain_steps`` env steps;
4. SAC takes ``training_intensity / train_batch_size`` gradient steps per new env step (MBPO's
   G), each minibatch ``real_ratio`` from D_env and the rest from D_model.

``rollout_horizon`` is a number of steps, or MBPO's linear schedule ``[from_env_steps,
to_env_steps, first_horizon, last_horizon]``. The model's inputs are SAC's actions in [-1, 1]
(as the replay records them), so the rollouts act exactly as the policy does. Only the Learner
holds the model (the EnvRunners' inference-only module has just the policy); checkpoints carry
it with the rest of the module.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.utils.metrics import LEARNER_RESULTS, TIMERS

from rlscale.algorithms.common.replay import TRANSITION_COLUMNS, TransitionReplay
from rlscale.algorithms.common.settings import settings_from
from rlscale.algorithms.value_based.sac import SAC, SACConfig, SACLearner, SACTrainModule
from rlscale.envs.rllib import env_name_of
from rlscale.modules.dynamics.branched import branched_rollouts
from rlscale.modules.dynamics.ensemble import (
    EnsembleSettings,
    FitSettings,
    ProbabilisticEnsemble,
    dynamics_optimizer,
    fit_dynamics,
)
from rlscale.modules.dynamics.terminations import termination_rule

MODEL_FIT_TIMER = "model_fit"
MODEL_ROLLOUT_TIMER = "model_rollouts"
ROLLOUT_TO_REPLAY = dict(
    zip(("obs", "actions", "rewards", "next_obs", "terminateds"), TRANSITION_COLUMNS, strict=True)
)
"""``branched_rollouts``' columns -> the replay's (RLlib's column names)."""


class MBPOConfig(SACConfig):
    """SAC's config with MBPO's model, rollouts and update ratio (the paper's defaults)."""

    RLSCALE_KEYS: ClassVar[tuple[str, ...]] = (
        "ensemble",
        "elites",
        "model_train_interval",
        "model_updates",
        "model_batch_size",
        "model_lr",
        "model_weight_decay",
        "model_holdout_fraction",
        "rollouts_per_step",
        "rollout_horizon",
        "model_retain_steps",
        "real_ratio",
    )
    ENSEMBLE_DEFAULTS: ClassVar[dict[str, Any]] = {"members": 7, "predict_reward": True}
    """MBPO's ensemble, over ``EnsembleSettings``'s defaults (4 x 200 SiLU); ``ensemble`` goes
    over it."""

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or MBPO)
        self.ensemble: dict[str, Any] = {}
        """Overrides of ``ENSEMBLE_DEFAULTS`` (``EnsembleSettings`` fields)."""
        self.elites = 5
        self.model_train_interval = 250
        # Adam steps per refit: MBPO trains to a plateau of the held-out loss; a fixed count
        # keeps each refit's cost known.
        self.model_updates = 500
        self.model_batch_size = 256
        self.model_lr = 1e-3
        self.model_weight_decay = 5e-5
        self.model_holdout_fraction = 0.1
        self.rollouts_per_step = 400
        self.rollout_horizon: int | list[int] = 1
        self.model_retain_steps = 1_000
        self.real_ratio = 0.05
        self.training_intensity = 20 * self.train_batch_size_per_learner  # G = 20

    def effective_ensemble(self) -> EnsembleSettings:
        return settings_from(
            EnsembleSettings, {**self.ENSEMBLE_DEFAULTS, **dict(self.ensemble)}, "ensemble"
        )

    @property
    def _model_config_auto_includes(self) -> dict[str, Any]:
        ensemble = self.effective_ensemble()
        return super()._model_config_auto_includes | {"ensemble": dataclasses.asdict(ensemble)}

    @property
    def env_id(self) -> str | None:
        return env_name_of(self.env)

    def longest_rollout(self) -> int:
        horizon = self.rollout_horizon
        return horizon if isinstance(horizon, int) else max(horizon[2:])

    def model_replay_capacity(self) -> int:
        return self.rollouts_per_step * self.longest_rollout() * self.model_retain_steps

    def rollout_horizon_at(self, env_steps: int) -> int:
        """The rollout length after ``env_steps`` (MBPO's linear schedule, rounded down)."""
        if isinstance(self.rollout_horizon, int):
            return self.rollout_horizon
        start, end, first, last = self.rollout_horizon
        progress = min(max((env_steps - start) / max(end - start, 1), 0.0), 1.0)
        return int(first + progress * (last - first))

    def fit_settings(self) -> FitSettings:
        return FitSettings(
            steps=self.model_updates,
            batch_size=self.model_batch_size,
            learning_rate=self.model_lr,
            weight_decay=self.model_weight_decay,
            holdout_fraction=self.model_holdout_fraction,
        )

    def get_default_rl_module_spec(self) -> RLModuleSpec:
        return RLModuleSpec(module_class=MBPOModule)

    def get_default_learner_class(self) -> type[SACLearner]:
        return MBPOLearner

    def validate(self) -> None:
        super().validate()
        self._validate_model()
        self._validate_rollouts()

    def _validate_model(self) -> None:
        try:
            ensemble = self.effective_ensemble()
            self.fit_settings()
        except (TypeError, ValueError) as exc:
            self._value_error(str(exc))
        if not ensemble.predict_reward:
            self._value_error("MBPO's rollouts need the model's rewards; keep predict_reward on")
        if not (isinstance(self.elites, int) and 1 <= self.elites <= ensemble.members):
            self._value_error(
                f"elites must be an integer in [1, members={ensemble.members}], got {self.elites!r}"
            )
        if self.elites < ensemble.members and not self.model_holdout_fraction > 0:
            self._value_error(
                "choosing elites ranks the members on held-out transitions; set "
                "model_holdout_fraction > 0, or elites equal to the ensemble's members"
            )
        if self.env_id is not None:
            try:
                termination_rule(self.env_id)
            except ValueError as exc:
                self._value_error(str(exc))

    def _validate_rollouts(self) -> None:
        counts = (
            "model_train_interval",
            "model_updates",
            "rollouts_per_step",
            "model_retain_steps",
        )
        for key in counts:
            value = getattr(self, key)
            if not isinstance(value, int) or value < 1:
                self._value_error(f"{key} must be an integer of at least 1, got {value!r}")
        horizon = self.rollout_horizon
        schedule_ok = (
            isinstance(horizon, (list, tuple))
            and len(horizon) == 4
            and all(isinstance(value, int) for value in horizon)
            and 0 <= horizon[0] <= horizon[1]
            and min(horizon[2:]) >= 1
        )
        if not (isinstance(horizon, int) and horizon >= 1) and not schedule_ok:
            self._value_error(
                f"rollout_horizon must be a number of steps >= 1 or a schedule [from_env_steps, "
                f"to_env_steps, first_horizon, last_horizon] of integers, got {horizon!r}"
            )
        if not 0 <= self.real_ratio <= 1:
            self._value_error(f"real_ratio must lie in [0, 1], got {self.real_ratio}")


class MBPOModule(SACTrainModule):
    """SAC's module plus the dynamics ensemble, which only the Learner builds."""

    def setup(self) -> None:
        super().setup()
        if self.inference_only:
            return
        observation_dim = int(np.prod(self.observation_space.shape))
        settings = settings_from(EnsembleSettings, self.model_config["ensemble"], "ensemble")
        self.dynamics = ProbabilisticEnsemble(observation_dim, self.action_dim, settings)

    def get_non_inference_attributes(self) -> list[str]:
        return [*super().get_non_inference_attributes(), "dynamics"]


class MBPOLearner(SACLearner):
    """SAC's Learner, which also fits the module's ensemble and rolls it out."""

    def build(self) -> None:
        super().build()
        self._model_optimizer: torch.optim.Optimizer | None = None
        self._model_generator = torch.Generator().manual_seed(int(self.config.seed or 0))

    def _ensemble(self) -> ProbabilisticEnsemble:
        return self.module[DEFAULT_MODULE_ID].unwrapped().dynamics

    def _tensors(self, arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        return {
            key: torch.as_tensor(np.asarray(value), dtype=torch.float32, device=self._device)
            for key, value in arrays.items()
        }

    def fit_model(self, transitions: dict[str, np.ndarray]) -> dict[str, float]:
        """Refit the ensemble on ``transitions`` (replay columns) and choose its elites."""
        ensemble, config = self._ensemble(), self.config
        if self._model_optimizer is None:  # kept across refits, with its moment estimates
            self._model_optimizer = dynamics_optimizer(
                ensemble, config.model_lr, config.model_weight_decay
            )
        data = self._tensors(transitions)
        result = fit_dynamics(
            ensemble,
            data[Columns.OBS].flatten(1),
            data[Columns.ACTIONS].flatten(1),
            data[Columns.NEXT_OBS].flatten(1),
            data[Columns.REWARDS],
            settings=config.fit_settings(),
            generator=self._model_generator,
            optimizer=self._model_optimizer,
        )
        metrics = {"model_loss": float(result.train_losses[-5:].mean())}
        if result.holdout is not None:
            ensemble.set_elites(result.best_members(config.elites))
            metrics["model_holdout_mse"] = float(result.holdout.mse[ensemble.elites].mean())
        return metrics

    def model_rollouts(self, start_obs: np.ndarray, horizon: int) -> dict[str, np.ndarray]:
        """Branched rollouts of the current policy from ``start_obs``, as replay columns."""
        module = self.module[DEFAULT_MODULE_ID].unwrapped()

        def policy(obs: torch.Tensor) -> torch.Tensor:
            actions, _ = module.policy(obs).rsample_and_logp()
            return actions

        rollouts = branched_rollouts(
            module.dynamics,
            policy,
            self._tensors({"obs": start_obs})["obs"].flatten(1),
            horizon,
            termination_rule(self.config.env_id),
            self._model_generator,
        )
        return {
            ROLLOUT_TO_REPLAY[column]: values.cpu().numpy() for column, values in rollouts.items()
        }


class MBPO(SAC):
    """SAC's sampling and updates, with the model refit and rolled out before the updates."""

    @classmethod
    def get_default_config(cls) -> MBPOConfig:
        return MBPOConfig()

    def setup(self, config) -> None:
        super().setup(config)
        self.model_replay = TransitionReplay(
            self.config.model_replay_capacity(), seed=(self.config.seed or 0) + 1
        )
        self._steps_since_model_fit: int | None = None  # None: never fitted

    def _before_updates(self, sampled_now: int) -> None:
        steps = self._steps_since_model_fit
        if steps is None or steps + sampled_now >= self.config.model_train_interval:
            self._fit_model()
            self._steps_since_model_fit = 0
        else:
            self._steps_since_model_fit = steps + sampled_now
        self._roll_out_model(sampled_now)

    def _fit_model(self) -> None:
        real = self.local_replay_buffer.stored()
        with self.metrics.log_time((TIMERS, MODEL_FIT_TIMER)):
            metrics = self._on_the_learner(lambda learner: learner.fit_model(real))
        self.metrics.log_dict(metrics, key=(LEARNER_RESULTS, DEFAULT_MODULE_ID), window=1)

    def _roll_out_model(self, sampled_now: int) -> None:
        starts = self.local_replay_buffer.sample(self.config.rollouts_per_step * sampled_now)
        horizon = self.config.rollout_horizon_at(self._env_steps_sampled())
        with self.metrics.log_time((TIMERS, MODEL_ROLLOUT_TIMER)):
            rollouts = self._on_the_learner(
                lambda learner: learner.model_rollouts(starts[Columns.OBS], horizon)
            )
        self.model_replay.add(rollouts)
        self.metrics.log_dict(
            {"model_replay_size": len(self.model_replay), "rollout_horizon": horizon},
            key=(LEARNER_RESULTS, DEFAULT_MODULE_ID),
            window=1,
        )

    def _on_the_learner(self, call: Callable[[MBPOLearner], Any]) -> Any:
        """``call``'s result on the Learner that holds the model (the first; MBPO's model is
        not data-parallel)."""
        return next(iter(self.learner_group.foreach_learner(call))).get()

    def _replayed_transitions(self, rows: int) -> dict[str, Any]:
        """Each minibatch: ``real_ratio`` of its rows from D_env, the rest from D_model."""
        batch = self.config.total_train_batch_size
        updates = rows // batch
        real_rows = round(self.config.real_ratio * batch)
        if len(self.model_replay) == 0 or real_rows == batch:
            return self.local_replay_buffer.sample(rows)
        real = self.local_replay_buffer.sample(updates * real_rows)
        model = self.model_replay.sample(updates * (batch - real_rows))
        return {
            column: np.concatenate(
                [
                    real[column].reshape(updates, real_rows, *real[column].shape[1:]),
                    model[column]
                    .reshape(updates, batch - real_rows, *model[column].shape[1:])
                    .astype(real[column].dtype, copy=False),
                ],
                axis=1,
            ).reshape(rows, *real[column].shape[1:])
            for column in real
        }
