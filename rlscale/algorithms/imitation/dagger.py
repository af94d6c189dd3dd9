"""DAgger: dataset aggregation with an expert in the sampling loop (Ross, Gordon & Bagnell 2011,
"A Reduction of Imitation Learning and Structured Prediction to No-Regret Online Learning",
AISTATS, https://arxiv.org/abs/1011.0686, Algorithm 3.1).

Behaviour cloning trains on the states the expert visits and then acts in the states its own
mistakes lead to, where it has no data; errors compound over the horizon. DAgger collects
labels where the learner goes:

1. round ``i`` rolls out the mixture ``pi_i = beta_i pi* + (1 - beta_i) pi_hat_i``: at every
   step, with probability ``beta_i`` the expert ``pi*`` acts, otherwise the learner's current
   greedy policy ``pi_hat_i`` does. ``beta_1 = 1`` (the first round is the expert's own
   rollouts) and, by default, ``beta`` decays linearly to 0 over ``beta_decay_iterations``
   rounds (``beta_schedule="linear"``; ``"exponential"`` is ``beta_i = p^(i-1)``, the paper's
   other example);
2. the expert labels *every* visited state with its action, whoever acted;
3. the labelled states join the aggregate data set, which only grows (``aggregate_capacity``
   bounds it, dropping the oldest rows, for very long runs);
4. the Learner trains the policy by maximum likelihood of the expert's labels on minibatches of
   the whole aggregate (behaviour cloning on ``D = D_1 u ... u D_i``).

On RLlib: the EnvRunners' inference-only :class:`DAggerModule` carries the expert (built on the
EnvRunner from its name: a scripted controller or a checkpoint) and does steps 1-2 in its
exploration forward pass, returning the expert's label beside the action it takes; RLlib stores
the label in the episode's extra model outputs. The driver's training step sets ``beta`` on the
EnvRunners, samples, moves the labels into the aggregate and runs the Learner on it. Greedy
evaluation (``rlscale evaluate``) is the learner's policy alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.algorithms.bc.torch.default_bc_torch_rl_module import DefaultBCTorchRLModule
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.policy.sample_batch import SampleBatch

from rlscale.algorithms.common.config import RlscaleConfigMixin
from rlscale.algorithms.common.sampling import sample_env_steps, update_and_sync
from rlscale.algorithms.imitation.cloning import ClonesLabelledStates
from rlscale.datasets.store import (
    RLSCALE_KEY,
    DatasetWrite,
    EpisodeArrays,
    check_dataset_id,
    datasets_root,
    write_dataset,
)
from rlscale.envs import make_env
from rlscale.envs.rllib import env_name_of
from rlscale.errors import DatasetError
from rlscale.policies import named_policy

EXPERT_ACTIONS = "expert_actions"
"""The expert's label of each visited state: an extra model output of the exploration pass."""
EXPERT_LABELS = "expert_labels"
"""Metric: states the expert labelled in this iteration."""
EXPERT_LABELS_LIFETIME = "expert_labels_lifetime"
AGGREGATE_SIZE = "aggregate_size"
BETA = "beta"
BETA_SCHEDULES = ("linear", "exponential")
AGGREGATE_STATE = "dagger_aggregate"
"""Checkpoint key of the aggregate data set (a resumed run keeps its labels)."""


