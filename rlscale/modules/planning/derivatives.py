"""First and second derivatives of a model and a cost along a trajectory, from autograd.

Each row of a batched model or cost depends on that row's inputs alone (no batch statistics,
no mixing of rows), so the derivative of ``sum_rows output_i`` with respect to the inputs is, row
by row, the derivative of that row's ``output_i``. One reverse pass per output dimension thus
gives the Jacobians of all ``batch x horizon`` points at once, and one more per input dimension
(differentiating the first pass, ``create_graph=True``) their Hessians.

Plain ``torch.autograd.grad`` is used rather than ``torch.func``'s ``vmap(jacfwd(jacrev(...)))``
because the functional transforms add Python overhead to every operation, which dominates for
the small models planners use: for Pendulum over 90 points, 3 ms against 14 ms for the dynamics
Hessians on this project's 2-core machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rlscale.modules.dynamics.base import DynamicsModel, predicted_next_state
from rlscale.modules.planning.base import StageCost, TerminalCost
from rlscale.modules.planning.rollout import Trajectory


@dataclass(frozen=True)
class TrajectoryDerivatives:
    """Derivatives at every ``(x_t, u_t)`` with respect to the joint input ``z = [x, u]``.

    ``f_z [batch, H, n, n + m]`` (dynamics Jacobian), ``f_zz [batch, H, n, n + m, n + m]``
    (dynamics Hessians, first index the output; None unless asked for, as iLQR ignores them),
    ``l_z [batch, H, n + m]`` and ``l_zz [batch, H, n + m, n + m]`` (stage cost),
    ``terminal_x [batch, n]`` and ``terminal_xx [batch, n, n]`` (terminal cost, zero without
    one). The properties name the usual blocks (``f_x``, ``l_ux``, ``f_xx``, ...).
    """

    f_z: Tensor
    l_z: Tensor
    l_zz: Tensor
    terminal_x: Tensor
    terminal_xx: Tensor
    f_zz: Tensor | None = None

    @property
    def state_dim(self) -> int:
        return self.f_z.shape[-2]

    @property
    def f_x(self) -> Tensor:
        return self.f_z[..., : self.state_dim]

    @property
    def f_u(self) -> Tensor:
        return self.f_z[..., self.state_dim :]

    @property
    def f_xx(self) -> Tensor | None:
        n = self.state_dim
        return None if self.f_zz is None else self.f_zz[..., :n, :n]

    @property
    def f_uu(self) -> Tensor | None:
        n = self.state_dim
        return None if self.f_zz is None else self.f_zz[..., n:, n:]

    @property
    def f_ux(self) -> Tensor | None:
        n = self.state_dim
        return None if self.f_zz is None else self.f_zz[..., n:, :n]

    @property
    def l_x(self) -> Tensor:
        return self.l_z[..., : self.state_dim]

    @property
    def l_u(self) -> Tensor:
        return self.l_z[..., self.state_dim :]

    @property
    def l_xx(self) -> Tensor:
        n = self.state_dim
        return self.l_zz[..., :n, :n]

    @property
    def l_uu(self) -> Tensor:
        n = self.state_dim
        return self.l_zz[..., n:, n:]

    @property
    def l_ux(self) -> Tensor:
        n = self.state_dim
        return self.l_zz[..., n:, :n]


def trajectory_derivatives(
    trajectory: Trajectory,
    dynamics: DynamicsModel,
    cost: StageCost,
    terminal_cost: TerminalCost | None,
    second_order_dynamics: bool,
) -> TrajectoryDerivatives:
    """Derivatives of the dynamics and costs at every point of ``trajectory`` (detached)."""
    batch, horizon, action_dim = trajectory.actions.shape
    state_dim = trajectory.states.shape[-1]
    points = torch.cat([trajectory.states[:, :-1], trajectory.actions], dim=-1)
    points = points.reshape(batch * horizon, state_dim + action_dim).detach()

    def per_step(tensor: Tensor) -> Tensor:  # [batch * H, ...] -> [batch, H, ...]
        return tensor.reshape(batch, horizon, *tensor.shape[1:])

    with torch.enable_grad():
        z = points.clone().requires_grad_(True)
        next_states = predicted_next_state(dynamics, z[:, :state_dim], z[:, state_dim:])
        f_z = batched_jacobian(next_states, z, create_graph=second_order_dynamics)
        f_zz = batched_hessian_of_rows(f_z, z) if second_order_dynamics else None
        stage_cost = cost(z[:, :state_dim], z[:, state_dim:])
        l_z = batched_jacobian(stage_cost[:, None], z, create_graph=True)[:, 0]
        l_zz = batched_jacobian(l_z, z, create_graph=False)
        terminal_x, terminal_xx = _terminal_derivatives(trajectory.states[:, -1], terminal_cost)
    return TrajectoryDerivatives(
        f_z=per_step(f_z.detach()),
        f_zz=None if f_zz is None else per_step(f_zz.detach()),
        l_z=per_step(l_z.detach()),
        l_zz=per_step(l_zz.detach()),
        terminal_x=terminal_x.detach(),
        terminal_xx=terminal_xx.detach(),
    )


def batched_jacobian(outputs: Tensor, inputs: Tensor, create_graph: bool) -> Tensor:
    """Row-wise Jacobians ``[rows, k, d]`` of ``outputs [rows, k]`` by ``inputs [rows, d]``.

    Rows must be independent (module doc). Outputs that do not depend on the inputs (a linear
    model's Jacobian, a quadratic cost's Hessian) give zeros.
    """
    rows, width = outputs.shape
    if not outputs.requires_grad:
        return inputs.new_zeros(rows, width, inputs.shape[-1])
    columns = []
    for i in range(width):
        (derivative,) = torch.autograd.grad(
            outputs[:, i].sum(),
            inputs,
            retain_graph=True,
            create_graph=create_graph,
            allow_unused=True,
        )
        columns.append(torch.zeros_like(inputs) if derivative is None else derivative)
    return torch.stack(columns, dim=1)


def batched_hessian_of_rows(jacobian: Tensor, inputs: Tensor) -> Tensor:
    """``[rows, k, d, d]`` Hessians from Jacobians ``[rows, k, d]`` built with a graph."""
    rows, width, dim = jacobian.shape
    flat = batched_jacobian(jacobian.reshape(rows, width * dim), inputs, create_graph=False)
    return flat.reshape(rows, width, dim, dim)


def _terminal_derivatives(
    final_states: Tensor, terminal_cost: TerminalCost | None
) -> tuple[Tensor, Tensor]:
    batch, state_dim = final_states.shape
    if terminal_cost is None:
        zeros = final_states.new_zeros
        return zeros(batch, state_dim), zeros(batch, state_dim, state_dim)
    x = final_states.detach().clone().requires_grad_(True)
    gradient = batched_jacobian(terminal_cost(x)[:, None], x, create_graph=True)[:, 0]
    return gradient, batched_jacobian(gradient, x, create_graph=False)
