"""SysID: identify a physical model's parameters from transitions, then control with it.

The first iteration steps the env with uniformly random actions for ``sysid_transitions``
steps and fits the identifiable parameters of rlscale's physical model of the env (for the
cart-poles: gravity, pole half-length, the pole's share of the mass and force per unit mass;
see :mod:`rlscale.modules.dynamics.cartpole`) by least squares on the one-step prediction error
(the prediction-error method, Ljung 1999, "System Identification: Theory for the User", Ch. 7;
:func:`rlscale.modules.dynamics.sysid.fit_physical_parameters`). The fit starts from an
uninformed guess, runs on the Learner (its device), and the identified model is synced to the
EnvRunners, which from then on act by receding-horizon control on it, as ``mpc`` does with the
true model. Each iteration reports the identified parameters and their relative errors against
the env's own constants (``sysid/<name>``, ``sysid/<name>_error``); ``rlscale evaluate`` prints
them.

Given a Minari dataset (``--dataset``, ``dataset_dir``) the first iteration identifies the
parameters from every transition of the dataset instead (``sysid_transitions`` is then unused),
and no iteration samples the env for training: greedy episodes in the env evaluate the
controller every few iterations.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch

from rlscale.algorithms.common.offline import dataset_dir_problem, log_trained_transitions
from rlscale.algorithms.common.sampling import sample_env_steps
from rlscale.algorithms.common.settings import settings_from
from rlscale.algorithms.model_based.mpc import MPC, ModelHoldingLearner, MPCConfig
from rlscale.algorithms.model_based.systems import (
    ActionInterface,
    action_interface,
    analytic_system,
)
from rlscale.algorithms.model_based.transitions import (
    transitions_from_dataset,
    transitions_from_episodes,
)
from rlscale.modules.dynamics.sysid import IdentificationSettings, fit_physical_parameters

SYSID_METRICS = "sysid"


class SysIdConfig(MPCConfig):
    """MPC on a physical model whose parameters are identified from random transitions."""

    RLSCALE_KEYS: ClassVar[tuple[str, ...]] = ("sysid_transitions", "sysid_settings", "dataset_dir")
    MODEL: ClassVar[str] = "physical"

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or SysId)
        self.sysid_transitions = 2_000
        self.sysid_settings: dict[str, Any] = {}
        """``IdentificationSettings`` fields over their defaults (optimizer, iterations, ...)."""
        self.dataset_dir: str | None = None
        """A Minari dataset's ``data`` folder: identify from its transitions instead of random
        ones (set by ``--dataset``, which checks the dataset first)."""
        # The cart-poles need no long plans to balance: 10 steps.
        self.horizon = 10
        self.cold_start_rounds = 5

    def get_default_learner_class(self) -> type[ModelHoldingLearner]:
        return SysIdLearner

    def fit_settings(self) -> IdentificationSettings:
        return settings_from(IdentificationSettings, self.sysid_settings, "sysid_settings")

    def validate(self) -> None:
        super().validate()
        if not isinstance(self.sysid_transitions, int) or self.sysid_transitions < 10:
            self._value_error(
                f"sysid_transitions must be an integer of at least 10, got "
                f"{self.sysid_transitions!r}"
            )
        try:
            self.fit_settings()
        except (TypeError, ValueError) as exc:
            self._value_error(str(exc))
        problem = dataset_dir_problem(self.dataset_dir)
        if problem:
            self._value_error(problem)
        system = analytic_system(self.system_id) if self.system_id else None
        if system is not None and system.make_guess is None:
            self._value_error(
                f"sysid identifies physical parameters, and rlscale's model of "
                f"{self.system_id} has none"
            )


class SysIdLearner(ModelHoldingLearner):
    """Holds the physical model and fits its parameters when the algorithm asks."""

    def identify(
        self, transitions: dict[str, np.ndarray], settings: IdentificationSettings
    ) -> dict:
        module = next(iter(self.module.values()))
        model = module.dynamics
        dtype = next(model.parameters()).dtype

        def tensor(name: str) -> torch.Tensor:
            return torch.as_tensor(transitions[name], dtype=dtype, device=self._device)

        report = fit_physical_parameters(
            model, tensor("obs"), tensor("actions"), tensor("next_obs"), settings=settings
        )
        return dataclasses.asdict(report)


class SysId(MPC):
    """Identifies the model in the first iteration, then controls with it (``MPC``)."""

    @classmethod
    def get_default_config(cls) -> SysIdConfig:
        return SysIdConfig()

    def setup(self, config) -> None:
        super().setup(config)
        self.identified: dict[str, Any] | None = None

    def training_step(self) -> None:
        if self.identified is None:
            self.identified = self._identify()
        for name, value in self.identified.items():
            self.metrics.log_value((SYSID_METRICS, name), value, window=1)
        if not self.config.dataset_dir:  # from a dataset nothing is sampled for training
            super().training_step()

    def _identify(self) -> dict[str, float]:
        """Transitions (the dataset's, or random ones) -> fitted parameters on the Learner ->
        synced to the EnvRunners."""
        env = gym.make(self.config.system_id, **dict(self.config.env_config or {}))
        try:
            actions = action_interface(self.config.system_id, env.action_space)
            truth = analytic_system(self.config.system_id).true_model(env)
        finally:
            env.close()
        if self.config.dataset_dir:
            transitions = transitions_from_dataset(self.config.dataset_dir, actions)
            size = len(transitions["obs"])
            log_trained_transitions(self.metrics, trained=size, dataset_size=size)
        else:
            transitions = self._random_transitions(actions)
        settings = self.config.fit_settings()
        # One Learner holds the model (sysid is not data-parallel): its result is the fit.
        result = next(
            iter(
                self.learner_group.foreach_learner(
                    lambda learner: learner.identify(transitions, settings)
                )
            )
        )
        self.env_runner_group.sync_weights(
            from_worker_or_learner_group=self.learner_group, inference_only=True
        )
        report = result.get()
        return identification_metrics(
            report["parameters"], truth.identifiable_parameters(), report["final_loss"]
        )

    def _random_transitions(self, actions: ActionInterface) -> dict[str, np.ndarray]:
        """``sysid_transitions`` env steps with uniformly random actions."""
        episodes = sample_env_steps(self, self.config.sysid_transitions, random_actions=True)
        return transitions_from_episodes(episodes, actions)


def identification_metrics(
    identified: dict[str, float], truth: dict[str, float], final_loss: float
) -> dict[str, float]:
    """Each identified parameter, its relative error against the truth, and the fit's loss."""
    metrics = {"fit_loss": final_loss}
    for name, value in identified.items():
        metrics[name] = value
        metrics[f"{name}_error"] = abs(value - truth[name]) / abs(truth[name])
    return metrics


def describe_identified_model(module: Any, env: gym.Env) -> str | None:
    """`rlscale evaluate`'s report: identified against true parameters, one line each."""
    system = analytic_system(env.spec.id if env.spec else "")
    if system is None or system.true_model is None:
        return None
    identified = module.dynamics.identifiable_parameters()
    truth = system.true_model(env).identifiable_parameters()
    lines = ["identified parameters (relative error against the env's constants):"]
    for name, value in identified.items():
        error = abs(value - truth[name]) / abs(truth[name])
        lines.append(f"  {name:<15} {value:10.5g}   true {truth[name]:10.5g}   error {error:.2e}")
    return "\n".join(lines)
