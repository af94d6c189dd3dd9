"""The Algorithm of ``latent_mpc``: collect with the planner, replay sequences, fit, sync."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.policy.sample_batch import SampleBatch

from rlscale.algorithms.common.offline import log_trained_transitions
from rlscale.algorithms.common.sampling import sample_env_steps, update_and_sync
from rlscale.algorithms.world_model.latent_mpc.config import LatentMPCConfig
from rlscale.algorithms.world_model.sequences import SequenceReplay, sequences_from_dataset
from rlscale.envs import resolve_env
from rlscale.envs.rllib import env_name_of

FIT_CHUNK_BYTES = 64 * 2**20
"""Observation bytes drawn from the replay for one Learner update call."""


class LatentMPC(Algorithm):
    """Collect with the planner, replay sequences, fit the world model, sync, repeat."""

    @classmethod
    def get_default_config(cls) -> LatentMPCConfig:
        return LatentMPCConfig()

    def setup(self, config) -> None:
        super().setup(config)
        config = self.config
        self._action_box = _action_box(self._env_action_space())
        if config.has_dataset:
            self.replay = sequences_from_dataset(
                config.dataset_dir,
                config.sequence_length,
                capacity_steps=None if config.offline else config.replay_capacity,
                seed=config.seed,
                action_encoder=self._scaled_actions,
            )
        else:
            self.replay = SequenceReplay(
                config.replay_capacity, config.sequence_length, config.seed
            )

    def _env_action_space(self) -> gym.Space:
        # The local EnvRunner holds no module when sampling runs on remote ones.
        module = self.get_module()
        if module is not None:
            return module.action_space
        return resolve_env(env_name_of(self.config.env), self.config.env_config).action_space

    def _scaled_actions(self, actions: np.ndarray) -> np.ndarray:
        """Env actions ``[T, ...]`` -> the model's ``[T, A]`` in ``[-1, 1]``."""
        low, high = self._action_box
        actions = np.asarray(actions, dtype=np.float32).reshape(len(actions), -1)
        return np.clip(2 * (actions - low) / (high - low) - 1, -1.0, 1.0)

    def training_step(self) -> None:
        config = self.config
        if config.has_dataset:
            self._fit()
            if config.offline:
                trained = config.model_updates * config.model_batch_size * config.sequence_length
                log_trained_transitions(self.metrics, trained, self.replay.num_steps())
                return
        self._collect()
        if not config.has_dataset and self.replay.can_sample():
            self._fit()

    def _collect(self) -> None:
        for episode in sample_env_steps(self, self.config.total_train_batch_size):
            if len(episode) == 0:
                continue
            self.replay.add_episode(
                np.asarray(episode.get_observations()),
                self._scaled_actions(np.asarray(episode.get_actions())),
                np.asarray(episode.get_rewards()),
                episode.is_terminated,
                episode_id=episode.id_,
            )

    def _fit(self) -> None:
        """``model_updates`` Adam steps, each on ``model_batch_size`` replayed sequences; the
        new weights go to the EnvRunners. Sequences are drawn a chunk of updates at a time (at
        most ``FIT_CHUNK_BYTES`` of observations), so that 64x64 frames do not sit in memory
        for all of an iteration's updates at once (vectors fit in one chunk)."""
        config = self.config
        per_update = config.model_batch_size * config.sequence_length * self._observation_bytes()
        chunk = max(1, min(config.model_updates, FIT_CHUNK_BYTES // per_update))
        done = 0
        while done < config.model_updates:
            updates = min(chunk, config.model_updates - done)
            sequences = self.replay.sample(updates * config.model_batch_size)
            # The module is stateful, so RLlib slices minibatches by sequence: one row each.
            rows = len(sequences["rewards"])
            batch = SampleBatch({**sequences, SampleBatch.SEQ_LENS: np.ones(rows, np.int32)})
            update_and_sync(self, batch, config.model_batch_size)
            done += updates

    def _observation_bytes(self) -> int:
        module = self.learner_group._learner.module if self.learner_group.is_local else None
        if module is None:
            return FIT_CHUNK_BYTES // 100  # remote learners: at most 100 updates a chunk
        spec = module[DEFAULT_MODULE_ID].world_model.spec
        return int(np.prod(spec.observation_shape)) * (1 if len(spec.observation_shape) == 3 else 4)


def _action_box(space: gym.Space) -> tuple[np.ndarray, np.ndarray]:
    low = np.asarray(space.low, dtype=np.float32).reshape(-1)
    high = np.asarray(space.high, dtype=np.float32).reshape(-1)
    return low, high
