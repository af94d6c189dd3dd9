"""IQ-Learn's training step: minibatches of the demonstrations (offline), or rounds of acting
in the env and updating on half-expert, half-replayed minibatches (online)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.policy.sample_batch import MultiAgentBatch, SampleBatch
from ray.rllib.utils.metrics import (
    ENV_RUNNER_RESULTS,
    LEARNER_RESULTS,
    LEARNER_UPDATE_TIMER,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    TIMERS,
)

from rlscale.algorithms.common.offline import log_trained_transitions
from rlscale.algorithms.common.replay import TransitionReplay
from rlscale.algorithms.common.sampling import sample_env_steps, update_and_sync
from rlscale.algorithms.imitation.demonstrations import (
    DEMONSTRATION_TRANSITIONS,
    Demonstrations,
    demonstrations_of,
    required,
)
from rlscale.algorithms.imitation.iq_learn.config import IQLearnConfig
from rlscale.algorithms.imitation.iq_learn.learner import IS_EXPERT
from rlscale.envs import make_env
from rlscale.envs.rllib import env_name_of

REPLAYED_TRANSITIONS = "replayed_transitions"
"""Metric (online): the policy's transitions in the replay buffer."""


def normalized_actions(actions: np.ndarray, space: gym.spaces.Box) -> np.ndarray:
    """Actions in the env's units -> [-1, 1], the actor's (RLlib's ``normalize_actions``)."""
    low, high = space.low.astype(np.float64), space.high.astype(np.float64)
    scaled = 2.0 * (np.asarray(actions, np.float64).reshape(-1, *space.shape) - low) / (high - low)
    return np.clip(scaled - 1.0, -1.0, 1.0).astype(np.float32)


class IQLearn(Algorithm):
    """Offline: minibatches of the demonstrations -> the Learner's IQ loss. Online: each
    iteration alternates acting (into a replay buffer) and updating on minibatches of half
    demonstrations, half replayed transitions."""

    config: IQLearnConfig

    @classmethod
    def get_default_config(cls) -> IQLearnConfig:
        return IQLearnConfig()

    def setup(self, config) -> None:
        super().setup(config)
        self._rng = np.random.default_rng(self.config.seed)
        self.demonstrations = self._demonstrations_for_the_module()
        self.replay = TransitionReplay(self.config.replay_capacity, seed=self.config.seed)

    def _demonstrations_for_the_module(self) -> Demonstrations | None:
        """The demonstrations, Box actions rescaled to the actor's [-1, 1]."""
        demonstrations = demonstrations_of(self.config)
        if demonstrations is None or not self.config.continuous_actions:
            return demonstrations
        env = make_env(env_name_of(self.config.env), dict(self.config.env_config or {}))
        space = env.action_space
        env.close()
        return Demonstrations(
            **{
                **vars(demonstrations),
                "actions": normalized_actions(demonstrations.actions, space),
            }
        )

    def training_step(self) -> None:
        demonstrations = required(self.demonstrations, "iq_learn")
        if self.config.online:
            self._online_step(demonstrations)
        else:
            self._offline_step(demonstrations)
        self.metrics.log_value(DEMONSTRATION_TRANSITIONS, len(demonstrations), window=1)

    def _offline_step(self, demonstrations: Demonstrations) -> None:
        rows = self.config.updates_per_iteration * self.config.minibatch_size
        batch = SampleBatch(self._expert_rows(demonstrations, rows))
        update_and_sync(self, batch, self.config.minibatch_size)
        log_trained_transitions(self.metrics, rows, len(demonstrations))

    def _online_step(self, demonstrations: Demonstrations) -> None:
        rounds = self.config.sample_rounds_per_iteration
        for round_index in range(rounds):
            steps = _share(self.config.env_steps_per_iteration, rounds, round_index)
            self.replay.add_episodes(sample_env_steps(self, steps))
            updates = _share(self.config.updates_per_iteration, rounds, round_index)
            self._update_on_mixture(demonstrations, updates)
        self.metrics.log_value(REPLAYED_TRANSITIONS, len(self.replay), window=1)

    def _update_on_mixture(self, demonstrations: Demonstrations, updates: int) -> None:
        """``updates`` minibatches, each its first half expert rows and second half replayed
        rows (in order: the Learner does not shuffle)."""
        size = self.config.minibatch_size
        expert_rows, policy_rows = size // 2, size - size // 2
        expert = self._expert_rows(demonstrations, updates * expert_rows)
        replayed = self.replay.sample(updates * policy_rows)
        replayed[IS_EXPERT] = np.zeros(updates * policy_rows, np.float32)
        columns = {}
        for column, values in expert.items():
            halves = (
                values.reshape(updates, expert_rows, *values.shape[1:]),
                np.asarray(replayed[column], dtype=values.dtype).reshape(
                    updates, policy_rows, *values.shape[1:]
                ),
            )
            columns[column] = np.concatenate(halves, axis=1).reshape(-1, *values.shape[1:])
        self._update(SampleBatch(columns))

    def _update(self, batch: SampleBatch) -> None:
        with self.metrics.log_time((TIMERS, LEARNER_UPDATE_TIMER)):
            results = self.learner_group.update(
                batch=MultiAgentBatch({DEFAULT_MODULE_ID: batch}, env_steps=len(batch)),
                minibatch_size=self.config.minibatch_size,
                num_epochs=1,
                shuffle_batch_per_epoch=False,
                timesteps={NUM_ENV_STEPS_SAMPLED_LIFETIME: self._env_steps_sampled()},
            )
        self.metrics.aggregate(results, key=LEARNER_RESULTS)
        self.env_runner_group.sync_weights(
            from_worker_or_learner_group=self.learner_group, inference_only=True
        )

    def _env_steps_sampled(self) -> int:
        return self.metrics.peek((ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), default=0)

    def _expert_rows(self, demonstrations: Demonstrations, rows: int) -> dict[str, np.ndarray]:
        """``rows`` demonstration transitions drawn uniformly with replacement."""
        drawn = self._rng.integers(len(demonstrations), size=rows)
        return {
            Columns.OBS: demonstrations.observations[drawn],
            Columns.ACTIONS: demonstrations.actions[drawn],
            Columns.REWARDS: demonstrations.rewards[drawn],
            Columns.NEXT_OBS: demonstrations.next_observations[drawn],
            Columns.TERMINATEDS: demonstrations.terminated[drawn],
            IS_EXPERT: np.ones(rows, np.float32),
        }

    def get_state(self, components=None, *, not_components=None, **kwargs) -> dict[str, Any]:
        state = super().get_state(components, not_components=not_components, **kwargs)
        if self.config.online and self._check_component("iq_learn", components, not_components):
            state["iq_learn"] = {"replay": self.replay.get_state()}
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        saved = state.get("iq_learn")
        if saved is not None:
            self.replay.set_state(saved["replay"])


def _share(total: int, parts: int, index: int) -> int:
    """Part ``index`` of ``total`` split into ``parts`` nearly equal integers."""
    return total // parts + (1 if index < total % parts else 0)
