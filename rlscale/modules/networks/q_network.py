"""The Q-network shared by value-based algorithms: state in, one value per discrete action out.

Plain (``dueling=False``): an MLP trunk and a linear layer to ``n_actions`` values.
Dueling (Wang et al. 2016, "Dueling Network Architectures for Deep RL"): the trunk feeds a
state-value stream ``V(s)`` and an advantage stream ``A(s, a)``, combined as
``Q = V + A - mean_a A`` so that ``V`` and ``A`` are identifiable.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from rlscale.modules.networks.mlp import build_mlp, output_width


class QNetwork(nn.Module):
    def __init__(
        self,
        observation_dim: int,
        n_actions: int,
        hidden_sizes: Sequence[int] = (256, 256),
        dueling: bool = True,
        activation: str = "relu",
    ):
        super().__init__()
        self.dueling = dueling
        self.trunk = build_mlp(observation_dim, hidden_sizes, activation)
        features = output_width(observation_dim, hidden_sizes)
        self.advantage = nn.Linear(features, n_actions)
        self.value = nn.Linear(features, 1) if dueling else None

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        """``[batch, observation_dim]`` -> Q-values ``[batch, n_actions]``."""
        features = self.trunk(observations)
        advantages = self.advantage(features)
        if self.value is None:
            return advantages
        return self.value(features) + advantages - advantages.mean(dim=-1, keepdim=True)
