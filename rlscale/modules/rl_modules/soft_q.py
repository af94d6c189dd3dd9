"""The soft-Q RLModule of discrete IQ-Learn: a Q-network whose policy is ``softmax(Q / tau)``.

In maximum-entropy RL with temperature ``tau`` the optimal policy of a soft Q-function is
``pi(a|s) = exp((Q(s, a) - V(s)) / tau)`` with the soft value
``V(s) = tau log sum_a exp(Q(s, a) / tau)`` (Haarnoja et al. 2017, "Reinforcement Learning with
Deep Energy-Based Policies"). The module hands RLlib ``Q / tau`` as the logits of a categorical
distribution, so RLlib's own connectors act with it: exploration samples the soft policy, and
greedy acting (``explore=False``, ``rlscale evaluate``) takes ``argmax_a Q(s, a)``.

``_forward_train`` returns the Q-values at the observations and at the next observations, all a
Learner needs for soft Bellman quantities. ``model_config`` keys: ``hidden_sizes``,
``activation``, ``temperature``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.torch import TorchRLModule

from rlscale.modules.networks.q_network import QNetwork

Q_VALUES = "q_values"
NEXT_Q_VALUES = "next_q_values"


def soft_value(q_values: torch.Tensor, temperature: float) -> torch.Tensor:
    """``V(s) = tau log sum_a exp(Q(s, a) / tau)`` over the last dim: ``[batch, n] -> [batch]``."""
    return temperature * torch.logsumexp(q_values / temperature, dim=-1)


class SoftQModule(TorchRLModule):
    def setup(self) -> None:
        config = self.model_config
        self.temperature = float(config["temperature"])
        self.q_network = QNetwork(
            observation_dim=int(np.prod(self.observation_space.shape)),
            n_actions=int(self.action_space.n),
            hidden_sizes=tuple(config["hidden_sizes"]),
            dueling=False,
            activation=config["activation"],
        )

    def q_values(self, observations: torch.Tensor) -> torch.Tensor:
        return self.q_network(observations.reshape(observations.shape[0], -1).float())

    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        logits = self.q_values(batch[Columns.OBS]) / self.temperature
        return {Columns.ACTION_DIST_INPUTS: logits}

    def _forward_train(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        return {
            Q_VALUES: self.q_values(batch[Columns.OBS]),
            NEXT_Q_VALUES: self.q_values(batch[Columns.NEXT_OBS]),
        }
