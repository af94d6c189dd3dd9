"""What the generative models over actions check of their inputs: the action bounds (where
sampled and decoded actions must lie) and the shapes of actions and conditions."""

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


def check_actions(actions: Tensor, action_size: int) -> None:
    """Raise ``ValueError`` unless ``actions`` is a tensor of shape ``[B, action_size]``."""
    if not isinstance(actions, Tensor) or actions.dim() != 2:
        raise ValueError(
            f"expected actions of shape [batch, {action_size}], got {describe(actions)}"
        )
    if actions.shape[1] != action_size:
        raise ValueError(
            f"expected actions of shape [batch, {action_size}], got {tuple(actions.shape)}"
        )


def check_condition(condition: Tensor, condition_size: int, rows: int | None) -> None:
    """Raise ``ValueError`` unless ``condition`` is ``[rows, condition_size]`` (any number of
    rows when ``rows`` is None)."""
    if not isinstance(condition, Tensor):
        raise ValueError(
            f"expected condition as a tensor of shape [batch, {condition_size}], got "
            f"{type(condition).__name__} (an unconditional model takes torch.empty(batch, 0))"
        )
    if condition.dim() != 2 or condition.shape[1] != condition_size:
        raise ValueError(
            f"expected condition of shape [batch, {condition_size}], got {tuple(condition.shape)}"
        )
    if rows is not None and condition.shape[0] != rows:
        raise ValueError(
            f"condition has {condition.shape[0]} rows but the actions have {rows}; "
            "give one condition row per action row"
        )


def describe(value: object) -> str:
    """A value's shape if it is a tensor, else its type: for error messages."""
    if isinstance(value, Tensor):
        return str(tuple(value.shape))
    return type(value).__name__


def check_sizes(action_size: int, condition_size: int) -> None:
    """Raise ``ValueError`` unless ``action_size`` is positive and ``condition_size`` is 0
    (an unconditional model) or positive."""
    if not is_int(action_size) or action_size < 1:
        raise ValueError(f"action_size must be a positive integer, got {action_size!r}")
    if not is_int(condition_size) or condition_size < 0:
        raise ValueError(
            f"condition_size must be 0 (unconditional) or a positive integer, "
            f"got {condition_size!r}"
        )


def is_int(value: object) -> bool:
    """An integer that is not a bool (``True`` passes ``isinstance(value, int)``)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_real(value: object) -> bool:
    """An int or a float that is not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)
