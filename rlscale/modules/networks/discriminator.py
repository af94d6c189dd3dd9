"""A state-action discriminator: an MLP that scores (s, a) pairs with one logit each.

Adversarial imitation (GAIL) trains it to tell the expert's pairs from the policy's; the
probability ``sigmoid(logit)`` is D(s, a), the chance that the pair is the expert's. A Discrete
action enters as a one-hot vector, a Box action as its flat vector.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional

from rlscale.modules.networks.mlp import build_mlp


class Discriminator(nn.Module):
    """``(observations [N, obs], actions [N] or [N, act])`` -> logits ``[N]``."""

    def __init__(
        self,
        observation_size: int,
        action_size: int,
        discrete_actions: bool,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "tanh",
    ):
        super().__init__()
        self.action_size = action_size
        self.discrete_actions = discrete_actions
        self.net = build_mlp(observation_size + action_size, hidden_sizes, activation, output_dim=1)

    def action_features(self, actions: torch.Tensor) -> torch.Tensor:
        """One-hot rows for Discrete actions, flat float rows for Box actions."""
        if self.discrete_actions:
            return functional.one_hot(actions.reshape(-1).long(), self.action_size).float()
        return actions.reshape(actions.shape[0], -1).float()

    def forward(self, observations: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        flat = observations.reshape(observations.shape[0], -1).float()
        inputs = torch.cat([flat, self.action_features(actions)], dim=-1)
        return self.net(inputs).squeeze(-1)
