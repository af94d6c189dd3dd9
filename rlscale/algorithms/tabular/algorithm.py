"""The tabular Algorithms: sample transitions, take one TD step on the Learner, sync the table."""

from __future__ import annotations

from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.rl_module import DEFAULT_MODULE_ID
from ray.rllib.execution.rollout_ops import synchronous_parallel_sample
from ray.rllib.policy.sample_batch import MultiAgentBatch, SampleBatch
from ray.rllib.utils.metrics import (
    ENV_RUNNER_RESULTS,
    ENV_RUNNER_SAMPLING_TIMER,
    LEARNER_RESULTS,
    LEARNER_UPDATE_TIMER,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    SYNCH_WORKER_WEIGHTS_TIMER,
    TIMERS,
)

from rlscale.algorithms.tabular.config import QLearningConfig, SarsaConfig, TabularConfig
from rlscale.algorithms.tabular.learner import NEXT_ACTION_TARGET
from rlscale.algorithms.tabular.transitions import TransitionBuilder


class TabularTD(Algorithm):
    """On-policy sampling and one SGD (= tabular TD) step per sampled batch."""

    config: TabularConfig

    def setup(self, config: TabularConfig) -> None:
        super().setup(config)
        self._transitions = TransitionBuilder(
            needs_next_action=config.td_target() == NEXT_ACTION_TARGET
        )

    def training_step(self) -> None:
        with self.metrics.log_time((TIMERS, ENV_RUNNER_SAMPLING_TIMER)):
            episodes, runner_metrics = synchronous_parallel_sample(
                worker_set=self.env_runner_group,
                concat=True,
                sample_timeout_s=self.config.sample_timeout_s,
                _uses_new_env_runners=True,
                _return_metrics=True,
            )
        self.metrics.aggregate(runner_metrics, key=ENV_RUNNER_RESULTS)
        columns = self._transitions(episodes)
        num_transitions = len(columns[Columns.OBS])
        if num_transitions == 0:
            return
        batch = MultiAgentBatch(
            {DEFAULT_MODULE_ID: SampleBatch(columns)}, env_steps=num_transitions
        )
        with self.metrics.log_time((TIMERS, LEARNER_UPDATE_TIMER)):
            env_steps = self.metrics.peek((ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME))
            learner_results = self.learner_group.update(
                batch=batch, timesteps={NUM_ENV_STEPS_SAMPLED_LIFETIME: env_steps}
            )
        self.metrics.aggregate(learner_results, key=LEARNER_RESULTS)
        with self.metrics.log_time((TIMERS, SYNCH_WORKER_WEIGHTS_TIMER)):
            self.env_runner_group.sync_weights(
                from_worker_or_learner_group=self.learner_group, inference_only=True
            )


class QLearning(TabularTD):
    @classmethod
    def get_default_config(cls) -> QLearningConfig:
        return QLearningConfig()


class Sarsa(TabularTD):
    @classmethod
    def get_default_config(cls) -> SarsaConfig:
        return SarsaConfig()
