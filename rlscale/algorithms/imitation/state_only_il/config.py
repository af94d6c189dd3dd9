"""State-only IL's config: SAC's, with the demonstrations' budget, the densities and the reward."""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import torch
from ray.rllib.core.rl_module.rl_module import RLModuleSpec

from rlscale.algorithms.common.config import _action_space_of
from rlscale.algorithms.common.settings import settings_from
from rlscale.algorithms.imitation.demonstrations import settings_problem
from rlscale.algorithms.imitation.state_only_il.discrete_sac import DiscreteSACModule
from rlscale.algorithms.value_based.sac import SACConfig, SACLearner, SACTrainModule
from rlscale.modules.generative.flows import FlowFitSettings, FlowSettings

POSITIVE_COUNTS = (
    "expert_flow_updates",
    "model_updates",
    "model_train_interval",
    "model_batch_size",
    "inverse_model_window",
)


class StateOnlyILConfig(SACConfig):
    """SAC's config (rlscale's replay, warm-up and update ratio) plus state-only IL's keys."""

    FLOW_DEFAULTS: ClassVar[dict[str, Any]] = {"kind": "spline"}
    """Spline coupling over ``FlowSettings``' RealNVP: off the states a flow was fitted on,
    affine coupling extrapolated to log-densities of -1e4 (held-out Pendulum swing-up states,
    measured) where splines stay within tens of nats, and the reward there is that density."""
    DISCRETE_DEFAULTS: ClassVar[dict[str, Any]] = {
        # CartPole-v1 from one episode: at the KL's weight of 1 the discrete policy stayed
        # near uniform (251.5 at 10,240 env steps); at 0.1 it held 500 from 20,480 env steps
        # on (docs/imitation.md).
        "entropy_coefficient": 0.1,
    }
    RLSCALE_KEYS: ClassVar[tuple[str, ...]] = (
        "num_demos",
        "subsample_every",
        "dataset_dir",
        "flow",
        "expert_flow_updates",
        "model_updates",
        "model_train_interval",
        "model_batch_size",
        "model_lr",
        "inverse_model_window",
        "density_noise",
        "reward_clip",
        "entropy_coefficient",
    )

    def __init__(self, algo_class=None):
        from rlscale.algorithms.imitation.state_only_il.algorithm import StateOnlyIL

        super().__init__(algo_class=algo_class or StateOnlyIL)
        self.num_demos: int | None = None
        """Demonstration budget: the dataset's first ``num_demos`` episodes (None: all)."""
        self.subsample_every = 1
        self.dataset_dir: str | None = None
        """The demonstrations' Minari ``data`` folder (set by ``--dataset``, checked first)."""
        self.flow: dict[str, Any] = {}
        """Overrides of ``FLOW_DEFAULTS`` (``FlowSettings`` fields: kind, transforms,
        hidden_sizes, spline_bins) for all three flows."""
        self.expert_flow_updates = 3_000
        """Adam steps of the one fit of ``p_E(s'|s)`` on the demonstrations."""
        self.model_updates = 300
        """Adam steps of each refit of ``p(s'|s,a)`` and ``pi'(a|s,s')``."""
        self.model_train_interval = 1_000
        """Env steps between refits of the agent's two models."""
        self.model_batch_size = 256
        self.model_lr = 1e-3
        self.inverse_model_window = 5_000
        """The latest transitions ``pi'`` is refitted on: it models the current policy."""
        self.density_noise = 0.1
        """Smoothing of every ``p(s'|.)``, in units of the demonstrations' spread of s' - s."""
        self.reward_clip = 30.0
        """The reward is clipped to ``[-reward_clip, reward_clip]``; a terminal transition is
        followed by the floor forever (an absorbing state the expert never reaches)."""
        self.entropy_coefficient = 1.0
        """SAC's temperature, fixed: the KL objective weighs ``log pi(a|s)`` by exactly 1
        (Discrete actions: ``DISCRETE_DEFAULTS``)."""
        self.hidden_sizes = [128, 128]
        self.num_steps_sampled_before_learning_starts = 1_000

    def effective_flow(self) -> FlowSettings:
        return settings_from(FlowSettings, {**self.FLOW_DEFAULTS, **dict(self.flow)}, "flow")

    def flow_fit_settings(self, steps: int) -> FlowFitSettings:
        return FlowFitSettings(
            steps=steps, batch_size=self.model_batch_size, learning_rate=self.model_lr
        )

    @property
    def _model_config_auto_includes(self) -> dict[str, Any]:
        return super()._model_config_auto_includes | {"initial_alpha": self.entropy_coefficient}

    def get_default_rl_module_spec(self) -> RLModuleSpec:
        action_space = _action_space_of(self.env, self.env_config)
        if isinstance(action_space, gym.spaces.Discrete):
            return RLModuleSpec(module_class=DiscreteSACModule)
        return RLModuleSpec(module_class=SACTrainModule)

    def get_default_learner_class(self) -> type[SACLearner]:
        return FixedTemperatureSACLearner

    def validate(self) -> None:
        super().validate()
        problem = settings_problem(self)
        if problem:
            self._value_error(problem)
        try:
            self.effective_flow()
        except (TypeError, ValueError) as exc:
            self._value_error(f"flow: {exc}")
        for key in POSITIVE_COUNTS:
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                self._value_error(f"{key} must be a positive integer, got {value!r}")
        for key in ("model_lr", "reward_clip", "entropy_coefficient"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                self._value_error(f"{key} must be a positive number, got {value!r}")
        noise = self.density_noise
        if isinstance(noise, bool) or not isinstance(noise, int | float) or noise < 0:
            self._value_error(f"density_noise must be a number >= 0, got {noise!r}")


class FixedTemperatureSACLearner(SACLearner):
    """SAC's Learner with the temperature held at ``entropy_coefficient``: no optimizer steps
    ``log_alpha`` (its loss is still computed and logged, and moves nothing)."""

    def configure_optimizers_for_module(self, module_id, config=None) -> None:
        module = self._module[module_id]
        for name, parameters, lr in (
            ("policy", module.policy.parameters(), config.actor_lr),
            ("critics", module.critics.parameters(), config.critic_lr),
        ):
            params = list(parameters)
            self.register_optimizer(
                module_id=module_id,
                optimizer_name=name,
                optimizer=torch.optim.Adam(params, fused=True),
                params=params,
                lr_or_lr_schedule=lr,
            )
