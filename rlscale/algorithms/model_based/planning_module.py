"""The RLModule of the model-based algorithms: a dynamics model and a planner that acts with it.

Its forward pass *is* receding-horizon control: each call plans from the observed states with
the module's dynamics model and returns the plan's first actions. The plan of every episode is
the module's recurrent state (RLlib's ``STATE_IN`` / ``STATE_OUT``), so RLlib's connectors keep
one plan per episode, start each episode without one (the planner then runs its cold-start
rounds) and warm-start every later step from the shifted previous plan, on any number of
EnvRunners and vectorized envs.

The dynamics model is a submodule: its parameters (the identified constants of ``sysid``, the
ensemble of ``pets``) are the module's weights, trained by the Learner and synced to the
EnvRunners like any policy's.

``model_config`` keys:

- ``system``: the env's Gymnasium id (:mod:`rlscale.algorithms.model_based.systems`);
- ``model``: ``"analytic"`` (rlscale's equations of the env, planning on their state),
  ``"physical"`` (the same equations with their physical parameters at a first guess, to be
  identified: ``sysid``) or ``"ensemble"`` (a probabilistic ensemble of the observations, PETS;
  planned on the env's observation cost, ending in the LQR cost-to-go of the ensemble at the
  task's balance point where the cost declares one);
- ``ensemble``: ``EnsembleSettings`` fields for the ensemble;
- ``planner``: ``"ilqr"``, ``"ddp"``, ``"cem"`` or ``"mppi"``;
- ``horizon``: planned steps;
- ``planner_settings``: fields of the planner's settings (``ILQRSettings``, ``CEMSettings``,
  ``MPPISettings``), over the planner's defaults;
- ``cold_start_rounds``: planner runs at the first step of an episode;
- ``planner_seed``: seeds the sampling planners' generator.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.torch import TorchRLModule
from torch import Tensor, nn

from rlscale.algorithms.common.settings import settings_from
from rlscale.algorithms.model_based.systems import (
    action_interface,
    analytic_system,
    observation_is_state,
)
from rlscale.modules.dynamics.ensemble import EnsembleSettings, ProbabilisticEnsemble
from rlscale.modules.planning.base import Planner, StageCost, TerminalCost
from rlscale.modules.planning.cem import CEMPlanner, CEMSettings
from rlscale.modules.planning.costs import observation_cost
from rlscale.modules.planning.ilqr import ILQRPlanner, ILQRSettings
from rlscale.modules.planning.lqr_terminal import LQRTerminalCost
from rlscale.modules.planning.mpc import receding_horizon_plan, shifted
from rlscale.modules.planning.mppi import MPPIPlanner, MPPISettings

PLAN = "plan"
"""Recurrent state: the episode's current plan, ``[batch, horizon, action_dim]``."""
HAS_PLAN = "has_plan"
"""Recurrent state: 1 once the episode has a plan, 0 at its start, ``[batch, 1]``."""

PLANNER_SETTINGS: dict[str, type] = {
    "ilqr": ILQRSettings,
    "ddp": ILQRSettings,
    "cem": CEMSettings,
    "mppi": MPPISettings,
}
"""Planner names ``model_config["planner"]`` accepts -> their settings class."""
MODELS = ("analytic", "physical", "ensemble")


def planner_settings(planner: str, overrides: dict[str, Any]):
    """The planner's settings with ``overrides``; an unknown key names the valid ones."""
    if planner not in PLANNER_SETTINGS:
        raise ValueError(
            f"unknown planner {planner!r}; choose one of {', '.join(PLANNER_SETTINGS)}"
        )
    return settings_from(PLANNER_SETTINGS[planner], overrides, "planner_settings")


def ensemble_settings(overrides: dict[str, Any]) -> EnsembleSettings:
    return settings_from(EnsembleSettings, overrides, "ensemble")


