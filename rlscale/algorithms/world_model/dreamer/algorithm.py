"""Dreamer's training step: sample with the actor, replay sequences, update on the Learner."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.env.single_agent_episode import SingleAgentEpisode
from ray.rllib.utils.metrics import (
    ENV_RUNNER_RESULTS,
    LEARNER_RESULTS,
    LEARNER_UPDATE_TIMER,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    NUM_GRAD_UPDATES_LIFETIME,
    SYNCH_WORKER_WEIGHTS_TIMER,
    TIMERS,
)

from rlscale.algorithms.common.replay_checkpoint import ReplayInCheckpointsMixin
from rlscale.algorithms.common.sampling import sample_env_steps
from rlscale.algorithms.world_model.dreamer.config import DreamerConfig
from rlscale.algorithms.world_model.dreamer.learner import DreamerLearner
from rlscale.algorithms.world_model.dreamer.module import set_uniform_exploration
from rlscale.algorithms.world_model.sequences import SequenceReplay, sequences_from_dataset

PRETRAIN_TIMER = "pretrain"
REPLAY_STEPS = "replay_steps"
PRETRAINED = "dreamer_pretrained"


def normalized_actions(actions: np.ndarray, action_space: gym.spaces.Box) -> np.ndarray:
    """A dataset's env actions mapped onto [-1, 1], where the actor acts and its own rollouts'
    actions lie (RLlib's ``normalize_actions`` maps [-1, 1] linearly onto the bounds)."""
    low, high = action_space.low, action_space.high
    scaled = 2.0 * (np.asarray(actions, dtype=np.float64) - low) / (high - low) - 1.0
    return np.clip(scaled, -1.0, 1.0).astype(np.float32).reshape(len(actions), -1)


class EpisodeAssembler:
    """Joins the chunks RLlib's EnvRunners sample into whole episodes for the replay.

    An EnvRunner hands back an episode cut into chunks (``rollout_fragment_length`` steps
    each); the next chunk of an episode starts with the observation the previous one ended
    with. An episode enters the replay once it is done, whole, so that its first step is
    marked ``is_first`` and its last one terminated or not.
    """

    def __init__(self) -> None:
        self._running: dict[str, dict[str, list[np.ndarray]]] = {}

    def add(self, chunk: SingleAgentEpisode) -> dict[str, Any] | None:
        """Take one chunk; returns the whole episode once ``chunk`` ends it, else None."""
        steps = len(chunk)
        parts = self._running.setdefault(
            chunk.id_, {"observations": [], "actions": [], "rewards": []}
        )
        observations = np.asarray(chunk.get_observations(slice(0, steps + 1)))
        parts["observations"].append(observations if not parts["actions"] else observations[1:])
        parts["actions"].append(np.asarray(chunk.get_actions(slice(0, steps))))
        parts["rewards"].append(np.asarray(chunk.get_rewards(slice(0, steps)), dtype=np.float32))
        if not chunk.is_done:
            return None
        del self._running[chunk.id_]
        episode = {key: np.concatenate(values) for key, values in parts.items()}
        return {**episode, "terminated": bool(chunk.is_terminated)}


class Dreamer(ReplayInCheckpointsMixin, Algorithm):
    """Random warm-up, then: sample with the actor, add finished episodes to the sequence
    replay, run the updates the training ratio owes on the Learner, sync the actor."""

    config: DreamerConfig

    @classmethod
    def get_default_config(cls) -> DreamerConfig:
        return DreamerConfig()

    def setup(self, config) -> None:
        super().setup(config)
        config = self.config
        if config.dataset_dir:
            action_space = self.spaces[DEFAULT_MODULE_ID][1]
            self.replay = sequences_from_dataset(
                config.dataset_dir,
                config.sequence_length,
                capacity_steps=config.replay_capacity,
                seed=config.seed or 0,
                action_encoder=lambda actions: normalized_actions(actions, action_space),
            )
        else:
            self.replay = SequenceReplay(
                config.replay_capacity, config.sequence_length, seed=config.seed or 0
            )
        self._episodes = EpisodeAssembler()
        self._pretrained = not config.dataset_dir
        self._update_credit = 0.0
        self._runners_act_uniformly = False

    def checkpointed_replay(self) -> SequenceReplay:
        return self.replay

    def get_state(self, components=None, *, not_components=None, **kwargs) -> dict[str, Any]:
        state = super().get_state(components, not_components=not_components, **kwargs)
        # A run restored after its dataset pretraining must not pretrain again.
        state[PRETRAINED] = self._pretrained
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state({key: value for key, value in state.items() if key != PRETRAINED})
        self._pretrained = state.get(PRETRAINED, self._pretrained)

    def training_step(self) -> None:
        if not self._pretrained:
            self._pretrain()
        warming_up = (
            not self.config.dataset_dir
            and self._env_steps_sampled() < self.config.random_warmup_steps
        )
        self._act_uniformly(warming_up)
        sampled = self._sample()
        if warming_up:
            return
        self._update_credit += sampled * self.config.train_ratio
        updates = int(self._update_credit // self.config.replayed_steps_per_update)
        if updates > 0 and self.replay.num_steps() >= self.config.sequence_length:
            self._update_credit -= updates * self.config.replayed_steps_per_update
            self._update(updates)

    def _sample(self) -> int:
        episodes = sample_env_steps(self, self.config.rollout_fragment_length)
        for chunk in episodes:
            episode = self._episodes.add(chunk)
            if episode is not None and len(episode["actions"]) > 0:
                self.replay.add_episode(
                    episode["observations"],
                    episode["actions"],
                    episode["rewards"],
                    episode["terminated"],
                )
        self.metrics.log_value(REPLAY_STEPS, self.replay.num_steps(), window=1)
        return sum(len(chunk) for chunk in episodes)

    def _pretrain(self) -> None:
        """``pretrain_updates`` updates on the dataset's sequences, before any env step."""
        with self.metrics.log_time((TIMERS, PRETRAIN_TIMER)):
            self._update(self.config.pretrain_updates, block=100)
        self._pretrained = True

    def _update(self, updates: int, block: int | None = None) -> None:
        """``updates`` updates on fresh replayed batches, in Learner calls of at most ``block``
        batches; then the new weights to the EnvRunners."""
        block = block or updates
        with self.metrics.log_time((TIMERS, LEARNER_UPDATE_TIMER)):
            for start in range(0, updates, block):
                count = min(block, updates - start)
                batches = [
                    self.replay.sample(self.config.batch_size_sequences) for _ in range(count)
                ]
                stacked = {key: np.stack([b[key] for b in batches]) for key in batches[0]}
                results = self._on_the_learner(
                    lambda learner, data=stacked: learner.train_on_sequences(data)
                )
                self.metrics.log_dict(results, key=(LEARNER_RESULTS, DEFAULT_MODULE_ID), window=1)
        self.metrics.log_value(
            (LEARNER_RESULTS, DEFAULT_MODULE_ID, "num_updates"), updates, reduce="lifetime_sum"
        )
        # RLlib's own counter of gradient updates (its DreamerV3 logs it too).
        self.metrics.log_value(NUM_GRAD_UPDATES_LIFETIME, updates, reduce="lifetime_sum")
        with self.metrics.log_time((TIMERS, SYNCH_WORKER_WEIGHTS_TIMER)):
            self.env_runner_group.sync_weights(
                from_worker_or_learner_group=self.learner_group,
                policies=[DEFAULT_MODULE_ID],
                inference_only=True,
            )

    def _on_the_learner(self, call) -> Any:
        """``call``'s result on the one Learner (Dreamer's world model is not data-parallel)."""
        return next(iter(self.learner_group.foreach_learner(call))).get()

    def _env_steps_sampled(self) -> int:
        return self.metrics.peek((ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), default=0)

    def _act_uniformly(self, on: bool) -> None:
        if on != self._runners_act_uniformly:
            self.env_runner_group.foreach_env_runner(
                lambda runner: set_uniform_exploration(runner.module, on)
            )
            self._runners_act_uniformly = on


__all__ = ["Dreamer", "DreamerLearner", "EpisodeAssembler"]
