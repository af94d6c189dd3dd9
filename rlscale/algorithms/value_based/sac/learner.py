"""SAC's Learner: losses, optimizers and the Polyak update, written once for SAC and CQL
(see the package docstring)."""

from __future__ import annotations

import math
from typing import Any

import torch
from ray.rllib.algorithms.dqn.dqn_learner import DQNLearner
from ray.rllib.algorithms.dqn.torch.dqn_torch_learner import DQNTorchLearner
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.learner import POLICY_LOSS_KEY
from ray.rllib.utils.metrics import (
    NUM_TARGET_UPDATES,
)
from torch.nn.utils import get_total_norm

from rlscale.algorithms.common.polyak import polyak_step
from rlscale.algorithms.value_based.sac.module import (
    LOGP_ACTOR,
    LOGP_NEXT,
    Q_ACTOR,
    Q_LOGGED,
    Q_TARGET_NEXT,
)

TD_LOSS_KEY = "td_loss"
ALPHA_KEY = "alpha"


class SACLearner(DQNTorchLearner):
    """SAC's losses, optimizers and Polyak update; subclasses add to the critic loss or change
    what the actor maximizes (:meth:`_critic_loss`, :meth:`_actor_value`)."""

    def configure_optimizers_for_module(self, module_id, config=None) -> None:
        for name, parameters, lr in self._optimizer_groups(self._module[module_id], config):
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

    def _optimizer_groups(self, module, config) -> tuple[tuple[str, Any, Any], ...]:
        """(optimizer name, its parameters, its learning rate): one Adam optimizer each."""
        return (
            ("policy", module.policy.parameters(), config.actor_lr),
            ("critics", module.critics.parameters(), config.critic_lr),
            ("alpha", [module.log_alpha], config.alpha_lr),
        )

    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out):
        module = self._module[module_id].unwrapped()
        alpha = module.log_alpha.exp().detach()
        critic_loss = self._critic_loss(module_id, config, batch, fwd_out, alpha)
        actor_value = self._actor_value(module_id, config, fwd_out)
        actor_loss = (alpha * fwd_out[LOGP_ACTOR] - actor_value).mean()
        target_entropy = self._target_entropy(config, module.action_dim)
        alpha_loss = -(module.log_alpha * (fwd_out[LOGP_ACTOR].detach() + target_entropy)).mean()
        self.metrics.log_dict(
            {
                POLICY_LOSS_KEY: actor_loss,
                ALPHA_KEY: alpha,
                "logp_mean": fwd_out[LOGP_ACTOR].mean(),
                "q_logged_mean": fwd_out[Q_LOGGED].mean(),
                "q_policy_mean": fwd_out[Q_ACTOR].mean(),
            },
            key=module_id,
            window=1,
        )
        return critic_loss + actor_loss + alpha_loss

    def _critic_loss(self, module_id, config, batch, fwd_out, alpha: torch.Tensor):
        """SAC's: the critics' TD loss."""
        td_loss = self._td_loss(config, batch, fwd_out, alpha)
        self.metrics.log_value((module_id, TD_LOSS_KEY), td_loss, window=1)
        return td_loss

    def _actor_value(self, module_id, config, fwd_out) -> torch.Tensor:
        """What the actor maximizes beside its entropy: SAC's min_i Q_i(s, ã)."""
        return fwd_out[Q_ACTOR]

    def _entropy_in_target(self, config) -> bool:
        """Whether the TD target subtracts α log π(a'|s') (SAC's soft backup: always)."""
        return True

    def _td_loss(self, config, batch, fwd_out, alpha: torch.Tensor) -> torch.Tensor:
        """Σ_i E[(Q_i(s, a) − y)²], y = r + γ (1 − d) (min_i Q'_i(s', a') [− α log π(a'|s')])."""
        q_next = fwd_out[Q_TARGET_NEXT]
        if self._entropy_in_target(config):
            q_next = q_next - alpha * fwd_out[LOGP_NEXT]
        not_terminated = 1.0 - batch[Columns.TERMINATEDS].float()
        target = (batch[Columns.REWARDS] + config.gamma * not_terminated * q_next).detach()
        return (fwd_out[Q_LOGGED] - target).pow(2).mean(dim=-1).sum()

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
        parameter, and again before each optimizer step): 60 small calls per update. One
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
        # target step, which apply_gradients has taken over (the targets follow every gradient
        # step). Offline, RLlib calls it once per iteration of ``dataset_num_iters_per_learner``
        # updates: tau = 0.005 moved the targets as 5e-5 per update would, and the critics
        # kept bootstrapping from their random initialization.
        super(DQNLearner, self).after_gradient_based_update(timesteps=timesteps)
