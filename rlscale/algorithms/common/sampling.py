"""Sampling and learning in an algorithm's own training step: how rlscale's drivers collect env
steps and update their Learners on batches they built themselves."""

from __future__ import annotations

from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.execution.rollout_ops import synchronous_parallel_sample
from ray.rllib.policy.sample_batch import MultiAgentBatch, SampleBatch
from ray.rllib.utils.metrics import (
    ENV_RUNNER_RESULTS,
    ENV_RUNNER_SAMPLING_TIMER,
    LEARNER_RESULTS,
    LEARNER_UPDATE_TIMER,
    TIMERS,
)


def sample_env_steps(
    algorithm: Algorithm, env_steps: int | None = None, *, random_actions: bool = False
):
    """At least ``env_steps`` env steps from the algorithm's EnvRunners (None: one rollout
    fragment from each; uniformly random actions with ``random_actions``), timed and with the
    runners' metrics logged as RLlib's own algorithms log them; returns the sampled episodes
    (chunks of episodes that run on)."""
    with algorithm.metrics.log_time((TIMERS, ENV_RUNNER_SAMPLING_TIMER)):
        episodes, env_runner_results = synchronous_parallel_sample(
            worker_set=algorithm.env_runner_group,
            max_env_steps=env_steps,
            random_actions=random_actions,
            sample_timeout_s=algorithm.config.sample_timeout_s,
            _uses_new_env_runners=True,
            _return_metrics=True,
        )
    algorithm.metrics.aggregate(env_runner_results, key=ENV_RUNNER_RESULTS)
    return episodes


def update_and_sync(algorithm: Algorithm, batch: SampleBatch, minibatch_size: int) -> None:
    """One pass of the Learner over ``batch`` in minibatches of ``minibatch_size`` (timed, its
    results logged), then the new weights synced to the EnvRunners' inference-only modules."""
    with algorithm.metrics.log_time((TIMERS, LEARNER_UPDATE_TIMER)):
        learner_results = algorithm.learner_group.update(
            batch=MultiAgentBatch({DEFAULT_MODULE_ID: batch}, env_steps=len(batch)),
            minibatch_size=minibatch_size,
            num_epochs=1,
        )
    algorithm.metrics.aggregate(learner_results, key=LEARNER_RESULTS)
    algorithm.env_runner_group.sync_weights(
        from_worker_or_learner_group=algorithm.learner_group, inference_only=True
    )
