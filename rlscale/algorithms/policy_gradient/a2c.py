"""A2C: advantage actor-critic, the synchronous variant of A3C (Mnih et al. 2016, "Asynchronous
Methods for Deep Reinforcement Learning").

One gradient step per sampled batch, on the whole batch, with advantages A_t from GAE (see
:mod:`rlscale.algorithms.policy_gradient.actor_critic`)::

    L(θ) = -E[A_t log π_θ(a_t|s_t)] + c_v E[(V_θ(s_t) - V_targ_t)²] - c_H E[H(π_θ(·|s_t))]

with c_v = ``vf_loss_coeff`` and c_H = ``entropy_coeff``.
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
    GRAD_CLIP,
    VALUE_TARGETS,
    ActorCriticConfig,
    ActorCriticLearner,
)
from rlscale.modules.rl_modules.actor_critic import VALUES


class A2CConfig(LeanUpdatesConfigMixin, ActorCriticConfig):
    """A2C: one gradient step per sampled batch (no epochs, no minibatches).

    ``lean_updates`` (default true) takes the step through the lean loop of
    :mod:`rlscale.algorithms.common.lean_update` where it applies.
    """

    CONTINUOUS_DEFAULTS: ClassVar[dict[str, Any]] = {
        **BOX_ACTION_DEFAULTS,
        "train_batch_size_per_learner": 256,
        "lr": 3e-3,
        "gamma": 0.95,
        "grad_clip": GRAD_CLIP,
    }

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or A2C)
        self.num_epochs = 1
        self.minibatch_size = None
        # Discrete actions: the shared clip is one global norm over the policy and the value
        # network, so a large value-loss gradient shrinks the policy's step with it; on CartPole
        # A2C learned far more reliably without it in practice (1000), with larger batches and a
        # larger step (the settings compared: docs/benchmarks.md, "A2C settings"). Box actions
        # keep the clip.
        self.train_batch_size_per_learner = 512
        self.lr = 2e-3
        self.grad_clip = 1000.0

    def get_default_learner_class(self) -> type[A2CLearner]:
        return A2CLearner

    def validate(self) -> None:
        super().validate()
        if self.num_epochs != 1 or self.minibatch_size not in (
            None,
            self.train_batch_size_per_learner,
        ):
            self._value_error(
                "A2C takes exactly one gradient step per batch: leave num_epochs at 1 and "
                "minibatch_size unset (use ppo for several epochs over minibatches)"
            )


class A2C(RLlibPPO):
    """RLlib PPO's ``training_step``; with one epoch of one minibatch it is A2C's update."""

    @classmethod
    def get_default_config(cls) -> A2CConfig:
        return A2CConfig()


class A2CLearner(LeanUpdateMixin, ActorCriticLearner):
    """The policy-gradient, value and entropy terms above, summed into one loss."""

    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out) -> torch.Tensor:
        current, _ = self.action_distributions(module_id, batch, fwd_out)
        policy_loss = -masked_mean(current.logp(batch[Columns.ACTIONS]) * batch[ADVANTAGES], batch)
        values = fwd_out[VALUES]
        value_loss = masked_mean((values - batch[VALUE_TARGETS]) ** 2, batch)
        entropy = masked_mean(current.entropy(), batch)
        self.log_common_metrics(
            module_id,
            batch,
            values,
            {POLICY_LOSS_KEY: policy_loss, VF_LOSS_KEY: value_loss, ENTROPY_KEY: entropy},
        )
        return policy_loss + config.vf_loss_coeff * value_loss - config.entropy_coeff * entropy
