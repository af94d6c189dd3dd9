"""Dreamer's config: every default once, sized for a CPU (see the package docstring)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.core.rl_module.rl_module import RLModuleSpec

from rlscale.algorithms.common.config import RlscaleConfigMixin
from rlscale.algorithms.world_model.dreamer.learner import DreamerLearner
from rlscale.algorithms.world_model.dreamer.module import DreamerModule, world_model_spec
from rlscale.algorithms.world_model.sequences import sequence_dataset_problem

COUNT_KEYS = (
    "sequence_length",
    "batch_size_sequences",
    "horizon",
    "imagination_starts",
    "replay_capacity",
)
"""Keys that count something and must be integers of at least 1."""
RATE_KEYS = ("model_lr", "actor_lr", "critic_lr", "adam_epsilon", "grad_clip", "train_ratio")
"""Keys that must be finite positive numbers."""
UNIT_INTERVAL_KEYS = ("return_lambda", "critic_tau", "return_scale_decay")
"""Keys that must lie in [0, 1]."""
NON_NEGATIVE_KEYS = ("entropy_scale", "actor_mean_penalty")
"""Weights that may be zero (the term switched off) but not negative."""


class DreamerConfig(RlscaleConfigMixin, AlgorithmConfig):
    """Dreamer's keys and CPU-sized defaults."""

    RLSCALE_KEYS: ClassVar[tuple[str, ...]] = (
        "world_model",
        "sequence_length",
        "batch_size_sequences",
        "train_ratio",
        "horizon",
        "imagination_starts",
        "return_lambda",
        "model_lr",
        "actor_lr",
        "critic_lr",
        "adam_epsilon",
        "grad_clip",
        "entropy_scale",
        "actor_mean_penalty",
        "critic_tau",
        "return_scale_decay",
        "random_warmup_steps",
        "replay_capacity",
        "store_buffer_in_checkpoints",
        "dataset_dir",
        "pretrain_updates",
    )
    WORLD_MODEL_DEFAULTS: ClassVar[dict[str, Any]] = {
        "deterministic_size": 128,
        "stochastic_size": 16,
        "hidden_size": 128,
    }
    """Dreamer's world model here, over ``WorldModelSpec``'s defaults (narrower than PlaNet's
    200 units, so that an update stays cheap on one CPU core); ``world_model`` goes over it."""

    def __init__(self, algo_class=None):
        from rlscale.algorithms.world_model.dreamer.algorithm import Dreamer

        super().__init__(algo_class=algo_class or Dreamer)
        self.world_model: dict[str, Any] = {}
        """Overrides of ``WORLD_MODEL_DEFAULTS`` (``WorldModelSpec`` fields)."""
        # Actor and critic MLPs (DreamerV1: 3 x 300 ELU; two narrower layers on a CPU).
        self.hidden_sizes = [128, 128]
        self.activation = "elu"
        # Replayed batches: B sequences of L steps (DreamerV1: 50 x 50).
        self.sequence_length = 32
        self.batch_size_sequences = 16
        self.train_ratio = 64.0
        """Replayed steps per env step (DreamerV3's training ratio, RLlib's ``training_ratio``):
        one update of B x L = 512 steps every 8 env steps."""
        self.horizon = 15
        self.imagination_starts = 256
        """Posterior states imagination starts from per update, drawn from the batch's B x L
        (DreamerV1 starts from all of them; half of 512 halves the actor's cost on a CPU)."""
        self.gamma = 0.99
        self.return_lambda = 0.95
        # DreamerV1's model learning rate; its actor and critic rate (8e-5, tuned for millions
        # of env steps) raised to 4e-4 for CPU budgets of about 10,000 steps (Pendulum, seed 0,
        # training returns: 2e-4 near -400 after 7,000 steps, 4e-4 at -255 after 6,000).
        # Adam, every gradient norm clipped.
        self.lr = None
        self.model_lr = 6e-4
        self.actor_lr = 4e-4
        self.critic_lr = 4e-4
        self.adam_epsilon = 1e-5
        self.grad_clip = 100.0
        self.entropy_scale = 3e-4  # DreamerV3's η, on returns scaled by max(1, S)
        self.actor_mean_penalty = 0.01
        """Weight of 0.5 · mean(μ²) over the actor's pre-tanh means in imagination. Where the
        best action lies on a bound (bang-bang swing-ups), the return's gradient pushes μ out
        without end; once |μ| is past about 10, tanh is flat, no return gradient comes back and
        the policy is stuck on the bound (a Pendulum run that collapsed so: docs/benchmarks.md,
        "Dreamer on Pendulum-v1"). The pull toward zero is negligible at |μ| of a few and grows
        as μ runs away."""
        self.critic_tau = 0.02  # the slow critic moves 2 % toward the critic per update
        self.return_scale_decay = 0.99
        self.random_warmup_steps = 1_000
        self.replay_capacity = 100_000
        # RLlib's key (DQN's and SAC's): the replay goes into checkpoints, so that a restored
        # run continues with it. Off, as in RLlib: 100k 64x64 frames are 1.2 GB.
        self.store_buffer_in_checkpoints = False
        self.dataset_dir: str | None = None
        """A Minari dataset's ``data`` folder (``--dataset``): its episodes fill the replay and
        ``pretrain_updates`` updates run on them before the first env step."""
        self.pretrain_updates = 1_000
        # Sampled in the driver, 50 steps between update blocks; an iteration is 1,000 env
        # steps (five Pendulum episodes).
        self.num_env_runners = 0
        self.num_envs_per_env_runner = 1
        self.rollout_fragment_length = 50
        self.min_time_s_per_iteration = None
        self.min_sample_timesteps_per_iteration = 1_000

    def effective_world_model(self) -> dict[str, Any]:
        return {**self.WORLD_MODEL_DEFAULTS, **dict(self.world_model)}

    @property
    def replayed_steps_per_update(self) -> int:
        return self.sequence_length * self.batch_size_sequences

    @property
    def _model_config_auto_includes(self) -> dict[str, Any]:
        return super()._model_config_auto_includes | {
            "world_model": self.effective_world_model(),
            "return_scale_decay": self.return_scale_decay,
        }

    def get_default_rl_module_spec(self) -> RLModuleSpec:
        return RLModuleSpec(module_class=DreamerModule)

    def get_default_learner_class(self) -> type[DreamerLearner]:
        return DreamerLearner

    def validate(self) -> None:
        super().validate()
        for key in COUNT_KEYS:
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                self._value_error(f"{key} must be an integer of at least 1, got {value!r}")
        for key in ("random_warmup_steps", "pretrain_updates"):
            value = getattr(self, key)
            if not isinstance(value, int) or value < 0:
                self._value_error(f"{key} must be an integer of at least 0, got {value!r}")
        for key in RATE_KEYS:
            if not _positive(getattr(self, key)):
                self._value_error(f"{key} must be a positive number, got {getattr(self, key)!r}")
        for key in UNIT_INTERVAL_KEYS:
            if not 0 <= getattr(self, key) <= 1:
                self._value_error(f"{key} must lie in [0, 1], got {getattr(self, key)!r}")
        for key in NON_NEGATIVE_KEYS:
            value = getattr(self, key)
            if not (_positive(value) or value == 0):
                self._value_error(f"{key} must be >= 0, got {value!r}")
        self._validate_layout()
        self._validate_dataset()

    def _validate_dataset(self) -> None:
        problem = sequence_dataset_problem(self.dataset_dir, self.sequence_length)
        if problem:
            self._value_error(problem)

    def _validate_layout(self) -> None:
        if self.num_learners > 1:
            self._value_error(
                "dreamer trains one world model on one Learner; set num_learners to 0 or 1 "
                "(gpus_per_learner puts that Learner on a GPU)"
            )
        if not self.normalize_actions:
            self._value_error(
                "dreamer's actor acts in [-1, 1] and RLlib maps its actions onto the bounds; "
                "keep normalize_actions=True"
            )
        if self.is_multi_agent:
            self._value_error("dreamer trains one policy; run it on a single-agent env")
        if self.replay_capacity < self.sequence_length:
            self._value_error(
                f"replay_capacity ({self.replay_capacity} steps) must hold at least one "
                f"sequence of sequence_length={self.sequence_length} steps"
            )
        try:
            world_model_spec(self.effective_world_model(), (1,), 1)
        except (TypeError, ValueError) as exc:
            self._value_error(str(exc))


def vector_or_image_observations(observation_space: gym.Space, _: gym.Space) -> str | None:
    """Space check: a vector (the world model's MLP encoder) or an (H, W, C) image (its conv
    encoder)."""
    if isinstance(observation_space, gym.spaces.Box) and len(observation_space.shape) in (1, 3):
        return None
    return (
        "its world model encodes a vector (d,) or an image (H, W, C) observation, and the "
        f"observation space is {observation_space}"
    )


def attach_dataset(config: DreamerConfig, data_dir: Path) -> None:
    """``--dataset``: the dataset's episodes fill the replay and are trained on first
    (``pretrain_updates``); training then goes on online, so nothing else changes."""
    config.dataset_dir = str(data_dir)


def _positive(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )
