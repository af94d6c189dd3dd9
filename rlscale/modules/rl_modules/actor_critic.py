"""The actor-critic RLModule of A2C, TRPO and PPO: rlscale's ActorCritic behind RLlib's APIs.

``forward_*`` return ``Columns.ACTION_DIST_INPUTS``; RLlib's default distribution classes turn
them into actions (``TorchCategorical`` for Discrete, ``TorchDiagGaussian`` for Box; greedy
acting takes the argmax or the mean). ``compute_values`` implements ``ValueFunctionAPI`` for the
GAE connector and the losses.

Action bounds: the Gaussian acts in the normalized range [-1, 1]; RLlib's module-to-env
connector (``normalize_actions=True``, the configs' default for Box actions) maps that linearly
onto the Box's bounds and clips the result to them. The episode keeps the unclipped sample, so
the log-probs the losses use are those of the Gaussian that drew it.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis.value_function_api import ValueFunctionAPI
from ray.rllib.core.rl_module.torch import TorchRLModule

from rlscale.modules.networks.actor_critic import ActorCritic, ActorCriticShape

VALUES = "values"
"""``forward_train``'s V(s) column, read by the policy-gradient losses."""


def actor_critic_shape(
    observation_space: gym.Space, action_space: gym.Space, model_config: dict[str, Any]
) -> ActorCriticShape:
    """The network shape for these spaces and the config's ``hidden_sizes`` & co."""
    if not isinstance(observation_space, gym.spaces.Box):
        raise ValueError(f"the actor-critic needs a Box observation space, got {observation_space}")
    if isinstance(action_space, gym.spaces.Discrete):
        action_size, continuous = int(action_space.n), False
    elif isinstance(action_space, gym.spaces.Box):
        action_size, continuous = int(np.prod(action_space.shape)), True
    else:
        raise ValueError(
            f"the actor-critic needs a Discrete or Box action space, got {action_space}"
        )
    return ActorCriticShape(
        observation_size=int(np.prod(observation_space.shape)),
        action_size=action_size,
        continuous=continuous,
        hidden_sizes=tuple(model_config["hidden_sizes"]),
        activation=model_config["activation"],
        shared_trunk=bool(model_config["shared_trunk"]),
        initial_log_std=float(model_config["initial_log_std"]),
    )


class ActorCriticModule(TorchRLModule, ValueFunctionAPI):
    """Categorical or diagonal-Gaussian policy and a state-value head (shared or separate trunk)."""

    def setup(self) -> None:
        shape = actor_critic_shape(self.observation_space, self.action_space, self.model_config)
        self.net = ActorCritic(shape)

    def observations(self, batch: dict[str, Any]) -> torch.Tensor:
        """The batch's observations, flattened to ``[batch, features]``."""
        return batch[Columns.OBS].reshape(batch[Columns.OBS].shape[0], -1).float()

    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        return {Columns.ACTION_DIST_INPUTS: self.net.distribution_inputs(self.observations(batch))}

    def _forward_train(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        # One pass for both heads; the losses read the values back through compute_values.
        dist_inputs, values = self.net(self.observations(batch))
        return {Columns.ACTION_DIST_INPUTS: dist_inputs, VALUES: values}

    def compute_values(self, batch: dict[str, Any], embeddings: Any | None = None) -> torch.Tensor:
        if embeddings is not None:
            return embeddings
        return self.net.value(self.observations(batch))
