"""IQ-Learn's config: one class for both kinds of action space (see the package docstring)."""

from __future__ import annotations

import math
from typing import Any, ClassVar

from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.core.learner.torch.torch_learner import TorchLearner
from ray.rllib.core.rl_module.rl_module import RLModuleSpec

from rlscale.algorithms.common.config import RlscaleConfigMixin
from rlscale.algorithms.imitation.demonstrations import settings_problem
from rlscale.algorithms.imitation.iq_learn.learner import ContinuousIQLearnLearner, IQLearnLearner
from rlscale.algorithms.imitation.iq_learn.module import IQLearnActorCriticModule
from rlscale.modules.rl_modules.soft_q import SoftQModule

NUM_CRITICS = 2
"""Box actions: twin critics, the actor maximizing their minimum (SAC's clipped double Q)."""


class IQLearnConfig(RlscaleConfigMixin, AlgorithmConfig):
    """IQ-Learn's defaults: chi-squared divergence (alpha 0.5). Discrete actions: offline, soft-Q
    temperature 0.1, 500 updates of 256 demonstration transitions per iteration at learning
    rate 1e-4. Box actions: online (1,000 env steps and 1,000 updates of 128 expert + 128 replayed
    transitions per iteration), a SAC-style actor with a fixed temperature 0.01, V(s') from
    the target critics."""

    RLSCALE_KEYS: ClassVar[tuple[str, ...]] = (
        "num_demos",
        "subsample_every",
        "temperature",
        "chi2_alpha",
        "chi2_on_mixture",
        "updates_per_iteration",
        "dataset_dir",
        "online",
        "env_steps_per_iteration",
        "sample_rounds_per_iteration",
        "replay_capacity",
        "actor_lr",
        "critic_lr",
        "alpha_lr",
        "learn_temperature",
        "target_entropy",
        "tau",
        "next_value_from_target",
        "absorbing_terminals",
    )
    CONTINUOUS_DEFAULTS: ClassVar[dict[str, Any]] = {
        "continuous_actions": True,
        # The paper's continuous-control experiments are online: offline, the actor's
        # actions away from the demonstrations are never corrected by the env.
        "online": True,
        "temperature": 0.01,
        # V(s') from the Polyak-averaged critics: with the trained ones, Pendulum-v1's
        # greedy return rose to 0.65 of the expert's and drifted back; with the target
        # critics three seeds held 0.94-1.0 from 12,000 env steps on (docs/imitation.md).
        "next_value_from_target": True,
        "updates_per_iteration": 1_000,
        "hidden_sizes": [256, 256],
    }

    def __init__(self, algo_class=None):
        from rlscale.algorithms.imitation.iq_learn.algorithm import IQLearn

        super().__init__(algo_class=algo_class or IQLearn)
        self.continuous_actions = False
        """Set from the env's action space: Box actions take the SAC-style actor-critic."""
        self.num_demos: int | None = None
        """Demonstration budget: the dataset's first ``num_demos`` episodes (None: all)."""
        self.subsample_every = 1
        """Keep every ``k``-th transition of each demonstration (from a random offset)."""
        self.temperature = 0.1
        """The entropy weight: tau of the soft-Q policy ``pi ∝ exp(Q / tau)`` (Discrete), the
        SAC actor's alpha (Box; its initial value with ``learn_temperature``)."""
        self.chi2_alpha = 0.5
        """``alpha`` of the chi-squared ``phi(r) = r - r^2 / (4 alpha)`` (the paper's 0.5)."""
        self.chi2_on_mixture = True
        """Online: the chi-squared regularizer over expert and replayed rows (False: expert's
        only). Offline every row is the expert's, so it changes nothing."""
        self.online = False
        """Act in the env and replay the policy's transitions beside the demonstrations."""
        self.updates_per_iteration = 500
        self.env_steps_per_iteration = 1_000
        """Online: env steps the policy takes per iteration."""
        self.sample_rounds_per_iteration = 10
        """Online: an iteration's env steps and updates alternate in this many rounds (the
        policy acting in a round is at most ``updates_per_iteration / rounds`` updates old)."""
        self.replay_capacity = 1_000_000
        """Online: the policy's last ``replay_capacity`` transitions are replayed."""
        self.actor_lr = 3e-4
        self.critic_lr = 3e-4
        self.alpha_lr = 3e-4
        """Box actions: Adam's rates for the actor, the critics and the temperature."""
        self.learn_temperature = False
        """Box actions: tune alpha towards ``target_entropy`` as SAC does."""
        self.target_entropy = "auto"
        """With ``learn_temperature``: ``"auto"`` is -|A|."""
        self.tau = 0.005
        """Polyak rate of the SAC-style module's target critics."""
        self.next_value_from_target = False
        """Box actions: V(s') from the target critics (Polyak-averaged at ``tau``) rather than
        the critics being trained."""
        self.absorbing_terminals = True
        """A terminal transition leads to an absorbing state worth ``-2 chi2_alpha / (1 -
        gamma)`` (``losses.absorbing_value``) instead of V = 0. The expert's episodes never
        end that way; with V = 0, a recovered reward below zero on the policy's own states made
        ending early the better choice (InvertedPendulum, docs/imitation.md)."""
        self.dataset_dir: str | None = None
        """The demonstrations' Minari ``data`` folder (set by ``--dataset``, checked first)."""
        self.minibatch_size = 256
        # 3e-4 learned CartPole from one subsampled demonstration on two seeds of three and
        # wavered on the third (484.6, then 468.5); 1e-4 held 499.7 or more from 5,000 updates
        # on, on all three (docs/imitation.md).
        self.lr = 1e-4
        self.gamma = 0.99
        self.hidden_sizes = [64, 64]
        self.activation = "relu"
        # Offline nothing is sampled for training, online the driver's EnvRunner samples: the
        # one EnvRunner is the driver's.
        self.num_env_runners = 0
        # One online round's env steps per sample call (get_rollout_fragment_length).
        self.rollout_fragment_length = "auto"

    @property
    def _model_config_auto_includes(self) -> dict[str, Any]:
        return super()._model_config_auto_includes | {
            "temperature": self.temperature,
            "num_critics": NUM_CRITICS,
            "initial_alpha": self.temperature,
            "next_value_from_target": self.next_value_from_target,
        }

    def get_rollout_fragment_length(self, worker_index: int = 0) -> int:
        """``"auto"``: one online round's env steps per env (RLlib's would be a train batch)."""
        if self.rollout_fragment_length != "auto":
            return super().get_rollout_fragment_length(worker_index)
        envs = self.num_envs_per_env_runner * max(self.num_env_runners, 1)
        steps_per_round = self.env_steps_per_iteration / self.sample_rounds_per_iteration
        return max(1, math.ceil(steps_per_round / envs))

    def get_default_rl_module_spec(self) -> RLModuleSpec:
        if self.continuous_actions:
            return RLModuleSpec(module_class=IQLearnActorCriticModule)
        return RLModuleSpec(module_class=SoftQModule)

    def get_default_learner_class(self) -> type[TorchLearner]:
        return ContinuousIQLearnLearner if self.continuous_actions else IQLearnLearner

    def validate(self) -> None:
        super().validate()
        problem = settings_problem(self)
        if problem:
            self._value_error(problem)
        for key in ("temperature", "chi2_alpha", "actor_lr", "critic_lr", "alpha_lr", "tau"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                self._value_error(f"{key} must be a positive number, got {value!r}")
        for key in (
            "updates_per_iteration",
            "minibatch_size",
            "env_steps_per_iteration",
            "sample_rounds_per_iteration",
            "replay_capacity",
        ):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                self._value_error(f"{key} must be a positive integer, got {value!r}")
        for key in (
            "online",
            "chi2_on_mixture",
            "learn_temperature",
            "next_value_from_target",
            "absorbing_terminals",
        ):
            if not isinstance(getattr(self, key), bool):
                self._value_error(f"{key} must be true or false, got {getattr(self, key)!r}")
        self._validate_online_split()
        if self.continuous_actions and not self.normalize_actions:
            self._value_error(
                "iq_learn's actor acts in [-1, 1] and RLlib maps its actions onto the bounds; "
                "keep normalize_actions=True."
            )

    def _validate_online_split(self) -> None:
        if not self.online:
            return
        if self.minibatch_size < 2:
            self._value_error(
                f"online, each minibatch is half expert, half replayed transitions; set "
                f"minibatch_size to at least 2, got {self.minibatch_size}"
            )
        rounds = self.sample_rounds_per_iteration
        for key in ("env_steps_per_iteration", "updates_per_iteration"):
            if getattr(self, key) < rounds:
                self._value_error(
                    f"{key} ({getattr(self, key)}) must be at least sample_rounds_per_iteration "
                    f"({rounds}): each round samples and updates; lower the rounds or raise "
                    f"{key}"
                )
