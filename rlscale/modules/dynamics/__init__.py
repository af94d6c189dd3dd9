"""Dynamics models a planner can differentiate: ``predict(state, action) -> next state``.

- ``base``: the ``DynamicsModel`` protocol every model follows;
- ``pendulum``: Gymnasium's Pendulum-v1 as an analytic torch model, with its reward as a cost;
- ``ensemble``: PETS' probabilistic ensemble (Gaussian members, learned log-variance bounds,
  moment-matched ``predict``, ``predict_member``, optional reward head and MBPO elites), and
  ``fit_dynamics``, the training loop for learned models;
- ``mlp_model``: a deterministic MLP predicting the state change (and optionally the reward);
- ``normalizer``: the input/target standardization both learned models store as buffers;
- ``cartpole``: CartPole-v1's equations with its identifiable physical constants as parameters;
- ``sysid``: fitting a physical model's parameters to transitions (prediction-error method).
"""

from rlscale.modules.dynamics.base import (
    DynamicsModel,
    EnsembleDynamicsModel,
    predicted_next_state,
)
from rlscale.modules.dynamics.cartpole import CartPoleModel
from rlscale.modules.dynamics.ensemble import (
    EnsembleSettings,
    FitResult,
    FitSettings,
    ProbabilisticEnsemble,
    bootstrap_indices,
    bound_logvar,
    dynamics_optimizer,
    fit_dynamics,
    gaussian_nll,
)
from rlscale.modules.dynamics.mlp_model import (
    HoldoutMetrics,
    MLPDynamicsModel,
    MLPModelSettings,
)
from rlscale.modules.dynamics.normalizer import Normalizer, TransitionNormalizer
from rlscale.modules.dynamics.pendulum import (
    PendulumModel,
    angle_normalize,
    pendulum_cost,
    pendulum_state_from_observation,
    pendulum_terminal_cost,
)
from rlscale.modules.dynamics.sysid import (
    IdentificationReport,
    IdentificationSettings,
    fit_physical_parameters,
)

__all__ = [
    "CartPoleModel",
    "DynamicsModel",
    "EnsembleDynamicsModel",
    "EnsembleSettings",
    "FitResult",
    "FitSettings",
    "HoldoutMetrics",
    "IdentificationReport",
    "IdentificationSettings",
    "MLPDynamicsModel",
    "MLPModelSettings",
    "Normalizer",
    "PendulumModel",
    "ProbabilisticEnsemble",
    "TransitionNormalizer",
    "angle_normalize",
    "bootstrap_indices",
    "bound_logvar",
    "dynamics_optimizer",
    "fit_dynamics",
    "fit_physical_parameters",
    "gaussian_nll",
    "pendulum_cost",
    "pendulum_state_from_observation",
    "pendulum_terminal_cost",
    "predicted_next_state",
]
