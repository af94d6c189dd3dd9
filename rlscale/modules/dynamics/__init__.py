"""Dynamics models a planner can differentiate: ``predict(state, action) -> next state``.

- ``base``: the ``DynamicsModel`` protocol every model follows;
- ``pendulum``: Gymnasium's Pendulum-v1 as an analytic torch model, with its reward as a cost.
"""

from rlscale.modules.dynamics.base import DynamicsModel, predicted_next_state
from rlscale.modules.dynamics.pendulum import (
    PendulumModel,
    angle_normalize,
    pendulum_cost,
    pendulum_state_from_observation,
    pendulum_terminal_cost,
)

__all__ = [
    "DynamicsModel",
    "PendulumModel",
    "angle_normalize",
    "pendulum_cost",
    "pendulum_state_from_observation",
    "pendulum_terminal_cost",
    "predicted_next_state",
]
