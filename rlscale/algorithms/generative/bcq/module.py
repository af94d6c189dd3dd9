"""BCQ's RLModule: the shared conditional VAE G(a | s), a perturbation network ξ(s, a), twin
critics, and the target copies of ξ and the critics.

Fujimoto, Meger & Precup 2019, "Off-Policy Deep Reinforcement Learning without Exploration",
https://arxiv.org/abs/1812.02900, section 4 and Algorithm 1:

- G: :class:`~rlscale.modules.generative.vae.ConditionalVAE` over the actions given the
  observation, with BCQ's defaults (β = 0.5, latent twice the action size, encoder log σ
  clamped to [−4, 15], prior latents clipped to ±0.5 when sampling).
- ξ_φ(s, a) = Φ · max_action · tanh(MLP([s, a])), Φ = ``perturbation_scale``; the perturbed
  action a + ξ_φ(s, a) is clipped to the action bounds. With bounds [low, high] per dimension
  (``normalize_actions=False``) max_action is the half range (high − low) / 2.
- critics: ``num_critics`` (two, ``twin_q``) Q(s, a) MLPs evaluated together
  (:class:`~rlscale.modules.networks.ensemble.EnsembleMLP`, as SAC's); targets ξ' and Q' are
  frozen copies that the Learner Polyak-averages after every gradient step.

Acting (EnvRunner copy, exploration and evaluation alike): for each state, decode
``num_sampled_actions`` actions from G's clipped prior, perturb each with ξ, and return the one
with the highest Q_1. The VAE's sampling makes the policy stochastic; the argmax over n
samples keeps it close to the best action the data supports.

``model_config`` keys: ``hidden_sizes``, ``activation`` (ξ and the critics), ``num_critics``,
``vae_hidden_sizes``, ``vae_beta``, ``perturbation_scale``, ``target_min_weight``,
``num_sampled_actions``, ``normalize_actions``.
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

from rlscale.modules.generative.vae import ConditionalVAE, VAESettings
from rlscale.modules.networks.ensemble import EnsembleMLP
from rlscale.modules.networks.mlp import build_mlp
from rlscale.modules.networks.target import frozen_copy

# What BCQModule's ``forward_train`` returns for BCQLearner's losses.
Q_LOGGED = "q_logged"
"""Each critic's Q(s, a) of the logged action: ``[critics, rows]``."""
Q_ACTOR = "q_actor"
"""Q_1(s, a + ξ(s, a)), a ~ G(s), critic weights held fixed (the actor's objective): ``[rows]``."""
Q_TARGET_NEXT = "q_target_next"
"""max over n perturbed samples a_i at s' of λ min_j Q'_j(s', a_i) + (1 − λ) max_j Q'_j(s', a_i),
without gradients: ``[rows]``."""
VAE_LOSS = "vae_loss"
"""G's β-weighted negative ELBO on the logged pairs (scalar)."""
VAE_RECONSTRUCTION = "vae_reconstruction"
VAE_KL = "vae_kl"


