"""Sampling in an algorithm's own training step: the one way rlscale's drivers collect env steps."""

from __future__ import annotations

from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.execution.rollout_ops import synchronous_parallel_sample
from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, ENV_RUNNER_SAMPLING_TIMER, TIMERS


def sample_env_steps(algorithm: Algorithm, env_steps: int, *, random_actions: bool = False):
    """At least ``env_steps`` env steps from the algorithm's EnvRunners (uniformly random
    actions with ``random_actions``), timed and with the runners' metrics logged as RLlib's own
    algorithms log them; returns the sampled episodes (chunks of episodes that run on)."""
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
