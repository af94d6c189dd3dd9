"""Loss helpers more than one family's Learner uses."""

from __future__ import annotations

from typing import Any

import torch
from ray.rllib.core.columns import Columns


def masked_mean(values: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
    """Mean over the real timesteps (RLlib pads each episode chunk with one masked step)."""
    mask = batch.get(Columns.LOSS_MASK)
    if mask is None:
        return values.mean()
    return values[mask].mean()
