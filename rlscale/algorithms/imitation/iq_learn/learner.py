"""IQ-Learn's Learners: the soft-Q network's (Discrete actions) and the SAC-style actor-critic's
(Box actions), both minimizing the chi-squared objective of the package docstring."""

from __future__ import annotations

import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.learner import POLICY_LOSS_KEY
from ray.rllib.core.learner.torch.torch_learner import TorchLearner

from rlscale.algorithms.imitation.iq_learn import module as iq_module
from rlscale.algorithms.imitation.iq_learn.losses import (
    continuous_iq_loss,
    iq_learn_loss,
    pearson_correlation,
)
from rlscale.algorithms.value_based.sac.learner import ALPHA_KEY, SACLearner
from rlscale.modules.rl_modules.soft_q import NEXT_Q_VALUES, Q_VALUES

IQ_LOSS = "iq_loss"
RECOVERED_REWARD_MEAN = "recovered_reward_mean"
"""Mean recovered reward on the expert's rows of the minibatch."""
RECOVERED_REWARD_CORRELATION = "recovered_reward_correlation"
"""Pearson's r of the recovered reward against the env's, on every row of the minibatch."""
EXPERT_FRACTION = "expert_fraction"
"""The share of the minibatch's rows that are the expert's (online: one half)."""
IS_EXPERT = "is_expert"
"""Batch column: 1.0 on the expert's rows, 0.0 on the policy's (replayed) rows."""


def _is_expert(batch, like: torch.Tensor) -> torch.Tensor:
    if IS_EXPERT in batch:
        return batch[IS_EXPERT].to(like.dtype)
    return torch.ones(like.shape[-1], dtype=like.dtype, device=like.device)


def log_recovered_reward(learner: TorchLearner, module_id, reward, batch, is_expert) -> None:
    """The recovered reward's mean on the expert's rows and its correlation with the env's."""
    expert_rows = is_expert > 0.5
    if expert_rows.any():
        learner.metrics.log_value(
            (module_id, RECOVERED_REWARD_MEAN), reward[expert_rows].mean().item(), window=1
        )
    correlation = pearson_correlation(reward, batch[Columns.REWARDS])
    if correlation is not None:
        learner.metrics.log_value((module_id, RECOVERED_REWARD_CORRELATION), correlation, window=1)


class IQLearnLearner(TorchLearner):
    """Discrete actions: the loss of the soft-Q network (one optimizer, ``lr``)."""

    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out):
        is_expert = _is_expert(batch, fwd_out[Q_VALUES][:, 0])
        loss, reward = iq_learn_loss(
            fwd_out[Q_VALUES],
            fwd_out[NEXT_Q_VALUES],
            batch[Columns.ACTIONS],
            batch[Columns.TERMINATEDS],
            gamma=config.gamma,
            temperature=config.temperature,
            chi2_alpha=config.chi2_alpha,
            is_expert=is_expert,
            chi2_on_mixture=config.chi2_on_mixture,
            absorbing=config.absorbing_terminals,
        )
        self.metrics.log_value((module_id, IQ_LOSS), loss.item(), window=1)
        log_recovered_reward(self, module_id, reward, batch, is_expert)
        return loss


class ContinuousIQLearnLearner(SACLearner):
    """Box actions: the critics' IQ-Learn loss, SAC's actor loss against them, and (with
    ``learn_temperature``) SAC's temperature loss. SACLearner's optimizers (``actor_lr``,
    ``critic_lr``, ``alpha_lr``) step them; its Polyak update moves the target critics that
    V(s') comes from (``next_value_from_target``)."""

    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out):
        module = self._module[module_id].unwrapped()
        alpha = module.log_alpha.exp().detach()
        is_expert = _is_expert(batch, fwd_out[iq_module.POLICY_LOGP])
        critic_loss, reward = continuous_iq_loss(
            fwd_out[iq_module.LOGGED_Q],
            fwd_out[iq_module.POLICY_Q],
            fwd_out[iq_module.POLICY_LOGP],
            fwd_out[iq_module.NEXT_POLICY_Q],
            fwd_out[iq_module.NEXT_POLICY_LOGP],
            batch[Columns.TERMINATEDS],
            is_expert,
            gamma=config.gamma,
            temperature=alpha,
            chi2_alpha=config.chi2_alpha,
            chi2_on_mixture=config.chi2_on_mixture,
            absorbing=config.absorbing_terminals,
        )
        logp = fwd_out[iq_module.ACTOR_LOGP]
        actor_loss = (alpha * logp - fwd_out[iq_module.ACTOR_Q]).mean()
        # A fixed temperature still gets a (zero) gradient, so its optimizer steps as usual.
        alpha_loss = 0.0 * module.log_alpha
        if config.learn_temperature:
            target_entropy = self._target_entropy(config, module.action_dim)
            alpha_loss = -(module.log_alpha * (logp.detach() + target_entropy)).mean()
        self.metrics.log_dict(
            {
                IQ_LOSS: critic_loss.item(),
                POLICY_LOSS_KEY: actor_loss.item(),
                ALPHA_KEY: alpha.item(),
                "logp_mean": logp.mean().item(),
                EXPERT_FRACTION: is_expert.mean().item(),
            },
            key=module_id,
            window=1,
        )
        # The critics' mean recovered reward (each critic recovers its own).
        log_recovered_reward(self, module_id, reward.mean(0), batch, is_expert)
        return critic_loss + actor_loss + alpha_loss
