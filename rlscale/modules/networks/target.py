"""Target networks: frozen copies that value-based learners bootstrap from."""

from __future__ import annotations

import copy
from typing import TypeVar

from torch import nn

Network = TypeVar("Network", bound=nn.Module)


def frozen_copy(network: Network) -> Network:
    """A deep copy of ``network`` (same weights) whose parameters take no gradient.

    What RLlib's ``make_target_network`` does; that helper lives in RLlib's Learner package,
    which ``rlscale.modules`` does not import.
    """
    target = copy.deepcopy(network)
    target.requires_grad_(False)
    return target
