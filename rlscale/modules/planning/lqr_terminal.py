"""A terminal cost from the LQR cost-to-go of the model linearized at the task's balance point.

Why: a short-horizon planner on a balance task keeps the pole up but not the cart centred. On
InvertedPendulum-v5 with a 0.6 s horizon, no plan that brings the cart back (which first tips the
pole the other way) costs less within the horizon than one that holds still, so the cart
wanders until it reaches the end of its rail, where the pole falls. The classic remedy in model
predictive control is a terminal cost equal to the infinite-horizon cost-to-go of the
linear-quadratic problem at the equilibrium (Chen & Allgöwer 1998, "A quasi-infinite horizon
nonlinear model predictive control scheme with guaranteed stability", Automatica 34(10); Mayne,
Rawlings, Rao & Scokaert 2000, "Constrained model predictive control: Stability and optimality",
Automatica 36(6), Sec. 3.4): the plan's last state is charged for everything it will still cost.

How: at the balance point ``(x*, u*)``,

- ``A = d f / d x`` and ``B = d f / d u`` of the model's mean prediction ``f`` (autograd);
- ``Q``, ``R``, ``N``: the blocks of the Hessian of the stage cost ``l(x, u)`` (autograd), so that
  ``l ~ 1/2 [dx; du]^T [[Q, N], [N^T, R]] [dx; du]`` near the point;
- ``P`` solves the discrete algebraic Riccati equation (``scipy.linalg.solve_discrete_are``);
- ``terminal(x) = 1/2 (x - x*)^T P (x - x*)``.

A learned model changes as it trains, so ``P`` is recomputed whenever any of the model's tensors
changed since the last computation (an optimizer step, a weight sync, a checkpoint load: each
bumps the tensor's version counter or replaces the tensor). Where the Riccati equation has no
stabilizing solution (a model fitted on a few random steps can be uncontrollable at the point),
the fallback terminal cost is used until the model changes, with a warning.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence

import numpy as np
import scipy.linalg
import torch
from torch import Tensor, nn

from rlscale.modules.planning.base import StageCost, TerminalCost


class LQRTerminalCost:
    """``terminal(observation [..., n]) -> [...]``, the LQR cost-to-go at a balance point."""

    def __init__(
        self,
        dynamics: nn.Module,
        stage_cost: StageCost,
        balance_state: Sequence[float],
        balance_action: Sequence[float],
        fallback: TerminalCost | None,
    ):
        self.dynamics = dynamics
        self.stage_cost = stage_cost
        self.balance_state = torch.as_tensor(balance_state, dtype=torch.float64)
        self.balance_action = torch.as_tensor(balance_action, dtype=torch.float64)
        self.fallback = fallback
        self.cost_to_go: Tensor | None = None
        """The last solved ``P [n, n]`` (float64), None where the equation had no solution."""
        self._computed_for: tuple | None = None

    def __call__(self, observation: Tensor) -> Tensor:
        self._refresh()
        if self.cost_to_go is None:
            if self.fallback is None:
                return observation.new_zeros(observation.shape[:-1])
            return self.fallback(observation)
        offset = observation - self.balance_state.to(observation)
        weights = self.cost_to_go.to(observation)
        return 0.5 * torch.einsum("...i,ij,...j->...", offset, weights, offset)

    def _refresh(self) -> None:
        fingerprint = _tensor_versions(self.dynamics)
        if fingerprint == self._computed_for:
            return
        self._computed_for = fingerprint
        try:
            self.cost_to_go = lqr_cost_to_go(
                self.dynamics, self.stage_cost, self.balance_state, self.balance_action
            )
        except (np.linalg.LinAlgError, ValueError) as exc:
            self.cost_to_go = None
            warnings.warn(
                f"the model linearized at the balance point has no LQR cost-to-go ({exc}); "
                "planning with the cost's own terminal cost until the model changes",
                stacklevel=2,
            )


def lqr_cost_to_go(
    dynamics: nn.Module, stage_cost: StageCost, state: Tensor, action: Tensor
) -> Tensor:
    """``P [n, n]`` (float64) of the model linearized at ``(state, action)`` (module docstring).

    Raises ``ValueError`` or ``numpy.linalg.LinAlgError`` where there is no stabilizing
    solution, or it is not finite and positive semi-definite.
    """
    reference = next(itertools.chain(dynamics.parameters(), dynamics.buffers()), None)
    dtype = reference.dtype if reference is not None else torch.float64
    device = reference.device if reference is not None else None
    x = state.to(dtype=dtype, device=device)[None]
    u = action.to(dtype=dtype, device=device)[None]
    n = x.shape[-1]

    def mean_next_state(x_: Tensor, u_: Tensor) -> Tensor:
        return dynamics.predict(x_, u_).mean[0]

    a_matrix, b_matrix = torch.autograd.functional.jacobian(mean_next_state, (x, u))
    hessian = torch.autograd.functional.hessian(
        lambda z: stage_cost(z[None, :n], z[None, n:])[0], torch.cat([x[0], u[0]])
    )
    a_matrix, b_matrix = _numpy(a_matrix[:, 0]), _numpy(b_matrix[:, 0])
    hessian = _numpy(hessian)
    solution = scipy.linalg.solve_discrete_are(
        a_matrix, b_matrix, hessian[:n, :n], hessian[n:, n:], s=hessian[:n, n:]
    )
    if not np.all(np.isfinite(solution)) or np.linalg.eigvalsh(solution).min() < -1e-8:
        raise ValueError("the Riccati solution is not finite and positive semi-definite")
    return torch.as_tensor(solution, dtype=torch.float64)


def _numpy(tensor: Tensor) -> np.ndarray:
    return tensor.detach().to("cpu", torch.float64).numpy()


def _tensor_versions(module: nn.Module) -> tuple:
    """Identity and in-place version of each of the module's tensors: changes with any update.

    ``Tensor._version`` is PyTorch's counter of in-place changes (what autograd checks saved
    tensors against); an optimizer step and ``load_state_dict`` both bump it.
    """
    return tuple(
        (id(tensor), tensor._version)
        for tensor in itertools.chain(module.parameters(), module.buffers())
    )