class DAggerConfig(RlscaleConfigMixin, ClonesLabelledStates, AlgorithmConfig):
    """DAgger's defaults: one linear beta decay over 10 rounds, 1,000 BC minibatches a round."""

    RLSCALE_KEYS: ClassVar[tuple[str, ...]] = (
        "expert",
        "beta_schedule",
        "beta_decay_iterations",
        "beta_base",
        "updates_per_iteration",
        "aggregate_capacity",
        "aggregate_dataset",
    )

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or DAgger)
        self.expert: str | None = None
        """The expert: a scripted policy's name or a checkpoint folder (set by ``expert:`` in the
        spec, which the platform checks against the env first)."""
        self.beta_schedule = "linear"
        self.beta_decay_iterations = 10
        """``linear``: beta falls from 1 in the first round to 0 in round ``1 + this``."""
        self.beta_base = 0.5
        """``exponential``: beta of round ``i`` (from 1) is ``beta_base ** (i - 1)``."""
        self.updates_per_iteration = 1_000
        self.aggregate_capacity: int | None = None
        """At most this many labelled states (the oldest dropped first); None keeps all."""
        self.aggregate_dataset: str | None = None
        """A Minari dataset id (``NAMESPACE/NAME-vN``): when the run stops, the aggregate is
        written there, under ``MINARI_DATASETS_PATH`` (:meth:`DAgger.write_aggregate`)."""
        self.train_batch_size_per_learner = 1_000
        """Env steps rolled out (and labelled) per round."""
        self.minibatch_size = 256
        """The BC minibatch size."""
        self.lr = 1e-3
        # Wide ReLU layers and many updates: a scripted expert switches sharply (Pendulum's
        # energy pump), and [64, 64] tanh layers with 200 updates a round did not learn its
        # swing-up from 2,000 labels.
        self.hidden_sizes = [256, 256]
        self.activation = "relu"
        # Rollouts run in the driver unless the user asks for EnvRunner actors; episodes run on
        # across rounds (RLlib's "complete_episodes" reseeds the env on every call).
        self.num_env_runners = 0
        # The module acts in the env's units, as the expert does: its labels need no rescaling.
        self.normalize_actions = False
        self.clip_actions = True

    @property
    def _model_config_auto_includes(self) -> dict[str, Any]:
        return super()._model_config_auto_includes | {
            "expert": self.expert,
            "mixing_seed": self.seed,
        }

    def get_default_rl_module_spec(self) -> RLModuleSpec:
        return RLModuleSpec(module_class=DAggerModule)

    def validate(self) -> None:
        super().validate()
        if not self.expert:
            self._value_error(
                "dagger needs an expert to label the states it visits: set `expert:` in the "
                "spec (or --expert) to a scripted policy's name or a checkpoint folder"
            )
        if self.beta_schedule not in BETA_SCHEDULES:
            self._value_error(
                f"beta_schedule must be one of {', '.join(BETA_SCHEDULES)}, "
                f"got {self.beta_schedule!r}"
            )
        for key in ("beta_decay_iterations", "updates_per_iteration", "minibatch_size"):
            value = getattr(self, key)
            if not isinstance(value, int) or value < 1:
                self._value_error(f"{key} must be a positive integer, got {value!r}")
        if not 0 <= self.beta_base <= 1:
            self._value_error(f"beta_base must lie in [0, 1], got {self.beta_base!r}")
        self._check_aggregate_dataset()
        capacity = self.aggregate_capacity
        if capacity is not None and (not isinstance(capacity, int) or capacity < 1):
            self._value_error(
                f"aggregate_capacity must be a positive integer or None, got {capacity!r}"
            )

    def _check_aggregate_dataset(self) -> None:
        """Refuse a bad or taken dataset id now rather than when the run has finished."""
        name = self.aggregate_dataset
        if name is None:
            return
        try:
            check_dataset_id(str(name))
        except DatasetError as error:
            self._value_error(f"aggregate_dataset: {error}")
        if (datasets_root() / str(name)).exists():
            self._value_error(
                f"aggregate_dataset: a dataset {name} already exists under {datasets_root()}; "
                "choose another name or version (…-v1), or delete the old one first"
            )

    def beta(self, iteration: int) -> float:
        """The expert's share of the actions in round ``iteration`` (counted from 0)."""
        if self.beta_schedule == "exponential":
            return float(self.beta_base**iteration)
        return max(0.0, 1.0 - iteration / self.beta_decay_iterations)


