"""Trajectory planners: ``plan(state, dynamics, cost, horizon) -> actions``, batched over
start states, and receding-horizon control around any of them.

- ``base``: cost signatures, the ``PlanResult`` every planner returns, the ``Planner`` protocol;
- ``ilqr``: iLQR and DDP with Levenberg-Marquardt regularization, line search, box bounds;
- ``cem``: the cross-entropy method over action sequences (``CEMPlanner``, ``CEMSettings``);
- ``mppi``: model predictive path integral control (``MPPIPlanner``, ``MPPISettings``);
- ``sampling``: what CEM and MPPI share: batched candidate rollouts, PETS trajectory sampling
  through ensembles (TS1, TS-infinity), non-finite costs, the action box;
- ``mpc``: ``MPCController``, which replans every step from the shifted previous plan;
- ``costs``: each supported env's task as a differentiable cost on its observations.
"""

from rlscale.modules.planning.base import Planner, PlanResult, StageCost, TerminalCost
from rlscale.modules.planning.cem import CEMPlanner, CEMSettings
from rlscale.modules.planning.costs import (
    OBSERVATION_COSTS,
    NoObservationCostError,
    ObservationCost,
    observation_cost,
)
from rlscale.modules.planning.ilqr import ILQRPlanner, ILQRSettings, plan
from rlscale.modules.planning.mpc import MPCController
from rlscale.modules.planning.mppi import MPPIPlanner, MPPISettings

__all__ = [
    "OBSERVATION_COSTS",
    "CEMPlanner",
    "CEMSettings",
    "ILQRPlanner",
    "ILQRSettings",
    "MPCController",
    "MPPIPlanner",
    "MPPISettings",
    "NoObservationCostError",
    "ObservationCost",
    "PlanResult",
    "Planner",
    "StageCost",
    "TerminalCost",
    "observation_cost",
    "plan",
]
