"""Diffusion-QL's RLModule: the shared conditional diffusion policy, its EMA copy, twin critics
and their Polyak targets (Wang, Hunt & Zhou 2023, "Diffusion Policies as an Expressive Policy
Class for Offline Reinforcement Learning", https://arxiv.org/abs/2208.06193, section 3 and
Algorithm 1).

- ``policy``: :class:`~rlscale.modules.generative.diffusion.ConditionalDiffusion` over the
  actions in [-1, 1] (``normalize_actions``), conditioned on the observations standardized with
  the dataset's statistics (``standardize``, as ``diffusion_bc`` and ``bc`` do). The noise
  predictor is an MLP ``[a_t, e(t), s] -> eps`` of ``hidden_sizes`` with ``activation`` (the
  paper: three layers of 256, Mish), over ``diffusion_steps`` (T) indices of ``beta_schedule``
  (the paper: ``vp``, T = 5).
- ``target_policy``: the exponential moving average of ``policy`` (the paper's θ'), averaged
  with ``tau`` after every gradient step. It draws the next action a' ~ π_θ'(s') of the TD
  target, and it is the policy that acts.
- ``critics``: ``num_critics`` (two, ``twin_q``) Q(s, a) MLPs evaluated together
  (:class:`~rlscale.modules.networks.ensemble.EnsembleMLP`), on the same standardized
  observations; ``_target_critics`` their frozen Polyak copy.

Acting (the EnvRunner's inference-only copy holds ``target_policy``, ``critics`` and the
observation statistics): for each state draw ``num_candidate_actions`` actions from
``target_policy`` and pick one by min_i Q_i(s, a). Exploration samples the pick from softmax(Q)
over the candidates (the paper's selection); evaluation (``explore=False``, RLlib's greedy
convention) takes the argmax. With returns of tens to hundreds the softmax is nearly the argmax
anyway; the argmax makes evaluation repeatable given the candidates.

``model_config`` keys: ``hidden_sizes``, ``activation``, ``num_critics``, ``diffusion_steps``,
``beta_schedule``, ``sampler``, ``ddim_steps``, ``ddim_eta``, ``num_candidate_actions``,
``max_q_backup``, ``num_backup_samples``, ``normalize_actions``, ``standardize``,
``dataset_statistics``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.algorithms.dqn.default_dqn_rl_module import QF_PREDS
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis import InferenceOnlyAPI, QNetAPI, TargetNetworkAPI
from ray.rllib.core.rl_module.torch import TorchRLModule
from torch import nn

from rlscale.algorithms.offline.bc import flat_size, register_statistics, standardized_observations
from rlscale.modules.generative.diffusion import (
    ConditionalDiffusion,
    DiffusionSettings,
    sample_with,
)
from rlscale.modules.networks.ensemble import EnsembleMLP
from rlscale.modules.networks.target import frozen_copy

# What DiffusionQLModule's ``forward_train`` returns for DiffusionQLLearner's losses.
CONDITION = "condition"
"""The standardized observations s the policy and critics see: ``[rows, obs_size]``."""
Q_LOGGED = "q_logged"
"""Each critic's Q(s, a) of the logged action: ``[critics, rows]``."""
ACTOR_ACTIONS = "actor_actions"
"""a_0 ~ π_θ(s), drawn through the whole reverse chain with its graph: ``[rows, action_size]``."""
Q_ACTOR = "q_actor"
"""Q_1(s, a_0) with the critic's weights held fixed (gradients reach θ through a_0): ``[rows]``."""
Q_TARGET_NEXT = "q_target_next"
"""The bootstrap value at s' without gradients: min_i Q'_i(s', a'), a' ~ π_θ'(s'), or with
``max_q_backup`` min_i max_j Q'_i(s', a'_j) over ``num_backup_samples`` draws: ``[rows]``."""


