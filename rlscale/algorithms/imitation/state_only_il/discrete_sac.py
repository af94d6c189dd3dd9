"""Soft actor-critic for Discrete actions, on the SAC-style module's interface.

Christodoulou 2019, "Soft Actor-Critic for Discrete Action Settings",
https://arxiv.org/abs/1910.07207. With a categorical policy the expectations over actions that
continuous SAC estimates with one reparameterized sample are exact sums over the ``n`` actions:
the critics output ``Q_i(s, .)`` for every action at once, and

    V'(s')  = sum_a' pi(a'|s') (min_i Q'_i(s', a') - alpha log pi(a'|s'))
    L(pi)   = E_s[ sum_a pi(a|s) (alpha log pi(a|s) - min_i Q_i(s, a)) ]      (critics fixed)
    L(alpha)= E_s[ -log alpha (sum_a pi(a|s) log pi(a|s) + H_target) ]

``_forward_train`` returns the same keys as SAC's module (``rlscale.algorithms.value_based.sac.
module``), each holding its expectation over the actions, so SAC's Learner computes exactly
these losses: ``Q_TARGET_NEXT - alpha * LOGP_NEXT`` is ``V'(s')``, and
``alpha * LOGP_ACTOR - Q_ACTOR`` is the policy's loss. The action distribution is RLlib's
``TorchCategorical`` over the policy's logits; greedy acting takes the most probable action.
The warm-up's uniform exploration (``act_uniformly``) acts with all-zero logits.

``model_config`` keys: those of :class:`~rlscale.modules.rl_modules.sac.SACModule`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.distribution.torch.torch_distribution import TorchCategorical
from torch import nn

from rlscale.algorithms.value_based.sac.module import (
    LOGP_ACTOR,
    LOGP_NEXT,
    Q_ACTOR,
    Q_LOGGED,
    Q_TARGET_NEXT,
    SACTrainModule,
)
from rlscale.modules.networks.ensemble import EnsembleMLP
from rlscale.modules.networks.mlp import build_mlp


class DiscreteSACModule(SACTrainModule):
    """A categorical actor, ``num_critics`` Q(s, .) heads, their target copy, a temperature."""

    def setup(self) -> None:
        config = self.model_config
        observation_dim = int(np.prod(self.observation_space.shape))
        self.n_actions = int(self.action_space.n)
        # SAC's Learner reads action_dim for its default target entropy; one categorical choice.
        self.action_dim = 1
        hidden, activation = tuple(config["hidden_sizes"]), config["activation"]
        self.policy = build_mlp(observation_dim, hidden, activation, self.n_actions)
        if self.inference_only:
            return
        self.critics = EnsembleMLP(
            config["num_critics"], observation_dim, hidden, self.n_actions, activation
        )
        self.log_alpha = nn.Parameter(torch.tensor(math.log(config["initial_alpha"])))

    def get_inference_action_dist_cls(self) -> type[TorchCategorical]:
        return TorchCategorical

    def get_exploration_action_dist_cls(self) -> type[TorchCategorical]:
        return TorchCategorical

    def get_train_action_dist_cls(self) -> type[TorchCategorical]:
        return TorchCategorical

    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        return {Columns.ACTION_DIST_INPUTS: self.policy(self._observations(batch, Columns.OBS))}

    def _forward_exploration(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        out = self._forward(batch)
        if self.act_uniformly:
            out[Columns.ACTION_DIST_INPUTS] = torch.zeros_like(out[Columns.ACTION_DIST_INPUTS])
        return out

    def _forward_train(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        obs = self._observations(batch, Columns.OBS)
        next_obs = self._observations(batch, Columns.NEXT_OBS)
        rows = obs.shape[0]
        log_probs = torch.log_softmax(self.policy(torch.cat([obs, next_obs])), dim=-1)
        probs = log_probs.exp()
        q = self.critics(obs)  # [critics, rows, n]
        actions = batch[Columns.ACTIONS].reshape(rows).long()
        q_logged = q.gather(-1, actions.expand(q.shape[0], rows).unsqueeze(-1)).squeeze(-1)
        with torch.no_grad():
            q_target_next = self._target_critics(next_obs).min(dim=0).values
            probs_next, log_probs_next = probs[rows:], log_probs[rows:]
            value_next = (probs_next * q_target_next).sum(-1)
            logp_next = (probs_next * log_probs_next).sum(-1)
        # The critics held fixed in the policy's loss: its gradient reaches the policy only.
        q_policy = q.detach().min(dim=0).values
        return {
            Q_LOGGED: q_logged,
            Q_ACTOR: (probs[:rows] * q_policy).sum(-1),
            LOGP_ACTOR: (probs[:rows] * log_probs[:rows]).sum(-1),
            Q_TARGET_NEXT: value_next,
            LOGP_NEXT: logp_next,
        }

    def _q_of_batch(self, critics: EnsembleMLP, batch: dict[str, Any]) -> torch.Tensor:
        obs = self._observations(batch, Columns.OBS)
        actions = batch[Columns.ACTIONS].reshape(obs.shape[0]).long()
        q = critics(obs).min(dim=0).values
        return q.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
