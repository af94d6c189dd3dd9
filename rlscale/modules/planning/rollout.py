"""Open-loop rollouts of batched action sequences through a dynamics model, with their cost.

Shared by the planners: iLQR/DDP roll out nominal and line-search trajectories, sampling
planners (CEM, MPPI) roll out their candidate sequences.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rlscale.modules.dynamics.base import DynamicsModel, predicted_next_state
from rlscale.modules.planning.base import StageCost, TerminalCost


@dataclass(frozen=True)
class Trajectory:
    """States ``[batch, H + 1, n]``, actions ``[batch, H, m]`` and total cost ``[batch]``."""

    states: Tensor
    actions: Tensor
    cost: Tensor


def rollout(
    state: Tensor,
    actions: Tensor,
    dynamics: DynamicsModel,
    cost: StageCost,
    terminal_cost: TerminalCost | None,
) -> Trajectory:
    """Roll ``actions [batch, H, m]`` out from ``state [batch, n]`` and sum the costs."""
    states = [state]
    for t in range(actions.shape[1]):
        states.append(model_step(dynamics, states[-1], actions[:, t]))
    return costed(torch.stack(states, dim=1), actions, cost, terminal_cost)


def model_step(dynamics: DynamicsModel, state: Tensor, action: Tensor) -> Tensor:
    """The model's next states, checked to be shaped like ``state``."""
    next_state = predicted_next_state(dynamics, state, action)
    if next_state.shape != state.shape:
        raise ValueError(
            "dynamics.predict must return next states shaped like the states "
            f"{tuple(state.shape)}; got {tuple(next_state.shape)}"
        )
    return next_state


def costed(
    states: Tensor, actions: Tensor, cost: StageCost, terminal_cost: TerminalCost | None
) -> Trajectory:
    """A trajectory with its total cost; every stage cost in one batched call."""
    batch, horizon, action_dim = actions.shape
    flat_states = states[:, :-1].reshape(batch * horizon, -1)
    stage = cost(flat_states, actions.reshape(batch * horizon, action_dim))
    if stage.shape != (batch * horizon,):
        raise ValueError(
            f"cost must return one value per row, [{batch * horizon}]; got {tuple(stage.shape)}"
        )
    total = stage.reshape(batch, horizon).sum(dim=1)
    if terminal_cost is not None:
        final = terminal_cost(states[:, -1])
        if final.shape != (batch,):
            raise ValueError(
                f"terminal_cost must return one value per row, [{batch}]; got {tuple(final.shape)}"
            )
        total = total + final
    return Trajectory(states, actions, total)