class DAggerModule(DefaultBCTorchRLModule):
    """RLlib's BC network; on EnvRunners, the exploration pass mixes in and asks the expert.

    ``_forward_exploration`` returns the action taken (the expert's with probability
    ``beta``, else the learner's greedy one) and, under ``EXPERT_ACTIONS``, the expert's
    action in every row. The expert is built on first use, so a module that never explores
    (the Learner's, or one restored to evaluate) never loads it.
    """

    def setup(self) -> None:
        super().setup()
        self.beta = 1.0
        self._expert = None
        self._rng = np.random.default_rng(self.model_config.get("mixing_seed"))

    def set_beta(self, beta: float) -> None:
        self.beta = float(beta)

    def seed_mixing(self, seed: int | None, runner_index: int) -> None:
        """Give this EnvRunner's copy its own stream of expert-or-learner draws: every copy
        starts from the same ``mixing_seed``, so without this all runners would make the same
        choices at the same steps."""
        self._rng = np.random.default_rng(None if seed is None else [seed, runner_index])

    def _forward_exploration(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        output = self._forward(batch)
        learner_actions = self._greedy_actions(output[Columns.ACTION_DIST_INPUTS])
        expert_actions = self._expert_actions(batch[Columns.OBS])
        expert_acts = torch.as_tensor(self._rng.random(len(expert_actions)) < self.beta)
        expert_actions = expert_actions.to(learner_actions)
        mask = expert_acts.reshape(-1, *(1,) * (learner_actions.dim() - 1))
        output[Columns.ACTIONS] = torch.where(mask, expert_actions, learner_actions)
        output[EXPERT_ACTIONS] = expert_actions
        return output

    def _greedy_actions(self, action_dist_inputs: torch.Tensor) -> torch.Tensor:
        distribution = self.get_inference_action_dist_cls().from_logits(action_dist_inputs)
        return distribution.to_deterministic().sample()

    def _expert_actions(self, observations: torch.Tensor) -> torch.Tensor:
        if self._expert is None:
            expert = self.model_config.get("expert")
            if not expert:
                raise ValueError("this DAgger module has no expert to explore with")
            self._expert = named_policy(expert)(self.observation_space, self.action_space)
        rows = observations.detach().cpu().numpy()
        return torch.as_tensor(np.stack([np.asarray(self._expert(row, self._rng)) for row in rows]))


AGGREGATE_COLUMNS = (
    "observations",
    "actions",
    "next_observations",
    "rewards",
    "terminated",
    "truncated",
    "episodes",
)
"""Per labelled state: the state, the expert's label, what followed the action actually taken
(next state, reward, termination, truncation), and the number of the episode it belongs to."""


class LabelledStates:
    """The aggregate data set: visited states and the expert's action in each, grown in place.

    Each row also keeps what followed it in the env and its episode's number, so that the
    aggregate can be written out as whole episodes (:meth:`episodes`).
    """

    def __init__(self, capacity: int | None) -> None:
        self.capacity = capacity
        self.columns: dict[str, np.ndarray] = {}
        self.episodes_seen = 0
        """Episodes numbered so far; the next new episode gets this number."""
        self._open_episodes: dict[str, int] = {}
        """RLlib episode id -> number, for episodes that may go on in the next round's sample."""

    def __len__(self) -> int:
        return len(self.columns.get("observations", ()))

    @property
    def observations(self) -> np.ndarray | None:
        return self.columns.get("observations")

    @property
    def actions(self) -> np.ndarray | None:
        return self.columns.get("actions")

    def add(self, observations: np.ndarray, actions: np.ndarray, **following: np.ndarray) -> None:
        """Append rows: states and their labels, with the :data:`AGGREGATE_COLUMNS` that follow
        them when known (rows added without them cannot be written out as episodes)."""
        if len(observations) == 0:
            return
        rows = {"observations": observations, "actions": actions, **following}
        if self.columns and set(rows) != set(self.columns):
            raise ValueError(f"rows with columns {sorted(rows)} join {sorted(self.columns)}")
        for name, values in rows.items():
            old = self.columns.get(name)
            self.columns[name] = values.copy() if old is None else np.concatenate([old, values])
        if self.capacity is not None and len(self) > self.capacity:
            self.columns = {k: v[-self.capacity :] for k, v in self.columns.items()}

    def add_episodes(self, episodes) -> int:
        """Append every step of RLlib episode chunks, each labelled by the expert; returns the
        number of labelled states. Chunks of one episode sampled in successive rounds keep one
        episode number."""
        chunks = [episode for episode in episodes if len(episode)]
        if not chunks:
            return 0
        numbers = [self._episode_number(chunk.id_) for chunk in chunks]
        self._open_episodes = {
            chunk.id_: number
            for chunk, number in zip(chunks, numbers, strict=True)
            if not chunk.is_done
        }
        columns = [
            _chunk_columns(chunk, number) for chunk, number in zip(chunks, numbers, strict=True)
        ]
        self.add(**{name: np.concatenate([c[name] for c in columns]) for name in columns[0]})
        return sum(len(chunk) for chunk in chunks)

    def _episode_number(self, episode_id: str) -> int:
        number = self._open_episodes.get(episode_id)
        if number is None:
            number, self.episodes_seen = self.episodes_seen, self.episodes_seen + 1
        return number

    def episodes(self) -> Iterator[EpisodeArrays]:
        """The aggregate as whole episodes, in the order they began: the visited states, the
        expert's labels as the actions, and the rewards and ends of the actions taken. An
        episode still running when the run stopped ends truncated; one whose first rows fell
        out at capacity starts at its oldest kept state."""
        if "episodes" not in self.columns:
            raise ValueError("this aggregate holds no episode structure to write out")
        numbers = self.columns["episodes"]
        order = np.argsort(numbers, kind="stable")
        starts = np.flatnonzero(np.diff(numbers[order], prepend=-1))
        for rows in np.split(order, starts[1:]):
            yield self._episode(rows)

    def _episode(self, rows: np.ndarray) -> EpisodeArrays:
        column = {name: values[rows] for name, values in self.columns.items()}
        truncations = column["truncated"].copy()
        truncations[-1] |= not column["terminated"][-1]
        return EpisodeArrays(
            observations=np.concatenate([column["observations"], column["next_observations"][-1:]]),
            actions=column["actions"],
            rewards=column["rewards"],
            terminations=column["terminated"],
            truncations=truncations,
        )


def _chunk_columns(chunk, number: int) -> dict[str, np.ndarray]:
    """One episode chunk's rows, in the :data:`AGGREGATE_COLUMNS`."""
    steps = len(chunk)
    observations = np.asarray(chunk.get_observations(slice(0, steps + 1)))
    ended = np.zeros(steps, dtype=bool)
    terminated, truncated = ended.copy(), ended.copy()
    terminated[-1], truncated[-1] = chunk.is_terminated, chunk.is_truncated
    return {
        "observations": observations[:-1],
        "actions": np.asarray(chunk.get_extra_model_outputs(EXPERT_ACTIONS)),
        "next_observations": observations[1:],
        "rewards": np.asarray(chunk.get_rewards(), dtype=np.float64),
        "terminated": terminated,
        "truncated": truncated,
        "episodes": np.full(steps, number, dtype=np.int64),
    }


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
        self._clone_expert()
        self.metrics.log_value(BETA, beta, window=1)
        self.metrics.log_value(AGGREGATE_SIZE, len(self.aggregate), window=1)

    def _aggregate_labels(self) -> None:
        episodes = sample_env_steps(self, self.config.total_train_batch_size)
        labels = self.aggregate.add_episodes(episodes)
        self._labels_lifetime += labels
        self.metrics.log_value(EXPERT_LABELS, labels, window=1)
        self.metrics.log_value(EXPERT_LABELS_LIFETIME, self._labels_lifetime, window=1)

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
