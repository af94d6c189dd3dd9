"""CQL's Learner: SAC's actor and temperature losses, CQL(H)'s critic loss, one backward.

Per minibatch (Kumar, Zhou, Tucker, Levine 2020, https://arxiv.org/abs/2006.04779; the SAC
parts from Haarnoja et al. 2018, https://arxiv.org/abs/1812.05905):

- critics: the TD error to r + γ (1 − terminated) (min_i Q'_i(s', a') [− α log π(a'|s')]) with
  a' the policy's greedy or sampled next action (``target_action``; the entropy term only with
  a sample and without ``deterministic_backup``), plus ``min_q_weight`` ×
  (T · logsumexp over the regularizer's sampled actions of (Q(s, a) − log density(a)) / T −
  Q(s, a_data)), each critic on its own and summed over critics;
- actor: E[α log π(a|s) − min_i Q_i(s, a)], a ~ π(s); for the first ``bc_iters`` updates the
  behavior-cloning loss E[α log π(a|s) − log π(a_data|s)] instead;
- temperature: −log α · (log π(a|s) + target entropy), detached from the policy.

The module detaches what each loss must not move (see ``module``), so the sum of the three
losses gets one backward pass, and each optimizer steps its own parameters at its own
learning rate. The target critics follow every gradient step by Polyak averaging with ``tau``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from ray.rllib.algorithms.dqn.dqn_learner import DQNLearner
from ray.rllib.algorithms.dqn.torch.dqn_torch_learner import DQNTorchLearner
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.learner import POLICY_LOSS_KEY
from ray.rllib.utils.metrics import NUM_TARGET_UPDATES
from torch.nn.utils import get_total_norm

from rlscale.algorithms.common.polyak import polyak_step
from rlscale.algorithms.offline.cql.module import (
    LOGP_ACTOR,
    LOGP_LOGGED,
    LOGP_NEXT,
    LOGP_SAMPLED,
    Q_ACTOR,
    Q_LOGGED,
    Q_SAMPLED,
    Q_TARGET_NEXT,
)

TD_LOSS_KEY = "td_loss"
CONSERVATIVE_LOSS_KEY = "conservative_loss"
ALPHA_KEY = "alpha"


class CQLLearner(DQNTorchLearner):
    def build(self) -> None:
        super().build()
        self.updates_done: dict[str, int] = {}

    def configure_optimizers_for_module(self, module_id, config=None) -> None:
        module = self._module[module_id]
        groups = (
            ("policy", module.policy.parameters(), config.actor_lr),
            ("critics", module.critics.parameters(), config.critic_lr),
            ("alpha", [module.log_alpha], config.alpha_lr),
        )
        for name, parameters, lr in groups:
            params = list(parameters)
            self.register_optimizer(
                module_id=module_id,
                optimizer_name=name,
                # One fused kernel per step instead of a loop over parameters: on CPU a
                # third of the optimizer time of this many small tensors.
                optimizer=torch.optim.Adam(params, fused=True),
                params=params,
                lr_or_lr_schedule=lr,
            )

    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out):
        module = self._module[module_id].unwrapped()
        self.updates_done[module_id] = self.updates_done.get(module_id, 0) + 1
        cloning = self.updates_done[module_id] <= config.bc_iters
        alpha = module.log_alpha.exp().detach()

        td_loss = self._td_loss(config, batch, fwd_out, alpha)
        conservative_loss = self._conservative_loss(config, fwd_out, module.action_dim)
        imitated = fwd_out[LOGP_LOGGED] if cloning else fwd_out[Q_ACTOR]
        actor_loss = (alpha * fwd_out[LOGP_ACTOR] - imitated).mean()
        target_entropy = self._target_entropy(config, module.action_dim)
        alpha_loss = -(module.log_alpha * (fwd_out[LOGP_ACTOR].detach() + target_entropy)).mean()

        self.metrics.log_dict(
            {
                POLICY_LOSS_KEY: actor_loss,
                TD_LOSS_KEY: td_loss,
                CONSERVATIVE_LOSS_KEY: conservative_loss,
                ALPHA_KEY: alpha,
                "logp_mean": fwd_out[LOGP_ACTOR].mean(),
                "q_logged_mean": fwd_out[Q_LOGGED].mean(),
                "q_policy_mean": fwd_out[Q_ACTOR].mean(),
            },
            key=module_id,
            window=1,
        )
        return td_loss + conservative_loss + actor_loss + alpha_loss

    @staticmethod
    def _td_loss(config, batch, fwd_out, alpha: torch.Tensor) -> torch.Tensor:
        q_next = fwd_out[Q_TARGET_NEXT]
        if not config.deterministic_backup:
            q_next = q_next - alpha * fwd_out[LOGP_NEXT]
        not_terminated = 1.0 - batch[Columns.TERMINATEDS].float()
        target = (batch[Columns.REWARDS] + config.gamma * not_terminated * q_next).detach()
        return (fwd_out[Q_LOGGED] - target).pow(2).mean(dim=-1).sum()

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

    @staticmethod
    def _target_entropy(config, action_dim: int) -> float:
        if config.target_entropy in (None, "auto"):
            return -float(action_dim)
        return float(config.target_entropy)

    def apply_gradients(self, gradients_dict) -> None:
        if self._gradients_are_finite_and_in_place(gradients_dict):
            for module_id, optimizer_names in self._module_optimizers.items():
                for optimizer_name in optimizer_names:
                    self.get_optimizer(module_id, optimizer_name).step()
        else:
            super().apply_gradients(gradients_dict)
        for module_id, module in self.module.items():
            tau = self.config.get_config_for_module(module_id).tau
            for main_net, target_net in module.unwrapped().get_target_network_pairs():
                polyak_step(main_net, target_net, tau)
            self.metrics.log_value((module_id, NUM_TARGET_UPDATES), 1, reduce="lifetime_sum")

    def _gradients_are_finite_and_in_place(self, gradients_dict) -> bool:
        """Whether RLlib's ``apply_gradients`` would only step each optimizer.

        RLlib checks every gradient tensor for nan/inf twice (when assigning it to its
        parameter, and again before each optimizer step): 60 small calls per CQL update. One
        max-norm over all of them answers the same question; only when some gradient is not
        finite (or a grad scaler, an lr scheduler, or gradients clipped into new tensors are
        in play) does RLlib's own path run, with its zeroing of nan gradients.
        """
        if self._grad_scalers is not None or self._lr_scheduler_classes is not None:
            return False
        if any(grad is not self._params[pid].grad for pid, grad in gradients_dict.items()):
            return False
        largest = get_total_norm(list(gradients_dict.values()), norm_type=math.inf)
        return bool(torch.isfinite(largest))

    def after_gradient_based_update(self, *, timesteps: dict[str, Any]) -> None:
        # Everything the Learner does after an update call but DQNLearner's once-per-call
        # target step, which apply_gradients has taken over: RLlib calls it once per training
        # iteration of ``dataset_num_iters_per_learner`` updates offline, so tau = 0.005 moved
        # the targets as 5e-5 per update would, and the critics kept bootstrapping from their
        # random initialization.
        super(DQNLearner, self).after_gradient_based_update(timesteps=timesteps)
