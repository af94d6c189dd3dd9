"""What every offline algorithm shares: its defaults and its training step.

- :func:`set_offline_defaults`: no online sampling, a fixed number of updates per iteration,
  periodic greedy evaluation episodes;
- :func:`evaluation_only`: the same config rebuilt to act in the env without a dataset;
- :class:`NextObservationsForOfflineDQN`: the DQN-based configs' learner connector with s';
- :class:`ReleasesDataIterators`: an Algorithm mixin that closes Ray Data iterators on stop;
- :func:`offline_training_step`: one iteration of updates on batches of the offline data;
- :func:`attach_in_memory_dataset`: a small dataset that the algorithm reads into memory itself.
"""

from __future__ import annotations

import copy
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray.rllib.connectors.common.add_observations_from_episodes_to_batch import (
    AddObservationsFromEpisodesToBatch,
)
from ray.rllib.connectors.learner.add_next_observations_from_episodes_to_train_batch import (
    AddNextObservationsFromEpisodesToTrainBatch,
)
from ray.rllib.core import ALL_MODULES
from ray.rllib.core.learner.training_data import TrainingData
from ray.rllib.utils.metrics import (
    DATASET_NUM_ITERS_TRAINED,
    DATASET_NUM_ITERS_TRAINED_LIFETIME,
    LEARNER_RESULTS,
    LEARNER_UPDATE_TIMER,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    OFFLINE_SAMPLING_TIMER,
    TIMERS,
)

from rlscale.algorithms.common.offline_data import InMemoryOfflineData
from rlscale.datasets.store import METADATA_FILE

if TYPE_CHECKING:
    from ray.rllib.algorithms.algorithm import Algorithm
    from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
    from ray.rllib.utils.metrics.metrics_logger import MetricsLogger

DATASET_TRANSITIONS = "dataset_transitions"
"""Metric: the transitions of the in-memory dataset an algorithm learns from."""
EVALUATION_INTERVAL = 5
"""Training iterations between evaluations in the real environment."""
EVALUATION_EPISODES = 10
EVALUATION_SETTINGS: dict[str, Any] = {
    "evaluation_interval": EVALUATION_INTERVAL,
    "evaluation_duration": EVALUATION_EPISODES,
    "evaluation_duration_unit": "episodes",
    "evaluation_num_env_runners": 0,
    "evaluation_config": {"explore": False},
}
"""Greedy (``explore=False``) episodes on one local evaluation EnvRunner (in the driver
process): how a run that samples nothing for training measures its policy."""


def set_offline_defaults(config: AlgorithmConfig, updates_per_iteration: int) -> None:
    """One iteration = ``updates_per_iteration`` gradient updates; evaluate every few of them
    (``EVALUATION_SETTINGS``)."""
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
    for key, value in EVALUATION_SETTINGS.items():
        setattr(config, key, copy.deepcopy(value))


EVALUATION_REPLAY = {"type": "EpisodeReplayBuffer", "capacity": 1_000}
"""The replay buffer of an offline config rebuilt to evaluate: nothing is replayed, but once it
acts in the env RLlib's SAC config (under ``cql`` and ``bcq``) accepts only episode buffers,
and CQL's default is a prioritized one."""


def evaluation_only(config: AlgorithmConfig) -> None:
    """Rebuild an offline algorithm to act in the env: a local EnvRunner, no dataset."""
    config._is_online = True
    if getattr(config, "replay_buffer_config", None):
        config.replay_buffer_config = dict(EVALUATION_REPLAY)


class NextObservationsForOfflineDQN:
    """Config mixin of the DQN-based offline algorithms (``cql_discrete``, ``bcq_discrete``):
    their TD targets need ``NEXT_OBS``, and the OfflinePreLearner builds its own learner
    connector from the config, where DQN's config does not add that piece (it adds it to the
    learner's own pipeline only)."""

    def build_learner_connector(self, input_observation_space, input_action_space, device=None):
        pipeline = super().build_learner_connector(
            input_observation_space=input_observation_space,
            input_action_space=input_action_space,
            device=device,
        )
        pipeline.insert_after(
            AddObservationsFromEpisodesToBatch, AddNextObservationsFromEpisodesToTrainBatch()
        )
        return pipeline


PREFETCH_THREAD_NAME = "iter_threaded"
"""The name Ray Data gives its batch-prefetching threads (``iter_threaded`` in
``ray/data/_internal/block_batching/util.py``)."""
PREFETCH_THREADS_TIMEOUT_S = 10.0


class ReleasesDataIterators:
    """Algorithm mixin: close the local Learner's Ray Data iterator when the algorithm stops.

    RLlib's Learner keeps the generator of its last ``iter_batches`` call open between updates.
    Left to the garbage collector, the generator was finalized after ``ray.shutdown()`` and its
    clean-up called Ray Data's stats actor ("Ray is not initialized"). Closing it only signals
    Ray Data's prefetch threads to stop; one still inside a ``ray.get`` when Ray shuts down
    aborts the process ("The core worker has already been shutdown", exit code 1, on large
    streamed datasets), so ``cleanup`` also waits for them.
    Remote learners' iterators end with their actors.
    """

    def cleanup(self) -> None:
        learner = getattr(getattr(self, "learner_group", None), "_learner", None)
        if learner is not None and learner.iterator is not None:
            epoch = getattr(learner.iterator, "_epoch_iterator", None)
            if hasattr(epoch, "close"):
                epoch.close()
            learner.iterator = None
            _wait_for_prefetch_threads(PREFETCH_THREADS_TIMEOUT_S)
        super().cleanup()


