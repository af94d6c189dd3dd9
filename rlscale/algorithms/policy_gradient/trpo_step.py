"""One TRPO policy step (Schulman et al. 2015, "Trust Region Policy Optimization").

Maximize the surrogate L(θ) = E[π_θ(a|s) / π_old(a|s) · A] subject to mean KL(π_old ‖ π_θ) ≤ δ:

1. g = ∇L at θ_old.
2. Solve F x = g by conjugate gradient, where F is the Fisher matrix, used only through
   Fisher-vector products F v = ∇(∇KL · v) (double backprop of the mean KL; no matrix is
   ever formed), plus damping · v for conditioning.
3. Scale the step to the trust region's edge: β = √(2δ / xᵀF x), full step β x.
4. Backtracking line search: try θ_old + ρ^k β x for k = 0, 1, ...; accept the first step
   whose measured mean KL is ≤ δ and whose surrogate improves. If none passes, restore θ_old.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TRPOStepResult:
    accepted: bool
    kl: float
    """Measured mean KL of the accepted step; 0 when rejected (the policy did not move)."""
    improvement: float
    """Surrogate gain of the accepted step; 0 when rejected."""
    backtracks: int
    """Step sizes tried (1 = the full step was accepted)."""
    surrogate_before: float


def flat_parameters(params: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in params])


def set_flat_parameters(params: Sequence[torch.Tensor], flat: torch.Tensor) -> None:
    offset = 0
    with torch.no_grad():
        for p in params:
            size = p.numel()
            p.copy_(flat[offset : offset + size].view_as(p))
            offset += size


def flat_grad(
    output: torch.Tensor,
    params: Sequence[torch.Tensor],
    create_graph: bool = False,
    retain_graph: bool | None = None,
) -> torch.Tensor:
    """d output / d params as one flat vector (zeros for parameters output does not use)."""
    grads = torch.autograd.grad(
        output, params, create_graph=create_graph, retain_graph=retain_graph, allow_unused=True
    )
    return torch.cat(
        [
            torch.zeros_like(p).reshape(-1) if g is None else g.reshape(-1)
            for g, p in zip(grads, params, strict=True)
        ]
    )


def conjugate_gradient(
    matrix_vector: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, iters: int
) -> torch.Tensor:
    """Approximately solve A x = b for symmetric positive-definite A given only A·v."""
    x = torch.zeros_like(b)
    residual = b.clone()
    direction = b.clone()
    residual_sq = residual @ residual
    for _ in range(iters):
        if residual_sq < 1e-10:
            break
        a_direction = matrix_vector(direction)
        alpha = residual_sq / (direction @ a_direction)
        x += alpha * direction
        residual -= alpha * a_direction
        new_residual_sq = residual @ residual
        direction = residual + (new_residual_sq / residual_sq) * direction
        residual_sq = new_residual_sq
    return x


def conjugate_gradient_step(
    params: Sequence[torch.Tensor],
    surrogate: Callable[[], torch.Tensor],
    mean_kl: Callable[[], torch.Tensor],
    *,
    max_kl: float,
    cg_iters: int = 10,
    cg_damping: float = 0.1,
    backtrack_steps: int = 10,
    backtrack_ratio: float = 0.5,
) -> TRPOStepResult:
    """Take one TRPO step on ``params`` in place; a rejected step leaves them unchanged.

    ``surrogate()`` and ``mean_kl()`` evaluate at the parameters' current values; ``mean_kl``
    is KL(π_old ‖ π_current), zero (with zero gradient) at θ_old.
    """
    params = list(params)
    old = flat_parameters(params)
    surrogate_before = surrogate()
    gradient = flat_grad(surrogate_before, params)
    surrogate_before = float(surrogate_before.detach())
    if not torch.isfinite(gradient).all() or gradient.abs().max() == 0:
        return TRPOStepResult(False, 0.0, 0.0, 0, surrogate_before)

    kl_gradient = flat_grad(mean_kl(), params, create_graph=True)

    def fisher_vector(vector: torch.Tensor) -> torch.Tensor:
        product = flat_grad(kl_gradient @ vector, params, retain_graph=True)
        return product + cg_damping * vector

    direction = conjugate_gradient(fisher_vector, gradient, cg_iters)
    curvature = direction @ fisher_vector(direction)
    if not torch.isfinite(curvature) or curvature <= 0:
        return TRPOStepResult(False, 0.0, 0.0, 0, surrogate_before)
    full_step = torch.sqrt(2.0 * max_kl / curvature) * direction

    fraction = 1.0
    for tries in range(1, backtrack_steps + 1):
        set_flat_parameters(params, old + fraction * full_step)
        with torch.no_grad():
            kl = float(mean_kl())
            improvement = float(surrogate()) - surrogate_before
        if kl <= max_kl and improvement > 0:
            return TRPOStepResult(True, kl, improvement, tries, surrogate_before)
        fraction *= backtrack_ratio
    set_flat_parameters(params, old)
    return TRPOStepResult(False, 0.0, 0.0, backtrack_steps, surrogate_before)
