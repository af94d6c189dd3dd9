"""CQL's RLModule: SAC's module, with what CQL's regularizer needs from one minibatch.

Everything comes out of one ``forward_train`` call, with each critic ensemble evaluated once per
role (three calls per update):

- the critics on the logged state s paired with every action CQL(H) asks about, stacked into
  one batch: the logged action, ``num_actions`` uniform actions, ``num_actions`` policy
  samples at s and ``num_actions`` policy samples at s' (Kumar, Zhou, Tucker, Levine 2020,
  https://arxiv.org/abs/2006.04779, eq. 4 and its importance-sampled estimate in appendix F:
  all of them scored at s). The sampled actions are detached: the regularizer trains Q only.
- SAC's actor and target terms (``SACTrainModule._actor_and_target_outputs``): the critics at
  (s, a ~ π(s)) with their weights detached for the actor's loss, and the target critics at
  (s', a') for the TD target, without gradients. Here a' is the policy's greedy action
  tanh(mean(s')) (``target_action="mean"``, the default, as d3rlpy bootstraps) or a sample
  a' ~ π(s') (``"sample"``, SAC's and the CQL authors' code). On data from a
  near-deterministic policy (Hopper) the sampled a' lands far off the data once the entropy
  weight has grown, where the regularizer has pushed Q down; the targets then fall with it and
  Q(s, a_data) diverges although every reward is positive. With the mean it stays bounded.

``model_config`` keys beyond the SAC-style module's: ``num_actions``, ``target_action``.
"""

from __future__ import annotations

from typing import Any

import torch
from ray.rllib.core.columns import Columns

from rlscale.algorithms.value_based.sac import (
    LOGP_ACTOR,
    LOGP_NEXT,
    Q_ACTOR,
    Q_LOGGED,
    Q_TARGET_NEXT,
    SACTrainModule,
)

__all__ = [
    "LOGP_ACTOR",
    "LOGP_LOGGED",
    "LOGP_NEXT",
    "LOGP_SAMPLED",
    "Q_ACTOR",
    "Q_LOGGED",
    "Q_SAMPLED",
    "Q_TARGET_NEXT",
    "CQLModule",
]

Q_SAMPLED = "q_sampled"
"""Each critic's Q(s, ·) of the regularizer's actions: ``[critics, 3, num_actions, rows]``,
uniform, policy at s, policy at s' along the second axis."""
LOGP_SAMPLED = "logp_sampled"
"""log π of the policy's regularizer samples at s and s' (detached): ``[2, num_actions, rows]``."""
LOGP_LOGGED = "logp_logged"
"""log π(a_data | s), for the behavior-cloning warm-up: ``[rows]``."""


class CQLModule(SACTrainModule):
    def _forward_train(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        obs = self._observations(batch, Columns.OBS)
        next_obs = self._observations(batch, Columns.NEXT_OBS)
        rows, samples = obs.shape[0], self.model_config["num_actions"]
        # One policy pass for s and s'.
        distribution = self.policy(torch.cat([obs, next_obs]))
        # [samples, 2 * rows, ...]
        actions, logps = distribution.rsample_and_logp(sample_shape=(samples,))
        logged = batch[Columns.ACTIONS].reshape(rows, self.action_dim).float()
        uniform = 2.0 * torch.rand_like(actions[:, :rows]) - 1.0
        regularizer_actions = torch.cat(
            [logged.unsqueeze(0), uniform, actions[:, :rows].detach(), actions[:, rows:].detach()]
        )  # [1 + 3 * samples, rows, action_dim], all scored at s
        q = self._critic_values(self.critics, obs, regularizer_actions)
        if self.model_config["target_action"] == "mean":
            next_action = torch.tanh(distribution.mean[rows:])
        else:
            next_action = actions[0, rows:]
        policy_at_obs = type(distribution)(distribution.mean[:rows], distribution.log_std[:rows])
        return {
            Q_LOGGED: q[:, 0],
            Q_SAMPLED: q[:, 1:].reshape(q.shape[0], 3, samples, rows),
            LOGP_SAMPLED: logps.detach().reshape(samples, 2, rows).transpose(0, 1),
            LOGP_LOGGED: policy_at_obs.logp(logged),
            **self._actor_and_target_outputs(obs, next_obs, actions, logps, next_action),
        }
