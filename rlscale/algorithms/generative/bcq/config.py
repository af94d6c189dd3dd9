"""Batch-Constrained deep Q-learning (BCQ) for continuous actions: RLlib's CQL algorithm and config
(the SAC-based offline pipeline rlscale's ``cql`` uses) with BCQ's module, Learner and defaults.

Fujimoto, Meger & Precup 2019, "Off-Policy Deep Reinforcement Learning without Exploration",
https://arxiv.org/abs/1812.02900. Off-policy Q-learning on a fixed batch overestimates actions the
data never took (extrapolation error). BCQ only ever evaluates actions close to the data's: a
conditional VAE G(a | s) models the logged actions, a perturbation network ξ(s, a) bounded by
Φ · max_action moves G's samples towards higher value, and twin critics learn

    y = r + γ (1 − d) max_i [λ min_j Q'_j(s', ã_i) + (1 − λ) max_j Q'_j(s', ã_i)],
        ã_i = a_i + ξ'(s', a_i),  a_i ~ G(s'),  i = 1..n

(the soft clipped double-Q target); ξ maximizes Q_1(s, a + ξ(s, a)), a ~ G(s). The policy
decodes n actions from G, perturbs them and takes the argmax of Q_1 (see ``module``,
``learner``).

Keys: ``perturbation_scale`` (Φ), ``target_min_weight`` (λ), ``num_sampled_actions`` (n),
``vae_hidden_sizes``, ``vae_beta``, ``vae_lr``; and RLlib's ``actor_lr`` (ξ), ``critic_lr``,
``tau``, ``twin_q``, ``gamma``, ``hidden_sizes``/``activation`` (ξ and critics). RLlib's CQL and
SAC keys that BCQ has no use for (``bc_iters``, ``min_q_weight``, ``temperature``,
``num_actions``, ``alpha_lr``, ``initial_alpha``, ...) are accepted and ignored.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from ray.rllib.algorithms.cql import CQL as RLlibCQL
from ray.rllib.algorithms.cql import CQLConfig as RLlibCQLConfig
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.utils.annotations import override

from rlscale.algorithms.common.config import RlscaleConfigMixin
from rlscale.algorithms.common.offline import (
    ReleasesDataIterators,
    offline_training_step,
    set_offline_defaults,
)
from rlscale.algorithms.generative.bcq.learner import BCQLearner
from rlscale.algorithms.generative.bcq.module import BCQModule
from rlscale.modules.generative.inputs import is_int, is_real
from rlscale.modules.generative.vae import VAESettings

VAE_DEFAULTS = VAESettings()


class BCQConfig(RlscaleConfigMixin, RLlibCQLConfig):
    """RLlib's CQLConfig (offline, SAC-based) with BCQ's keys and defaults."""

    RLSCALE_KEYS: ClassVar[tuple[str, ...]] = (
        "perturbation_scale",
        "target_min_weight",
        "num_sampled_actions",
        "vae_hidden_sizes",
        "vae_beta",
        "vae_lr",
    )

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or BCQ)
        set_offline_defaults(self, updates_per_iteration=100)
        self.perturbation_scale = 0.05
        """Φ: the perturbation ξ(s, a) lies in ±Φ · max_action (the paper's 0.05)."""
        self.target_min_weight = 0.75
        """λ of the soft clipped double-Q target: λ min + (1 − λ) max over the twin target
        critics (the paper's 0.75; 1 is TD3's clipped double Q)."""
        self.num_sampled_actions = 10
        """n: actions decoded from the VAE per state, in the target and when acting (paper's)."""
        self.vae_hidden_sizes = [128, 128]
        """The VAE's encoder and decoder widths (the paper's are 750, 750; not tried here).
        With 128 for the VAE, ξ and the critics an update of 100 rows takes about 13 ms on
        one CPU core; 256 everywhere takes 29 ms."""
        self.vae_beta = VAE_DEFAULTS.beta
        """Weight of the VAE's KL term (BCQ's 0.5, ``VAESettings``)."""
        # ξ and the critics (the paper's are 400-300). On the noisy Pendulum data [64, 64]
        # ended at -144 after 3,000 updates and [128, 128] at -141.
        self.hidden_sizes = [128, 128]
        self.activation = "relu"
        # The paper's batch of 100 and Adam at 1e-3 for all three networks.
        self.train_batch_size_per_learner = 100
        self.vae_lr = 1e-3
        self.actor_lr = 1e-3
        self.critic_lr = 1e-3
        self.lr = None  # one learning rate per network, no shared one
        self.gamma = 0.99
        self.twin_q = True
        # Polyak rate per gradient step (the Learner averages after every step, not once per
        # iteration), so the paper's 0.005 already moves the targets within a few hundred
        # updates. Measured on noisy Pendulum data (tests/test_bcq.py, 3,000 updates): 0.02,
        # CQL's choice, reached -200 sooner (1,000 updates) but then hovered at -240 to -300;
        # 0.005 reached -140.
        self.tau = 0.005

    @property
    def _model_config_auto_includes(self) -> dict[str, Any]:
        return super()._model_config_auto_includes | {
            "num_critics": 2 if self.twin_q else 1,
            "perturbation_scale": self.perturbation_scale,
            "target_min_weight": self.target_min_weight,
            "num_sampled_actions": self.num_sampled_actions,
            "vae_hidden_sizes": list(self.vae_hidden_sizes),
            "vae_beta": self.vae_beta,
            "normalize_actions": self.normalize_actions,
        }

    def validate(self) -> None:
        super().validate()
        scale = self.perturbation_scale
        if not is_real(scale) or not 0.0 <= scale <= 1.0:
            self._value_error(
                f"perturbation_scale (Φ) must lie in [0, 1], got {scale!r}: the perturbation "
                "moves a VAE sample by at most Φ times the half action range (0.05 is the "
                "paper's; 0 acts with the VAE's samples alone)."
            )
        weight = self.target_min_weight
        if not is_real(weight) or not 0.0 <= weight <= 1.0:
            self._value_error(
                f"target_min_weight (λ) must lie in [0, 1], got {weight!r}: the target weighs "
                "the twin critics' min by λ and their max by 1 − λ (0.75 is the paper's)."
            )
        samples = self.num_sampled_actions
        if not is_int(samples) or samples < 1:
            self._value_error(
                f"num_sampled_actions must be a positive integer, got {samples!r}: the actions "
                "decoded from the VAE per state (10 is the paper's)."
            )
        widths = self.vae_hidden_sizes
        if (
            not isinstance(widths, list | tuple)
            or not widths
            or not all(is_int(width) and width >= 1 for width in widths)
        ):
            self._value_error(
                f"vae_hidden_sizes must be a non-empty list of positive layer widths, such as "
                f"[128, 128], got {widths!r}"
            )
        beta = self.vae_beta
        if not is_real(beta) or not math.isfinite(beta) or beta < 0:
            self._value_error(f"vae_beta (the KL weight) must be a number >= 0, got {beta!r}")
        for key in ("vae_lr", "actor_lr", "critic_lr"):
            lr = getattr(self, key)
            if is_real(lr) and not (math.isfinite(lr) and lr > 0):
                self._value_error(
                    f"{key} must be a positive learning rate, such as 1e-3, got {lr!r}"
                )
        if not is_real(self.tau) or not 0.0 < self.tau <= 1.0:
            self._value_error(
                f"tau must lie in (0, 1], got {self.tau!r}: the Polyak rate of the target "
                "critics and perturbation network per gradient step."
            )

    def get_default_rl_module_spec(self) -> RLModuleSpec:
        return RLModuleSpec(module_class=BCQModule)

    def get_default_learner_class(self) -> type[BCQLearner]:
        return BCQLearner


class BCQ(ReleasesDataIterators, RLlibCQL):
    """RLlib's CQL algorithm (offline data, one learner update call per iteration) with the
    shared offline training step."""

    @classmethod
    @override(RLlibCQL)
    def get_default_config(cls) -> BCQConfig:
        return BCQConfig()

    @override(RLlibCQL)
    def training_step(self) -> None:
        offline_training_step(self)
