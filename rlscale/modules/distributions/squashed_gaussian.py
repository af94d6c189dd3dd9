"""The tanh-squashed Gaussian: the action distribution of SAC-style actors (CQL's, SAC's).

A policy network (:class:`SquashedGaussianPolicy`: an MLP trunk and two linear heads) outputs
the mean and the log standard deviation of a diagonal Gaussian over pre-squash actions u; the
action is tanh(u), in [-1, 1]. Log-likelihoods are computed from u with the change of variables
of Haarnoja et al. 2018 (appendix C), log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), which
stays finite where tanh saturates.

One class serves both sides of an RLModule that acts with it. The learner builds it from the
policy network and draws reparameterized actions with their log-likelihoods
(:meth:`SquashedGaussian.rsample_and_logp`). The EnvRunner gets it as RLlib's action
distribution class: built from ``ACTION_DIST_INPUTS`` ``[mean, log_std]`` by ``from_logits``, it
samples as RLlib's ``TorchSquashedGaussian`` does and its deterministic action is tanh(mean)
inside the bounds (RLlib's ``to_deterministic`` returns the mean *before* the tanh, which RLlib's
unsquashing then clips to the bounds: a bang-bang greedy policy).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from ray.rllib.core.distribution.torch.torch_distribution import (
    TorchDeterministic,
    TorchSquashedGaussian,
)
from ray.rllib.utils.numpy import MAX_LOG_NN_OUTPUT, MIN_LOG_NN_OUTPUT
from torch import nn
from torch.nn import functional as F

from rlscale.modules.networks.mlp import build_mlp, output_width

LOG_STD_BOUNDS = (-20.0, 2.0)
"""Clamp of the policy network's log standard deviation (Haarnoja et al.'s SAC code)."""
ACTION_EDGE = 1e-6
"""Logged actions on the bounds are moved this far inside before atanh."""


class SquashedGaussian(TorchSquashedGaussian):
    """tanh(u), u ~ N(mean, exp(log_std)^2) per action dimension, on [-1, 1].

    ``mean`` and ``log_std`` are ``[..., action_dim]`` tensors (one row per state).
    """

    def __init__(self, mean: torch.Tensor, log_std: torch.Tensor):
        self.mean = mean
        self.log_std = log_std
        self.std = log_std.exp()
        super().__init__(loc=mean, scale=self.std)

    @classmethod
    def from_logits(cls, logits: torch.Tensor, **kwargs) -> SquashedGaussian:
        """From ``[mean, log_std]`` concatenated on the last axis (a module's action inputs).

        The log standard deviation is clamped to RLlib's range for network outputs, as RLlib's
        ``TorchSquashedGaussian.from_logits`` does.
        """
        mean, log_std = logits.chunk(2, dim=-1)
        return cls(mean, torch.clamp(log_std, MIN_LOG_NN_OUTPUT, MAX_LOG_NN_OUTPUT))

    def rsample_and_logp(self, *, sample_shape: Sequence[int] | None = None):
        """Reparameterized actions in (-1, 1) and their log-likelihoods.

        With ``sample_shape=(samples,)`` returns actions ``[samples, rows, action_dim]`` and
        log-likelihoods ``[samples, rows]``; gradients flow to ``mean`` and ``log_std`` through
        both.
        """
        shape, like = (*(sample_shape or ()), *self.mean.shape), self.mean
        noise = torch.randn(shape, dtype=like.dtype, device=like.device)
        pre_squash = self.mean + self.std * noise
        return torch.tanh(pre_squash), self._log_likelihood(pre_squash, noise)

    def logp(self, value: torch.Tensor, **kwargs) -> torch.Tensor:
        """Log-likelihood ``[rows]`` of actions ``[rows, action_dim]`` in [-1, 1]."""
        pre_squash = torch.atanh(value.clamp(-1.0 + ACTION_EDGE, 1.0 - ACTION_EDGE))
        return self._log_likelihood(pre_squash, (pre_squash - self.mean) / self.std)

    def greedy(self) -> torch.Tensor:
        """The deterministic action tanh(mean)."""
        return torch.tanh(self.mean)

    def to_deterministic(self) -> TorchDeterministic:
        """The greedy action for an EnvRunner: tanh(mean), through RLlib's bounds mapping."""
        return TorchDeterministic(loc=self._squash(self.loc))

    def _log_likelihood(self, pre_squash: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        gaussian = -0.5 * noise.pow(2) - self.log_std - 0.5 * math.log(2 * math.pi)
        squash_jacobian = 2.0 * (math.log(2.0) - pre_squash - F.softplus(-2.0 * pre_squash))
        return (gaussian - squash_jacobian).sum(-1)


class SquashedGaussianPolicy(nn.Module):
    """Observations -> the :class:`SquashedGaussian` over actions of each row."""

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
