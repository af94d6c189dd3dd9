"""Discrete CQL: DQN's Q-learning (target network, double Q) plus the CQL(H) regularizer.

    loss = TD(Q) + α · E_s[ logsumexp_a Q(s, a) − Q(s, a_data) ]

with TD(Q) the Huber loss of Q(s, a_data) against r + γ (1 − terminated) Q'(s', argmax_a
Q(s', a)) (double Q, van Hasselt et al. 2016). The regularizer pushes Q down on actions the
data does not take and up on those it does, so the greedy policy stays near the data's support
(Kumar, Zhou, Tucker, Levine 2020, "Conservative Q-Learning for Offline Reinforcement
Learning", https://arxiv.org/abs/2006.04779, eq. 4 with the entropy regularizer). The module is
DQN's (:class:`~rlscale.modules.rl_modules.discrete_q.DiscreteQModule`); batches come from the
offline data pipeline.

The target network is copied every ``target_network_update_freq`` consumed transitions; RLlib
counts those once per training iteration, so the copy happens at most once an iteration.
"""

from __future__ import annotations

import torch
from ray.rllib.algorithms.dqn import DQN as RLlibDQN
from ray.rllib.algorithms.dqn import DQNConfig as RLlibDQNConfig
from ray.rllib.algorithms.dqn.dqn_learner import QF_NEXT_PREDS, QF_PREDS, QF_TARGET_NEXT_PREDS
from ray.rllib.algorithms.dqn.torch.dqn_torch_learner import DQNTorchLearner
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.utils.annotations import override

from rlscale.algorithms.common.config import RlscaleConfigMixin
from rlscale.algorithms.common.offline import (
    NextObservationsForOfflineDQN,
    ReleasesDataIterators,
    offline_training_step,
    set_offline_defaults,
)
from rlscale.modules.rl_modules.discrete_q import DiscreteQModule

CQL_REGULARIZER_KEY = "cql_regularizer"
TD_LOSS_KEY = "td_loss"


class DiscreteCQLConfig(RlscaleConfigMixin, NextObservationsForOfflineDQN, RLlibDQNConfig):
    """RLlib's DQNConfig plus ``cql_alpha``, the weight of the conservative regularizer."""

    RLSCALE_KEYS = ("cql_alpha",)

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or DiscreteCQL)
        set_offline_defaults(self, updates_per_iteration=100)
        self.cql_alpha = 1.0
        self.hidden_sizes = [64, 64, 64]
        self.activation = "tanh"
        self.lr = 5e-4
        self.gamma = 0.99
        self.train_batch_size_per_learner = 256
        self.double_q = True
        self.dueling = False
        self.target_network_update_freq = 1
        self.tau = 1.0
        self.td_error_loss_fn = "huber"

    @override(RLlibDQNConfig)
    def get_default_rl_module_spec(self) -> RLModuleSpec:
        return RLModuleSpec(module_class=DiscreteQModule, model_config=self.model_config)

    @override(RLlibDQNConfig)
    def get_default_learner_class(self) -> type[DiscreteCQLLearner]:
        return DiscreteCQLLearner

    @override(RLlibDQNConfig)
    def validate(self) -> None:
        super().validate()
        if self.num_atoms != 1 or self.noisy:
            self._value_error(
                "discrete CQL's Q-network is an expectation head: leave num_atoms=1 (no "
                "distributional Q) and noisy=False."
            )
        if self.cql_alpha < 0:
            self._value_error(f"cql_alpha must be >= 0, got {self.cql_alpha}.")


class DiscreteCQLLearner(DQNTorchLearner):
    @override(DQNTorchLearner)
    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out):
        q_values = fwd_out[QF_PREDS]
        actions = batch[Columns.ACTIONS].long().unsqueeze(-1)
        q_data = torch.gather(q_values, -1, actions).squeeze(-1)
        next_source = fwd_out[QF_NEXT_PREDS] if config.double_q else fwd_out[QF_TARGET_NEXT_PREDS]
        next_best = torch.argmax(next_source, dim=-1, keepdim=True)
        q_next = torch.gather(fwd_out[QF_TARGET_NEXT_PREDS], -1, next_best).squeeze(-1)
        not_terminal = 1.0 - batch[Columns.TERMINATEDS].float()
        target = (batch[Columns.REWARDS] + config.gamma * not_terminal * q_next).detach()
        if config.td_error_loss_fn == "huber":
            td_loss = torch.nn.functional.huber_loss(q_data, target)
        else:
            td_loss = torch.nn.functional.mse_loss(q_data, target)
        regularizer = (torch.logsumexp(q_values, dim=-1) - q_data).mean()
        loss = td_loss + config.cql_alpha * regularizer
        self.metrics.log_dict(
            {
                TD_LOSS_KEY: td_loss,
                CQL_REGULARIZER_KEY: regularizer,
                "q_data_mean": q_data.mean(),
            },
            key=module_id,
            window=1,
        )
        return loss


class DiscreteCQL(ReleasesDataIterators, RLlibDQN):
    """Offline training step: batches from the offline data, one learner update call."""

    @classmethod
    @override(RLlibDQN)
    def get_default_config(cls) -> DiscreteCQLConfig:
        return DiscreteCQLConfig()

    @override(RLlibDQN)
    def training_step(self) -> None:
        offline_training_step(self)
