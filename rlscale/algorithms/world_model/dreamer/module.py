"""Dreamer's RLModule: the world model and the actor, plus (on the Learner only) the critic, its
slow target and the return normalizer.

The module is stateful (RLlib's ``get_initial_state`` / ``STATE_IN`` / ``STATE_OUT``): its
recurrent state is the world model's filtered latent state of the episode (``h``, ``z``), the
action the module took last, and whether the episode has started. Each EnvRunner step runs one
posterior update, q(z_t | h_t, o_t) with h_t = GRU(h_{t-1}, z_{t-1}, a_{t-1}), then acts with the
actor on [h_t, z_t]. RLlib's default env-to-module pipeline stores each step's ``STATE_OUT`` in
the episode and feeds it back as the next ``STATE_IN`` (the initial state at an episode's
start), on any number of EnvRunners and vectorized envs, so nothing else has to keep per-episode
filter state; the previous action rides along in the state because the posterior needs it, and
the action the module chose is exactly the one the replay records (in [-1, 1]).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.torch import TorchRLModule
from torch import Tensor, nn

from rlscale.algorithms.common.settings import settings_from
from rlscale.modules.distributions.squashed_gaussian import SquashedGaussianPolicy
from rlscale.modules.networks.mlp import build_mlp
from rlscale.modules.networks.target import frozen_copy
from rlscale.modules.world_models import LatentState, WorldModel, WorldModelSpec, symexp

DETERMINISTIC = "deterministic"
"""Recurrent state: the world model's h of the episode, ``[batch, deterministic_size]``."""
STOCHASTIC = "stochastic"
"""Recurrent state: the posterior sample z of the last step, ``[batch, stochastic width]``."""
PREVIOUS_ACTION = "previous_action"
"""Recurrent state: the action the module took last, in [-1, 1], ``[batch, action_dim]``."""
STARTED = "started"
"""Recurrent state: 0 before an episode's first step (the filter starts afresh), else 1."""


def world_model_spec(
    overrides: dict[str, Any], observation_shape: tuple[int, ...], action_dim: int
) -> WorldModelSpec:
    """The world model's spec: ``WorldModelSpec``'s defaults, ``overrides`` over them."""
    return settings_from(
        WorldModelSpec,
        {**overrides, "observation_shape": tuple(observation_shape), "action_dim": action_dim},
        "world_model",
    )


class ReturnNormalizer(nn.Module):
    """DreamerV3's return scale (Hafner et al. 2023, Sec. 3, eq. 7-8): an exponential moving
    average of the 5th-to-95th percentile range of the λ-returns; the actor divides returns by
    max(1, scale), so large returns are scaled down and small ones are not blown up."""

    def __init__(self, decay: float, low: float = 0.05, high: float = 0.95):
        super().__init__()
        self.decay, self.low, self.high = decay, low, high
        self.register_buffer("range_ema", torch.zeros(()))
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, returns: Tensor) -> None:
        quantiles = torch.quantile(
            returns.detach().flatten().float(),
            torch.tensor([self.low, self.high], device=returns.device),
        )
        spread = quantiles[1] - quantiles[0]
        # The first batch sets the average: an average started at zero would leave the
        # returns unscaled for the first hundred updates.
        decay = self.decay if int(self.updates) > 0 else 0.0
        self.range_ema.mul_(decay).add_((1.0 - decay) * spread)
        self.updates.add_(1)

    def scale(self) -> Tensor:
        return self.range_ema.clamp(min=1.0)


