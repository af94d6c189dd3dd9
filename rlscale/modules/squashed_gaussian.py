"""A tanh-squashed Gaussian policy, the actor of SAC and CQL (plain torch, no RLlib).

An MLP trunk feeds two linear heads, the mean and the log standard deviation of a diagonal
Gaussian over pre-squash actions u; the action is tanh(u), in [-1, 1]. Log-likelihoods are
computed from u with the change of variables of Haarnoja et al. 2018 (appendix C),
log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), which stays finite where tanh saturates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from rlscale.modules.mlp import build_mlp, output_width

LOG_STD_BOUNDS = (-20.0, 2.0)
"""Clamp of the log standard deviation (Haarnoja et al.'s SAC code)."""
ACTION_EDGE = 1e-6
"""Logged actions on the bounds are moved this far inside before atanh."""


@dataclass
class SquashedGaussian:
    """tanh(u), u ~ N(mean, exp(log_std)^2) per action dimension; ``[rows, action_dim]`` each."""

    mean: torch.Tensor
    log_std: torch.Tensor

    def rsample(self, samples: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``samples`` reparameterized actions per row and their log-likelihoods.

        Returns actions ``[samples, rows, action_dim]`` in (-1, 1) and log-likelihoods
        ``[samples, rows]``; gradients flow to ``mean`` and ``log_std`` through both.
        """
        shape, like = (samples, *self.mean.shape), self.mean
        noise = torch.randn(shape, dtype=like.dtype, device=like.device)
        pre_squash = self.mean + self.log_std.exp() * noise
        return torch.tanh(pre_squash), self._log_likelihood(pre_squash, noise)

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        """Log-likelihood ``[rows]`` of actions ``[rows, action_dim]`` in [-1, 1]."""
        pre_squash = torch.atanh(actions.clamp(-1.0 + ACTION_EDGE, 1.0 - ACTION_EDGE))
        return self._log_likelihood(pre_squash, (pre_squash - self.mean) / self.log_std.exp())

    def greedy(self) -> torch.Tensor:
        """The deterministic action tanh(mean)."""
        return torch.tanh(self.mean)

    def _log_likelihood(self, pre_squash: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        gaussian = -0.5 * noise.pow(2) - self.log_std - 0.5 * math.log(2 * math.pi)
        squash_jacobian = 2.0 * (math.log(2.0) - pre_squash - F.softplus(-2.0 * pre_squash))
        return (gaussian - squash_jacobian).sum(-1)


class SquashedGaussianPolicy(nn.Module):
    def __init__(
        self,
        observation_dim: int,
        action_dim: int,
        hidden_sizes: Sequence[int] = (256, 256),
        activation: str = "relu",
        log_std_bounds: tuple[float, float] = LOG_STD_BOUNDS,
    ):
        super().__init__()
        self.trunk = build_mlp(observation_dim, hidden_sizes, activation)
        features = output_width(observation_dim, hidden_sizes)
        self.mean = nn.Linear(features, action_dim)
        self.log_std = nn.Linear(features, action_dim)
        self.log_std_bounds = log_std_bounds

    def forward(self, observations: torch.Tensor) -> SquashedGaussian:
        """``[rows, observation_dim]`` -> the action distribution of each row."""
        features = self.trunk(observations)
        log_std = self.log_std(features).clamp(*self.log_std_bounds)
        return SquashedGaussian(self.mean(features), log_std)
