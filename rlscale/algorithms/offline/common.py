"""Defaults every offline algorithm shares: no online sampling, periodic evaluation episodes."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ray.rllib.algorithms.algorithm_config import AlgorithmConfig

EVALUATION_INTERVAL = 5
"""Training iterations between evaluations in the real environment."""
EVALUATION_EPISODES = 10


def set_offline_defaults(config: AlgorithmConfig, updates_per_iteration: int) -> None:
    """One iteration = ``updates_per_iteration`` gradient updates; evaluate every few of them.

    Evaluation runs greedy (``explore=False``) episodes on one local evaluation EnvRunner
    (in the driver process).
    """
    config.num_env_runners = 0
    # No training EnvRunners: RLlib's flag for "samples the env while training" (MARWIL sets
    # it; DQN- and SAC-based configs would otherwise build an unused sampling EnvRunner).
    config._is_online = False
    config.dataset_num_iters_per_learner = updates_per_iteration
    # Exactly one training step per iteration (DQN and SAC loop their step to reach minimum
    # sampled steps or seconds per iteration; CQL adds a minimum of trained steps).
    config.min_sample_timesteps_per_iteration = 0
    config.min_train_timesteps_per_iteration = 0
    config.min_time_s_per_iteration = None
    config.evaluation_interval = EVALUATION_INTERVAL
    config.evaluation_duration = EVALUATION_EPISODES
    config.evaluation_duration_unit = "episodes"
    config.evaluation_num_env_runners = 0
    config.evaluation_config = {"explore": False}


def evaluation_only(config: AlgorithmConfig) -> None:
    """Rebuild an offline algorithm to act in the env: a local EnvRunner, no dataset."""
    config._is_online = True
