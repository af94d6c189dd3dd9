"""Receding-horizon control (model predictive control) around any planner.

Every call plans from the current states, applies the plan's first action and keeps the rest:
the next call warm-starts the planner from the previous plan shifted one step (its last action
repeated to fill the horizon), so an iterative planner such as iLQR needs only a few
iterations per step once the first plan is found (Tassa, Erez & Todorov 2012, Sec. III).

The first call of an episode has no previous plan; it plans ``cold_start_rounds`` times, each
round warm-started from the last, so that a planner tuned to a few iterations per step (fast
enough for real time once warm) still starts from a converged plan.

If the planner returns a non-finite cost or plan for some rows (a diverging learned model), the
controller warns and falls back, for those rows, to the shifted previous plan (zeros on the
first call) instead of acting on NaN.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from rlscale.modules.planning.base import Planner, PlanResult


class MPCController:
    """Batched receding-horizon control: ``act(states [batch, state_dim]) -> [batch, m]``.

    ``planner`` is any ``Planner`` (for iLQR/DDP, an ``ILQRPlanner``). Call ``reset()`` at the
    start of each episode; a change of batch size also starts from a fresh plan.
    """

    def __init__(self, planner: Planner, cold_start_rounds: int = 1):
        if cold_start_rounds < 1:
            raise ValueError(f"cold_start_rounds must be at least 1, got {cold_start_rounds}")
        self.planner = planner
        self.cold_start_rounds = cold_start_rounds
        self._plan: Tensor | None = None
        self.last_result: PlanResult | None = None

    def reset(self) -> None:
        """Forget the previous plan (a new episode starts)."""
        self._plan = None
        self.last_result = None

    def act(self, state: Tensor) -> Tensor:
        """Plan from ``state [batch, state_dim]``; return the first actions ``[batch, m]``."""
        self._plan, self.last_result = receding_horizon_plan(
            self.planner, state, self.shifted_plan(state.shape[0]), self.cold_start_rounds
        )
        return self._plan[:, 0]

    def shifted_plan(self, batch: int) -> Tensor | None:
        """The previous plan moved one step on, or None when there is none for this batch."""
        if self._plan is None or self._plan.shape[0] != batch:
            return None
        return shifted(self._plan)


def shifted(plan: Tensor) -> Tensor:
    """``plan [batch, H, m]`` moved one step on, its last action repeated to fill the horizon."""
    return torch.cat([plan[:, 1:], plan[:, -1:]], dim=1)


def receding_horizon_plan(
    planner: Planner, state: Tensor, warm_start: Tensor | None, cold_start_rounds: int = 1
) -> tuple[Tensor, PlanResult]:
    """One control step's plan ``[batch, H, m]`` (act on ``plan[:, 0]``) and the planner's result.

    ``warm_start`` is the shifted previous plan, or None at the start of an episode, when the
    planner runs ``cold_start_rounds`` times, each round warm-started from the last. Rows whose
    plan came back non-finite keep ``warm_start`` (zeros without one), with a warning. The
    stateless form of ``MPCController.act``, for callers that keep the plan themselves (an
    RLModule keeps it in its recurrent state, one plan per episode).
    """
    result = planner(state, warm_start)
    if warm_start is None:
        for _ in range(cold_start_rounds - 1):
            result = planner(state, _finite_or_fallback(result, None))
    return _finite_or_fallback(result, warm_start), result


def _finite_or_fallback(result: PlanResult, warm_start: Tensor | None) -> Tensor:
    actions = result.actions
    bad = ~torch.isfinite(result.cost) | ~torch.isfinite(actions).flatten(1).all(dim=1)
    if not bool(bad.any()):
        return actions
    warnings.warn(
        f"the planner returned a non-finite plan for {int(bad.sum())} of {bad.numel()} "
        "states (a diverging dynamics model?); acting on the previous plan for those",
        RuntimeWarning,
        stacklevel=3,
    )
    fallback = warm_start if warm_start is not None else torch.zeros_like(actions)
    return torch.where(bad[:, None, None], fallback, actions)
