"""Generative models shared by algorithms.

- ``flows``: conditional normalizing flows (RealNVP and neural spline coupling layers from
  zuko) over raw vectors, with stored input normalization, exact ``log_prob``, sampling, and
  ``fit_flow``, a maximum-likelihood training loop.
- ``diffusion``: a conditional diffusion model over action vectors (DDPM training with linear,
  cosine or VP noise schedules; DDPM ancestral and DDIM sampling, clipped to the action bounds).
- ``vae``: a conditional VAE over action vectors (BCQ's: beta-weighted ELBO, clamped encoder
  log std, latents clipped when sampled from the prior).
"""

from rlscale.modules.generative.diffusion import (
    BETA_SCHEDULES,
    SAMPLERS,
    ConditionalDiffusion,
    DiffusionSettings,
    noise_schedule,
)
from rlscale.modules.generative.flows import (
    FLOW_KINDS,
    ConditionalFlow,
    FlowFitResult,
    FlowFitSettings,
    FlowSettings,
    fit_flow,
)
from rlscale.modules.generative.vae import (
    ConditionalVAE,
    VAELoss,
    VAESettings,
    gaussian_kl_to_standard_normal,
)

__all__ = [
    "BETA_SCHEDULES",
    "FLOW_KINDS",
    "SAMPLERS",
    "ConditionalDiffusion",
    "DiffusionSettings",
    "ConditionalFlow",
    "ConditionalVAE",
    "FlowFitResult",
    "FlowFitSettings",
    "FlowSettings",
    "VAELoss",
    "VAESettings",
    "fit_flow",
    "gaussian_kl_to_standard_normal",
    "noise_schedule",
]
