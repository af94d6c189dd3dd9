"""Conditional variational autoencoders over action vectors: a generative model of ``p(a | s)``.

A variational autoencoder (VAE; Kingma & Welling 2014, "Auto-Encoding Variational Bayes",
https://arxiv.org/abs/1312.6114) models data through a latent ``z`` with prior ``p(z) = N(0, I)``,
a decoder ``p(a | z)`` and an encoder ``q(z | a)`` that approximates the posterior. The
conditional VAE (Sohn, Lee & Yan 2015, "Learning Structured Output Representation using Deep
Conditional Generative Models", NeurIPS) gives the encoder and the decoder a condition ``s`` as
well, here the observation. BCQ (Fujimoto, Meger & Precup 2019, "Off-Policy Deep Reinforcement
Learning without Exploration", https://arxiv.org/abs/1812.02900, section 4 and appendix) trains
one on the dataset's state-action pairs and decodes it to propose actions the behaviour policy
would have taken; PLAS (Zhou, Bajracharya & Held 2020, "PLAS: Latent Action Space for Offline
Reinforcement Learning", https://arxiv.org/abs/2011.07213) trains a policy in its latent space
and decodes the policy's latent action.

**Encoder.** ``q(z | a, s) = N(mu, diag(sigma^2))`` with ``(mu, log sigma) = E([s, a])``, an MLP.
``log sigma`` is clamped to ``VAESettings.log_std_bounds``: BCQ's ``[-4, 15]`` keeps ``sigma``
from collapsing to zero, which would make the KL term's ``-log sigma`` explode; the upper end is
far above anything training reaches and only guards against overflow.

**Decoder.** ``a_hat = D(s, z) = low + (high - low) (tanh(h) + 1) / 2`` with ``h = MLP([s, z])``:
BCQ's ``max_action * tanh(h)`` generalized to bounds ``[low, high]`` per dimension, so every
decoded action lies inside the bounds (on them only where the tanh saturates in floating point).

**Reparameterization** (Kingma & Welling, section 2.4): ``z = mu + sigma * eps`` with
``eps ~ N(0, I)``, so that the sample is a differentiable function of the encoder's outputs and
the reconstruction error back-propagates into the encoder.

**Loss** (``loss``): the negative evidence lower bound with a weight ``beta`` on the KL term, as
in the beta-VAE (Higgins et al. 2017, "beta-VAE: Learning Basic Visual Concepts with a
Constrained Variational Framework", ICLR):

    L = || a - D(s, z) ||^2 / action_size + beta * KL(q(z | a, s) || N(0, I)) / latent_size,
    KL(N(mu, sigma^2) || N(0, 1)) = (mu^2 + sigma^2 - 1) / 2 - log sigma      (per latent dim)

averaged over the batch, with one ``z`` per row. Both terms are *averaged* over their dimensions
rather than summed: that is BCQ's loss (a mean squared error and a KL averaged over its
elements), so BCQ's ``beta = 0.5`` means here what it means there, and the learning rate does not
have to change with the action size. In terms of the summed (textbook) ELBO terms the loss is
``(1 / action_size) (sum_recon + beta (action_size / latent_size) sum_KL)``, i.e. a beta-VAE
with weight ``beta * action_size / latent_size`` on the summed KL (``beta / 2`` with the default
latent size), scaled by ``1 / action_size``. The squared error is the negative log-likelihood of
a Gaussian decoder ``N(a_hat, sigma_x^2 I)`` with a fixed ``sigma_x`` (up to constants and
scale), which is why the whole is a (weighted) negative ELBO.

**Sampling** (``decode`` without a latent, ``sample``): BCQ draws ``z ~ N(0, I)`` and clips it to
``[-c, c]`` with ``c = VAESettings.latent_clip = 0.5``: the decoder then only sees latents near
the prior's mode, where the encoder put most of the data, and proposes actions the behaviour
policy was likely to take rather than rare ones from the tails. ``latent_clip=None`` samples from
the unclipped prior (the plain generative model). A latent passed to ``decode`` is used as given
(PLAS bounds its latent policy's output itself).

**Shapes.** ``actions [B, action_size]``, ``condition [B, condition_size]``, latents
``[B, latent_size]``; a model built with ``condition_size=0`` is unconditional and takes
``condition`` of shape ``[B, 0]`` (e.g. ``torch.empty(B, 0)``), which sets the batch size.
Actions are in raw units inside the bounds (the caller scales them, and normalizes observations if
it wants to). The module follows ``.to()``: the bounds are buffers, and inputs must be on the
module's device and dtype. Random draws take an optional ``torch.Generator`` (drawn on its
device, then moved to the module's), so that a seeded generator makes them reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn

from rlscale.modules.generative.inputs import (
    action_bounds,
    check_actions,
    check_condition,
    check_sizes,
    describe,
    is_int,
    is_real,
)
from rlscale.modules.networks.mlp import ACTIVATIONS, build_mlp

BCQ_LOG_STD_BOUNDS = (-4.0, 15.0)
"""BCQ's clamp on the encoder's ``log sigma`` (module docstring)."""
BCQ_LATENT_CLIP = 0.5
"""BCQ clips the prior latent it decodes to ``[-0.5, 0.5]`` in every dimension."""
BCQ_LATENT_PER_ACTION = 2
"""BCQ's latent size is twice the action size."""


