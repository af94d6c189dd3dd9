"""BCQ's Learner: the VAE's ELBO, the critics' TD loss to the soft clipped double-Q target, and
the perturbation network's −Q_1 (Fujimoto, Meger & Precup 2019,
https://arxiv.org/abs/1812.02900, Algorithm 1). Per minibatch of logged (s, a, r, s', d):

    L(G) = ||a − D(s, z)||² / |A| + β KL(q(z | s, a) || N(0, I)) / |z|       (ConditionalVAE.loss)
    y    = r + γ (1 − d) max_i [λ min_j Q'_j(s', ã_i) + (1 − λ) max_j Q'_j(s', ã_i)],
           ã_i = a_i + ξ'(s', a_i) clipped,  a_i ~ G(s'),  i = 1..n
    L(Q) = Σ_j E[(Q_j(s, a) − y)²]
    L(ξ) = −E[Q_1(s, a + ξ(s, a))],  a ~ G(s)

The module detaches what each loss must not move (the target is computed without gradients,
G's samples for ξ's loss are drawn without them, and Q_1 is evaluated with its weights held
fixed for L(ξ)), so the three losses are summed for one backward pass and three Adam optimizers
(``vae_lr``, ``critic_lr``, ``actor_lr``) each step their own parameters. SAC's Learner, which
this one extends, Polyak-averages every target pair (Q' and ξ') with ``tau`` after every
gradient step.
"""

from __future__ import annotations

from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.learner import POLICY_LOSS_KEY

from rlscale.algorithms.generative.bcq.module import (
    Q_ACTOR,
    Q_LOGGED,
    Q_TARGET_NEXT,
    VAE_KL,
    VAE_LOSS,
    VAE_RECONSTRUCTION,
)
from rlscale.algorithms.value_based.sac import TD_LOSS_KEY, SACLearner


class BCQLearner(SACLearner):
    """SAC's optimizer stepping and per-step Polyak update with BCQ's three losses."""

    def _optimizer_groups(self, module, config):
        return (
            ("vae", module.vae.parameters(), config.vae_lr),
            ("perturbation", module.perturbation.parameters(), config.actor_lr),
            ("critics", module.critics.parameters(), config.critic_lr),
        )

    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out):
        not_terminated = 1.0 - batch[Columns.TERMINATEDS].float()
        target = batch[Columns.REWARDS] + config.gamma * not_terminated * fwd_out[Q_TARGET_NEXT]
        critic_loss = (fwd_out[Q_LOGGED] - target.detach()).pow(2).mean(dim=-1).sum()
        actor_loss = -fwd_out[Q_ACTOR].mean()
        vae_loss = fwd_out[VAE_LOSS]
        self.metrics.log_dict(
            {
                TD_LOSS_KEY: critic_loss,
                POLICY_LOSS_KEY: actor_loss,
                VAE_LOSS: vae_loss,
                VAE_RECONSTRUCTION: fwd_out[VAE_RECONSTRUCTION],
                VAE_KL: fwd_out[VAE_KL],
                "q_logged_mean": fwd_out[Q_LOGGED].mean(),
                "q_target_mean": target.mean(),
            },
            key=module_id,
            window=1,
        )
        return vae_loss + critic_loss + actor_loss
