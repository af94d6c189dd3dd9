"""The RLModule of ``latent_mpc``: the world model and a CEM planner over its latent dynamics.

Its forward pass filters the observation into the latent state and plans from it (see the
package docstring); on the Learner it only holds the world model the loss trains.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.torch import TorchRLModule
from torch import Tensor

from rlscale.algorithms.common.settings import settings_from
from rlscale.modules.planning.cem import CEMPlanner, CEMSettings
from rlscale.modules.planning.mpc import receding_horizon_plan, shifted
from rlscale.modules.world_models import LatentState, WorldModel, WorldModelSpec


def world_model_spec(
    observation_space: gym.Space, action_space: gym.Space, overrides: dict[str, Any]
) -> WorldModelSpec:
    """The spec for these spaces with the config's ``world_model`` overrides (ValueError
    naming an unknown key)."""
    shape = tuple(int(n) for n in observation_space.shape)
    action_dim = int(np.prod(action_space.shape))
    fields = {"observation_shape": shape, "action_dim": action_dim, **dict(overrides)}
    return settings_from(WorldModelSpec, fields, "world_model")


class LatentMPCModule(TorchRLModule):
    """The world model and a CEM planner over its latent dynamics; the forward pass filters the
    observation into the latent state and plans from it (module docstring).

    Recurrent state per episode: the latent ``h`` and ``z``, the action taken last (the model's
    input at the next step), the current plan, and ``started`` (0 at an episode's first step,
    where the filter starts from the model's initial state and the planner cold-starts).
    """

    def setup(self) -> None:
        config = self.model_config
        if not isinstance(self.action_space, gym.spaces.Box):
            raise ValueError(f"latent_mpc needs a Box action space, got {self.action_space}")
        spec = world_model_spec(self.observation_space, self.action_space, config["world_model"])
        self.world_model = WorldModel(spec)
        self.horizon = int(config["horizon"])
        self.cold_start_rounds = int(config["cold_start_rounds"])
        self.exploration_noise = float(config["exploration_noise"])
        self.random_warmup_steps = int(config["random_warmup_steps"])
        self.action_dim = spec.action_dim
        self._low = torch.as_tensor(self.action_space.low, dtype=torch.float32).reshape(-1)
        self._high = torch.as_tensor(self.action_space.high, dtype=torch.float32).reshape(-1)
        settings = settings_from(CEMSettings, dict(config["planner_settings"]), "planner_settings")
        generator = torch.Generator().manual_seed(int(config.get("planner_seed") or 0))
        self.planner = CEMPlanner(
            _LatentDynamics(self.world_model),
            _negative_reward(self.world_model),
            self.horizon,
            terminal_cost=_negative_reward(self.world_model),
            action_low=-1.0,
            action_high=1.0,
            action_dim=self.action_dim,
            settings=settings,
            generator=generator,
        )

    def is_stateful(self) -> bool:
        return True

    def get_initial_state(self) -> dict[str, Tensor]:
        spec = self.world_model.spec
        return {
            "h": torch.zeros(spec.deterministic_size),
            "z": torch.zeros(spec.stochastic_flat_size),
            "action": torch.zeros(self.action_dim),
            "plan": torch.zeros(self.horizon, self.action_dim),
            "started": torch.zeros(1),
        }

    def _forward_inference(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        return self._act(batch, explore=False)

    def _forward_exploration(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        random = kwargs.get("t", self.random_warmup_steps) < self.random_warmup_steps
        return self._act(batch, explore=True, random=random)

    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        return self._act(batch, explore=False)

    def _act(self, batch: dict[str, Any], explore: bool, random: bool = False) -> dict[str, Any]:
        observations = batch[Columns.OBS]
        # On EnvRunners a stateful module's batch carries a time axis of one step.
        timed = observations.dim() == len(self.world_model.spec.observation_shape) + 2
        if timed:
            observations = observations[:, 0]
        state = batch[Columns.STATE_IN]
        first = state["started"][:, 0] < 0.5
        with torch.no_grad():
            posterior, _ = self.world_model.observe_step(
                LatentState(state["h"], state["z"]),
                state["action"],
                self.world_model.encoder(observations),
                first,
                sample=False,
            )
            if random:
                plans = torch.rand_like(state["plan"]) * 2 - 1
            else:
                plans = self._plans(posterior.features(), state["plan"], first)
            actions = plans[:, 0]
            if explore and not random and self.exploration_noise > 0:
                noise = self.exploration_noise * torch.randn_like(actions)
                actions = (actions + noise).clamp(-1.0, 1.0)
        env_actions = self._low + (actions + 1) / 2 * (self._high - self._low)
        env_actions = env_actions.reshape(-1, *self.action_space.shape)
        return {
            Columns.ACTIONS: env_actions[:, None] if timed else env_actions,
            Columns.STATE_OUT: {
                "h": posterior.deterministic,
                "z": posterior.stochastic,
                "action": actions,
                "plan": plans,
                "started": torch.ones(actions.shape[0], 1),
            },
        }

    def _plans(self, start: Tensor, previous: Tensor, first: Tensor) -> Tensor:
        """Each row's new plan: warm-started where the episode has one, cold-started elsewhere."""
        plans = torch.empty_like(previous)
        for rows, warm_start in ((~first, shifted(previous[~first])), (first, None)):
            if bool(rows.any()):
                plans[rows] = receding_horizon_plan(
                    self.planner, start[rows], warm_start, self.cold_start_rounds
                )[0]
        return plans

    def _forward_train(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        # The Learner fits the world model on sequences (its loss); the module never acts there.
        return {}


class _LatentDynamics:
    """The world model's prior as a planner's ``DynamicsModel`` on flat states ``[h, z]``."""

    def __init__(self, model: WorldModel):
        self.model = model
        self.split = model.spec.deterministic_size

    def predict(self, state: Tensor, action: Tensor) -> Tensor:
        latent = LatentState(state[:, : self.split], state[:, self.split :])
        return self.model.img_step(latent, action, sample=False).features()


def _negative_reward(model: WorldModel):
    """Cost of a state: minus the reward predicted on arriving there. As a stage cost on
    ``s_0 .. s_{H-1}`` plus a terminal cost on ``s_H`` it sums the rewards of ``s_1 .. s_H``
    (and of ``s_0``, the same for every candidate)."""

    def cost(state: Tensor, action: Tensor | None = None) -> Tensor:
        return -model.predict_reward(state)

    return cost