@dataclass(frozen=True)
class VAESettings:
    """The conditional VAE's settings, with their defaults in this one place.

    - ``latent_size``: width of ``z``; ``None`` means ``2 * action_size``, BCQ's choice (a
      latent wider than the action leaves room to encode the condition-dependent spread of
      several modes without the decoder having to be sharp).
    - ``hidden_sizes``: hidden widths of the encoder's and of the decoder's MLP (each gets its
      own). ``(750, 750)`` is BCQ's and PLAS's network, which the papers' offline results were
      obtained with; small problems train as well and faster with e.g. ``(64, 64)``.
    - ``beta``: weight of the KL term (module docstring for the averaging over dimensions);
      BCQ's 0.5. 0 drops the KL term (a plain conditional autoencoder, whose prior samples mean
      nothing); it must not be negative.
    - ``log_std_bounds``: ``(low, high)`` clamp on the encoder's ``log sigma``, BCQ's
      ``(-4, 15)``.
    - ``latent_clip``: ``c`` for sampling from the prior: ``z`` clipped to ``[-c, c]``, BCQ's
      0.5; ``None`` for no clipping.
    - ``activation``: of the hidden layers; BCQ's ``"relu"`` or any of the shared MLP ones.
    """

    latent_size: int | None = None
    hidden_sizes: tuple[int, ...] = (750, 750)
    beta: float = 0.5
    log_std_bounds: tuple[float, float] = BCQ_LOG_STD_BOUNDS
    latent_clip: float | None = BCQ_LATENT_CLIP
    activation: str = "relu"

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden_sizes", tuple(self.hidden_sizes))
        object.__setattr__(self, "log_std_bounds", tuple(self.log_std_bounds))
        if self.latent_size is not None and (not is_int(self.latent_size) or self.latent_size < 1):
            raise ValueError(
                f"latent_size must be a positive integer or None (twice the action size), "
                f"got latent_size={self.latent_size!r}"
            )
        if any(not is_int(size) or size < 1 for size in self.hidden_sizes):
            raise ValueError(f"hidden_sizes must be positive integers, got {self.hidden_sizes}")
        if not is_real(self.beta) or not math.isfinite(self.beta) or self.beta < 0:
            raise ValueError(f"beta must be a finite number >= 0, got beta={self.beta!r}")
        self._check_log_std_bounds()
        clip = self.latent_clip
        if clip is not None and (not is_real(clip) or not math.isfinite(clip) or clip <= 0):
            raise ValueError(
                f"latent_clip must be a finite number > 0 or None (no clipping), "
                f"got latent_clip={clip!r}"
            )
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation {self.activation!r}; choose one of {tuple(ACTIVATIONS)}"
            )

    def _check_log_std_bounds(self) -> None:
        bounds = self.log_std_bounds
        if (
            len(bounds) != 2
            or not all(is_real(bound) and math.isfinite(bound) for bound in bounds)
            or not bounds[0] < bounds[1]
        ):
            raise ValueError(
                f"log_std_bounds must be two finite numbers (low, high) with low < high, "
                f"got log_std_bounds={bounds!r}"
            )


