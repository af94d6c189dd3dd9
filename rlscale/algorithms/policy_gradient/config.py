"""Configs of A2C, TRPO and PPO: every default of the policy-gradient family lives here.

All three extend RLlib's ``PPOConfig`` (same sampling, GAE and training loop; see
``algorithm.py``) and differ in their Learner and defaults. Defaults depend on the action
space: ``DISCRETE_DEFAULTS`` / ``CONTINUOUS_DEFAULTS`` are applied by
:meth:`PolicyGradientConfig.apply_action_space_defaults` before the user's hyper-parameters,
so anything a user sets wins.

Network (shared by the three): ``hidden_sizes``, ``activation`` (tanh | relu | elu),
``shared_trunk`` (one trunk for policy and value, or two), ``initial_log_std`` (Gaussian
policies, in units of the normalized action range [-1, 1]).
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.connectors.env_to_module import MeanStdFilter
from ray.rllib.core.rl_module.rl_module import RLModuleSpec

from rlscale.algorithms.policy_gradient.learners import A2CLearner, PPOLearner, TRPOLearner
from rlscale.algorithms.policy_gradient.module import ActorCriticModule


class PolicyGradientConfig(PPOConfig):
    """What A2C, TRPO and PPO share: sampling, the actor-critic network, GAE."""

    DISCRETE_DEFAULTS: ClassVar[dict[str, Any]] = {}
    CONTINUOUS_DEFAULTS: ClassVar[dict[str, Any]] = {}

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class)
        # Sampling: one process stepping vectorized envs beats actor round-trips on a few cores.
        self.num_env_runners = 0
        self.num_envs_per_env_runner = 8
        # The actor-critic network.
        self.hidden_sizes = [64, 64]
        self.activation = "tanh"
        self.shared_trunk = False
        self.initial_log_std = 0.0
        self.normalize_observations = False
        # Losses and GAE.
        self.gamma = 0.99
        self.lambda_ = 0.95
        self.vf_loss_coeff = 0.5
        self.entropy_coeff = 0.0
        self.use_kl_loss = False
        self.grad_clip = 0.5
        self.grad_clip_by = "global_norm"
        self.shuffle_batch_per_epoch = True

    def apply_action_space_defaults(self, action_space: gym.Space) -> PolicyGradientConfig:
        """Set this algorithm's defaults for Discrete or for Box actions."""
        defaults = (
            self.DISCRETE_DEFAULTS
            if isinstance(action_space, gym.spaces.Discrete)
            else self.CONTINUOUS_DEFAULTS
        )
        self.update_from_dict(dict(defaults))
        return self

    def get_default_rl_module_spec(self) -> RLModuleSpec:
        return RLModuleSpec(module_class=ActorCriticModule)

    def build_env_to_module_connector(self, env=None, spaces=None, device=None):
        pipeline = super().build_env_to_module_connector(env, spaces, device)
        if self.normalize_observations:
            pipeline.prepend(MeanStdFilter(multi_agent=self.is_multi_agent))
        return pipeline

    @property
    def _model_config_auto_includes(self) -> dict[str, Any]:
        return super()._model_config_auto_includes | {
            "hidden_sizes": list(self.hidden_sizes),
            "activation": self.activation,
            "shared_trunk": self.shared_trunk,
            "initial_log_std": self.initial_log_std,
        }

    def validate(self) -> None:
        super().validate()
        if not 0.0 <= self.gamma <= 1.0:
            self._value_error(f"gamma must lie in [0, 1], got {self.gamma}")
        if not 0.0 <= self.lambda_ <= 1.0:
            self._value_error(f"lambda_ must lie in [0, 1], got {self.lambda_}")
        if not self.hidden_sizes or any(int(size) < 1 for size in self.hidden_sizes):
            self._value_error(
                f"hidden_sizes must be positive layer widths, got {self.hidden_sizes}"
            )


# Discrete actions never need the unsquash-and-clip pass over the actions.
_DISCRETE_SAMPLING = {"normalize_actions": False}


