"""Discrete BCQ: DQN's Q-learning restricted to the actions a behaviour-cloning model deems likely.

Fujimoto, Conti, Ghavamzadeh & Pineau 2019, "Benchmarking Batch Deep Reinforcement Learning
Algorithms", https://arxiv.org/abs/1910.01708, section 5 (the discrete version of Fujimoto, Meger
& Precup 2019, https://arxiv.org/abs/1812.02900). A classifier G_ω(a | s) (softmax over the
actions) is trained to imitate the logged actions; an action is *allowed* at s when
G(a | s) / max_â G(â | s) > τ (``bcq_threshold``). Per minibatch of logged (s, a, r, s', d):

    a'   = argmax over allowed a' at s' of Q_θ(s', a')
    y    = r + γ (1 − d) Q_θ'(s', a')
    L    = Huber(Q_θ(s, a) − y) + CE(G_ω(· | s), a) + c · mean(logits_ω(s)²)

with c = ``imitation_logit_penalty`` (0.01, the paper's regularizer on G's logits). Acting is
greedy over the allowed actions: argmax_{a allowed at s} Q_θ(s, a). τ = 0 is offline DQN (every
action allowed); τ → 1 keeps G's most likely action only (behaviour cloning).

The module is DQN's :class:`~rlscale.modules.rl_modules.discrete_q.DiscreteQModule` plus G as
a separate MLP of the same width (no shared torso: on vector observations the torso is cheap,
and the TD and imitation losses then never pull on the same features). One Adam optimizer steps
both; the target Q-network is copied every ``target_network_update_freq`` consumed transitions
(with ``tau`` 1), which RLlib checks once per training iteration, as for ``cql_discrete``.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch
from ray.rllib.algorithms.dqn import DQN as RLlibDQN
from ray.rllib.algorithms.dqn import DQNConfig as RLlibDQNConfig
from ray.rllib.algorithms.dqn.dqn_learner import (
    QF_NEXT_PREDS,
    QF_PREDS,
    QF_TARGET_NEXT_PREDS,
)
from ray.rllib.algorithms.dqn.torch.dqn_torch_learner import DQNTorchLearner
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.utils.annotations import override
from torch.nn import functional

from rlscale.algorithms.common.config import RlscaleConfigMixin
from rlscale.algorithms.common.offline import (
    NextObservationsForOfflineDQN,
    ReleasesDataIterators,
    offline_training_step,
    set_offline_defaults,
)
from rlscale.modules.generative.inputs import is_real
from rlscale.modules.networks.mlp import build_mlp
from rlscale.modules.rl_modules.discrete_q import DiscreteQModule

IMITATION_LOGITS = "imitation_logits"
"""G's logits at s: ``[rows, actions]``."""
NEXT_ALLOWED = "next_allowed"
"""Which actions G allows at s' (ratio to its most likely action above τ): ``[rows, actions]``."""
TD_LOSS_KEY = "td_loss"
IMITATION_LOSS_KEY = "imitation_loss"


class DiscreteBCQConfig(RlscaleConfigMixin, NextObservationsForOfflineDQN, RLlibDQNConfig):
    """RLlib's DQNConfig on offline data plus ``bcq_threshold`` and ``imitation_logit_penalty``."""

    RLSCALE_KEYS: ClassVar[tuple[str, ...]] = ("bcq_threshold", "imitation_logit_penalty")

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or DiscreteBCQ)
        set_offline_defaults(self, updates_per_iteration=100)
        self.bcq_threshold = 0.3
        """τ: an action is allowed where G(a|s) / max_â G(â|s) > τ (the paper's 0.3)."""
        self.imitation_logit_penalty = 0.01
        """Weight of mean(logits²) of G in the loss (the paper's 0.01)."""
        # Measured on CartPole from ε = 0.5 data (tests/test_bcq.py, 2,000 updates): with
        # cql_discrete's tanh [64, 64, 64] and batch 256 the greedy return swung between 15
        # and 200 (offline DQN, cql_discrete with cql_alpha=0, did the same); ReLU
        # [256, 256] with batch 128 reached 500 after about 1,400 updates and stayed there
        # to 3,000. ReLU [128, 128] got there too, later (about 2,000 updates).
        self.hidden_sizes = [256, 256]
        self.activation = "relu"
        self.lr = 5e-4
        self.gamma = 0.99
        self.train_batch_size_per_learner = 128
        self.double_q = True
        self.dueling = False
        # A hard copy of Q into its target every iteration (100 updates), as cql_discrete.
        self.target_network_update_freq = 1
        self.tau = 1.0
        self.td_error_loss_fn = "huber"

    @property
    def _model_config_auto_includes(self) -> dict[str, Any]:
        return super()._model_config_auto_includes | {"bcq_threshold": self.bcq_threshold}

    @override(RLlibDQNConfig)
    def get_default_rl_module_spec(self) -> RLModuleSpec:
        return RLModuleSpec(module_class=DiscreteBCQModule, model_config=self.model_config)

    @override(RLlibDQNConfig)
    def get_default_learner_class(self) -> type[DiscreteBCQLearner]:
        return DiscreteBCQLearner

    @override(RLlibDQNConfig)
    def validate(self) -> None:
        super().validate()
        if self.num_atoms != 1 or self.noisy:
            self._value_error(
                "discrete BCQ's Q-network is an expectation head: leave num_atoms=1 (no "
                "distributional Q) and noisy=False."
            )
        if not self.double_q:
            self._value_error(
                "discrete BCQ picks the next action with the online Q-network among the "
                "allowed actions and values it with the target network (double Q is part of "
                "its target); leave double_q=True."
            )
        threshold = self.bcq_threshold
        if not is_real(threshold) or not 0.0 <= threshold < 1.0:
            self._value_error(
                f"bcq_threshold (τ) must lie in [0, 1), got {threshold!r}: actions with "
                "G(a|s) / max G(·|s) > τ are allowed, so at 1 or above none would be "
                "(0.3 is the paper's; 0 allows every action, offline DQN)."
            )
        penalty = self.imitation_logit_penalty
        if not is_real(penalty) or not math.isfinite(penalty) or penalty < 0:
            self._value_error(
                f"imitation_logit_penalty must be a number >= 0, got {penalty!r} (0.01 is "
                "the paper's weight on the imitation logits' mean square)."
            )


def allowed_actions(logits: torch.Tensor, threshold: float) -> torch.Tensor:
    """``G(a|s) / max_â G(â|s) > threshold`` from G's logits ``[rows, actions]``, in log space:
    ``logits − max logits > log threshold`` (the softmax's normalizer cancels). G's most
    likely action is always allowed."""
    if threshold <= 0:
        return torch.ones_like(logits, dtype=torch.bool)
    log_ratio = logits - logits.max(dim=-1, keepdim=True).values
    return log_ratio > math.log(threshold)


def masked_argmax(q_values: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """argmax over the allowed actions of ``q_values [rows, actions]``: ``[rows]``."""
    return q_values.masked_fill(~allowed, -torch.inf).argmax(dim=-1)


class DiscreteBCQModule(DiscreteQModule):
    """DQN's Q-network and its target, plus the behaviour-cloning classifier G (its own MLP).

    Acting, in exploration and evaluation alike, is greedy over the allowed actions: the data
    fix what is learned, so the module has no ε-greedy exploration of its own.
    """

    def setup(self) -> None:
        super().setup()
        config = self.model_config
        self.bcq_threshold = float(config["bcq_threshold"])
        self.imitation = build_mlp(
            int(np.prod(self.observation_space.shape)),
            tuple(config["hidden_sizes"]),
            config["activation"],
            int(self.action_space.n),
        )

    def greedy_allowed_actions(self, observations: torch.Tensor) -> torch.Tensor:
        """argmax Q(s, a) over the actions G allows at s: ``[rows]``."""
        allowed = allowed_actions(self.imitation(observations), self.bcq_threshold)
        return masked_argmax(self.q_network(observations), allowed)

    def _forward_inference(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        with torch.no_grad():
            actions = self.greedy_allowed_actions(self._flat_observations(batch))
        return {Columns.ACTIONS: actions}

    def _forward_exploration(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        return self._forward_inference(batch)

    def _forward_train(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        obs = self._flat_observations(batch)
        next_obs = self._flat_observations({Columns.OBS: batch[Columns.NEXT_OBS]})
        rows = obs.shape[0]
        both = torch.cat([obs, next_obs])
        q_values = self.q_network(both)  # one pass for s and s'
        imitation_logits = self.imitation(both)
        with torch.no_grad():
            q_target_next = self._target_q_network(next_obs)
            next_allowed = allowed_actions(imitation_logits[rows:], self.bcq_threshold)
        return {
            QF_PREDS: q_values[:rows],
            QF_NEXT_PREDS: q_values[rows:].detach(),
            QF_TARGET_NEXT_PREDS: q_target_next,
            IMITATION_LOGITS: imitation_logits[:rows],
            NEXT_ALLOWED: next_allowed,
        }


class DiscreteBCQLearner(DQNTorchLearner):
    @override(DQNTorchLearner)
    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out):
        q_values = fwd_out[QF_PREDS]
        actions = batch[Columns.ACTIONS].long()
        q_data = torch.gather(q_values, -1, actions.unsqueeze(-1)).squeeze(-1)
        next_action = masked_argmax(fwd_out[QF_NEXT_PREDS], fwd_out[NEXT_ALLOWED])
        q_next = torch.gather(fwd_out[QF_TARGET_NEXT_PREDS], -1, next_action.unsqueeze(-1)).squeeze(
            -1
        )
        not_terminal = 1.0 - batch[Columns.TERMINATEDS].float()
        target = (batch[Columns.REWARDS] + config.gamma * not_terminal * q_next).detach()
        if config.td_error_loss_fn == "huber":
            td_loss = functional.huber_loss(q_data, target)
        else:
            td_loss = functional.mse_loss(q_data, target)
        logits = fwd_out[IMITATION_LOGITS]
        imitation_loss = functional.cross_entropy(logits, actions)
        logit_penalty = logits.pow(2).mean()
        loss = td_loss + imitation_loss + config.imitation_logit_penalty * logit_penalty
        self.metrics.log_dict(
            {
                TD_LOSS_KEY: td_loss,
                IMITATION_LOSS_KEY: imitation_loss,
                "q_data_mean": q_data.mean(),
                "allowed_next_fraction": fwd_out[NEXT_ALLOWED].float().mean(),
            },
            key=module_id,
            window=1,
        )
        return loss


class DiscreteBCQ(ReleasesDataIterators, RLlibDQN):
    """Offline training step: batches from the offline data, one learner update call."""

    @classmethod
    @override(RLlibDQN)
    def get_default_config(cls) -> DiscreteBCQConfig:
        return DiscreteBCQConfig()

    @override(RLlibDQN)
    def training_step(self) -> None:
        offline_training_step(self)
