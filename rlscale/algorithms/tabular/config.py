"""Configs of the tabular algorithms: every default of Q-learning and SARSA lives here.

``lr`` is the step size α (a number, or an RLlib schedule ``[[env_step, α], ...]``, interpolated
linearly); ε falls linearly from ``epsilon_start`` to ``epsilon_end`` over
``epsilon_decay_steps`` env steps. Each update uses ``num_envs_per_env_runner ×
rollout_fragment_length`` transitions per EnvRunner; one ``train()`` iteration runs updates until
``min_sample_timesteps_per_iteration`` env steps were sampled.
"""

from __future__ import annotations

from typing import Any

from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.core.rl_module.rl_module import RLModuleSpec

from rlscale.algorithms.tabular.learner import (
    EXPECTED_TARGET,
    MAX_TARGET,
    NEXT_ACTION_TARGET,
    TabularTDLearner,
)
from rlscale.algorithms.tabular.module import TabularQModule


class TabularConfig(AlgorithmConfig):
    """Shared defaults of the tabular TD algorithms; subclasses choose the TD target."""

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class)
        # Sampling: one process stepping a few vectorized envs; small batches keep TD online.
        self.num_env_runners = 0
        self.num_envs_per_env_runner = 16
        self.rollout_fragment_length = 4
        self.min_sample_timesteps_per_iteration = 2_000
        # Discrete actions need no unsquashing or clipping; skipping RLlib's per-env-step pass
        # over the actions (a deep copy and a tree map) saves ~15% of the sampling time.
        self.normalize_actions = False
        self.clip_actions = False
        # TD learning.
        self.gamma = 0.99
        self.lr = 0.1
        self.epsilon_start = 1.0
        self.epsilon_end = 0.05
        self.epsilon_decay_steps = 20_000
        self.initial_q = 0.0
        self.sequential_duplicates = True
        # No gradient clipping: the step must be exactly α times the TD error.
        self.grad_clip = None

    def td_target(self) -> str:
        """Which bootstrap value the learner uses: ``max``, ``next_action`` or ``expected``."""
        raise NotImplementedError

    def get_default_rl_module_spec(self) -> RLModuleSpec:
        return RLModuleSpec(module_class=TabularQModule)

    def get_default_learner_class(self) -> type[TabularTDLearner]:
        return TabularTDLearner

    @property
    def _model_config_auto_includes(self) -> dict[str, Any]:
        return super()._model_config_auto_includes | {
            "epsilon_start": self.epsilon_start,
            "epsilon_end": self.epsilon_end,
            "epsilon_decay_steps": self.epsilon_decay_steps,
            "initial_q": self.initial_q,
        }

    def validate(self) -> None:
        super().validate()
        if not 0.0 <= self.gamma <= 1.0:
            self._value_error(f"gamma must lie in [0, 1], got {self.gamma}")
        for name in ("epsilon_start", "epsilon_end"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                self._value_error(f"{name} must lie in [0, 1], got {value}")
        if self.epsilon_decay_steps < 0:
            self._value_error(f"epsilon_decay_steps must be >= 0, got {self.epsilon_decay_steps}")


class QLearningConfig(TabularConfig):
    """Q-learning: target r + γ max_a Q(s', a)."""

    def __init__(self, algo_class=None):
        from rlscale.algorithms.tabular.algorithm import QLearning

        super().__init__(algo_class=algo_class or QLearning)

    def td_target(self) -> str:
        return MAX_TARGET


class SarsaConfig(TabularConfig):
    """SARSA: target r + γ Q(s', a') with a' the next action taken; or, with ``expected``,
    expected SARSA: r + γ Σ_a π_ε(a|s') Q(s', a)."""

    def __init__(self, algo_class=None):
        from rlscale.algorithms.tabular.algorithm import Sarsa

        super().__init__(algo_class=algo_class or Sarsa)
        self.expected = False

    def td_target(self) -> str:
        return EXPECTED_TARGET if self.expected else NEXT_ACTION_TARGET
