"""What every planner takes and returns.

A planner minimizes, for each start state ``x_0`` of a batch, the finite-horizon cost

    J(u_0 .. u_{H-1}) = sum_{t<H} cost(x_t, u_t) + terminal_cost(x_H),  x_{t+1} = f(x_t, u_t),

where ``f`` is a ``DynamicsModel``. Costs are batched like the models: a stage cost maps
``[batch, state_dim]`` states and ``[batch, action_dim]`` actions to ``[batch]`` costs, a
terminal cost maps ``[batch, state_dim]`` states to ``[batch]``. Gradient-based planners
differentiate them twice, so they must be smooth almost everywhere and, like the models, free
of data-dependent Python control flow (``torch.func`` transforms them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from torch import Tensor

StageCost = Callable[[Tensor, Tensor], Tensor]
"""``cost(state [batch, state_dim], action [batch, action_dim]) -> [batch]``."""

TerminalCost = Callable[[Tensor], Tensor]
"""``terminal_cost(state [batch, state_dim]) -> [batch]``."""


@dataclass(frozen=True)
class PlanResult:
    """A plan for each start state of the batch.

    ``actions``: ``[batch, horizon, action_dim]``; ``states``: the model's predicted trajectory
    under them, ``[batch, horizon + 1, state_dim]`` starting at the given states; ``cost``: its
    total cost ``[batch]``; ``iterations``: how many optimizer iterations ran (for the whole
    batch); ``converged``: ``[batch]``, whether each start state met the stopping tolerances
    (rather than running out of iterations or regularization).
    """

    actions: Tensor
    states: Tensor
    cost: Tensor
    iterations: int
    converged: Tensor


class Planner(Protocol):
    """A planner with its model, cost and horizon bound: start states -> plans.

    ``initial_actions`` (``[batch, horizon, action_dim]``, or None for the planner's default)
    warm-starts the optimization, as receding-horizon control does with the shifted last plan.
    """

    def __call__(self, state: Tensor, initial_actions: Tensor | None = None) -> PlanResult: ...
