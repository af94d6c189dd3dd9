"""Trajectory planners: ``plan(state, dynamics, cost, horizon) -> actions``, batched over
start states, and receding-horizon control around any of them.

- ``base``: cost signatures, the ``PlanResult`` every planner returns, the ``Planner`` protocol;
- ``ilqr``: iLQR and DDP with Levenberg-Marquardt regularization, line search, box bounds;
- ``mpc``: ``MPCController``, which replans every step from the shifted previous plan.
"""

from rlscale.modules.planning.base import Planner, PlanResult, StageCost, TerminalCost
from rlscale.modules.planning.ilqr import ILQRPlanner, ILQRSettings, plan
from rlscale.modules.planning.mpc import MPCController

__all__ = [
    "ILQRPlanner",
    "ILQRSettings",
    "MPCController",
    "PlanResult",
    "Planner",
    "StageCost",
    "TerminalCost",
    "plan",
]
