"""Cholesky factorization and solves for batches of small matrices, in elementwise torch ops.

Planners factor one ``[m, m]`` matrix per start state and time step, ``m`` the action size
(1 for Pendulum and CartPole). LAPACK's batched routines (``torch.linalg.cholesky_ex``)
parallelize such tiny batches over OpenMP threads, and on a busy machine each call then waits
milliseconds for its threads (measured: 3 ms per call with 2 threads under load, against 6 us
with one). A column loop of elementwise operations costs ``O(m^2)`` small ops and no threads,
which is what an ``m`` of a few needs.
"""

from __future__ import annotations

import torch
from torch import Tensor


def cholesky(matrix: Tensor) -> tuple[Tensor, Tensor]:
    """Lower factors ``L [batch, m, m]`` with ``L L^T = matrix``, and which rows failed.

    A row fails when its matrix is not (numerically) positive definite, NaN included; its
    factor is then finite but meaningless.
    """
    size = matrix.shape[-1]
    factor = torch.zeros_like(matrix)
    failed = torch.zeros(matrix.shape[:-2], dtype=torch.bool, device=matrix.device)
    for j in range(size):
        pivot_square = matrix[..., j, j] - (factor[..., j, :j] ** 2).sum(-1)
        failed |= ~(pivot_square > 0)  # also true for NaN
        pivot = torch.where(pivot_square > 0, pivot_square, 1.0)
        pivot = pivot.sqrt()
        factor[..., j, j] = pivot
        if j + 1 < size:
            below = (
                matrix[..., j + 1 :, j]
                - (factor[..., j + 1 :, :j] @ factor[..., j, :j, None])[..., 0]
            )
            factor[..., j + 1 :, j] = below / pivot[..., None]
    return factor, failed


def cholesky_solve(rhs: Tensor, factor: Tensor) -> Tensor:
    """``X [batch, m, k]`` with ``L L^T X = rhs``, by forward and back substitution."""
    size = factor.shape[-1]
    forward: list[Tensor] = []
    for i in range(size):
        row = rhs[..., i, :]
        if i:
            row = row - (factor[..., i, None, :i] @ torch.stack(forward, dim=-2))[..., 0, :]
        forward.append(row / factor[..., i, i, None])
    backward: list[Tensor] = [forward[0]] * size
    for i in reversed(range(size)):
        row = forward[i]
        if i + 1 < size:
            later = torch.stack(backward[i + 1 :], dim=-2)
            row = row - (factor[..., i + 1 :, i, None].mT @ later)[..., 0, :]
        backward[i] = row / factor[..., i, i, None]
    return torch.stack(backward, dim=-2)
