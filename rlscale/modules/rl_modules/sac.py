"""The SAC-style RLModule: a squashed-Gaussian actor, a critic ensemble, its target, a temperature.

The pieces every soft actor-critic needs (Haarnoja et al. 2018, "Soft Actor-Critic Algorithms
and Applications", https://arxiv.org/abs/1812.05905), shared by the algorithms built on one:
CQL's continuous variant today; SAC, MBPO's policy and IQ-Learn's continuous actor fit the same
module. An algorithm subclasses it with its own ``_forward_train`` (what its losses need from a
minibatch); acting, the networks and RLlib's target-network and Q APIs are here.

- actor: :class:`~rlscale.modules.distributions.squashed_gaussian.SquashedGaussianPolicy`,
  acting in [-1, 1]. RLlib's module-to-env connector maps its actions onto the env's bounds
  (``normalize_actions``), and logged actions are rescaled the other way when a dataset is read.
  Acting returns the Gaussian's parameters as ``ACTION_DIST_INPUTS`` for
  :class:`~rlscale.modules.distributions.squashed_gaussian.SquashedGaussian`, whose greedy
  action is tanh(mean).
- critics: ``num_critics`` Q(s, a) MLPs evaluated together
  (:class:`~rlscale.modules.networks.ensemble.EnsembleMLP`), and a frozen target copy.
- temperature: ``log_alpha``, a free parameter starting at log(``initial_alpha``).

``model_config`` keys: ``hidden_sizes`` and ``activation`` (actor and critics alike),
``num_critics``, ``initial_alpha``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from ray.rllib.algorithms.dqn.default_dqn_rl_module import QF_PREDS
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis import InferenceOnlyAPI, QNetAPI, TargetNetworkAPI
from ray.rllib.core.rl_module.torch import TorchRLModule
from torch import nn

from rlscale.modules.distributions.squashed_gaussian import (
    SquashedGaussian,
    SquashedGaussianPolicy,
)
from rlscale.modules.networks.ensemble import EnsembleMLP
from rlscale.modules.networks.target import frozen_copy


class SACModule(TorchRLModule, InferenceOnlyAPI, TargetNetworkAPI, QNetAPI):
    def setup(self) -> None:
        config = self.model_config
        observation_dim = int(np.prod(self.observation_space.shape))
        self.action_dim = int(np.prod(self.action_space.shape))
        hidden, activation = tuple(config["hidden_sizes"]), config["activation"]
        self.policy = SquashedGaussianPolicy(observation_dim, self.action_dim, hidden, activation)
        if self.inference_only:
            return
        self.critics = EnsembleMLP(
            config["num_critics"], observation_dim + self.action_dim, hidden, 1, activation
        )
        self.log_alpha = nn.Parameter(torch.tensor(math.log(config["initial_alpha"])))

    # Acting.

    def get_inference_action_dist_cls(self) -> type[SquashedGaussian]:
        return SquashedGaussian

    def get_exploration_action_dist_cls(self) -> type[SquashedGaussian]:
        return SquashedGaussian

    def get_train_action_dist_cls(self) -> type[SquashedGaussian]:
        return SquashedGaussian

    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        distribution = self.policy(self._observations(batch, Columns.OBS))
        inputs = torch.cat([distribution.mean, distribution.log_std], dim=-1)
        return {Columns.ACTION_DIST_INPUTS: inputs}

    # Critics.

    def _critic_values(
        self,
        critics: EnsembleMLP,
        obs: torch.Tensor,
        actions: torch.Tensor,
        detach_weights: bool = False,
    ) -> torch.Tensor:
        """Q of ``obs [rows, ...]`` with each of ``actions [k, rows, ...]``.

        Returns ``[critics, k, rows]``. ``detach_weights=True`` holds the critics fixed:
        gradients reach the actions only (an actor's loss).
        """
        k, rows = actions.shape[:2]
        inputs = torch.cat([obs.expand(k, *obs.shape), actions], dim=-1)
        q = critics(inputs.reshape(k * rows, -1), detach_weights=detach_weights)
        return q.reshape(critics.members, k, rows)

    @staticmethod
    def _observations(batch: dict[str, Any], column: str) -> torch.Tensor:
        observations = batch[column]
        return observations.reshape(observations.shape[0], -1).float()

    # RLlib's APIs for value-based learners.

    def get_non_inference_attributes(self) -> list[str]:
        return ["critics", "_target_critics", "log_alpha"]

    def make_target_networks(self) -> None:
        self._target_critics = frozen_copy(self.critics)

    def get_target_network_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.critics, self._target_critics)]

    def forward_target(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {QF_PREDS: self._q_of_batch(self._target_critics, batch)}

    def compute_q_values(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {QF_PREDS: self._q_of_batch(self.critics, batch)}

    def _q_of_batch(self, critics: EnsembleMLP, batch: dict[str, Any]) -> torch.Tensor:
        """The critics' minimum at the batch's observations and actions: ``[rows]``."""
        obs = self._observations(batch, Columns.OBS)
        actions = batch[Columns.ACTIONS].reshape(obs.shape[0], self.action_dim).float()
        return self._critic_values(critics, obs, actions.unsqueeze(0))[:, 0].min(dim=0).values
