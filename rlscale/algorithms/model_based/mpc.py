"""MPC: receding-horizon control with a given dynamics model; nothing is learned.

At every step the EnvRunners' :class:`~rlscale.algorithms.model_based.planning_module.
PlanningModule` plans ``horizon`` actions from the observed state with the env's analytic model
(:mod:`rlscale.algorithms.model_based.systems`) and applies the first (Mayne et al. 2000,
"Constrained model predictive control: Stability and optimality"; the iLQR planner of Tassa,
Erez & Todorov 2012, "Synthesis and stabilization of complex behaviors through online trajectory
optimization", warm-started from the shifted previous plan). A ``train`` iteration runs
episodes and reports their returns; the checkpoint holds the controller and evaluates like any
other policy.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.core.learner.torch.torch_learner import TorchLearner
from ray.rllib.core.rl_module.rl_module import RLModuleSpec

from rlscale.algorithms.common.config import RlscaleConfigMixin
from rlscale.algorithms.common.sampling import sample_env_steps
from rlscale.algorithms.model_based.model_checkpoints import learned_model
from rlscale.algorithms.model_based.planning_module import (
    PLANNER_SETTINGS,
    PlanningModule,
    planner_settings,
)
from rlscale.algorithms.model_based.systems import analytic_env_ids, analytic_system
from rlscale.envs.rllib import env_name_of


class MPCConfig(RlscaleConfigMixin, AlgorithmConfig):
    """Receding-horizon control on the env's analytic model."""

    RLSCALE_KEYS: ClassVar[tuple[str, ...]] = (
        "planner",
        "horizon",
        "planner_settings",
        "cold_start_rounds",
        "model_checkpoint",
    )

    MODEL: ClassVar[str] = "analytic"
    """The dynamics model the planner uses (``PlanningModule``'s ``model`` key)."""

    PLANNER_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {
        # One iLQR iteration per control step once warm, the real-time iteration scheme of
        # Diehl, Bock & Schloeder 2005 ("A real-time iteration scheme for nonlinear optimization
        # in optimal feedback control"): the shifted previous plan is already near-optimal, and
        # on Pendulum a second iteration changes no return by more than 1 while costing half
        # as much again. An episode's first step runs ``cold_start_rounds`` rounds so that the
        # first action follows a converged plan.
        "ilqr": {"max_iterations": 1},
        "ddp": {"max_iterations": 1},
        "cem": {"population": 300, "elites": 30, "iterations": 3},
        "mppi": {"samples": 300},
    }
    """This algorithm's settings for each planner, over the planner's own defaults; the user's
    ``planner_settings`` go over these."""

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or MPC)
        self.planner = "ilqr"
        self.horizon = 30
        self.planner_settings: dict[str, Any] = {}
        """Overrides of the planner's settings (see ``effective_planner_settings``)."""
        self.cold_start_rounds = 10
        self.model_checkpoint: str | None = None
        """A ``pets`` or ``sysid`` checkpoint of the same env: plan with its learned (identified)
        model instead of the analytic one."""
        # 200 env steps (one Pendulum episode) per iteration, sampled in the driver. Episodes
        # run on across iterations (RLlib's "complete_episodes" mode reseeds the env on every
        # call, which would replay one episode over and over).
        self.num_env_runners = 0
        self.num_envs_per_env_runner = 1
        self.train_batch_size_per_learner = 200
        # The module returns actions in the env's own units.
        self.normalize_actions = False

    @property
    def system_id(self) -> str | None:
        """The Gymnasium id of the env, whose analytic model the controller uses."""
        return env_name_of(self.env)

    def get_default_rl_module_spec(self) -> RLModuleSpec:
        if not self.model_checkpoint:
            return RLModuleSpec(module_class=PlanningModule, model_config=self.model_config)
        source = learned_model(self.model_checkpoint, self.system_id)
        # The checkpoint's model (kind and network), this config's planner; RLlib loads the
        # checkpoint's module state, the model's weights, before syncing to the EnvRunners.
        model = {
            "model": source.model_config["model"],
            "ensemble": source.model_config.get("ensemble", {}),
        }
        return RLModuleSpec(
            module_class=PlanningModule,
            model_config={**self.model_config, **model},
            load_state_path=str(source.module_dir),
        )

    def get_default_learner_class(self) -> type[TorchLearner]:
        return ModelHoldingLearner

    @property
    def _model_config_auto_includes(self) -> dict[str, Any]:
        return super()._model_config_auto_includes | {
            "system": self.system_id,
            "model": self.MODEL,
            "planner": self.planner,
            "horizon": self.horizon,
            "planner_settings": self.effective_planner_settings(),
            "cold_start_rounds": self.cold_start_rounds,
            "planner_seed": self.seed,
        }

    def validate(self) -> None:
        super().validate()
        self.validate_planner()
        self.validate_model()

    def validate_model(self) -> None:
        """The model to plan with: a usable ``model_checkpoint``, or the env's analytic model."""
        if self.model_checkpoint:
            try:
                learned_model(self.model_checkpoint, self.system_id)
            except ValueError as exc:
                self._value_error(str(exc))
        elif self.system_id is not None and analytic_system(self.system_id) is None:
            self._value_error(
                f"mpc needs a model of the env, and rlscale has an analytic model only of "
                f"{', '.join(analytic_env_ids())}; for {self.system_id}, set model_checkpoint "
                "to a pets checkpoint trained on it"
            )

    def validate_planner(self) -> None:
        """The planner's keys; the planner's own settings class checks ``planner_settings``."""
        if self.planner not in PLANNER_SETTINGS:
            self._value_error(
                f"unknown planner {self.planner!r}; choose one of {', '.join(PLANNER_SETTINGS)}"
            )
        if not isinstance(self.horizon, int) or self.horizon < 1:
            self._value_error(f"horizon must be a positive number of steps, got {self.horizon!r}")
        if not isinstance(self.cold_start_rounds, int) or self.cold_start_rounds < 1:
            self._value_error(f"cold_start_rounds must be at least 1, got {self.cold_start_rounds}")
        try:
            planner_settings(self.planner, self.effective_planner_settings())
        except (TypeError, ValueError) as exc:
            self._value_error(str(exc))

    def effective_planner_settings(self) -> dict[str, Any]:
        """``PLANNER_DEFAULTS`` of the chosen planner with the user's ``planner_settings`` over
        them (what the planner gets, over its own settings class's defaults)."""
        return {**self.PLANNER_DEFAULTS.get(self.planner, {}), **dict(self.planner_settings)}


class ModelHoldingLearner(TorchLearner):
    """Holds an MPC module whose model is given, not learned: nothing to optimize.

    The Learner still owns the module's state (checkpoints, syncing to the EnvRunners), as
    every RLlib algorithm's does; MPC's training step never asks it for an update.
    """

    def configure_optimizers_for_module(self, module_id, config=None) -> None:
        return None

    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out):
        raise NotImplementedError("MPC's model is given; it has no loss")


class MPC(Algorithm):
    """Runs episodes with the planning module and reports them; no updates."""

    @classmethod
    def get_default_config(cls) -> MPCConfig:
        return MPCConfig()

    def training_step(self) -> None:
        sample_env_steps(self, self.config.total_train_batch_size)
