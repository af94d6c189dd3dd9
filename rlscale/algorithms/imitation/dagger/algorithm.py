"""DAgger's training step: set beta, roll out and label, aggregate, clone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.policy.sample_batch import SampleBatch

from rlscale.algorithms.common.sampling import sample_env_steps, update_and_sync
from rlscale.algorithms.imitation.dagger.aggregate import LabelledStates
from rlscale.algorithms.imitation.dagger.config import DAggerConfig
from rlscale.algorithms.offline.bc import mean_and_std
from rlscale.datasets.store import RLSCALE_KEY, DatasetWrite, write_dataset
from rlscale.envs import make_env
from rlscale.envs.rllib import env_name_of
from rlscale.errors import DatasetError

EXPERT_LABELS = "expert_labels"
"""Metric: states the expert labelled in this iteration."""
EXPERT_LABELS_LIFETIME = "expert_labels_lifetime"
AGGREGATE_SIZE = "aggregate_size"
BETA = "beta"
AGGREGATE_STATE = "dagger_aggregate"
"""Checkpoint key of the aggregate data set (a resumed run keeps its labels)."""


class DAgger(Algorithm):
    """Set beta, roll out the mixture, aggregate the expert's labels, clone them."""

    @classmethod
    def get_default_config(cls) -> DAggerConfig:
        return DAggerConfig()

    def setup(self, config) -> None:
        super().setup(config)
        self.aggregate = LabelledStates(self.config.aggregate_capacity)
        self._rng = np.random.default_rng(self.config.seed)
        self._labels_lifetime = 0
        seed = self.config.seed
        self.env_runner_group.foreach_env_runner(
            lambda runner: runner.module.seed_mixing(seed, runner.worker_index),
            local_env_runner=True,
        )

    def training_step(self) -> None:
        beta = self.config.beta(self.iteration)
        self.env_runner_group.foreach_env_runner(
            lambda runner: runner.module.set_beta(beta), local_env_runner=True
        )
        self._aggregate_labels()
        self._standardize_with_the_aggregate()
        self._clone_expert()
        self.metrics.log_value(BETA, beta, window=1)
        self.metrics.log_value(AGGREGATE_SIZE, len(self.aggregate), window=1)

    def _aggregate_labels(self) -> None:
        episodes = sample_env_steps(self, self.config.total_train_batch_size)
        labels = self.aggregate.add_episodes(episodes)
        self._labels_lifetime += labels
        self.metrics.log_value(EXPERT_LABELS, labels, window=1)
        self.metrics.log_value(EXPERT_LABELS_LIFETIME, self._labels_lifetime, window=1)

    def _standardize_with_the_aggregate(self) -> None:
        """Give the Learner's module the aggregate's mean and std (``standardize``); the sync
        after the update carries them, as buffers, to the EnvRunners."""
        if not self.config.standardize:
            return
        rows = len(self.aggregate)
        statistics = mean_and_std("obs", self.aggregate.observations.reshape(rows, -1))
        actions = self.aggregate.actions
        if np.issubdtype(actions.dtype, np.floating):
            statistics |= mean_and_std("action", actions.reshape(rows, -1))
        self.learner_group.foreach_learner(
            lambda learner: learner.module[DEFAULT_MODULE_ID].unwrapped().set_statistics(statistics)
        )

    def _clone_expert(self) -> None:
        batch_size = self.config.minibatch_size
        rows = self._rng.integers(
            len(self.aggregate), size=self.config.updates_per_iteration * batch_size
        )
        batch = SampleBatch(
            {
                Columns.OBS: self.aggregate.observations[rows],
                Columns.ACTIONS: self.aggregate.actions[rows],
            }
        )
        update_and_sync(self, batch, batch_size)

    def get_state(self, components=None, *, not_components=None, **kwargs) -> dict[str, Any]:
        state = super().get_state(components, not_components=not_components, **kwargs)
        if self._check_component(AGGREGATE_STATE, components, not_components):
            state[AGGREGATE_STATE] = {
                "columns": self.aggregate.columns,
                "episodes_seen": self.aggregate.episodes_seen,
                "labels_lifetime": self._labels_lifetime,
                "rng": self._rng.bit_generator.state,
            }
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        saved = state.get(AGGREGATE_STATE)
        if saved is not None:
            self.aggregate.columns = saved["columns"]
            self.aggregate.episodes_seen = saved["episodes_seen"]
            self._labels_lifetime = saved["labels_lifetime"]
            self._rng.bit_generator.state = saved["rng"]

    def cleanup(self) -> None:
        try:
            if self.config.aggregate_dataset is not None:
                self.write_aggregate(self.config.aggregate_dataset)
        finally:
            super().cleanup()

    def write_aggregate(self, dataset_id: str, root: str | Path | None = None) -> DatasetWrite:
        """Write the aggregate as the Minari dataset ``dataset_id``: one episode per rolled-out
        episode, its actions the expert's labels (what DAgger clones), its next observations,
        rewards and ends those of the actions actually taken, expert's or learner's."""
        if len(self.aggregate) == 0:
            raise DatasetError(
                f"the DAgger aggregate is empty, so {dataset_id} was not written: train at "
                "least one iteration first"
            )
        observation_space, action_space, env_spec = self._env_description()
        return write_dataset(
            dataset_id,
            self.aggregate.episodes(),
            observation_space,
            action_space,
            env_spec,
            self._aggregate_metadata(),
            root=root,
        )

    def _env_description(self) -> tuple[gym.Space, gym.Space, Any]:
        """The env's spaces and spec (RLlib's EnvRunners hold it inside a wrapper env of their
        own, whose spec cannot be saved)."""
        env = make_env(env_name_of(self.config.env), self.config.env_config)
        try:
            return env.observation_space, env.action_space, env.spec
        finally:
            env.close()

    def _aggregate_metadata(self) -> dict[str, Any]:
        config, env = self.config, env_name_of(self.config.env)
        return {
            "algorithm_name": "dagger",
            "description": (
                f"DAgger's aggregate on {env}: {len(self.aggregate)} states the "
                f"expert {config.expert} labelled over {self.iteration} rounds (seed "
                f"{config.seed}); actions are the expert's labels, next observations follow "
                "the action actually taken"
            ),
            RLSCALE_KEY: {
                "env": env,
                "env_config": dict(config.env_config),
                "policy": f"dagger aggregate, expert {config.expert}",
                "expert": config.expert,
                "rounds": self.iteration,
                "seed": config.seed,
                "actions": "expert labels",
            },
        }
