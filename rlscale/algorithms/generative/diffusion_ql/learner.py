"""Diffusion-QL's Learner: the critics' TD loss and the diffusion policy's cloning-plus-Q loss
(Wang, Hunt & Zhou 2023, https://arxiv.org/abs/2208.06193, eq. 3-4 and Algorithm 1). Per
minibatch of logged (s, a, r, s', d):

    y    = r + γ (1 − d) min_i Q'_i(s', a'),  a' ~ π_θ'(s')     (max_q_backup: min_i max_j)
    L(Q) = Σ_i E[(Q_i(s, a) − y)²]
    L(π) = L_d(θ) − α E[Q_1(s, a_0)],  a_0 ~ π_θ(s) through the whole reverse chain,
           α = η / E|Q_1(s, a_0)|  (the mean held fixed)

with L_d DDPM's noise-prediction loss on the logged pairs
(:meth:`~rlscale.modules.generative.diffusion.ConditionalDiffusion.loss`). Dividing by the mean
|Q| makes η a weight between two terms of comparable size whatever the scale of the returns.

The module detaches what each loss must not move (the target is computed without gradients,
and Q_1 is evaluated with its weights held fixed for L(π)), so the two losses are summed for one
backward pass. Each gradient's norm is clipped on its own (``actor_grad_clip``,
``critic_grad_clip``; the paper clips the actor's), and two Adam optimizers (``actor_lr``,
``critic_lr``) step their own parameters. SAC's Learner, which this one extends, then
Polyak-averages every target pair with ``tau`` after every gradient step: the target critics
and the EMA policy θ'.
"""

from __future__ import annotations

import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.learner import POLICY_LOSS_KEY
from torch.nn.utils import get_total_norm

from rlscale.algorithms.generative.diffusion_ql.module import (
    CONDITION,
    Q_ACTOR,
    Q_LOGGED,
    Q_TARGET_NEXT,
)
from rlscale.algorithms.value_based.sac import TD_LOSS_KEY, SACLearner

DIFFUSION_LOSS_KEY = "diffusion_loss"
Q_TERM_KEY = "q_term"
"""α E[Q_1(s, a_0)], the part of the actor's loss that improves on the data (its negative)."""
ACTOR_GRAD_NORM_KEY = "actor_grad_norm"
CRITIC_GRAD_NORM_KEY = "critic_grad_norm"
OPTIMIZER_CLIP_KEYS = {"policy": "actor_grad_clip", "critics": "critic_grad_clip"}
"""Each optimizer's config key for its gradient-norm bound."""
GRAD_NORM_KEYS = {"policy": ACTOR_GRAD_NORM_KEY, "critics": CRITIC_GRAD_NORM_KEY}
Q_NORMALIZER_FLOOR = 1e-6
"""Keeps α finite while every Q(s, a_0) is still 0."""


class DiffusionQLLearner(SACLearner):
    """SAC's optimizer stepping and per-step Polyak update with Diffusion-QL's two losses."""

    def _optimizer_groups(self, module, config):
        return (
            ("policy", module.policy.parameters(), config.actor_lr),
            ("critics", module.critics.parameters(), config.critic_lr),
        )

    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out):
        module = self._module[module_id].unwrapped()
        rows = fwd_out[CONDITION].shape[0]
        logged = batch[Columns.ACTIONS].reshape(rows, module.action_dim).float()
        diffusion_loss = module.policy.loss(logged, fwd_out[CONDITION])
        q_term = self.q_term(config, fwd_out[Q_ACTOR])
        actor_loss = diffusion_loss - q_term
        td_loss = self._td_loss(config, batch, fwd_out, alpha=None)
        self.metrics.log_dict(
            {
                POLICY_LOSS_KEY: actor_loss,
                DIFFUSION_LOSS_KEY: diffusion_loss,
                Q_TERM_KEY: q_term,
                TD_LOSS_KEY: td_loss,
                "q_logged_mean": fwd_out[Q_LOGGED].mean(),
                "q_policy_mean": fwd_out[Q_ACTOR].mean(),
            },
            key=module_id,
            window=1,
        )
        return actor_loss + td_loss

    @staticmethod
    def q_term(config, q_actor: torch.Tensor) -> torch.Tensor:
        """α E[Q_1(s, a_0)] with α = η / E|Q_1(s, a_0)|, the normalizer held fixed."""
        normalizer = q_actor.detach().abs().mean().clamp(min=Q_NORMALIZER_FLOOR)
        return config.eta / normalizer * q_actor.mean()

    def postprocess_gradients_for_module(self, *, module_id, config=None, module_gradients_dict):
        """Clip each optimizer's gradient norm to its own bound, in place (``None``: no bound),
        and log the norms before clipping."""
        for optimizer_name, optimizer in self.get_optimizers_for_module(module_id):
            gradients = list(
                self.filter_param_dict_for_optimizer(module_gradients_dict, optimizer).values()
            )
            if not gradients:
                continue
            norm = get_total_norm(gradients)
            self.metrics.log_value((module_id, GRAD_NORM_KEYS[optimizer_name]), norm, window=1)
            bound = getattr(config, OPTIMIZER_CLIP_KEYS[optimizer_name])
            if bound is not None:
                scale = torch.clamp(bound / (norm + 1e-6), max=1.0)
                for gradient in gradients:
                    gradient.mul_(scale)
        return module_gradients_dict

    def _td_loss(self, config, batch, fwd_out, alpha) -> torch.Tensor:
        """Σ_i E[(Q_i(s, a) − y)²], y = r + γ (1 − d) Q_TARGET_NEXT (no entropy term)."""
        not_terminated = 1.0 - batch[Columns.TERMINATEDS].float()
        target = batch[Columns.REWARDS] + config.gamma * not_terminated * fwd_out[Q_TARGET_NEXT]
        return (fwd_out[Q_LOGGED] - target.detach()).pow(2).mean(dim=-1).sum()
