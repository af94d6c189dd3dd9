"""RLlib's offline input, fed from a Minari dataset through Ray Data.

:class:`MinariOfflineData` is RLlib's ``OfflineData`` with one change: instead of a
``ray.data.read_*`` call on files, its dataset is
:func:`rlscale.datasets.ray_data.transitions_dataset` (shards of Minari episodes read lazily
on Ray Data workers) already in the learner's batch layout (see ``LEARNER_BATCH_KEYS``).
Everything downstream is RLlib's: ``streaming_split`` shards the stream across remote learners,
``iter_batches`` feeds a local one.

:class:`InMemoryOfflineData` holds a small dataset whole in memory instead and draws each
iteration's batches from it, without Ray Data (``use_minari_dataset(..., in_memory=True)``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import gymnasium as gym
import numpy as np
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.offline.offline_data import OfflineData
from ray.rllib.offline.offline_prelearner import OfflinePreLearner
from ray.rllib.policy.sample_batch import MultiAgentBatch, SampleBatch

from rlscale.datasets.ray_data import (
    read_options,
    read_transitions,
    to_learner_batch,
    transitions_dataset,
)
from rlscale.datasets.store import read_metadata

if TYPE_CHECKING:
    from ray.rllib.algorithms.algorithm_config import AlgorithmConfig


class MinariOfflineData(OfflineData):
    """``OfflineData`` over the Minari dataset whose ``data`` folder is ``config.input_``."""

    def __init__(self, config: AlgorithmConfig):  # noqa: D107 - mirrors OfflineData.__init__
        # OfflineData.__init__ reads files with a ray.data.read_* method; set up the same state
        # with a Minari-backed dataset instead.
        self.config = config
        self.is_multi_agent = config.is_multi_agent
        self.path = Path(config.input_)
        self.data_read_batch_size = config.input_read_batch_size
        self.materialize_data = False
        self.materialize_mapped_data = False
        metadata = json.loads((self.path / "metadata.json").read_text())
        # Shards come in random order and each shard's rows are shuffled; a global shuffle would
        # have to hold the whole dataset, so the learners' iterators mix shards in a bounded
        # shuffle buffer instead (SHUFFLE_BUFFER_TRANSITIONS).
        episodes = int(metadata["total_episodes"])
        total_steps = int(metadata["total_steps"])
        mean_length = max(1.0, total_steps / max(1, episodes))
        per_shard = max(1, round(TRANSITIONS_PER_SHARD / mean_length))
        consumers = config.num_learners  # 0: the local learner; read_options counts it as 1
        transitions = transitions_dataset(
            self.path, episodes, per_shard, seed=config.seed, consumers=consumers
        )
        self.data = transitions.map_batches(
            to_learner_batch,
            batch_format="numpy",
            # The read's resources, so that Ray Data fuses this map into the read tasks; with
            # Ray's default of a whole CPU it would run as a second operator.
            **read_options(consumers),
            fn_kwargs={
                "keys": LEARNER_BATCH_KEYS,
                "action_bounds": normalized_action_bounds(config, metadata),
            },
        )
        if float(metadata.get("dataset_size", np.inf)) <= SMALL_DATASET_MB:
            self.data = self.data.materialize()
        self.data_is_mapped = True
        self.batch_iterators = None
        self.map_batches_kwargs = self.default_map_batches_kwargs | config.map_batches_kwargs
        self.iter_batches_kwargs = (
            self.default_iter_batches_kwargs
            | {
                "local_shuffle_buffer_size": min(SHUFFLE_BUFFER_TRANSITIONS, total_steps),
                "local_shuffle_seed": config.seed,
            }
            | config.iter_batches_kwargs
        )
        self.returned_streaming_split = False
        self.prelearner_class = config.prelearner_class or OfflinePreLearner
        self.locality_hints = None
        self.learner_handles = None
        self.module_spec = None


class InMemoryOfflineData(OfflineData):
    """``OfflineData`` over a small Minari dataset (``config.input_``), read whole into memory.

    ``sample`` draws rows uniformly with replacement (seeded by the config's ``seed``) as one
    ``MultiAgentBatch`` in the learner's layout (the columns ``MinariOfflineData`` streams),
    which the Learner splits into minibatches. No Ray Data pipeline is built: for a few
    demonstrations, building and materializing one took longer than thousands of updates.
    """

    def __init__(self, config: AlgorithmConfig):  # noqa: D107 - mirrors OfflineData.__init__
        self.config = config
        self.is_multi_agent = config.is_multi_agent
        self.path = Path(config.input_)
        metadata = read_metadata(self.path)
        transitions = read_transitions(self.path, 0, int(metadata["total_episodes"]))
        self.columns = to_learner_batch(
            transitions,
            keys={column: column for column in TRAIN_COLUMNS},
            action_bounds=normalized_action_bounds(config, metadata),
        )
        self._rng = np.random.default_rng(config.seed)
        self.data = None
        self.iter_batches_kwargs: dict = {}
        self.locality_hints = None
        self.learner_handles = None
        self.module_spec = None

    def __len__(self) -> int:
        return len(self.columns[Columns.OBS])

    def sample(self, num_samples: int, return_iterator: bool = False, num_shards: int = 1, **_):
        """``num_samples`` transitions drawn with replacement, as one batch (never an
        iterator: the Learner walks it in minibatches)."""
        rows = self._rng.integers(len(self), size=num_samples)
        batch = SampleBatch({column: values[rows] for column, values in self.columns.items()})
        return MultiAgentBatch({DEFAULT_MODULE_ID: batch}, env_steps=num_samples)


TRAIN_COLUMNS = (
    Columns.OBS,
    Columns.NEXT_OBS,
    Columns.ACTIONS,
    Columns.REWARDS,
    Columns.TERMINATEDS,
    Columns.TRUNCATEDS,
)
LEARNER_BATCH_KEYS = {column: f"{DEFAULT_MODULE_ID}/{column}" for column in TRAIN_COLUMNS}
"""Transition column -> key in the learner's (flattened multi-agent) batch.

The transitions' columns already carry RLlib's names (``rlscale.datasets.ray_data``). RLlib's
``OfflinePreLearner`` builds one ``SingleAgentEpisode`` per row and runs the learner connector
over them, in an actor pool started anew every pass over the data; for flat transitions without
observation filters (what BC, CQL and discrete CQL train on) renaming the columns gives the
learner the same batch, inside the read tasks."""
TRANSITIONS_PER_SHARD = 4096
"""About this many transitions per Ray Data block (whole episodes, so roughly)."""
SHUFFLE_BUFFER_TRANSITIONS = 100_000
"""Rows the learners' iterators shuffle across shards (about 10 MB of Hopper transitions).

Without it, some 32 consecutive minibatches of 128 came from the same shard of 16 Hopper
episodes; with it a minibatch draws from about 25 shards' worth of transitions."""
SMALL_DATASET_MB = 64.0
"""Datasets up to this size on disk are kept in Ray's object store after the first pass."""


def normalized_action_bounds(
    config: AlgorithmConfig, metadata: dict
) -> tuple[np.ndarray, np.ndarray] | None:
    """The bounds to rescale logged actions by, or None when they are used as logged.

    Minari stores actions in the env's units. With ``normalize_actions`` (RLlib's default)
    a policy over a bounded Box acts in [-1, 1] and RLlib rescales its actions to the env's
    bounds, so logged actions must be rescaled the other way before a learner sees them; on
    Pendulum (bounds ±2) training on the raw actions teaches the policy twice the torque.
    """
    from minari.serialization import deserialize_space

    if not config.normalize_actions or "action_space" not in metadata:
        return None
    space = deserialize_space(metadata["action_space"])
    if not isinstance(space, gym.spaces.Box) or not space.is_bounded():
        return None
    return space.low.astype(np.float64), space.high.astype(np.float64)


def use_minari_dataset(config: AlgorithmConfig, data_dir: Path, in_memory: bool = False) -> None:
    """Point ``config``'s offline input at the Minari dataset in ``data_dir``: streamed through
    Ray Data, or read whole into memory (``in_memory``, :class:`InMemoryOfflineData`)."""
    config.offline_data(
        input_=str(data_dir),
        offline_data_class=InMemoryOfflineData if in_memory else MinariOfflineData,
        # Transitions are plain arrays; nothing is LZ4-compressed.
        input_compress_columns=[],
    )