class DreamerModule(TorchRLModule):
    """World model + actor (every copy); critic, target critic, return normalizer (Learner).

    ``model_config`` keys: ``world_model`` (``WorldModelSpec`` fields), ``hidden_sizes`` and
    ``activation`` (actor and critic MLPs), ``return_scale_decay``.
    """

    act_uniformly = False
    """Explore with actions drawn uniformly from [-1, 1] (the random warm-up); the filter still
    runs, so the episode's recurrent state stays that of the actions taken."""

    def setup(self) -> None:
        config = self.model_config
        self.action_dim = int(np.prod(self.action_space.shape))
        self.observation_shape = tuple(self.observation_space.shape)
        spec = world_model_spec(config["world_model"], self.observation_shape, self.action_dim)
        self.world_model = WorldModel(spec)
        hidden, activation = list(config["hidden_sizes"]), config["activation"]
        self.actor = SquashedGaussianPolicy(spec.feature_size, self.action_dim, hidden, activation)
        if self.inference_only:
            return
        self.critic = build_mlp(spec.feature_size, hidden, activation, output_dim=1)
        self.target_critic = frozen_copy(self.critic)
        self.return_normalizer = ReturnNormalizer(config["return_scale_decay"])

    def get_non_inference_attributes(self) -> list[str]:
        return ["critic", "target_critic", "return_normalizer"]

    def symlog_value(self, features: Tensor, target: bool = False) -> Tensor:
        """The critic's (or slow target critic's) output, symlog of the value, per row."""
        return (self.target_critic if target else self.critic)(features).squeeze(-1)

    def value(self, features: Tensor, target: bool = False) -> Tensor:
        """The value of each feature row ``[...]``: the critic learns symlog(v) (DreamerV3's
        squashing), so that returns of hundreds (Pendulum's) and of one are learned alike."""
        return symexp(self.symlog_value(features, target))

    # -- acting on the EnvRunners -------------------------------------------------------------

    def is_stateful(self) -> bool:
        return True

    def get_initial_state(self) -> dict[str, Tensor]:
        spec = self.world_model.spec
        return {
            DETERMINISTIC: torch.zeros(spec.deterministic_size),
            STOCHASTIC: torch.zeros(spec.stochastic_flat_size),
            PREVIOUS_ACTION: torch.zeros(self.action_dim),
            STARTED: torch.zeros(1),
        }

    def _forward_inference(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        return self._act(batch, explore=False)

    def _forward_exploration(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        return self._act(batch, explore=True)

    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        return self._act(batch, explore=False)

    def _forward_train(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        # The Learner trains on replayed sequences (DreamerLearner.train_on_sequences).
        return {}

    @torch.no_grad()
    def _act(self, batch: dict[str, Any], explore: bool) -> dict[str, Any]:
        observations = batch[Columns.OBS]
        # On EnvRunners a stateful module's batch carries a time axis of one step.
        timed = observations.dim() == len(self.observation_shape) + 2
        if timed:
            observations = observations[:, 0]
        posterior = self.filter_step(batch[Columns.STATE_IN], observations, sample=explore)
        actions = self._actions(posterior.features(), explore)
        state_out = {
            DETERMINISTIC: posterior.deterministic,
            STOCHASTIC: posterior.stochastic,
            PREVIOUS_ACTION: actions,
            STARTED: torch.ones_like(actions[:, :1]),
        }
        return {
            Columns.ACTIONS: actions[:, None] if timed else actions,
            Columns.STATE_OUT: state_out,
        }

    def filter_step(
        self, state: dict[str, Tensor], observations: Tensor, sample: bool
    ) -> LatentState:
        """The posterior after the episode's previous action led to ``observations [N, ...]``
        (one step of ``WorldModel.observe``: the same update the world model trains with); its
        latent is drawn when ``sample``, else the posterior's mode (greedy acting)."""
        model = self.world_model
        dtype = next(model.parameters()).dtype
        previous = LatentState(state[DETERMINISTIC].to(dtype), state[STOCHASTIC].to(dtype))
        is_first = state[STARTED][:, 0] < 0.5
        posterior, _ = model.observe_step(
            previous,
            state[PREVIOUS_ACTION].to(dtype),
            model.encoder(observations),
            is_first,
            sample=sample,
        )
        return posterior

    def _actions(self, features: Tensor, explore: bool) -> Tensor:
        if explore and self.act_uniformly:
            uniform = torch.rand(features.shape[0], self.action_dim, device=features.device)
            return 2.0 * uniform - 1.0
        distribution = self.actor(features)
        if not explore:
            return distribution.greedy()
        actions, _ = distribution.rsample_and_logp()
        return actions


def set_uniform_exploration(module, on: bool) -> None:
    """Switch an EnvRunner's Dreamer module between uniform random and actor exploration."""
    if isinstance(module.unwrapped(), DreamerModule):
        module.unwrapped().act_uniformly = on
