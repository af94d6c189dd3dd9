"""rlscale's CQL RLModule: a squashed-Gaussian actor, a critic ensemble and its target copy.

Everything CQL's losses need from one minibatch comes out of one ``forward_train`` call, with
each critic ensemble evaluated once per role (three calls per update):

- the critics on the logged state s paired with every action CQL(H) asks about, stacked into
  one batch: the logged action, ``num_actions`` uniform actions, ``num_actions`` policy
  samples at s and ``num_actions`` policy samples at s' (Kumar, Zhou, Tucker, Levine 2020,
  https://arxiv.org/abs/2006.04779, eq. 4 and its importance-sampled estimate in appendix F:
  all of them scored at s). The sampled actions are detached: the regularizer trains Q only.
- the critics at (s, a ~ π(s)) with their weights detached, for the actor's loss: its gradient
  reaches the policy through the action and leaves Q alone, so one backward pass serves the
  actor, the critics and the temperature together.
- the target critics at (s', a') for the TD target, without gradients, where a' is the
  policy's greedy action tanh(mean(s')) (``target_action="mean"``, the default, as d3rlpy
  bootstraps) or a sample a' ~ π(s') (``"sample"``, SAC's and the CQL authors' code). On Hopper
  data from a near-deterministic policy the sampled a' lands far off the data once the entropy
  weight has grown, where the regularizer has pushed Q down; the targets then fell with it and
  Q(s, a_data) diverged to about −970 in 10,000 updates while every reward was positive. With
  the mean it stayed between +40 and +75 (README, CQL on Hopper-v5 data).

The policy acts in [-1, 1]; RLlib's module-to-env connector maps that onto the env's bounds
(``normalize_actions``, which CQL requires), and logged actions are rescaled the other way when
the dataset is read. Acting returns the Gaussian's parameters as ``ACTION_DIST_INPUTS`` for
:class:`SquashedGaussian`, whose greedy action is tanh(mean).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from ray.rllib.algorithms.dqn.dqn_learner import QF_PREDS
from ray.rllib.core.columns import Columns
from ray.rllib.core.distribution.torch.torch_distribution import (
    TorchDeterministic,
    TorchSquashedGaussian,
)
from ray.rllib.core.learner.utils import make_target_network
from ray.rllib.core.rl_module.apis import InferenceOnlyAPI, QNetAPI, TargetNetworkAPI
from ray.rllib.core.rl_module.torch import TorchRLModule
from torch import nn

from rlscale.modules.ensemble import EnsembleMLP
from rlscale.modules.squashed_gaussian import SquashedGaussianPolicy

Q_LOGGED = "q_logged"
"""Each critic's Q(s, a_data): ``[critics, rows]``."""
Q_SAMPLED = "q_sampled"
"""Each critic's Q(s, ·) of the regularizer's actions: ``[critics, 3, num_actions, rows]``,
uniform, policy at s, policy at s' along the second axis."""
LOGP_SAMPLED = "logp_sampled"
"""log π of the policy's regularizer samples at s and s' (detached): ``[2, num_actions, rows]``."""
Q_ACTOR = "q_actor"
"""Min over critics of Q(s, a ~ π(s)), critics held fixed: ``[rows]``."""
LOGP_ACTOR = "logp_actor"
"""log π(a | s) of the actor's action: ``[rows]``."""
LOGP_LOGGED = "logp_logged"
"""log π(a_data | s), for the behavior-cloning warm-up: ``[rows]``."""
Q_TARGET_NEXT = "q_target_next"
"""Min over target critics of Q'(s', a'), a' = tanh(mean(s')) or a' ~ π(s'): ``[rows]``."""
LOGP_NEXT = "logp_next"
"""log π(a' | s') of a sampled next action (the soft backup's entropy term): ``[rows]``."""


class SquashedGaussian(TorchSquashedGaussian):
    """RLlib's squashed Gaussian on [-1, 1] whose deterministic action is tanh(mean).

    RLlib's ``TorchSquashedGaussian.to_deterministic()`` returns the mean *before* the tanh,
    which RLlib's unsquashing then clips to the bounds: a bang-bang greedy policy.
    """

    def to_deterministic(self) -> TorchDeterministic:
        return TorchDeterministic(loc=self._squash(self.loc))


class RlscaleCQLModule(TorchRLModule, InferenceOnlyAPI, TargetNetworkAPI, QNetAPI):
    def setup(self) -> None:
        config = self.model_config
        observation_dim = int(np.prod(self.observation_space.shape))
        self.action_dim = int(np.prod(self.action_space.shape))
        hidden, activation = tuple(config["fcnet_hiddens"]), config["fcnet_activation"]
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

    # Training.

    def _forward_train(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        obs = self._observations(batch, Columns.OBS)
        next_obs = self._observations(batch, Columns.NEXT_OBS)
        rows, samples = obs.shape[0], self.model_config["num_actions"]
        # One policy pass for s and s'.
        distribution = self.policy(torch.cat([obs, next_obs]))
        actions, logps = distribution.rsample(samples)  # [samples, 2 * rows, ...]
        logged = batch[Columns.ACTIONS].reshape(rows, self.action_dim).float()
        uniform = 2.0 * torch.rand_like(actions[:, :rows]) - 1.0
        regularizer_actions = torch.cat(
            [logged.unsqueeze(0), uniform, actions[:, :rows].detach(), actions[:, rows:].detach()]
        )  # [1 + 3 * samples, rows, action_dim], all scored at s
        q = self._critic_values(self.critics, obs, regularizer_actions)
        with torch.no_grad():
            if self.model_config["target_action"] == "mean":
                next_action = torch.tanh(distribution.mean[rows:])
            else:
                next_action = actions[0, rows:]
            q_target_next = self._critic_values(
                self._target_critics, next_obs, next_action.unsqueeze(0)
            )[:, 0]
        actor_action = actions[:1, :rows]
        q_actor = self._critic_values(self.critics, obs, actor_action, detach_weights=True)[:, 0]
        policy_at_obs = type(distribution)(distribution.mean[:rows], distribution.log_std[:rows])
        return {
            Q_LOGGED: q[:, 0],
            Q_SAMPLED: q[:, 1:].reshape(q.shape[0], 3, samples, rows),
            LOGP_SAMPLED: logps.detach().reshape(samples, 2, rows).transpose(0, 1),
            Q_ACTOR: q_actor.min(dim=0).values,
            LOGP_ACTOR: logps[0, :rows],
            LOGP_LOGGED: policy_at_obs.log_prob(logged),
            Q_TARGET_NEXT: q_target_next.min(dim=0).values,
            LOGP_NEXT: logps[0, rows:].detach(),
        }

    def _critic_values(
        self,
        critics: EnsembleMLP,
        obs: torch.Tensor,
        actions: torch.Tensor,
        detach_weights: bool = False,
    ) -> torch.Tensor:
        """Q of ``obs [rows, ...]`` with each of ``actions [k, rows, ...]``.

        Returns ``[critics, k, rows]``.
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
        self._target_critics = make_target_network(self.critics)

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
