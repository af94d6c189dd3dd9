"""Diffusion behaviour cloning: a policy that samples actions by denoising (Chi et al. 2023,
"Diffusion Policy: Visuomotor Policy Learning via Action Diffusion",
https://arxiv.org/abs/2303.04137, on vector observations without action chunks).

Gaussian behaviour cloning fits one mode per state: where the demonstrator goes left or right
around an obstacle, its mean goes straight into it. A diffusion policy models the whole action
distribution ``p(a | s)``. The Learner minimizes DDPM's noise-prediction loss on logged
(observation, action) pairs (Ho, Jain & Abbeel 2020, https://arxiv.org/abs/2006.11239):

    L(theta) = E_{(s, a) ~ D, t ~ U{0..T-1}, eps ~ N(0, I)}
               || eps - eps_theta(sqrt(alpha_bar_t) a + sqrt(1 - alpha_bar_t) eps, t, s) ||^2

and the policy acts by running DDIM (Song, Meng & Ermon 2021,
https://arxiv.org/abs/2010.02502) over ``ddim_steps`` of the ``diffusion_steps`` indices from
Gaussian noise, on the EnvRunner's CPU copy (``ddim_eta`` 0: deterministic given the noise).
The policy that acts is an exponential moving average of the trained weights, as DDPM's
samples are drawn from (Ho et al. 2020, appendix B), updated after every gradient step
(``ema_decay``). The first steps average over fewer updates: the decay after ``n`` of them is
``min(ema_decay, (1 + n) / (10 + n))``, the warm-up of TensorFlow's
``ExponentialMovingAverage``. Where the data has two modes, the share of samples that falls to
each rests on where the model puts the boundary between them in noise space; the last weights
of a constant-rate Adam run move it from one update to the next, their average far less.
The model is ``rlscale.modules.generative.ConditionalDiffusion``; actions are modelled in the
units the learner sees them in ([-1, 1] with RLlib's ``normalize_actions``, the default), and
observations are standardized with the dataset's statistics (``standardize``, as for ``bc``).

The data path is ``bc``'s: RLlib's BC algorithm reads the Minari dataset through Ray Data and
runs ``dataset_num_iters_per_learner`` updates per iteration; only the module and the loss
differ.
Acting samples in both exploration and evaluation: the policy *is* the distribution, and a
greedy diffusion policy has no single mode to return.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.torch.torch_learner import TorchLearner
from ray.rllib.core.rl_module.apis import InferenceOnlyAPI
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.core.rl_module.torch.torch_rl_module import TorchRLModule

from rlscale.algorithms.common.polyak import polyak_step
from rlscale.algorithms.offline.bc import (
    BC,
    BCConfig,
    flat_size,
    register_statistics,
    standardized_observations,
)
from rlscale.modules.generative.diffusion import (
    BETA_SCHEDULES,
    SAMPLERS,
    ConditionalDiffusion,
    DiffusionSettings,
    sample_with,
)
from rlscale.modules.generative.inputs import is_int, is_real

DIFFUSION_LOSS = "diffusion_loss"
DEFAULTS = DiffusionSettings()


class DiffusionBCConfig(BCConfig):
    """``bc``'s offline pipeline and observation standardization with a diffusion policy."""

    RLSCALE_KEYS: ClassVar[tuple[str, ...]] = (
        *BCConfig.RLSCALE_KEYS,
        "diffusion_steps",
        "beta_schedule",
        "sampler",
        "ddim_steps",
        "ddim_eta",
        "ema_decay",
    )

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or DiffusionBC)
        self.diffusion_steps = DEFAULTS.steps
        """``T``, the number of noise levels the model is trained on."""
        self.beta_schedule = DEFAULTS.beta_schedule
        """The noise schedule (``rlscale.modules.generative.diffusion.BETA_SCHEDULES``)."""
        self.sampler = "ddim"
        """How the policy acts: ``ddim`` (``ddim_steps`` denoising steps) or ``ddpm`` (the
        ancestral chain over all ``diffusion_steps``, ``ddim_*`` unused)."""
        self.ddim_steps = 10
        """Denoising steps per action when acting (a DDIM sub-sequence of the ``T`` indices):
        10 keeps a CPU EnvRunner's action well under 5 ms (docs/benchmarks.md)."""
        self.ddim_eta = 0.0
        """DDIM's noise weight: 0 is deterministic given the initial noise, 1 is DDPM-like."""
        self.ema_decay = 0.999
        """The decay of the acting weights' moving average, per gradient step: 0 acts with the
        last trained weights. 0.999 averages over about the last 1,000 of a run's thousands
        of updates."""
        # Diffusion Policy trains for hours at 1e-4; runs here are thousands of updates. On the
        # two-way point-mass check 1e-3 reached 97 % success in 4,000 updates, 3e-4 94 %
        # (and 79 % against 93 % at 2,000).
        self.lr = 1e-3
        self.hidden_sizes = list(DEFAULTS.hidden_sizes)
        self.activation = DEFAULTS.activation

    @property
    def _model_config_auto_includes(self) -> dict[str, Any]:
        return super()._model_config_auto_includes | {
            "diffusion_steps": self.diffusion_steps,
            "beta_schedule": self.beta_schedule,
            "sampler": self.sampler,
            "ddim_steps": self.ddim_steps,
            "ddim_eta": self.ddim_eta,
            "ema_decay": self.ema_decay,
            "normalize_actions": self.normalize_actions,
        }

    def get_default_rl_module_spec(self) -> RLModuleSpec:
        return RLModuleSpec(module_class=DiffusionBCModule)

    def get_default_learner_class(self) -> type[TorchLearner]:
        return DiffusionBCLearner

    def validate(self) -> None:
        super().validate()
        steps = self.diffusion_steps
        if not is_int(steps) or steps < 1:
            self._value_error(f"diffusion_steps must be a positive integer, got {steps!r}")
        if self.beta_schedule not in BETA_SCHEDULES:
            self._value_error(
                f"beta_schedule must be one of {', '.join(BETA_SCHEDULES)}, "
                f"got {self.beta_schedule!r}"
            )
        if self.sampler not in SAMPLERS:
            self._value_error(f"sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        ddim = self.ddim_steps
        if not is_int(ddim) or not 1 <= ddim <= steps:
            self._value_error(
                f"ddim_steps must be an integer from 1 to diffusion_steps ({steps}), got "
                f"{ddim!r}: DDIM samples with a sub-sequence of the trained noise levels"
            )
        if not is_real(self.ddim_eta) or not 0.0 <= self.ddim_eta <= 1.0:
            self._value_error(f"ddim_eta must lie in [0, 1], got {self.ddim_eta!r}")
        if not is_real(self.ema_decay) or not 0.0 <= self.ema_decay < 1.0:
            self._value_error(
                f"ema_decay must lie in [0, 1), got {self.ema_decay!r}: the moving average's "
                "decay per update (0 acts with the last trained weights)"
            )


class DiffusionBCModule(TorchRLModule, InferenceOnlyAPI):
    """Standardized observations into a ``ConditionalDiffusion`` over the actions; every
    forward pass (exploration and inference alike) returns ``actions`` sampled from the moving
    average of the trained weights (``acting_diffusion``). The trained ``diffusion`` lives on
    the Learner only."""

    def setup(self) -> None:
        config = self.model_config
        if not isinstance(self.action_space, gym.spaces.Box):
            raise ValueError("diffusion_bc needs a Box action space")
        observation_size = flat_size(self.observation_space)
        if observation_size is None:
            raise ValueError("diffusion_bc needs flat vector observations")
        register_statistics(self, {"obs": observation_size})
        action_size = int(np.prod(self.action_space.shape))
        if config["normalize_actions"]:
            low, high = -1.0, 1.0
        else:
            low = torch.as_tensor(self.action_space.low, dtype=torch.float32).reshape(-1)
            high = torch.as_tensor(self.action_space.high, dtype=torch.float32).reshape(-1)
        # The config puts every key in the model config: its defaults are the only ones.
        settings = DiffusionSettings(
            steps=int(config["diffusion_steps"]),
            beta_schedule=config["beta_schedule"],
            hidden_sizes=tuple(config["hidden_sizes"]),
            activation=config["activation"],
        )
        self.acting_diffusion = ConditionalDiffusion(
            action_size, observation_size, settings, action_low=low, action_high=high
        ).requires_grad_(False)
        self.sampler = config["sampler"]
        self.ddim_steps = int(config["ddim_steps"])
        self.ddim_eta = float(config["ddim_eta"])
        self.ema_decay = float(config["ema_decay"])
        # Kept with the weights, so that a resumed run goes on with the same warm-up.
        self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long))
        if not self.inference_only:
            self.diffusion = copy.deepcopy(self.acting_diffusion).requires_grad_(True)

    def get_non_inference_attributes(self) -> list[str]:
        return ["diffusion"]

    @torch.no_grad()
    def update_acting_weights(self) -> None:
        """One step of the acting weights' moving average toward the trained ones."""
        updates = int(self.ema_updates)
        decay = min(self.ema_decay, (1 + updates) / (10 + updates))
        polyak_step(self.diffusion, self.acting_diffusion, 1.0 - decay)
        self.ema_updates += 1

    def set_state(self, state: dict[str, Any]) -> None:
        # Checkpoints written before the moving average acted with ``diffusion`` itself.
        if not any(key.startswith("acting_diffusion.") for key in state):
            state = {"ema_updates": np.array(0)} | dict(state)
            for key, value in list(state.items()):
                if key.startswith("diffusion."):
                    state[f"acting_{key}"] = value
        super().set_state(state)

    def sample_actions(self, standardized_observations: torch.Tensor) -> torch.Tensor:
        """One action per row with the acting sampler (``sampler``, ``ddim_steps``, η)."""
        return sample_with(
            self.acting_diffusion,
            standardized_observations,
            self.sampler,
            self.ddim_steps,
            self.ddim_eta,
        )

    def standardized(self, observations: torch.Tensor) -> torch.Tensor:
        return standardized_observations(self, observations)

    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        actions = self.sample_actions(self.standardized(batch[Columns.OBS]))
        return {Columns.ACTIONS: actions.reshape(-1, *self.action_space.shape)}

    def _forward_train(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        # The loss needs no forward output: it draws its own noise levels (DiffusionBCLearner).
        return {}


class DiffusionBCLearner(TorchLearner):
    """DDPM's noise-prediction loss on the batch's (observation, action) pairs; the acting
    weights' moving average follows every gradient step."""

    def configure_optimizers_for_module(self, module_id, config=None) -> None:
        params = list(self.module[module_id].unwrapped().diffusion.parameters())
        self.register_optimizer(
            module_id=module_id,
            optimizer=torch.optim.Adam(params),
            params=params,
            lr_or_lr_schedule=config.lr,
        )

    def apply_gradients(self, gradients_dict) -> None:
        super().apply_gradients(gradients_dict)
        for module in self.module.values():
            module.unwrapped().update_acting_weights()

    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out):
        module = self.module[module_id].unwrapped()
        actions = batch[Columns.ACTIONS].float().reshape(len(batch[Columns.ACTIONS]), -1)
        loss = module.diffusion.loss(actions, module.standardized(batch[Columns.OBS]))
        self.metrics.log_value((module_id, DIFFUSION_LOSS), loss.item(), window=1)
        return loss


class DiffusionBC(BC):
    """RLlib's BC training step (offline data through Ray Data, then Learner updates)."""

    @classmethod
    def get_default_config(cls) -> DiffusionBCConfig:
        return DiffusionBCConfig()