def _wait_for_prefetch_threads(timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    for thread in threading.enumerate():
        if thread.name == PREFETCH_THREAD_NAME and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))


def offline_training_step(algorithm: Algorithm) -> None:
    """One training iteration on the offline data: RLlib's BC (MARWIL) step, for every
    algorithm that learns from its dataset through RLlib's ``OfflineData``.

    Unlike RLlib's CQL step it hands the data's ``iter_batches`` arguments (``prefetch_batches``,
    a shuffle buffer when set) to the learners' iterators; unlike RLlib's BC step it counts the
    transitions of every update, not one batch per iteration. Data held in memory
    (``InMemoryOfflineData``) comes as one batch of every update's minibatch, which the
    LearnerGroup shards between its learners.
    """
    config = algorithm.config
    # Every learner makes dataset_num_iters_per_learner updates of one batch each.
    batches = config.dataset_num_iters_per_learner * max(1, config.num_learners)
    transitions = config.train_batch_size_per_learner * batches
    in_memory = isinstance(algorithm.offline_data, InMemoryOfflineData)
    with algorithm.metrics.log_time((TIMERS, OFFLINE_SAMPLING_TIMER)):
        if in_memory:
            training_data = TrainingData(batch=algorithm.offline_data.sample(transitions))
            update_kwargs = {"num_epochs": 1}
        else:
            training_data, update_kwargs = _streamed_training_data(algorithm)
        # The env-steps counter (progress, metrics.csv, timestep stop rules and schedules)
        # counts the transitions trained on, as for the in-memory offline algorithms
        # (``log_trained_transitions``): every update of the iteration takes one batch.
        algorithm.metrics.log_value(
            NUM_ENV_STEPS_SAMPLED_LIFETIME, transitions, reduce="lifetime_sum"
        )
    with algorithm.metrics.log_time((TIMERS, LEARNER_UPDATE_TIMER)):
        learner_results = algorithm.learner_group.update(
            training_data=training_data,
            minibatch_size=config.train_batch_size_per_learner,
            timesteps={
                NUM_ENV_STEPS_SAMPLED_LIFETIME: algorithm.metrics.peek(
                    NUM_ENV_STEPS_SAMPLED_LIFETIME
                )
            },
            **update_kwargs,
        )
        algorithm.metrics.aggregate(learner_results, key=LEARNER_RESULTS)
    if in_memory:
        _log_dataset_batches(algorithm.metrics, batches)


def _log_dataset_batches(metrics: MetricsLogger, batches: int) -> None:
    """The batch counters RLlib's Learner logs as it pulls batches from Ray Data, for data held
    in memory: the updates of this iteration and of the run (a diverged run's error names
    them)."""
    for key, reduce in (
        (DATASET_NUM_ITERS_TRAINED, "sum"),
        (DATASET_NUM_ITERS_TRAINED_LIFETIME, "lifetime_sum"),
    ):
        metrics.log_value((LEARNER_RESULTS, ALL_MODULES, key), batches, reduce=reduce)


def _streamed_training_data(algorithm: Algorithm) -> tuple[TrainingData, dict[str, Any]]:
    """The learners' Ray Data iterators (or one batch, for a single update on a local learner)
    and the ``update`` arguments that walk them."""
    config = algorithm.config
    return_iterator = config.num_learners > 0 or config.dataset_num_iters_per_learner != 1
    batch_or_iterator = algorithm.offline_data.sample(
        num_samples=config.train_batch_size_per_learner,
        num_shards=config.num_learners,
        return_iterator=return_iterator,
    )
    if return_iterator:
        training_data = TrainingData(data_iterators=batch_or_iterator)
    else:
        training_data = TrainingData(batch=batch_or_iterator)
    update_kwargs = {
        "num_iters": config.dataset_num_iters_per_learner,
        **algorithm.offline_data.iter_batches_kwargs,
    }
    return training_data, update_kwargs


def attach_in_memory_dataset(config: AlgorithmConfig, data_dir: Path) -> None:
    """``attach_dataset`` of the algorithms that read a small dataset into memory themselves
    (``pets`` and ``sysid`` fit their models on it, the imitation algorithms learn from its
    demonstrations): hand them its ``data`` folder (``config.dataset_dir``) and evaluate in the
    env every few iterations, as the offline algorithms do (``EVALUATION_SETTINGS``, under any
    of those keys the user set)."""
    config.dataset_dir = str(data_dir)
    user_keys = config.user_set_keys()
    for key, value in EVALUATION_SETTINGS.items():
        if key not in user_keys:
            setattr(config, key, copy.deepcopy(value))


def dataset_dir_problem(dataset_dir: str | None) -> str | None:
    """Why ``dataset_dir`` (a config's) names no dataset to learn from, or None."""
    if dataset_dir is None or (Path(dataset_dir) / METADATA_FILE).is_file():
        return None
    return (
        f"dataset_dir {dataset_dir!r} is not a Minari dataset's data folder (it holds no "
        f"{METADATA_FILE}); give the dataset with --dataset (or `dataset:` in the spec)"
    )


def log_trained_transitions(metrics: MetricsLogger, trained: int, dataset_size: int) -> None:
    """The offline algorithms' convention for an in-memory dataset: the env-steps counter
    counts the transitions trained on (nothing is sampled); ``dataset_transitions`` is the
    dataset's size."""
    metrics.log_value(NUM_ENV_STEPS_SAMPLED_LIFETIME, trained, reduce="lifetime_sum")
    metrics.log_value(DATASET_TRANSITIONS, dataset_size, window=1)
