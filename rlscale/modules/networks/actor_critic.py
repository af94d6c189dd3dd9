"""The actor-critic network shared by A2C, TRPO and PPO (plain torch, no RLlib).

The policy head outputs the inputs of an action distribution:

- Discrete actions: the logits of a categorical distribution.
- Box actions: the mean of a diagonal Gaussian, concatenated with a log standard deviation
  that is a free parameter (state-independent), as in Schulman et al. 2015 (TRPO) and 2017
  (PPO). The mean lives in the normalized action range [-1, 1]; mapping it onto the env's
  bounds is the caller's job.

Policy and value function either share one MLP trunk (``shared_trunk=True``: one set of
hidden features feeds both heads) or have separate trunks of the same shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from rlscale.modules.networks.mlp import build_mlp, orthogonal_init


@dataclass(frozen=True)
class ActorCriticShape:
    """What the network is built from."""

    observation_size: int
    action_size: int
    """Number of discrete actions, or the dimension of a Box action."""
    continuous: bool
    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "tanh"
    shared_trunk: bool = False
    initial_log_std: float = 0.0


def mlp_trunk(input_size: int, hidden_sizes: Sequence[int], activation: str) -> nn.Sequential:
    """Linear + activation layers with orthogonal init (gain √2), the usual choice for PG."""
    return build_mlp(input_size, hidden_sizes, activation, orthogonal_gain=2**0.5)


def linear_head(input_size: int, output_size: int, gain: float) -> nn.Linear:
    return orthogonal_init(nn.Linear(input_size, output_size), gain)


class ActorCritic(nn.Module):
    """Policy (distribution inputs) and state value from one observation batch."""

    def __init__(self, shape: ActorCriticShape):
        super().__init__()
        self.shape = shape
        features = shape.hidden_sizes[-1] if shape.hidden_sizes else shape.observation_size
        self.policy_trunk = mlp_trunk(shape.observation_size, shape.hidden_sizes, shape.activation)
        self.value_trunk = (
            None
            if shape.shared_trunk
            else mlp_trunk(shape.observation_size, shape.hidden_sizes, shape.activation)
        )
        # Small last-layer gain: the initial policy is near uniform / near zero mean.
        self.policy_head = linear_head(features, shape.action_size, gain=0.01)
        self.value_head = linear_head(features, 1, gain=1.0)
        self.log_std = (
            nn.Parameter(torch.full((shape.action_size,), float(shape.initial_log_std)))
            if shape.continuous
            else None
        )

    def policy_parameters(self) -> list[nn.Parameter]:
        """Parameters the policy loss moves (with a shared trunk, the trunk too)."""
        params = [*self.policy_trunk.parameters(), *self.policy_head.parameters()]
        return params + ([self.log_std] if self.log_std is not None else [])

    def value_parameters(self) -> list[nn.Parameter]:
        """Parameters only the value loss moves (empty trunk part when the trunk is shared)."""
        trunk = [] if self.value_trunk is None else list(self.value_trunk.parameters())
        return trunk + list(self.value_head.parameters())

    def distribution_inputs(self, obs: torch.Tensor) -> torch.Tensor:
        """Categorical logits, or Gaussian ``[mean, log_std]`` concatenated on the last axis."""
        return self._distribution_inputs_from(self.policy_trunk(obs))

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """V(s), shape ``[batch]``."""
        trunk = self.policy_trunk if self.value_trunk is None else self.value_trunk
        return self.value_head(trunk(obs)).squeeze(-1)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Distribution inputs and V(s), sharing the trunk pass when the trunk is shared."""
        policy_features = self.policy_trunk(obs)
        value_features = policy_features if self.value_trunk is None else self.value_trunk(obs)
        values = self.value_head(value_features).squeeze(-1)
        return self._distribution_inputs_from(policy_features), values

    def _distribution_inputs_from(self, features: torch.Tensor) -> torch.Tensor:
        out = self.policy_head(features)
        if self.log_std is None:
            return out
        return torch.cat([out, self.log_std.expand_as(out)], dim=-1)
