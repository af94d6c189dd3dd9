"""What a planner needs to know of each env: its analytic model, its cost, its actions.

Two kinds of model plan on an env:

- an **analytic model** (:class:`AnalyticSystem`): rlscale's equations of the env (Pendulum-v1,
  CartPole-v1 and the continuous CartPoles), with a cost on the model's state and a map from an
  observation to that state. ``mpc`` controls with it; ``sysid`` identifies its parameters.
- a **learned model** of the observations (``pets``): the state is the observation itself, and
  the cost is the env's observation cost (:mod:`rlscale.modules.planning.costs`).

Envs with Discrete actions are plannable only when they declare the force each action applies
(:data:`DISCRETE_FORCES`): CartPole-v1's two actions push with -1 and +1 times its force
magnitude, so a planner chooses a force in [-1, 1] and the env gets the action nearest to it.
An env with Discrete actions and no declaration (Taxi, Acrobot) is refused.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from rlscale.envs.continuous_cartpole import CARTPOLE_V1
from rlscale.modules.dynamics.cartpole import CartPoleModel
from rlscale.modules.dynamics.pendulum import (
    PendulumModel,
    pendulum_cost,
    pendulum_state_from_observation,
    pendulum_terminal_cost,
)
from rlscale.modules.planning.base import StageCost, TerminalCost
from rlscale.modules.planning.costs import OBSERVATION_COSTS, observation_cost

DISCRETE_FORCES: dict[str, tuple[float, ...]] = {"CartPole-v1": (-1.0, 1.0)}
"""Envs with Discrete actions -> the continuous action (force command) each one applies."""


def observation_is_state(observation: Tensor) -> Tensor:
    return observation


@dataclass(frozen=True)
class AnalyticSystem:
    """rlscale's equations of one env, and the cost to plan them with."""

    make_model: Callable[[], nn.Module]
    cost: StageCost
    terminal_cost: TerminalCost | None
    state_from_observation: Callable[[Tensor], Tensor] = observation_is_state
    description: str = ""
    make_guess: Callable[[], nn.Module] | None = None
    """The model with its learnable physical parameters at an uninformed first guess, for
    system identification; None when the model has none to identify."""
    true_model: Callable[[gym.Env], nn.Module] | None = None
    """The model with a live env's own constants (to report identification errors)."""


def _cartpole_guess() -> CartPoleModel:
    """An uninformed cart-pole: Earth's gravity, a 1 m half-pole, equal masses, 5 N per kg."""
    return CartPoleModel(gravity=9.81, length=1.0, mass_ratio=0.5, force_per_mass=5.0)


def _cartpole_of(env: gym.Env) -> CartPoleModel:
    base = env.unwrapped
    return CartPoleModel.from_physical(
        gravity=base.gravity,
        masscart=base.masscart,
        masspole=base.masspole,
        length=base.length,
        force_mag=base.force_mag,
        tau=base.tau,
    )


def _cartpole_system(env_id: str) -> AnalyticSystem:
    costs = observation_cost(env_id)
    return AnalyticSystem(
        make_model=lambda: CartPoleModel.from_physical(**dataclasses.asdict(CARTPOLE_V1)),
        cost=costs.stage,
        terminal_cost=costs.terminal,
        description=f"CartPole-v1's equations; cost: {costs.description}",
        make_guess=_cartpole_guess,
        true_model=_cartpole_of,
    )


ANALYTIC_SYSTEMS: dict[str, AnalyticSystem] = {
    "Pendulum-v1": AnalyticSystem(
        make_model=PendulumModel,
        cost=pendulum_cost,
        terminal_cost=pendulum_terminal_cost,
        state_from_observation=pendulum_state_from_observation,
        description="Gymnasium's Pendulum-v1 equations; cost: minus its reward",
    ),
    **{
        env_id: _cartpole_system(env_id)
        for env_id in (
            "CartPole-v1",
            "rlscale/ContinuousCartPole-v0",
            "rlscale/ContinuousCartPoleSwingUp-v0",
        )
    },
}
"""Gymnasium id -> rlscale's analytic model of it."""


def analytic_system(env_id: str) -> AnalyticSystem | None:
    return ANALYTIC_SYSTEMS.get(env_id)


def analytic_env_ids() -> list[str]:
    return sorted(ANALYTIC_SYSTEMS)


def identifiable_env_ids() -> list[str]:
    """Envs whose analytic model has physical parameters to identify."""
    return sorted(env for env, system in ANALYTIC_SYSTEMS.items() if system.make_guess)


def observation_cost_env_ids() -> list[str]:
    """Envs a learned observation model can plan on (those with an observation cost)."""
    return sorted(OBSERVATION_COSTS)


@dataclass(frozen=True)
class ActionInterface:
    """How planned actions ``[batch, action_dim]`` (in ``[low, high]``) reach the env."""

    action_dim: int
    low: Tensor
    high: Tensor
    discrete_forces: tuple[float, ...] | None = None

    def env_action(self, planned: Tensor) -> Tensor:
        """Planned actions -> env actions: themselves, or the nearest declared force's index."""
        if self.discrete_forces is None:
            return planned.to(torch.float32)
        forces = torch.tensor(self.discrete_forces, dtype=planned.dtype, device=planned.device)
        return (planned[:, :1] - forces).abs().argmin(dim=1)


def action_interface(env_id: str, action_space: gym.Space) -> ActionInterface:
    """The planner's action box for ``env_id``; a ValueError when a planner cannot act there."""
    if isinstance(action_space, gym.spaces.Box):
        low = torch.as_tensor(np.asarray(action_space.low, dtype=np.float64).reshape(-1))
        high = torch.as_tensor(np.asarray(action_space.high, dtype=np.float64).reshape(-1))
        if not bool(torch.isfinite(low).all() and torch.isfinite(high).all()):
            raise ValueError(
                f"{env_id}'s actions are unbounded; the planners need a bounded action box"
            )
        return ActionInterface(action_dim=low.numel(), low=low, high=high)
    forces = DISCRETE_FORCES.get(env_id)
    if isinstance(action_space, gym.spaces.Discrete) and forces is not None:
        return ActionInterface(
            action_dim=1,
            low=torch.tensor([min(forces)], dtype=torch.float64),
            high=torch.tensor([max(forces)], dtype=torch.float64),
            discrete_forces=forces,
        )
    raise ValueError(cannot_plan_actions(env_id, action_space))


def cannot_plan_actions(env_id: str, action_space: gym.Space) -> str:
    return (
        f"a planner chooses continuous actions, and {env_id}'s {action_space} actions declare "
        f"no continuous counterpart (only {', '.join(sorted(DISCRETE_FORCES))} do, among "
        "Discrete envs); use an env with Box actions"
    )


def plannable_actions(env_id: str, action_space: gym.Space) -> str | None:
    """None when a planner can act on ``env_id``, else why not."""
    try:
        action_interface(env_id, action_space)
    except ValueError as exc:
        return str(exc)
    return None
