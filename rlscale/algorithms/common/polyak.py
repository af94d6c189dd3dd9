"""Polyak averaging of target networks, one parameter at a time."""

from __future__ import annotations

import torch


@torch.no_grad()
def polyak_step(main_net: torch.nn.Module, target_net: torch.nn.Module, tau: float) -> None:
    """target <- (1 - tau) target + tau main, parameter by parameter.

    RLlib's ``update_target_network`` goes through ``state_dict`` and ``load_state_dict``,
    which costs more than a small CPU update's arithmetic. The target nets must be deep copies
    of the main nets without buffers (as ``frozen_copy`` makes them), so that their parameters
    pair up in order.
    """
    for target, main in zip(target_net.parameters(), main_net.parameters(), strict=True):
        target.lerp_(main, tau)
