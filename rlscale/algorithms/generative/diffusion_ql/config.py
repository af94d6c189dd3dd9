"""Diffusion-QL: a diffusion policy trained to clone the data and to maximize a learned Q, on
RLlib's CQL algorithm and config (the SAC-based offline pipeline rlscale's ``cql`` uses) with
Diffusion-QL's module, Learner and defaults.

Wang, Hunt & Zhou 2023, "Diffusion Policies as an Expressive Policy Class for Offline
Reinforcement Learning", ICLR 2023, https://arxiv.org/abs/2208.06193. The policy π_θ(a | s) is
the reverse chain of a conditional DDPM over the actions (Ho et al. 2020), whose noise
predictor ε_θ(a_t, t, s) is trained with the cloning loss L_d(θ) on the logged pairs. Twin
critics and an EMA policy θ' give

    y    = r + γ (1 − d) min_i Q'_i(s', a'),   a' ~ π_θ'(s')
    L(Q) = Σ_i E[(Q_i(s, a) − y)²]
    L(π) = L_d(θ) − η / E|Q_1(s, a_0)| · E[Q_1(s, a_0)],   a_0 ~ π_θ(s)

where a_0 is drawn through the whole reverse chain, so the Q term's gradient reaches ε_θ at
every denoising step. Cloning keeps the policy on the data's support (which an expressive
diffusion model can represent, however multimodal); the Q term moves it, within that
support, towards higher-valued actions. Targets Q' and θ' follow by Polyak averaging. To act,
draw ``num_candidate_actions`` actions from π_θ' and pick one by Q (see ``module``).

Keys: ``eta`` (η), ``diffusion_steps`` (T), ``beta_schedule``, ``sampler``, ``ddim_steps``,
``ddim_eta``, ``num_candidate_actions``, ``max_q_backup``, ``num_backup_samples``,
``actor_grad_clip``, ``critic_grad_clip``, ``standardize``; and RLlib's ``actor_lr``,
``critic_lr``, ``tau``, ``twin_q``, ``gamma``, ``hidden_sizes``/``activation`` (noise
predictor and critics). RLlib's CQL and SAC keys that Diffusion-QL has no use for
(``bc_iters``, ``min_q_weight``, ``temperature``, ``num_actions``, ``alpha_lr``,
``initial_alpha``, ...) are accepted and ignored.
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
from rlscale.algorithms.generative.diffusion_ql.learner import DiffusionQLLearner
from rlscale.algorithms.generative.diffusion_ql.module import DiffusionQLModule
from rlscale.algorithms.value_based.sac import UNIFORM_REPLAY
from rlscale.modules.generative.diffusion import BETA_SCHEDULES, SAMPLERS
from rlscale.modules.generative.inputs import is_int, is_real


class DiffusionQLConfig(RlscaleConfigMixin, RLlibCQLConfig):
    """RLlib's CQLConfig (offline, SAC-based) with Diffusion-QL's keys and defaults."""

    RLSCALE_KEYS: ClassVar[tuple[str, ...]] = (
        "eta",
        "diffusion_steps",
        "beta_schedule",
        "sampler",
        "ddim_steps",
        "ddim_eta",
        "num_candidate_actions",
        "max_q_backup",
        "num_backup_samples",
        "actor_grad_clip",
        "critic_grad_clip",
        "standardize",
    )

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or DiffusionQL)
        set_offline_defaults(self, updates_per_iteration=100)
        self.eta = 1.0
        """η, the weight of the Q term relative to cloning (α = η / E|Q|): the paper's value
        for its Gym locomotion tasks. Larger trusts the critics further from the data."""
        self.diffusion_steps = 5
        """T: the paper's 5. The actor's loss back-propagates through all T denoising steps, so
        its cost grows with T; 5 already represents multimodal action distributions."""
        self.beta_schedule = "vp"
        """The paper's variance-preserving schedule (β_min 0.1, β_max 10), made for small T."""
        self.sampler = "ddpm"
        """The paper's ancestral sampling over all T steps, for the actor's loss, the target
        and acting alike; ``ddim`` runs ``ddim_steps`` of them with noise ``ddim_eta``."""
        self.ddim_steps: int | None = None
        """DDIM's steps (with ``sampler="ddim"``; 1 to ``diffusion_steps``); None: all T."""
        self.ddim_eta = 1.0
        """DDIM's noise weight (with ``sampler="ddim"``): 1 samples as DDPM does when
        ``ddim_steps`` equals T, so that the candidates spread as the policy does."""
        self.num_candidate_actions = 50
        """Actions drawn per state when acting, one picked by Q: the paper's 50."""
        self.max_q_backup = False
        """Bootstrap from the max over ``num_backup_samples`` next actions instead of one
        draw: the paper's choice for its sparse-reward AntMaze tasks, not its locomotion ones."""
        self.num_backup_samples = 10
        """Next actions per state for ``max_q_backup`` (the paper's 10)."""
        self.actor_grad_clip = 5.0
        """Bound on the actor's gradient norm. The paper clips it with a per-task bound
        between 1 and 9 on its locomotion tasks; 5 is in the middle. With α normalizing the Q
        term the gradient is rarely larger (``actor_grad_norm`` in the metrics)."""
        self.critic_grad_clip = None
        """Bound on the critics' gradient norm; None (the paper clips the actor only)."""
        self.standardize = True
        """Standardize the observations that the policy and critics see with the dataset's
        statistics (as ``bc`` and ``diffusion_bc`` do). The noise predictor takes [a_t, e(t),
        s] in one MLP: raw observations whose parts differ in scale (Pendulum's angular
        velocity spans ±8 against cos/sin in ±1; MuJoCo's velocities) would outweigh the
        action and noise inputs, which lie in [-1, 1]. Statistics are buffers, saved with
        the weights."""
        self.dataset_statistics: dict[str, list[float]] | None = None
        """Set from the dataset by ``attach_standardized_dataset`` (with ``standardize``)."""
        # Three hidden layers with Mish for the noise predictor and the critics alike, as the
        # paper's, but 64 wide instead of 256: the actor's loss back-propagates through T
        # passes of the noise predictor, and at 256 an update took 105 ms on one CPU core
        # (10 updates/s) against 18 ms at 64. On the Pendulum check 128 ended where 64 did
        # (-133 against -122 after 3,000 updates) in 1.5x the time.
        self.hidden_sizes = [64, 64, 64]
        self.activation = "mish"
        # The paper's batch of 256. Its Adam rate of 3e-4 and Polyak rate of 0.005 (for the
        # target critics and the EMA policy alike) are for a million updates; these runs are
        # thousands. On the Pendulum check (data at -511) 3e-4 with tau 0.02 was at -262
        # after 2,000 updates and -536 after 2,500; 1e-3 with tau 0.005 was still at -840
        # after 1,500; 1e-3 with tau 0.02 stayed between -120 and -260 from 1,000 updates on.
        self.train_batch_size_per_learner = 256
        self.actor_lr = 1e-3
        self.critic_lr = 1e-3
        self.lr = None  # one learning rate per network, no shared one
        self.gamma = 0.99
        self.twin_q = True
        self.tau = 0.02
        # Diffusion-QL replays nothing (it reads the dataset), but RLlib's SAC config accepts
        # only an episode buffer once the config acts in the env, as evaluating a checkpoint
        # rebuilds it (without the dataset).
        self.replay_buffer_config = {"type": UNIFORM_REPLAY, "capacity": 1_000}

    @property
    def _model_config_auto_includes(self) -> dict[str, Any]:
        return super()._model_config_auto_includes | {
            "num_critics": 2 if self.twin_q else 1,
            "diffusion_steps": self.diffusion_steps,
            "beta_schedule": self.beta_schedule,
            "sampler": self.sampler,
            "ddim_steps": self.ddim_steps,
            "ddim_eta": self.ddim_eta,
            "num_candidate_actions": self.num_candidate_actions,
            "max_q_backup": self.max_q_backup,
            "num_backup_samples": self.num_backup_samples,
            "normalize_actions": self.normalize_actions,
            "standardize": bool(self.standardize),
            "dataset_statistics": self.dataset_statistics if self.standardize else None,
        }

    def validate(self) -> None:
        super().validate()
        self._validate_policy()
        self._validate_training()

    def _validate_policy(self) -> None:
        steps = self.diffusion_steps
        if not is_int(steps) or steps < 1:
            self._value_error(
                f"diffusion_steps must be a positive integer, got {steps!r}: the number of "
                "noise levels T (the paper's 5; the actor's loss runs through all of them)."
            )
        if self.beta_schedule not in BETA_SCHEDULES:
            self._value_error(
                f"beta_schedule must be one of {', '.join(BETA_SCHEDULES)}, got "
                f"{self.beta_schedule!r} (the paper's is 'vp')."
            )
        if self.sampler not in SAMPLERS:
            self._value_error(
                f"sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r} "
                "(the paper's is 'ddpm')."
            )
        ddim = self.ddim_steps
        if ddim is not None and (not is_int(ddim) or not 1 <= ddim <= steps):
            self._value_error(
                f"ddim_steps must be an integer from 1 to diffusion_steps ({steps}), got "
                f"{ddim!r}: DDIM samples with a sub-sequence of the trained noise levels; "
                "lower ddim_steps or raise diffusion_steps."
            )
        if ddim is not None and self.sampler == "ddpm":
            self._value_error(
                f"ddim_steps={ddim} only applies to sampler='ddim' (DDPM runs all "
                f"{steps} steps); set sampler='ddim' or leave ddim_steps unset."
            )
        if not is_real(self.ddim_eta) or not 0.0 <= self.ddim_eta <= 1.0:
            self._value_error(f"ddim_eta must lie in [0, 1], got {self.ddim_eta!r}")
        for key, paper in (("num_candidate_actions", 50), ("num_backup_samples", 10)):
            value = getattr(self, key)
            if not is_int(value) or value < 1:
                self._value_error(
                    f"{key} must be a positive integer, got {value!r} (the paper's is {paper})."
                )
        if not isinstance(self.max_q_backup, bool):
            self._value_error(f"max_q_backup must be true or false, got {self.max_q_backup!r}")
        if not isinstance(self.standardize, bool):
            self._value_error(f"standardize must be true or false, got {self.standardize!r}")
        if not self.normalize_actions:
            self._value_error(
                "diffusion_ql models the actions in [-1, 1] (the paper's setting, and where "
                "its noise schedule is scaled for); keep normalize_actions=True."
            )

    def _validate_training(self) -> None:
        eta = self.eta
        if not is_real(eta) or not math.isfinite(eta) or eta < 0:
            self._value_error(
                f"eta (η) must be a number >= 0, got {eta!r}: the weight of the Q term "
                "against cloning (the paper's 1.0 on locomotion; 0 is diffusion BC with critics)."
            )
        for key in ("actor_grad_clip", "critic_grad_clip"):
            bound = getattr(self, key)
            if bound is not None and (not is_real(bound) or not math.isfinite(bound) or bound <= 0):
                self._value_error(
                    f"{key} must be a positive gradient-norm bound or null (no clipping), "
                    f"got {bound!r}"
                )
        for key in ("actor_lr", "critic_lr"):
            lr = getattr(self, key)
            if is_real(lr) and not (math.isfinite(lr) and lr > 0):
                self._value_error(
                    f"{key} must be a positive learning rate, such as 3e-4, got {lr!r}"
                )
        if not is_real(self.tau) or not 0.0 < self.tau <= 1.0:
            self._value_error(
                f"tau must lie in (0, 1], got {self.tau!r}: the Polyak rate of the target "
                "critics and the EMA policy per gradient step."
            )

    def get_default_rl_module_spec(self) -> RLModuleSpec:
        return RLModuleSpec(module_class=DiffusionQLModule)

    def get_default_learner_class(self) -> type[DiffusionQLLearner]:
        return DiffusionQLLearner


class DiffusionQL(ReleasesDataIterators, RLlibCQL):
    """RLlib's CQL algorithm (offline data, one learner update call per iteration) with the
    shared offline training step."""

    @classmethod
    @override(RLlibCQL)
    def get_default_config(cls) -> DiffusionQLConfig:
        return DiffusionQLConfig()

    @override(RLlibCQL)
    def training_step(self) -> None:
        offline_training_step(self)
