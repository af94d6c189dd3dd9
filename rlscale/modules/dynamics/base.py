"""The one interface every dynamics model offers to planners.

A model maps a batch of states ``[batch, state_dim]`` and actions ``[batch, action_dim]`` to the
next states. Probabilistic models (ensembles) return a ``torch.distributions.Distribution`` over
the next state; deterministic models (analytic physics, a plain MLP) may return the next-state
tensor ``[batch, state_dim]`` itself, which stands for a point mass. Either way the result must
be differentiable in ``state`` and ``action`` so that a planner can take Jacobians with autograd.

Gradient-based planners (iLQR/DDP) differentiate ``predict`` with ``torch.func`` transforms
(``vmap``, ``jacrev``, ``jacfwd``), so a model they use must be written without data-dependent
Python control flow and without in-place changes to its inputs.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor
from torch.distributions import Distribution


@runtime_checkable
class DynamicsModel(Protocol):
    """Anything with ``predict(state, action) -> next state (tensor or distribution)``."""

    def predict(self, state: Tensor, action: Tensor) -> Tensor | Distribution:
        """Next state for each row: ``[batch, state_dim]``, ``[batch, action_dim]`` -> next."""
        ...


def predicted_next_state(model: DynamicsModel, state: Tensor, action: Tensor) -> Tensor:
    """The model's next state as a tensor: the prediction itself, or a distribution's mean."""
    prediction = model.predict(state, action)
    if isinstance(prediction, Distribution):
        return prediction.mean
    return prediction


@runtime_checkable
class EnsembleDynamicsModel(DynamicsModel, Protocol):
    """A probabilistic ensemble: ``members`` models, each predicting its own distribution.

    ``predict`` gives the ensemble's combined prediction (its mean is what gradient-based
    planners follow). ``predict_member`` lets sampling planners propagate particles the way
    PETS does (Chua et al. 2018, "Deep Reinforcement Learning in a Handful of Trials using
    Probabilistic Dynamics Models", Sec. 5): row ``i`` is predicted by member ``member[i]``,
    and a particle's next state is a sample of that distribution. In PETS's terms, TS-1
    draws a new member for each particle every step; TS-inf keeps each particle's member
    fixed over the horizon.
    """

    members: int

    def predict_member(self, state: Tensor, action: Tensor, member: Tensor) -> Distribution:
        """Next-state distribution of each row under member ``member[i]`` (``[batch]`` long)."""
        ...
