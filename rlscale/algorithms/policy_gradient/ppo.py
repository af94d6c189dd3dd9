"""PPO: proximal policy optimization (Schulman et al. 2017, "Proximal Policy Optimization
Algorithms").

``num_epochs`` epochs over minibatches of the sampled batch, each minibatch one gradient step
on the clipped surrogate (advantages A_t from GAE, see
:mod:`rlscale.algorithms.policy_gradient.actor_critic`)::

    r_t(θ) = π_θ(a_t|s_t) / π_old(a_t|s_t)
    L(θ) = -E[min(r_t A_t, clip(r_t, 1 - ε, 1 + ε) A_t)] + c_v E[(V_θ(s_t) - V_targ_t)²]
           - c_H E[H(π_θ(·|s_t))]

with ε = ``clip_param``. Optional: ``value_clip_param`` takes the larger of the plain and the
clipped value error, the new value clipped to ±that around V_old(s_t); ``target_kl`` stops the
epochs once a minibatch's approximate KL E[(r - 1) - log r] passes 1.5 × ``target_kl``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from ray.rllib.algorithms.ppo import PPO as RLlibPPO
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.learner import ENTROPY_KEY, POLICY_LOSS_KEY, VF_LOSS_KEY

from rlscale.algorithms.common.lean_update import LeanUpdateMixin, LeanUpdatesConfigMixin
from rlscale.algorithms.common.losses import masked_mean
from rlscale.algorithms.policy_gradient.actor_critic import (
    ADVANTAGES,
    BOX_ACTION_DEFAULTS,
    VALUE_TARGETS,
    ActorCriticConfig,
    ActorCriticLearner,
)
from rlscale.modules.rl_modules.actor_critic import VALUES

APPROX_KL_KEY = "approx_kl"
EPOCHS_STOPPED_KEY = "kl_early_stopped"


class PPOConfig(LeanUpdatesConfigMixin, ActorCriticConfig):
    """PPO: clipped surrogate over ``num_epochs`` epochs of minibatches.

    ``value_clip_param`` (None = off) clips the new value to ±that around the value at sampling
    time; ``target_kl`` (None = off) stops the epochs once a minibatch's approximate KL exceeds
    1.5 × ``target_kl``. ``lean_updates`` (default true) runs the minibatch loop of
    :mod:`rlscale.algorithms.common.lean_update` where it applies.
    """

    RLSCALE_KEYS: ClassVar[tuple[str, ...]] = ("value_clip_param", "target_kl")
    CONTINUOUS_DEFAULTS: ClassVar[dict[str, Any]] = {
        **BOX_ACTION_DEFAULTS,
        "train_batch_size_per_learner": 2048,
        "gamma": 0.95,
        "lambda_": 0.95,
    }

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or PPO)
        self.train_batch_size_per_learner = 1024
        self.minibatch_size = 256
        self.num_epochs = 10
        self.lr = 1e-3
        self.gamma = 0.98
        self.lambda_ = 0.9
        self.clip_param = 0.2
        self.value_clip_param = None
        self.target_kl = None

    def get_default_learner_class(self) -> type[PPOLearner]:
        return PPOLearner

    def validate(self) -> None:
        super().validate()
        for key in ("clip_param", "value_clip_param"):
            value = getattr(self, key)
            if value is not None and not (
                isinstance(value, int | float) and not isinstance(value, bool) and value > 0
            ):
                self._value_error(
                    f"{key} must be > 0 (the ratio is clipped to 1 ± it; 0.2 is the paper's), "
                    f"got {value!r}"
                )


class PPO(RLlibPPO):
    """RLlib PPO's ``training_step``, with rlscale's config, module and Learner."""

    @classmethod
    def get_default_config(cls) -> PPOConfig:
        return PPOConfig()


class PPOLearner(LeanUpdateMixin, ActorCriticLearner):
    """Clipped surrogate, optional value clipping, optional KL early stop."""

    def build(self) -> None:
        super().build()
        self._kl_stopped = False

    def before_gradient_based_update(self, *, timesteps: dict[str, Any]) -> None:
        super().before_gradient_based_update(timesteps=timesteps)
        self._kl_stopped = False

    def updates_stopped(self) -> bool:
        return self._kl_stopped

    def _update(self, batch: dict[str, Any]) -> tuple[Any, Any, Any]:
        if self._kl_stopped:
            return {}, {}, {}
        return self._possibly_compiled_update(batch)

    def apply_gradients(self, gradients_dict) -> None:
        # The early stop checks the minibatch's KL before its step, as Stable-Baselines3 does.
        if self._kl_stopped:
            return
        super().apply_gradients(gradients_dict)

    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out) -> torch.Tensor:
        current, _ = self.action_distributions(module_id, batch, fwd_out)
        log_ratio = current.logp(batch[Columns.ACTIONS]) - batch[Columns.ACTION_LOGP]
        ratio = torch.exp(log_ratio)
        advantages = batch[ADVANTAGES]
        clipped = torch.clamp(ratio, 1 - config.clip_param, 1 + config.clip_param)
        policy_loss = -masked_mean(torch.min(advantages * ratio, advantages * clipped), batch)

        values = fwd_out[VALUES]
        value_loss = (values - batch[VALUE_TARGETS]) ** 2
        if config.value_clip_param is not None:
            old = batch[Columns.VF_PREDS]
            clipped_values = old + torch.clamp(
                values - old, -config.value_clip_param, config.value_clip_param
            )
            value_loss = torch.max(value_loss, (clipped_values - batch[VALUE_TARGETS]) ** 2)
        value_loss = masked_mean(value_loss, batch)
        entropy = masked_mean(current.entropy(), batch)

        with torch.no_grad():
            # The low-variance estimator of KL(old || new): E[(r - 1) - log r].
            approx_kl = masked_mean((ratio - 1) - log_ratio, batch)
        if config.target_kl is not None and approx_kl > 1.5 * config.target_kl:
            self._kl_stopped = True
        self.log_common_metrics(
            module_id,
            batch,
            values,
            {
                POLICY_LOSS_KEY: policy_loss,
                VF_LOSS_KEY: value_loss,
                ENTROPY_KEY: entropy,
                APPROX_KL_KEY: approx_kl,
                EPOCHS_STOPPED_KEY: float(self._kl_stopped),
            },
        )
        return policy_loss + config.vf_loss_coeff * value_loss - config.entropy_coeff * entropy