class BCQModule(TorchRLModule, InferenceOnlyAPI, TargetNetworkAPI, QNetAPI):
    def setup(self) -> None:
        config = self.model_config
        if not isinstance(self.action_space, gym.spaces.Box):
            raise ValueError(f"bcq needs a Box action space, got {self.action_space}")
        observation_dim = int(np.prod(self.observation_space.shape))
        self.action_dim = int(np.prod(self.action_space.shape))
        if config["normalize_actions"]:
            low = torch.full((self.action_dim,), -1.0)
            high = torch.full((self.action_dim,), 1.0)
        else:
            low = torch.as_tensor(self.action_space.low, dtype=torch.float32).reshape(-1)
            high = torch.as_tensor(self.action_space.high, dtype=torch.float32).reshape(-1)
        self.register_buffer("action_low", low)
        self.register_buffer("action_high", high)
        self.register_buffer("max_action", (high - low) / 2.0)
        self.perturbation_scale = float(config["perturbation_scale"])
        self.target_min_weight = float(config["target_min_weight"])
        self.num_sampled_actions = int(config["num_sampled_actions"])
        hidden, activation = tuple(config["hidden_sizes"]), config["activation"]
        settings = VAESettings(
            hidden_sizes=tuple(config["vae_hidden_sizes"]), beta=float(config["vae_beta"])
        )
        self.vae = ConditionalVAE(
            self.action_dim, observation_dim, settings, action_low=low, action_high=high
        )
        self.perturbation = build_mlp(
            observation_dim + self.action_dim, hidden, activation, self.action_dim
        )
        # Acting needs Q_1 too, so the critics stay in the EnvRunner's inference-only copy.
        self.critics = EnsembleMLP(
            config["num_critics"], observation_dim + self.action_dim, hidden, 1, activation
        )

    # Acting.

    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        with torch.no_grad():
            actions = self.select_actions(self._observations(batch, Columns.OBS))
        return {Columns.ACTIONS: actions.reshape(-1, *self.action_space.shape)}

    def select_actions(self, obs: torch.Tensor) -> torch.Tensor:
        """BCQ's policy: argmax over Q_1 of ``num_sampled_actions`` perturbed VAE samples per
        row of ``obs [rows, obs_dim]``; returns ``[rows, action_dim]``."""
        rows, samples = obs.shape[0], self.num_sampled_actions
        repeated = obs.repeat_interleave(samples, dim=0)  # the samples of a row are contiguous
        candidates = self.perturb(repeated, self.vae.decode(repeated))
        q_first = self._q_values(self.critics, repeated, candidates)[0].reshape(rows, samples)
        best = q_first.argmax(dim=1)
        return candidates.reshape(rows, samples, self.action_dim)[torch.arange(rows), best]

    def perturb(
        self, obs: torch.Tensor, actions: torch.Tensor, network: nn.Module | None = None
    ) -> torch.Tensor:
        """a + ξ(s, a), ξ = Φ · max_action · tanh(net([s, a])), clipped to the action bounds."""
        network = self.perturbation if network is None else network
        raw = network(torch.cat([obs, actions], dim=-1))
        shift = self.perturbation_scale * self.max_action * torch.tanh(raw)
        return torch.clamp(actions + shift, self.action_low, self.action_high)

    # Training.

    def _forward_train(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        obs = self._observations(batch, Columns.OBS)
        next_obs = self._observations(batch, Columns.NEXT_OBS)
        rows = obs.shape[0]
        logged = batch[Columns.ACTIONS].reshape(rows, self.action_dim).float()
        vae_loss = self.vae.loss(logged, obs)
        q_logged = self._q_values(self.critics, obs, logged)
        with torch.no_grad():
            q_target_next = self.soft_clipped_target(next_obs)
            proposed = self.vae.decode(obs)  # one sample of G per state, as the paper's actor
        # The critics held fixed: the actor's gradient reaches ξ through the action only.
        q_actor = self._q_values(self.critics, obs, self.perturb(obs, proposed), True)[0]
        return {
            Q_LOGGED: q_logged,
            Q_ACTOR: q_actor,
            Q_TARGET_NEXT: q_target_next,
            VAE_LOSS: vae_loss.total,
            VAE_RECONSTRUCTION: vae_loss.reconstruction.detach(),
            VAE_KL: vae_loss.kl.detach(),
        }

    def soft_clipped_target(self, next_obs: torch.Tensor) -> torch.Tensor:
        """max_i [λ min_j Q'_j(s', a_i) + (1 − λ) max_j Q'_j(s', a_i)] over n actions a_i
        decoded from G at s' and perturbed by the target ξ': ``[rows]`` (paper's eq. 13)."""
        rows, samples = next_obs.shape[0], self.num_sampled_actions
        repeated = next_obs.repeat_interleave(samples, dim=0)
        candidates = self.perturb(repeated, self.vae.decode(repeated), self._target_perturbation)
        q = self._q_values(self._target_critics, repeated, candidates)
        q = q.reshape(q.shape[0], rows, samples)
        weight = self.target_min_weight
        mixed = weight * q.min(dim=0).values + (1.0 - weight) * q.max(dim=0).values
        return mixed.max(dim=1).values

    @staticmethod
    def _q_values(
        critics: EnsembleMLP,
        obs: torch.Tensor,
        actions: torch.Tensor,
        detach_weights: bool = False,
    ) -> torch.Tensor:
        """Each critic's Q(s, a) for rows of ``obs`` and ``actions``: ``[critics, rows]``."""
        inputs = torch.cat([obs, actions], dim=-1)
        return critics(inputs, detach_weights=detach_weights).squeeze(-1)

    @staticmethod
    def _observations(batch: dict[str, Any], column: str) -> torch.Tensor:
        observations = batch[column]
        return observations.reshape(observations.shape[0], -1).float()

    # RLlib's APIs for value-based learners.

    def get_non_inference_attributes(self) -> list[str]:
        return ["_target_critics", "_target_perturbation"]

    def make_target_networks(self) -> None:
        self._target_critics = frozen_copy(self.critics)
        self._target_perturbation = frozen_copy(self.perturbation)

    def get_target_network_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [
            (self.critics, self._target_critics),
            (self.perturbation, self._target_perturbation),
        ]

    def forward_target(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {QF_PREDS: self._q_first_of_batch(self._target_critics, batch)}

    def compute_q_values(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {QF_PREDS: self._q_first_of_batch(self.critics, batch)}

    def _q_first_of_batch(self, critics: EnsembleMLP, batch: dict[str, Any]) -> torch.Tensor:
        """Q_1 at the batch's observations and actions (the critic BCQ acts with): ``[rows]``."""
        obs = self._observations(batch, Columns.OBS)
        actions = batch[Columns.ACTIONS].reshape(obs.shape[0], self.action_dim).float()
        return self._q_values(critics, obs, actions)[0]