class VAELoss(NamedTuple):
    """The batch means of ``loss``'s terms (module docstring), each a scalar tensor:
    ``total = reconstruction + beta * kl``; ``reconstruction`` is the squared error averaged
    over the action dimensions, ``kl`` the KL divergence averaged over the latent dimensions."""

    total: Tensor
    reconstruction: Tensor
    kl: Tensor


def gaussian_kl_to_standard_normal(mean: Tensor, log_std: Tensor) -> Tensor:
    """``KL(N(mean, exp(log_std)^2) || N(0, 1))`` element-wise:
    ``(mean^2 + std^2 - 1) / 2 - log_std``."""
    return 0.5 * (mean.pow(2) + torch.exp(2.0 * log_std) - 1.0) - log_std


class ConditionalVAE(nn.Module):
    """A conditional VAE of ``actions [B, action_size]`` given ``condition [B, condition_size]``
    (module docstring): ``loss`` to train it, ``sample`` (or ``decode``) to draw actions.

    ``action_low`` / ``action_high`` (scalars or ``[action_size]``; default -1 and 1) are the
    bounds the decoder's tanh maps into. The network weights are initialized from torch's global
    random state; the bounds are buffers in torch's default dtype, so ``.to()`` moves and casts
    them with the weights.
    """

    def __init__(
        self,
        action_size: int,
        condition_size: int,
        settings: VAESettings | None = None,
        action_low: Tensor | float | None = None,
        action_high: Tensor | float | None = None,
    ):
        super().__init__()
        check_sizes(action_size, condition_size)
        self.settings = settings or VAESettings()
        self.action_size = action_size
        self.condition_size = condition_size
        self.latent_size = self.settings.latent_size or BCQ_LATENT_PER_ACTION * action_size
        hidden, activation = self.settings.hidden_sizes, self.settings.activation
        # One head for the mean and log sigma together: the two halves of the output.
        self.encoder = build_mlp(
            action_size + condition_size, hidden, activation, 2 * self.latent_size
        )
        self.decoder = build_mlp(self.latent_size + condition_size, hidden, activation, action_size)
        low, high = action_bounds(action_low, action_high, action_size)
        dtype = torch.get_default_dtype()
        self.register_buffer("action_low", low.to(dtype))
        self.register_buffer("action_high", high.to(dtype))

    @property
    def device(self) -> torch.device:
        return self.action_low.device

    @property
    def dtype(self) -> torch.dtype:
        return self.action_low.dtype

    # -------------------------------------------------------------------------------- encoder

    def encode(self, actions: Tensor, condition: Tensor) -> tuple[Tensor, Tensor]:
        """``q(z | a, s)``: its ``mean`` and clamped ``log_std``, each ``[B, latent_size]``."""
        self.check(actions, condition)
        mean, log_std = self.encoder(torch.cat([condition, actions], dim=-1)).chunk(2, dim=-1)
        low, high = self.settings.log_std_bounds
        return mean, log_std.clamp(low, high)

    def reparameterize(
        self, mean: Tensor, log_std: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """``z = mean + exp(log_std) * eps``, ``eps ~ N(0, I)``: differentiable in both."""
        noise = self._standard_normal(mean.shape[0], generator)
        return mean + torch.exp(log_std) * noise

    # -------------------------------------------------------------------------------- decoder

    def decode(
        self,
        condition: Tensor,
        latent: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """``D(s, z)``, ``[B, action_size]`` inside the action bounds.

        Without ``latent``, ``z`` is drawn from the prior and clipped to ``latent_clip``
        (``prior_latent``, BCQ's sampling); a given ``latent [B, latent_size]`` is used as is.
        Differentiable in the decoder's parameters, the condition and the latent.
        """
        check_condition(condition, self.condition_size, rows=None)
        if latent is None:
            latent = self.prior_latent(condition.shape[0], generator)
        else:
            self._check_latent(latent, rows=condition.shape[0])
        pre_activation = self.decoder(torch.cat([condition, latent], dim=-1))
        unit_interval = 0.5 * (torch.tanh(pre_activation) + 1.0)
        return self.action_low + (self.action_high - self.action_low) * unit_interval

    def prior_latent(self, rows: int, generator: torch.Generator | None = None) -> Tensor:
        """``z ~ N(0, I)``, ``[rows, latent_size]``, clipped to ``[-latent_clip, latent_clip]``
        unless ``latent_clip`` is None."""
        latent = self._standard_normal(rows, generator)
        clip = self.settings.latent_clip
        return latent if clip is None else latent.clamp(-clip, clip)

    # ------------------------------------------------------------------------------- training

    def forward(
        self, actions: Tensor, condition: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Encode, draw one reparameterized ``z`` per row, decode: ``(reconstruction [B,
        action_size], mean [B, latent_size], log_std [B, latent_size])``."""
        mean, log_std = self.encode(actions, condition)
        latent = self.reparameterize(mean, log_std, generator)
        return self.decode(condition, latent), mean, log_std

    def loss(
        self, actions: Tensor, condition: Tensor, generator: torch.Generator | None = None
    ) -> VAELoss:
        """The beta-weighted negative ELBO on these rows (module docstring), one ``z`` per row
        drawn with ``generator``."""
        reconstruction, mean, log_std = self(actions, condition, generator)
        reconstruction_error = (reconstruction - actions).pow(2).mean()
        kl = gaussian_kl_to_standard_normal(mean, log_std).mean()
        return VAELoss(
            total=reconstruction_error + self.settings.beta * kl,
            reconstruction=reconstruction_error,
            kl=kl,
        )

    # ------------------------------------------------------------------------------- sampling

    @torch.no_grad()
    def sample(
        self,
        condition: Tensor,
        num_samples: int = 1,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """``num_samples`` actions per condition row from the (clipped) prior, without
        gradients: ``[B, num_samples, action_size]``, as BCQ draws candidate actions per state.
        ``decode`` is the differentiable route."""
        if not is_int(num_samples) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
        check_condition(condition, self.condition_size, rows=None)
        rows = condition.shape[0]
        # Row-major repeat: the samples of one condition row are contiguous after decoding.
        repeated = condition.repeat_interleave(num_samples, dim=0)
        actions = self.decode(repeated, generator=generator)
        return actions.reshape(rows, num_samples, self.action_size)

    def _standard_normal(self, rows: int, generator: torch.Generator | None) -> Tensor:
        draw_device = generator.device if generator is not None else self.device
        noise = torch.randn(
            rows, self.latent_size, generator=generator, device=draw_device, dtype=self.dtype
        )
        return noise.to(self.device)

    # --------------------------------------------------------------------------------- checks

    def check(self, actions: Tensor, condition: Tensor) -> None:
        """Raise ``ValueError`` unless ``actions`` is ``[B, action_size]`` and ``condition``
        ``[B, condition_size]``."""
        check_actions(actions, self.action_size)
        check_condition(condition, self.condition_size, rows=actions.shape[0])

    def _check_latent(self, latent: Tensor, rows: int) -> None:
        if not isinstance(latent, Tensor) or latent.dim() != 2:
            raise ValueError(
                f"expected latent of shape [batch, {self.latent_size}], got {describe(latent)}"
            )
        if latent.shape[1] != self.latent_size:
            raise ValueError(
                f"expected latent of shape [batch, {self.latent_size}], got {tuple(latent.shape)}"
            )
        if latent.shape[0] != rows:
            raise ValueError(
                f"latent has {latent.shape[0]} rows but the condition has {rows}; "
                "give one latent row per condition row"
            )

    def extra_repr(self) -> str:
        return (
            f"action_size={self.action_size}, condition_size={self.condition_size}, "
            f"latent_size={self.latent_size}, beta={self.settings.beta}"
        )
