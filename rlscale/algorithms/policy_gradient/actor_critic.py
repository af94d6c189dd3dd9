"""What A2C, TRPO and PPO share: the base config, GAE, and the base Learner.

All three extend RLlib's PPO: the same sampling, the same ``training_step`` (sample
``train_batch_size_per_learner`` env steps, run the Learner's update over them, sync the weights
to the EnvRunners) and one actor-critic RLModule
(:class:`rlscale.modules.rl_modules.actor_critic.ActorCriticModule`). They differ in their
Learner (the update) and their defaults.

Advantages are GAE(γ, λ) (Schulman et al. 2016, "High-Dimensional Continuous Control Using
Generalized Advantage Estimation"), computed by RLlib's ``GeneralAdvantageEstimation`` learner
connector over each episode chunk, bootstrapped from V(s_T)::

    δ_t = r_t + γ V(s_{t+1}) - V(s_t)
    A_t = Σ_k (γλ)^k δ_{t+k}          (then standardized over the batch)
    V_targ_t = A_t + V(s_t)           (the λ-return, the value function's regression target)

rlscale's subclass also keeps the values V(s_t) it computed, in ``vf_preds``, for PPO's
optional value clipping.

Network keys (shared by the three): ``hidden_sizes``, ``activation`` (tanh | relu | elu),
``shared_trunk`` (one trunk for policy and value, or two), ``initial_log_std`` (Gaussian
policies, in units of the normalized action range [-1, 1]); ``normalize_observations`` puts a
running mean/std filter in front of the module.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from ray.rllib.algorithms.ppo import PPOConfig as RLlibPPOConfig
from ray.rllib.connectors.env_to_module import MeanStdFilter
from ray.rllib.connectors.learner import (
    AddOneTsToEpisodesAndTruncate,
    GeneralAdvantageEstimation,
)
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.torch.torch_learner import TorchLearner
from ray.rllib.core.rl_module.apis.value_function_api import ValueFunctionAPI
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.evaluation.postprocessing import Postprocessing
from ray.rllib.utils.torch_utils import explained_variance

from rlscale.algorithms.common.config import RlscaleConfigMixin
from rlscale.modules.rl_modules.actor_critic import ActorCriticModule

ADVANTAGES = Postprocessing.ADVANTAGES
VALUE_TARGETS = Postprocessing.VALUE_TARGETS

DISCRETE_ACTION_DEFAULTS: dict[str, Any] = {
    # Discrete actions need no unsquash-and-clip pass over the actions. Box actions keep RLlib's
    # default (the Gaussian acts in [-1, 1] and RLlib's connector maps it onto the bounds), so a
    # Box env whose space the config cannot learn up front (an env class) still acts in bounds.
    "normalize_actions": False,
}
BOX_ACTION_DEFAULTS: dict[str, Any] = {"initial_log_std": -0.5}
"""What every policy-gradient config changes for Box actions (on top of its own values)."""
GRAD_CLIP = 0.5
"""The global-norm gradient clip the three share (A2C lifts it for Discrete actions)."""


class ActorCriticConfig(RlscaleConfigMixin, RLlibPPOConfig):
    """What A2C, TRPO and PPO share: sampling, the actor-critic network, GAE."""

    RLSCALE_KEYS: ClassVar[tuple[str, ...]] = (
        "shared_trunk",
        "initial_log_std",
        "normalize_observations",
    )
    DISCRETE_DEFAULTS: ClassVar[dict[str, Any]] = DISCRETE_ACTION_DEFAULTS
    CONTINUOUS_DEFAULTS: ClassVar[dict[str, Any]] = BOX_ACTION_DEFAULTS

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
        self.grad_clip = GRAD_CLIP
        self.grad_clip_by = "global_norm"
        self.shuffle_batch_per_epoch = True

    def get_default_rl_module_spec(self) -> RLModuleSpec:
        return RLModuleSpec(module_class=ActorCriticModule)

    def build_env_to_module_connector(self, env=None, spaces=None, device=None):
        pipeline = super().build_env_to_module_connector(env, spaces, device)
        if self.normalize_observations:
            pipeline.prepend(MeanStdFilter(multi_agent=self.is_multi_agent))
        return pipeline

    @property
    def _model_config_auto_includes(self) -> dict[str, Any]:
        # hidden_sizes and activation come from the mixin.
        return super()._model_config_auto_includes | {
            "shared_trunk": self.shared_trunk,
            "initial_log_std": self.initial_log_std,
        }

    def validate(self) -> None:
        super().validate()
        if not 0.0 <= self.gamma <= 1.0:
            self._value_error(f"gamma must lie in [0, 1], got {self.gamma}")
        if not 0.0 <= self.lambda_ <= 1.0:
            self._value_error(f"lambda_ must lie in [0, 1], got {self.lambda_}")
        if not self.hidden_sizes:  # their types are checked by the mixin's validate
            self._value_error("hidden_sizes must hold at least one layer width, got []")


class GAEKeepingValues(GeneralAdvantageEstimation):
    """RLlib's GAE connector that also leaves V(s) at sampling time in ``vf_preds``."""

    def __call__(self, *, rl_module, episodes, batch, **kwargs):
        with torch.no_grad():
            for module_id, module in rl_module.items():
                if module_id in batch and isinstance(module, ValueFunctionAPI):
                    batch[module_id][Columns.VF_PREDS] = module.compute_values(batch[module_id])
        return super().__call__(rl_module=rl_module, episodes=episodes, batch=batch, **kwargs)


class ActorCriticLearner(TorchLearner):
    """Shared by A2C, PPO and TRPO: GAE in the learner pipeline and the policy terms."""

    def build(self) -> None:
        super().build()
        if (
            self._learner_connector is not None
            and self.config.add_default_connectors_to_learner_pipeline
        ):
            # The extra timestep per episode chunk gives GAE its bootstrap value V(s_T).
            self._learner_connector.prepend(AddOneTsToEpisodesAndTruncate())
            self._learner_connector.append(
                GAEKeepingValues(gamma=self.config.gamma, lambda_=self.config.lambda_)
            )

    @classmethod
    def rl_module_required_apis(cls) -> list[type]:
        return [ValueFunctionAPI]

    def action_distributions(self, module_id: str, batch: dict[str, Any], fwd_out: dict[str, Any]):
        """(current distribution, distribution at sampling time) for this module's batch."""
        module = self.module[module_id].unwrapped()
        current = module.get_train_action_dist_cls().from_logits(
            fwd_out[Columns.ACTION_DIST_INPUTS]
        )
        behaviour = module.get_exploration_action_dist_cls().from_logits(
            batch[Columns.ACTION_DIST_INPUTS]
        )
        return current, behaviour

    def log_common_metrics(
        self, module_id: str, batch: dict[str, Any], values: torch.Tensor, metrics: dict[str, Any]
    ) -> None:
        metrics["vf_explained_var"] = explained_variance(batch[VALUE_TARGETS], values.detach())
        self.metrics.log_dict(metrics, key=module_id, window=1)
