"""CQL's Learner: SAC's Learner with CQL(H)'s conservative term and a behavior-cloning warm-up.

Per minibatch (Kumar, Zhou, Tucker, Levine 2020, https://arxiv.org/abs/2006.04779; the SAC
parts, written once in ``rlscale.algorithms.value_based.sac.SACLearner``, from Haarnoja et al.
2018, https://arxiv.org/abs/1812.05905):

- critics: the TD error to r + γ (1 − terminated) (min_i Q'_i(s', a') [− α log π(a'|s')]) with
  a' the policy's greedy or sampled next action (``target_action``; the entropy term only with
  a sample and without ``deterministic_backup``), plus ``min_q_weight`` ×
  (T · logsumexp over the regularizer's sampled actions of (Q(s, a) − log density(a)) / T −
  Q(s, a_data)), each critic on its own and summed over critics;
- actor: E[α log π(a|s) − min_i Q_i(s, a)], a ~ π(s); for the first ``bc_iters`` updates the
  behavior-cloning loss E[α log π(a|s) − log π(a_data|s)] instead;
- temperature: −log α · (log π(a|s) + target entropy), detached from the policy.

As in SAC, the sum of the three losses gets one backward pass, each optimizer steps its own
parameters at its own learning rate, and the target critics follow every gradient step by
Polyak averaging with ``tau``.
"""

from __future__ import annotations

import math

import torch

from rlscale.algorithms.offline.cql.module import LOGP_LOGGED, LOGP_SAMPLED, Q_SAMPLED
from rlscale.algorithms.value_based.sac import Q_ACTOR, Q_LOGGED, SACLearner

CONSERVATIVE_LOSS_KEY = "conservative_loss"


class CQLLearner(SACLearner):
    def build(self) -> None:
        super().build()
        self.updates_done: dict[str, int] = {}

    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out):
        self.updates_done[module_id] = self.updates_done.get(module_id, 0) + 1
        return super().compute_loss_for_module(
            module_id=module_id, config=config, batch=batch, fwd_out=fwd_out
        )

    def _critic_loss(self, module_id, config, batch, fwd_out, alpha: torch.Tensor):
        """SAC's TD loss plus the conservative term."""
        td_loss = super()._critic_loss(module_id, config, batch, fwd_out, alpha)
        action_dim = self._module[module_id].unwrapped().action_dim
        conservative_loss = self._conservative_loss(config, fwd_out, action_dim)
        self.metrics.log_value((module_id, CONSERVATIVE_LOSS_KEY), conservative_loss, window=1)
        return td_loss + conservative_loss

    def _actor_value(self, module_id, config, fwd_out) -> torch.Tensor:
        """log π(a_data | s) for the first ``bc_iters`` updates, then SAC's min_i Q_i(s, a)."""
        cloning = self.updates_done[module_id] <= config.bc_iters
        return fwd_out[LOGP_LOGGED] if cloning else fwd_out[Q_ACTOR]

    def _entropy_in_target(self, config) -> bool:
        return not config.deterministic_backup

    @staticmethod
    def _conservative_loss(config, fwd_out, action_dim: int) -> torch.Tensor:
        """CQL(H): the importance-weighted logsumexp over sampled actions minus Q(s, a_data)."""
        q_uniform, q_policy, q_policy_next = fwd_out[Q_SAMPLED].unbind(dim=1)
        logp_policy, logp_policy_next = fwd_out[LOGP_SAMPLED]
        uniform_log_density = -action_dim * math.log(2.0)  # uniform on [-1, 1]^d
        weighted = torch.cat(
            [
                q_uniform - uniform_log_density,
                q_policy - logp_policy,
                q_policy_next - logp_policy_next,
            ],
            dim=1,
        )  # [critics, 3 * num_actions, rows]
        temperature = config.temperature
        logsumexp = temperature * torch.logsumexp(weighted / temperature, dim=1)
        gap = (logsumexp - fwd_out[Q_LOGGED]).mean(dim=-1).sum()
        return config.min_q_weight * gap
