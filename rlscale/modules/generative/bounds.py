"""Action bounds of the generative models: where sampled and decoded actions must lie."""

from __future__ import annotations

import torch
from torch import Tensor


def action_bounds(
    low: Tensor | float | None, high: Tensor | float | None, action_size: int
) -> tuple[Tensor, Tensor]:
    """``[action_size]`` float64 bounds (default -1 and 1), finite with ``low < high``."""
    low_tensor = torch.as_tensor(-1.0 if low is None else low, dtype=torch.float64)
    high_tensor = torch.as_tensor(1.0 if high is None else high, dtype=torch.float64)
    try:
        low_tensor = torch.broadcast_to(low_tensor.detach().cpu(), (action_size,)).clone()
        high_tensor = torch.broadcast_to(high_tensor.detach().cpu(), (action_size,)).clone()
    except RuntimeError as error:
        raise ValueError(
            f"action bounds must be scalars or of shape [{action_size}], got shapes "
            f"{tuple(low_tensor.shape)} and {tuple(high_tensor.shape)}"
        ) from error
    if not (torch.isfinite(low_tensor).all() and torch.isfinite(high_tensor).all()):
        raise ValueError(
            f"action bounds must be finite, got low={low_tensor.tolist()}, "
            f"high={high_tensor.tolist()}"
        )
    if not (low_tensor < high_tensor).all():
        raise ValueError(
            f"action_low must be below action_high in every dimension, got "
            f"low={low_tensor.tolist()}, high={high_tensor.tolist()}"
        )
    return low_tensor, high_tensor
