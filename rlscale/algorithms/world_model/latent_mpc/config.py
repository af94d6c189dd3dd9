"""The config of ``latent_mpc``: PlaNet's loop sized for a CPU, every default defined once."""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.core.learner.torch.torch_learner import TorchLearner
from ray.rllib.core.rl_module.rl_module import RLModuleSpec

from rlscale.algorithms.common.config import RlscaleConfigMixin
from rlscale.algorithms.common.settings import settings_from
from rlscale.algorithms.world_model.checkpoints import space_mismatch, world_model_source
from rlscale.algorithms.world_model.latent_mpc.learner import LatentMPCLearner
from rlscale.algorithms.world_model.latent_mpc.module import LatentMPCModule, world_model_spec
from rlscale.algorithms.world_model.sequences import sequence_dataset_problem
from rlscale.envs import resolve_env
from rlscale.envs.rllib import env_name_of
from rlscale.modules.planning.cem import CEMSettings


class LatentMPCConfig(RlscaleConfigMixin, AlgorithmConfig):
    """PlaNet's loop on RLlib, sized for a CPU (module docstring)."""

    RLSCALE_KEYS: ClassVar[tuple[str, ...]] = (
        "world_model",
        "horizon",
        "planner_settings",
        "cold_start_rounds",
        "sequence_length",
        "model_batch_size",
        "model_updates",
        "replay_capacity",
        "random_warmup_steps",
        "exploration_noise",
        "offline",
        "dataset_dir",
        "model_checkpoint",
    )
    PLANNER_DEFAULTS: ClassVar[dict[str, Any]] = {
        "population": 300,
        "elites": 30,
        "iterations": 5,
        "alpha": 0.1,
    }
    """CEM over ``CEMSettings``'s defaults; PlaNet's 1,000 candidates, 100 elites and 10
    iterations cut to keep a control step near 50 ms on one CPU core. ``planner_settings``
    goes over these."""

    def __init__(self, algo_class=None):
        # Imported here: the algorithm module imports this config.
        from rlscale.algorithms.world_model.latent_mpc.algorithm import LatentMPC

        super().__init__(algo_class=algo_class or LatentMPC)
        self.world_model: dict[str, Any] = {}
        """Overrides of ``WorldModelSpec``'s sizes and loss weights (its defaults: PlaNet's)."""
        # The world model's encoder, decoder and reward/continue heads (PlaNet's 200 units).
        self.hidden_sizes = [200, 200]
        self.activation = "elu"
        self.horizon = 12  # PlaNet's planning horizon
        self.planner_settings: dict[str, Any] = {}
        self.cold_start_rounds = 2
        self.sequence_length = 50  # PlaNet's chunk length
        self.model_batch_size = 16  # PlaNet: 50; 16 fits a CPU's iteration time
        self.model_updates = 100  # PlaNet's collect interval C
        self.replay_capacity = 100_000
        self.random_warmup_steps = 1_000  # PlaNet's 5 seed episodes of 200 steps
        self.exploration_noise = 0.3  # PlaNet's action noise, on the [-1, 1] scale
        self.offline = True
        """With a dataset: only fit the model and plan with it, never sample for training."""
        self.dataset_dir: str | None = None
        """A Minari dataset's ``data`` folder (set by ``--dataset``): the replay starts with it."""
        self.model_checkpoint: str | None = None
        """A ``latent_mpc`` checkpoint of the same env: start from its world model."""
        self.lr = 1e-3  # PlaNet's Adam learning rate
        self.grad_clip = 100.0
        self.grad_clip_by = "global_norm"
        # One iteration = 200 env steps in the driver; episodes run on across iterations.
        self.num_env_runners = 0
        self.num_envs_per_env_runner = 1
        self.train_batch_size_per_learner = 200
        # The module returns actions in the env's units (it plans in [-1, 1] and scales).
        self.normalize_actions = False

    @property
    def has_dataset(self) -> bool:
        return bool(self.dataset_dir)

    def get_default_rl_module_spec(self) -> RLModuleSpec:
        if not self.model_checkpoint:
            return RLModuleSpec(module_class=LatentMPCModule, model_config=self.model_config)
        source = world_model_source(self.model_checkpoint, env_name_of(self.env))
        return RLModuleSpec(
            module_class=LatentMPCModule,
            model_config={**self.model_config, "world_model": source.world_model},
            load_state_path=str(source.module_dir),
        )

    def get_default_learner_class(self) -> type[TorchLearner]:
        return LatentMPCLearner

    @property
    def _model_config_auto_includes(self) -> dict[str, Any]:
        return super()._model_config_auto_includes | {
            "world_model": self.effective_world_model(),
            "horizon": self.horizon,
            "planner_settings": self.effective_planner_settings(),
            "cold_start_rounds": self.cold_start_rounds,
            "exploration_noise": self.exploration_noise,
            "random_warmup_steps": 0 if self.has_dataset else self.random_warmup_steps,
            "planner_seed": self.seed,
        }

    def effective_world_model(self) -> dict[str, Any]:
        """What ``WorldModelSpec`` gets over its defaults: ``world_model``, then the MLPs'
        width from ``hidden_sizes`` and ``activation``."""
        return {
            **dict(self.world_model),
            "mlp_hidden_sizes": list(self.hidden_sizes),
            "activation": self.activation,
        }

    def effective_planner_settings(self) -> dict[str, Any]:
        return {**self.PLANNER_DEFAULTS, **dict(self.planner_settings)}

    def validate(self) -> None:
        super().validate()
        counts = {
            "horizon": 1,
            "cold_start_rounds": 1,
            "sequence_length": 2,
            "model_batch_size": 1,
            "model_updates": 1,
            "random_warmup_steps": 0,
        }
        for key, least in counts.items():
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                self._value_error(f"{key} must be an integer of at least {least}, got {value!r}")
        if not isinstance(self.replay_capacity, int) or self.replay_capacity < self.sequence_length:
            self._value_error(
                f"replay_capacity must be an integer of at least sequence_length "
                f"({self.sequence_length}) steps, got {self.replay_capacity!r}"
            )
        if not self.exploration_noise >= 0:
            self._value_error(f"exploration_noise must be >= 0, got {self.exploration_noise!r}")
        if not isinstance(self.offline, bool):
            self._value_error(f"offline must be true or false, got {self.offline!r}")
        for key in ("mlp_hidden_sizes", "mlp_layers", "activation"):
            if key in self.world_model:
                self._value_error(
                    f"set the world model's MLP widths with hidden_sizes and activation, not "
                    f"{key} inside world_model"
                )
        try:
            settings_from(CEMSettings, self.effective_planner_settings(), "planner_settings")
            box = gym.spaces.Box(-1, 1, (1,))
            world_model_spec(box, box, self.effective_world_model())
        except (TypeError, ValueError) as exc:
            self._value_error(str(exc))
        self._validate_inputs()

    def _validate_inputs(self) -> None:
        problem = sequence_dataset_problem(self.dataset_dir, self.sequence_length)
        if problem:
            self._value_error(problem)
        if self.model_checkpoint:
            self._validate_model_checkpoint()

    def _validate_model_checkpoint(self) -> None:
        """The checkpoint holds a world model of this env, on this env's spaces."""
        env = env_name_of(self.env)
        try:
            source = world_model_source(self.model_checkpoint, env)
        except ValueError as exc:
            self._value_error(str(exc))
        if env is None:
            return
        info = resolve_env(env, self.env_config)
        action_shape = tuple(np.atleast_1d(info.action_space.shape))
        problem = space_mismatch(source, info.observation_space.shape, action_shape)
        if problem:
            self._value_error(
                f"model_checkpoint {self.model_checkpoint} cannot be used on {env} with "
                f"env_config {dict(self.env_config or {})}: {problem}. Pass a latent_mpc "
                "checkpoint trained on the same env and env_config"
            )