class DiffusionQLModule(TorchRLModule, InferenceOnlyAPI, TargetNetworkAPI, QNetAPI):
    def setup(self) -> None:
        config = self.model_config
        if not isinstance(self.action_space, gym.spaces.Box):
            raise ValueError("diffusion_ql needs a Box action space")
        observation_size = flat_size(self.observation_space)
        if observation_size is None:
            raise ValueError("diffusion_ql needs flat vector observations")
        self.action_dim = int(np.prod(self.action_space.shape))
        register_statistics(self, {"obs": observation_size})
        if config["normalize_actions"]:
            low, high = -1.0, 1.0
        else:
            low = torch.as_tensor(self.action_space.low, dtype=torch.float32).reshape(-1)
            high = torch.as_tensor(self.action_space.high, dtype=torch.float32).reshape(-1)
        hidden, activation = tuple(config["hidden_sizes"]), config["activation"]
        settings = DiffusionSettings(
            steps=int(config["diffusion_steps"]),
            beta_schedule=config["beta_schedule"],
            hidden_sizes=hidden,
            activation=activation,
        )

        def diffusion() -> ConditionalDiffusion:
            return ConditionalDiffusion(
                self.action_dim, observation_size, settings, action_low=low, action_high=high
            )

        # The EMA policy acts, so the inference-only copy has it (and the critics that rank its
        # candidates); the trained policy and the target critics live on the Learner only.
        self.target_policy = diffusion().requires_grad_(False)
        self.critics = EnsembleMLP(
            config["num_critics"], observation_size + self.action_dim, hidden, 1, activation
        )
        self.sampler = config["sampler"]
        ddim_steps = config["ddim_steps"]
        self.ddim_steps = None if ddim_steps is None else int(ddim_steps)
        self.ddim_eta = float(config["ddim_eta"])
        self.num_candidate_actions = int(config["num_candidate_actions"])
        self.max_q_backup = bool(config["max_q_backup"])
        self.num_backup_samples = int(config["num_backup_samples"])
        if self.inference_only:
            return
        self.policy = diffusion()
        self.target_policy.load_state_dict(self.policy.state_dict())

    # Sampling and critics.

    def sample_actions(
        self, diffusion: ConditionalDiffusion, condition: torch.Tensor, grad: bool = False
    ) -> torch.Tensor:
        """One action per condition row from ``diffusion`` with the configured sampler;
        ``grad=True`` keeps the graph of the whole reverse chain."""
        return sample_with(
            diffusion, condition, self.sampler, self.ddim_steps, self.ddim_eta, grad=grad
        )

    def critic_values(
        self,
        critics: EnsembleMLP,
        condition: torch.Tensor,
        actions: torch.Tensor,
        detach_weights: bool = False,
    ) -> torch.Tensor:
        """Each critic's Q of ``condition [rows, obs]`` with ``actions [rows, action_size]``:
        ``[critics, rows]``. ``detach_weights`` holds the critics fixed (the actor's loss)."""
        inputs = torch.cat([condition, actions], dim=-1)
        return critics(inputs, detach_weights=detach_weights)[..., 0]

    def standardized(self, observations: torch.Tensor) -> torch.Tensor:
        """Flat observations in the dataset's standardized units (unchanged without
        ``standardize``)."""
        return standardized_observations(self, observations.reshape(observations.shape[0], -1))

    # Acting.

    def select_actions(self, observations: torch.Tensor, explore: bool) -> torch.Tensor:
        """``num_candidate_actions`` draws of the EMA policy per row, one picked by
        min_i Q_i: sampled from softmax(Q) when ``explore``, else the argmax."""
        condition = self.standardized(observations)
        rows, candidates = condition.shape[0], self.num_candidate_actions
        repeated = condition.repeat_interleave(candidates, dim=0)
        with torch.no_grad():
            actions = self.sample_actions(self.target_policy, repeated)
            q = self.critic_values(self.critics, repeated, actions).min(dim=0).values
        q = q.reshape(rows, candidates)
        picked = torch.distributions.Categorical(logits=q).sample() if explore else q.argmax(-1)
        actions = actions.reshape(rows, candidates, self.action_dim)
        return actions[torch.arange(rows, device=actions.device), picked]

    def _forward_inference(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        actions = self.select_actions(batch[Columns.OBS], explore=False)
        return {Columns.ACTIONS: actions.reshape(-1, *self.action_space.shape)}

    def _forward_exploration(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        actions = self.select_actions(batch[Columns.OBS], explore=True)
        return {Columns.ACTIONS: actions.reshape(-1, *self.action_space.shape)}

    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        return self._forward_inference(batch, **kwargs)

    # Training.

    def _forward_train(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        condition = self.standardized(batch[Columns.OBS])
        next_condition = self.standardized(batch[Columns.NEXT_OBS])
        rows = condition.shape[0]
        logged = batch[Columns.ACTIONS].reshape(rows, self.action_dim).float()
        q_logged = self.critic_values(self.critics, condition, logged)
        actor_actions = self.sample_actions(self.policy, condition, grad=True)
        # Q_1 alone, as the paper's actor loss; its weights held fixed so that the actor's
        # loss moves the policy only.
        q_actor = self.critic_values(self.critics, condition, actor_actions, detach_weights=True)
        with torch.no_grad():
            q_target_next = self._bootstrap_value(next_condition)
        return {
            CONDITION: condition,
            Q_LOGGED: q_logged,
            ACTOR_ACTIONS: actor_actions,
            Q_ACTOR: q_actor[0],
            Q_TARGET_NEXT: q_target_next,
        }

    def _bootstrap_value(self, next_condition: torch.Tensor) -> torch.Tensor:
        """min_i Q'_i(s', a'), a' ~ π_θ'(s'); with ``max_q_backup`` each target critic's max
        over ``num_backup_samples`` draws first, then the min over critics."""
        rows = next_condition.shape[0]
        samples = self.num_backup_samples if self.max_q_backup else 1
        repeated = next_condition.repeat_interleave(samples, dim=0)
        next_actions = self.sample_actions(self.target_policy, repeated)
        q = self.critic_values(self._target_critics, repeated, next_actions)
        q = q.reshape(q.shape[0], rows, samples).max(dim=-1).values  # [critics, rows]
        return q.min(dim=0).values

    # RLlib's APIs for value-based learners.

    def get_non_inference_attributes(self) -> list[str]:
        return ["policy", "_target_critics"]

    def make_target_networks(self) -> None:
        self.target_policy.load_state_dict(self.policy.state_dict())
        self._target_critics = frozen_copy(self.critics)

    def get_target_network_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """The critics' Polyak targets and the policy's EMA, both averaged with ``tau``."""
        return [(self.critics, self._target_critics), (self.policy, self.target_policy)]

    def forward_target(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {QF_PREDS: self._q_of_batch(self._target_critics, batch)}

    def compute_q_values(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {QF_PREDS: self._q_of_batch(self.critics, batch)}

    def _q_of_batch(self, critics: EnsembleMLP, batch: dict[str, Any]) -> torch.Tensor:
        """The critics' minimum at the batch's observations and actions: ``[rows]``."""
        condition = self.standardized(batch[Columns.OBS])
        actions = batch[Columns.ACTIONS].reshape(condition.shape[0], self.action_dim).float()
        return self.critic_values(critics, condition, actions).min(dim=0).values
