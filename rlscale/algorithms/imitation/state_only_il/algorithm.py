"""State-only IL's Algorithm: SAC's sampling and updates, with the densities fitted beside it and
the env's rewards replaced by the imitation reward (see the package docstring)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from ray.rllib.core.columns import Columns

from rlscale.algorithms.imitation.demonstrations import (
    DEMONSTRATION_TRANSITIONS,
    demonstrations_of,
    required,
)
from rlscale.algorithms.imitation.state_only_il.config import StateOnlyILConfig
from rlscale.algorithms.imitation.state_only_il.densities import (
    TransitionDensities,
    one_thread,
    with_absorbing_terminals,
)
from rlscale.algorithms.value_based.sac import SAC
from rlscale.envs import make_env
from rlscale.envs.rllib import env_name_of

EXPERT_FLOW_NLL = "expert_flow_nll"
IMITATION_REWARD_MEAN = "imitation_reward_mean"
KL_ESTIMATE = "transition_kl_estimate"


class StateOnlyIL(SAC):
    """SAC on ``r(s, a, s')`` from the densities; the demonstrations' actions are never read."""

    @classmethod
    def get_default_config(cls) -> StateOnlyILConfig:
        return StateOnlyILConfig()

    def setup(self, config) -> None:
        super().setup(config)
        self.demonstrations = demonstrations_of(self.config)
        env = make_env(env_name_of(self.config.env), dict(self.config.env_config or {}))
        observation_dim = int(np.prod(env.observation_space.shape))
        action_space = env.action_space
        env.close()
        torch.manual_seed(self.config.seed or 0)
        self.densities = TransitionDensities(
            observation_dim,
            action_space,
            self.config.effective_flow(),
            float(self.config.density_noise),
        )
        self._steps_since_model_fit: int | None = None  # None: never fitted
        self._expert_nll: float | None = None
        if self.demonstrations is not None:
            self._fit_expert()

    def _fit_expert(self) -> None:
        demonstrations = self.demonstrations
        with one_thread():
            self._expert_nll = self.densities.fit_expert(
                torch.as_tensor(demonstrations.observations),
                torch.as_tensor(demonstrations.next_observations),
                self.config.flow_fit_settings(self.config.expert_flow_updates),
            )

    def training_step(self) -> None:
        demonstrations = required(self.demonstrations, "state_only_il")
        super().training_step()
        self.metrics.log_value(DEMONSTRATION_TRANSITIONS, len(demonstrations), window=1)
        self.metrics.log_value(EXPERT_FLOW_NLL, self._expert_nll, window=1)

    # SAC's hooks.

    def _before_updates(self, sampled_now: int) -> None:
        steps = self._steps_since_model_fit
        if steps is None or steps + sampled_now >= self.config.model_train_interval:
            self._fit_agent_models()
            self._steps_since_model_fit = 0
        else:
            self._steps_since_model_fit = steps + sampled_now

    def _fit_agent_models(self) -> None:
        stored = self.local_replay_buffer.stored()
        everything = _transition_tensors(stored)
        window = self.config.inverse_model_window
        latest = _transition_tensors(self._latest(stored, window))
        with one_thread():
            metrics = self.densities.fit_agent_models(
                everything, latest, self.config.flow_fit_settings(self.config.model_updates)
            )
        self.metrics.log_dict(metrics, window=1)

    def _latest(self, stored: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
        """The newest ``rows`` stored transitions (the replay is a ring once full)."""
        size = len(self.local_replay_buffer)
        end = self.local_replay_buffer._next if size == self.local_replay_buffer.capacity else size
        indices = (end - 1 - np.arange(min(rows, size))) % size
        return {column: values[indices] for column, values in stored.items()}

    def _replayed_transitions(self, rows: int) -> dict[str, Any]:
        """SAC's uniform draws, their env rewards replaced by the imitation reward."""
        transitions = dict(self.local_replay_buffer.sample(rows))
        states, actions, next_states = _transition_tensors(transitions)
        with one_thread():
            parts = self.densities.reward_parts(states, actions, next_states)
        clip = float(self.config.reward_clip)
        reward = parts.reward(clip)
        self.metrics.log_dict(
            {
                IMITATION_REWARD_MEAN: reward.mean().item(),
                "log_expert_transition_mean": parts.expert.mean().item(),
                "log_forward_model_mean": parts.forward.mean().item(),
                "log_inverse_action_mean": parts.inverse.mean().item(),
            },
            window=1,
        )
        terminated = torch.as_tensor(transitions[Columns.TERMINATEDS], dtype=torch.bool)
        reward = with_absorbing_terminals(reward, terminated, self.config.gamma, clip)
        transitions[Columns.REWARDS] = reward.numpy().astype(np.float32)
        return transitions

    def get_state(self, components=None, *, not_components=None, **kwargs) -> dict[str, Any]:
        state = super().get_state(components, not_components=not_components, **kwargs)
        if self._check_component("state_only_il", components, not_components):
            state["state_only_il"] = {"densities": self.densities.state_dict()}
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        saved = state.get("state_only_il")
        if saved is not None:
            self.densities.load_state_dict(saved["densities"])


def _transition_tensors(columns: dict[str, np.ndarray]) -> tuple[torch.Tensor, ...]:
    """``(s [N, obs], a [N, ...], s' [N, obs])`` as float32 tensors (flat observations)."""
    states = torch.as_tensor(np.asarray(columns[Columns.OBS]), dtype=torch.float32)
    next_states = torch.as_tensor(np.asarray(columns[Columns.NEXT_OBS]), dtype=torch.float32)
    actions = torch.as_tensor(np.asarray(columns[Columns.ACTIONS]))
    return states.flatten(1), actions, next_states.flatten(1)