class A2CConfig(PolicyGradientConfig):
    """A2C: one gradient step per sampled batch (no epochs, no minibatches)."""

    DISCRETE_DEFAULTS: ClassVar[dict[str, Any]] = {
        **_DISCRETE_SAMPLING,
        "train_batch_size_per_learner": 256,
        # 3e-3 learned CartPole on earlier machines but, seed 0 on the 2026-12-01 one, swung
        # between 300 and 10 and ended 250k steps at a mean of 228 (greedy 276); 1e-3 reached
        # 475 at 151k (greedy 500). See the README's A2C notes.
        "lr": 1e-3,
        "gamma": 0.99,
        "lambda_": 0.95,
    }
    CONTINUOUS_DEFAULTS: ClassVar[dict[str, Any]] = {
        "train_batch_size_per_learner": 256,
        "lr": 3e-3,
        "gamma": 0.95,
        "lambda_": 0.95,
        "initial_log_std": -0.5,
    }

    def __init__(self, algo_class=None):
        from rlscale.algorithms.policy_gradient.algorithm import A2C

        super().__init__(algo_class=algo_class or A2C)
        self.num_epochs = 1
        self.minibatch_size = None
        self.train_batch_size_per_learner = 256
        self.lr = 1e-3

    def get_default_learner_class(self) -> type[A2CLearner]:
        return A2CLearner

    def validate(self) -> None:
        super().validate()
        if self.num_epochs != 1 or self.minibatch_size not in (
            None,
            self.train_batch_size_per_learner,
        ):
            self._value_error(
                "A2C takes exactly one gradient step per batch: leave num_epochs at 1 and "
                "minibatch_size unset (use ppo for several epochs over minibatches)"
            )


class TRPOConfig(PolicyGradientConfig):
    """TRPO: one natural-gradient step per batch under mean KL ≤ ``max_kl``.

    ``lr`` is unused (the step size comes from ``max_kl``); the value function is fitted with
    Adam at ``vf_lr`` for ``vf_iters`` epochs over minibatches of ``vf_minibatch_size``.
    """

    DISCRETE_DEFAULTS: ClassVar[dict[str, Any]] = {
        **_DISCRETE_SAMPLING,
        "train_batch_size_per_learner": 1024,
        "max_kl": 0.02,
        "gamma": 0.99,
        "lambda_": 0.98,
    }
    CONTINUOUS_DEFAULTS: ClassVar[dict[str, Any]] = {
        "train_batch_size_per_learner": 2048,
        "max_kl": 0.02,
        "gamma": 0.99,
        "lambda_": 0.95,
        "initial_log_std": -0.5,
    }

    def __init__(self, algo_class=None):
        from rlscale.algorithms.policy_gradient.algorithm import TRPO

        super().__init__(algo_class=algo_class or TRPO)
        self.num_epochs = 1
        self.minibatch_size = None
        self.train_batch_size_per_learner = 1024
        self.max_kl = 0.01
        self.cg_iters = 10
        self.cg_damping = 0.1
        self.line_search_steps = 10
        self.line_search_ratio = 0.5
        self.vf_lr = 1e-3
        self.vf_iters = 10
        self.vf_minibatch_size = 256

    def get_default_learner_class(self) -> type[TRPOLearner]:
        return TRPOLearner

    def validate(self) -> None:
        super().validate()
        if self.max_kl <= 0:
            self._value_error(f"max_kl must be > 0, got {self.max_kl}")
        if not 0 < self.line_search_ratio < 1:
            self._value_error(f"line_search_ratio must lie in (0, 1), got {self.line_search_ratio}")
        if self.num_learners > 1:
            # The policy step is taken by hand, outside DDP's gradient all-reduce.
            self._value_error("TRPO runs on one Learner: set num_learners to 0 or 1")
        if self.num_epochs != 1 or self.minibatch_size is not None:
            self._value_error(
                "TRPO takes one policy step on the whole batch: leave num_epochs at 1 and "
                "minibatch_size unset (vf_iters and vf_minibatch_size set the value fitting)"
            )


class RlscalePPOConfig(PolicyGradientConfig):
    """PPO: clipped surrogate over ``num_epochs`` epochs of minibatches.

    ``value_clip_param`` (None = off) clips the new value to ±that around the value at sampling
    time; ``target_kl`` (None = off) stops the epochs once a minibatch's approximate KL exceeds
    1.5 × ``target_kl``.
    """

    DISCRETE_DEFAULTS: ClassVar[dict[str, Any]] = {
        **_DISCRETE_SAMPLING,
        "train_batch_size_per_learner": 1024,
        "minibatch_size": 256,
        "num_epochs": 10,
        "lr": 1e-3,
        "gamma": 0.98,
        "lambda_": 0.9,
    }
    CONTINUOUS_DEFAULTS: ClassVar[dict[str, Any]] = {
        "train_batch_size_per_learner": 2048,
        "minibatch_size": 256,
        "num_epochs": 10,
        "lr": 1e-3,
        "gamma": 0.95,
        "lambda_": 0.95,
        "initial_log_std": -0.5,
    }

    def __init__(self, algo_class=None):
        from rlscale.algorithms.policy_gradient.algorithm import PPO

        super().__init__(algo_class=algo_class or PPO)
        self.train_batch_size_per_learner = 1024
        self.minibatch_size = 256
        self.num_epochs = 10
        self.lr = 1e-3
        self.clip_param = 0.2
        self.value_clip_param = None
        self.target_kl = None

    def get_default_learner_class(self) -> type[PPOLearner]:
        return PPOLearner