class PlanningModule(TorchRLModule):
    def setup(self) -> None:
        config = self.model_config
        env_id = config["system"]
        self.actions = action_interface(env_id, self.action_space)
        self.horizon = int(config["horizon"])
        self.cold_start_rounds = int(config["cold_start_rounds"])
        if config["model"] in ("analytic", "physical"):
            system = analytic_system(env_id)
            if system is None:
                raise ValueError(f"rlscale has no analytic model of {env_id!r}")
            if config["model"] == "physical" and system.make_guess is None:
                raise ValueError(f"rlscale's model of {env_id!r} has no parameters to identify")
            make = system.make_model if config["model"] == "analytic" else system.make_guess
            self.dynamics = make()
            cost, terminal_cost = system.cost, system.terminal_cost
            self.state_from_observation = system.state_from_observation
        elif config["model"] == "ensemble":
            self.dynamics = self._ensemble(config)
            costs = observation_cost(env_id)
            cost, terminal_cost = costs.stage, costs.terminal
            if costs.balance_point is not None:
                terminal_cost = LQRTerminalCost(
                    self.dynamics, cost, *costs.balance_point, fallback=costs.terminal
                )
            self.state_from_observation = observation_is_state
        else:
            raise ValueError(f"unknown model {config['model']!r}; choose one of {MODELS}")
        # Plan in the model's own precision; a model without parameters (analytic physics)
        # plans in float64, so that iLQR's line search sees small cost changes.
        first_parameter = next(self.dynamics.parameters(), None)
        self.planning_dtype = torch.float64 if first_parameter is None else first_parameter.dtype
        self.planner = self._planner(config, cost, terminal_cost)

    def _ensemble(self, config: dict[str, Any]) -> nn.Module:
        observation_dim = int(np.prod(self.observation_space.shape))
        return ProbabilisticEnsemble(
            observation_dim, self.actions.action_dim, ensemble_settings(config["ensemble"])
        )

    def _planner(
        self, config: dict[str, Any], cost: StageCost, terminal_cost: TerminalCost | None
    ) -> Planner:
        name = config["planner"]
        settings = planner_settings(name, dict(config["planner_settings"]))
        low = self.actions.low.to(self.planning_dtype)
        high = self.actions.high.to(self.planning_dtype)
        if name in ("ilqr", "ddp"):
            return ILQRPlanner(
                dynamics=self.dynamics,
                cost=cost,
                horizon=self.horizon,
                action_dim=self.actions.action_dim,
                terminal_cost=terminal_cost,
                action_low=low,
                action_high=high,
                method=name,
                settings=settings,
            )
        generator = torch.Generator().manual_seed(int(config.get("planner_seed") or 0))
        sampling_planner = CEMPlanner if name == "cem" else MPPIPlanner
        return sampling_planner(
            self.dynamics,
            cost,
            self.horizon,
            terminal_cost=terminal_cost,
            action_low=low,
            action_high=high,
            settings=settings,
            generator=generator,
        )

    def is_stateful(self) -> bool:
        return True

    def get_initial_state(self) -> dict[str, Tensor]:
        return {
            PLAN: torch.zeros(self.horizon, self.actions.action_dim),
            HAS_PLAN: torch.zeros(1),
        }

    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        observations = batch[Columns.OBS]
        # On EnvRunners a stateful module's batch carries a time axis of one step.
        timed = observations.dim() == 3
        if timed:
            observations = observations[:, 0]
        state = self.state_from_observation(observations.to(self.planning_dtype))
        plans = self._plans(state, batch[Columns.STATE_IN])
        actions = self.actions.env_action(plans[:, 0])
        return {
            Columns.ACTIONS: actions[:, None] if timed else actions,
            Columns.STATE_OUT: {
                PLAN: plans.to(torch.float32),
                HAS_PLAN: torch.ones(plans.shape[0], 1),
            },
        }

    def _plans(self, state: Tensor, recurrent: dict[str, Tensor]) -> Tensor:
        """Each row's new plan: warm-started where the episode has one, cold-started elsewhere."""
        previous = recurrent[PLAN].to(state.dtype)
        has_plan = recurrent[HAS_PLAN][:, 0] > 0.5
        plans = torch.empty_like(previous)
        with torch.no_grad():
            for rows, warm_start in (
                (has_plan, shifted(previous[has_plan])),
                (~has_plan, None),
            ):
                if bool(rows.any()):
                    plans[rows] = receding_horizon_plan(
                        self.planner, state[rows], warm_start, self.cold_start_rounds
                    )[0]
        return plans

    def _forward_train(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        # The Learner fits the dynamics model from transitions; it never acts.
        return {}
