"""Conditional diffusion models over action vectors: ``p(a | c)`` learned by denoising.

A denoising diffusion probabilistic model (DDPM; Ho, Jain & Abbeel 2020, "Denoising Diffusion
Probabilistic Models", https://arxiv.org/abs/2006.11239) turns data into noise by a fixed
Markov chain and learns to run it backwards. Diffusion Policy (Chi et al. 2023, "Diffusion
Policy: Visuomotor Policy Learning via Action Diffusion", https://arxiv.org/abs/2303.04137)
uses it as a behaviour-cloning policy over actions ``a`` given observations ``c``, and
Diffusion-QL (Wang, Hunt & Zhou 2023, "Diffusion Policies as an Expressive Policy Class for
Offline Reinforcement Learning", https://arxiv.org/abs/2208.06193) trains the same model with an
added Q-value term, back-propagated through the sampling chain (``sample(..., grad=True)``).

**Index convention.** Timesteps are indices ``t in {0, ..., T-1}``; index ``t`` is the paper's
step ``t + 1``. ``betas[t]`` is the noise added by step ``t``, ``alphas = 1 - betas`` and
``alpha_bars[t] = prod_{s <= t} alphas[s]``; "step ``-1``" is the clean data, with
``alpha_bar = 1``.

**Forward (noising) process.** ``q(a_t | a) = N(sqrt(alpha_bar_t) a, (1 - alpha_bar_t) I)``, so

    a_t = sqrt(alpha_bar_t) a + sqrt(1 - alpha_bar_t) eps,    eps ~ N(0, I).

**Training** (``loss``): Ho et al.'s simple objective, the mean squared error of a network
``eps_theta(a_t, t, c)`` that predicts the noise, with ``t`` uniform over the ``T`` indices:

    L = E_{a, c, t, eps} || eps - eps_theta(a_t, t, c) ||^2,
        a_t = sqrt(alpha_bar_t) a + sqrt(1 - alpha_bar_t) eps

(averaged over the action dimensions too, i.e. divided by ``action_size``). A noise prediction
gives a prediction of the clean action, ``a0_hat = (a_t - sqrt(1 - alpha_bar_t) eps_theta) /
sqrt(alpha_bar_t)``, which ``clip_denoised`` clips to the action bounds, as Ho et al. clip images
to their range and both Diffusion Policy and Diffusion-QL clip actions.

**DDPM sampling** (``sampler="ddpm"``): ancestral sampling through all ``T`` indices from
``a_{T-1} ~ N(0, I)``, each step drawing from the Gaussian posterior ``q(a_{t-1} | a_t, a0_hat)``
(Ho et al., eq. 6-7):

    mean  = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t) a0_hat
            + sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) a_t
    variance = beta~_t = beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t)

The last step (index 0) has ``beta~_0 = 0`` and returns ``a0_hat``.

**DDIM sampling** (``sampler="ddim"``; Song, Meng & Ermon 2021, "Denoising Diffusion Implicit
Models", https://arxiv.org/abs/2010.02502, eq. 12 and 16): the same trained network, run over
``S <= T`` evenly spaced indices ``tau_k = floor(k T / S)``, ``k = 0..S-1`` (the paper's "linear"
selection), from the highest down, each step going from index ``t`` to the previous index ``p``
of the sub-sequence (``alpha_bar_p = 1`` after the last):

    a_p = sqrt(alpha_bar_p) a0_hat + sqrt(1 - alpha_bar_p - sigma^2) eps_hat + sigma z
    sigma = eta sqrt((1 - alpha_bar_p) / (1 - alpha_bar_t)) sqrt(1 - alpha_bar_t / alpha_bar_p)

``eta = 0`` makes sampling deterministic given the initial noise; ``eta = 1`` with ``S = T`` is
exactly DDPM's posterior step. DDIM's training objective is DDPM's, which is why a model trained
with ``T`` steps samples with any sub-sequence. When ``a0_hat`` was clipped, ``eps_hat`` is the
noise that the clipped ``a0_hat`` implies, ``(a_t - sqrt(alpha_bar_t) a0_hat) /
sqrt(1 - alpha_bar_t)``, so that the step stays on the line between them (this also makes the
``S = T, eta = 1`` case equal to DDPM's step with clipping).

The sub-sequence starts at index ``T - T/S``, not ``T - 1``, and the chain starts there from
``N(0, I)``. That start is slightly off -- ``a_{T - T/S}`` keeps a ``sqrt(alpha_bar)`` share of
signal (0.14 for the cosine schedule with ``S = 10``) -- but starting at ``T - 1`` is worse for
DDIM: there ``alpha_bar`` is about ``1e-6`` (the capped last beta), so ``a0_hat`` divides the
network's error by ``sqrt(alpha_bar) ~ 1e-3`` and is little more than the clip bound of the
error's sign. DDPM takes a small step from there and shrugs it off; a DDIM jump carries it with
weight ``sqrt(alpha_bar_p)``, which on a two-mode test tilted the mode weights by up to 0.12
where this spacing stays within 0.02. Few steps (``S`` below about 5) sample poorly either way,
and ``S = 1`` denoises from index 0 only.

**Noise schedules** (``noise_schedule``; every one caps ``beta`` at ``MAX_BETA = 0.999``, as
Nichol & Dhariwal do, so that no step destroys the signal entirely):

- ``"linear"``: Ho et al.'s betas, linear from ``1e-4`` to ``0.02`` over 1000 steps, scaled by
  ``1000 / T`` as Nichol & Dhariwal 2021 ("Improved Denoising Diffusion Probabilistic Models",
  https://arxiv.org/abs/2102.09672) do, so that the total noise ``sum beta`` -- hence the final
  ``alpha_bar``, about ``e^-10`` -- does not depend on ``T``. Below about 50 steps the scaled
  betas reach the cap, which this schedule was not made for: prefer the others for small ``T``.
- ``"squaredcos_cap_v2"`` (the name Diffusion Policy's configuration uses): Nichol & Dhariwal's
  cosine schedule ``alpha_bar(t) = f(t) / f(0)``, ``f(t) = cos^2(((t / T) + s) / (1 + s) pi/2)``,
  ``s = 0.008``, with ``beta_t = 1 - alpha_bar(t) / alpha_bar(t - 1)`` (paper steps ``t = 1..T``).
  It destroys information more slowly than the linear one and suits small ``T`` too.
- ``"vp"``: the discretized variance-preserving SDE (Song et al. 2021, "Score-Based Generative
  Modeling through Stochastic Differential Equations", https://arxiv.org/abs/2011.13456) that
  Diffusion-QL uses with ``T = 5``: ``beta(s) = beta_min + s (beta_max - beta_min)`` on
  ``s in [0, 1]`` and ``alpha_t = exp(-integral of beta over [(t-1)/T, t/T])
  = exp(-beta_min / T - (beta_max - beta_min) (2t - 1) / (2 T^2))`` with ``beta_min = 0.1``,
  ``beta_max = 10``.

``alpha_bars`` are the cumulative products of the (capped) ``alphas``, computed in float64.

**Network** (``NoisePredictor``): ``eps_theta(a_t, t, c) = MLP([a_t, e(t), c])`` where ``e(t)`` is
the sinusoidal position embedding of the index (Vaswani et al. 2017, "Attention Is All You Need",
https://arxiv.org/abs/1706.03762, which DDPM uses for its timestep) followed by a small MLP, as
in DDPM and Diffusion-QL.

**Shapes.** ``actions [B, action_size]``, ``condition [B, condition_size]``; a model built with
``condition_size=0`` is unconditional and takes ``condition`` of shape ``[B, 0]`` (e.g.
``torch.empty(B, 0)``), which sets the batch size. Actions are modelled in raw units: the bounds
only clip (the caller scales actions, e.g. to ``[-1, 1]``, and normalizes observations if it
wants to). The module follows ``.to()``: inputs must be on its device and dtype.
"""

from __future__ import annotations

import contextlib
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
    is_int,
)
from rlscale.modules.networks.mlp import ACTIVATIONS, build_mlp

BETA_SCHEDULES = ("linear", "squaredcos_cap_v2", "vp")
SAMPLERS = ("ddim", "ddpm")

MAX_BETA = 0.999
LINEAR_BETA_START = 1e-4
LINEAR_BETA_END = 0.02
LINEAR_REFERENCE_STEPS = 1000
"""Ho et al.'s linear betas are for 1000 steps; other step counts scale them by 1000 / T."""
COSINE_OFFSET = 0.008
"""Nichol & Dhariwal's ``s``: keeps ``beta`` near ``t = 0`` from being vanishingly small."""
VP_BETA_MIN = 0.1
VP_BETA_MAX = 10.0
SINUSOID_MAX_PERIOD = 10_000.0
"""The longest wavelength of the sinusoidal embedding, Vaswani et al.'s 10000."""


@dataclass(frozen=True)
class DiffusionSettings:
    """The diffusion model's settings, with their defaults in this one place.

    - ``steps``: ``T``, the number of diffusion steps. 100 is Diffusion Policy's training
      value: with the cosine schedule it is enough for a smooth chain, and DDIM can sample with
      far fewer. Diffusion-QL back-propagates through the whole chain and uses ``T = 5``
      (with ``"vp"``); set it lower there.
    - ``beta_schedule``: one of ``BETA_SCHEDULES`` (module docstring). The default
      ``"squaredcos_cap_v2"`` is Diffusion Policy's and works for small and large ``T`` alike.
    - ``hidden_sizes``: hidden widths of the noise-predicting MLP; three layers of 256 as in
      Diffusion-QL.
    - ``step_embedding_size``: width of the timestep embedding (even, as it pairs sines and
      cosines); 16 as in Diffusion-QL, plenty for at most a few hundred distinct steps.
    - ``activation``: ``"mish"`` (Diffusion-QL's) or any of the shared MLP activations.
    - ``clip_denoised``: clip each predicted clean action ``a0_hat`` to the action bounds while
      sampling (the final actions are always clipped).
    """

    steps: int = 100
    beta_schedule: str = "squaredcos_cap_v2"
    hidden_sizes: tuple[int, ...] = (256, 256, 256)
    step_embedding_size: int = 16
    activation: str = "mish"
    clip_denoised: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden_sizes", tuple(self.hidden_sizes))
        if not is_int(self.steps) or self.steps < 1:
            raise ValueError(f"steps must be a positive integer, got steps={self.steps!r}")
        if self.beta_schedule not in BETA_SCHEDULES:
            raise ValueError(
                f"unknown beta_schedule {self.beta_schedule!r}; choose one of {BETA_SCHEDULES}"
            )
        if any(not is_int(size) or size < 1 for size in self.hidden_sizes):
            raise ValueError(f"hidden_sizes must be positive integers, got {self.hidden_sizes}")
        size = self.step_embedding_size
        if not is_int(size) or size < 2 or size % 2:
            raise ValueError(
                f"step_embedding_size must be an even integer of at least 2 (sines and cosines "
                f"in pairs), got {size!r}"
            )
        if self.activation not in tuple(ACTIVATIONS):
            raise ValueError(
                f"unknown activation {self.activation!r}; choose one of {tuple(ACTIVATIONS)}"
            )
        if not isinstance(self.clip_denoised, bool):
            raise ValueError(f"clip_denoised must be True or False, got {self.clip_denoised!r}")


# ------------------------------------------------------------------------------------ schedules


class NoiseSchedule(NamedTuple):
    """``betas``, ``alphas = 1 - betas`` and ``alpha_bars`` (cumulative products), each ``[T]``."""

    betas: Tensor
    alphas: Tensor
    alpha_bars: Tensor


def noise_schedule(name: str, steps: int, dtype: torch.dtype = torch.float64) -> NoiseSchedule:
    """The schedule called ``name`` over ``steps`` indices (module docstring), computed in float64
    and returned in ``dtype``."""
    if not is_int(steps) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got steps={steps!r}")
    if name == "linear":
        betas = linear_betas(steps)
    elif name == "squaredcos_cap_v2":
        betas = cosine_betas(steps)
    elif name == "vp":
        betas = vp_betas(steps)
    else:
        raise ValueError(f"unknown beta_schedule {name!r}; choose one of {BETA_SCHEDULES}")
    betas = betas.clamp(max=MAX_BETA)
    alphas = 1.0 - betas
    alpha_bars = torch.cumprod(alphas, dim=0)
    return NoiseSchedule(betas.to(dtype), alphas.to(dtype), alpha_bars.to(dtype))


def linear_betas(steps: int) -> Tensor:
    """Ho et al.'s linear betas scaled by ``1000 / steps`` (uncapped, float64). A single step
    takes the last beta: it must take the data to noise on its own."""
    scale = LINEAR_REFERENCE_STEPS / steps
    start, end = scale * LINEAR_BETA_START, scale * LINEAR_BETA_END
    if steps == 1:
        return torch.tensor([end], dtype=torch.float64)
    return torch.linspace(start, end, steps, dtype=torch.float64)


def cosine_betas(steps: int) -> Tensor:
    """Nichol & Dhariwal's cosine betas, ``1 - alpha_bar(t) / alpha_bar(t - 1)`` for paper steps
    ``t = 1..steps`` (uncapped, float64; the last one is 1 up to round-off)."""
    fractions = torch.arange(steps + 1, dtype=torch.float64) / steps
    f = torch.cos((fractions + COSINE_OFFSET) / (1 + COSINE_OFFSET) * (math.pi / 2)) ** 2
    return 1.0 - f[1:] / f[:-1]


def vp_betas(steps: int) -> Tensor:
    """The discretized variance-preserving SDE's betas (module docstring), float64."""
    paper_steps = torch.arange(1, steps + 1, dtype=torch.float64)
    integral = VP_BETA_MIN / steps + (VP_BETA_MAX - VP_BETA_MIN) * (2 * paper_steps - 1) / (
        2 * steps**2
    )
    return 1.0 - torch.exp(-integral)


# ------------------------------------------------------------------------------------- network


def sinusoidal_embedding(timesteps: Tensor, size: int) -> Tensor:
    """Vaswani et al.'s position embedding of ``timesteps [B]``: ``[sin(t w_k), cos(t w_k)]`` for
    ``size / 2`` frequencies ``w_k = 10000^(-k / (size / 2))``, ``[B, size]`` (float32 unless
    ``timesteps`` are floating point)."""
    if size < 2 or size % 2:
        raise ValueError(f"the embedding size must be even and at least 2, got {size}")
    dtype = timesteps.dtype if timesteps.is_floating_point() else torch.float32
    half = size // 2
    exponents = torch.arange(half, device=timesteps.device, dtype=dtype) / half
    frequencies = torch.exp(-math.log(SINUSOID_MAX_PERIOD) * exponents)
    angles = timesteps.to(dtype).unsqueeze(-1) * frequencies
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


class StepEmbedding(nn.Module):
    """``e(t)``: the sinusoidal embedding of the step index, then ``Linear(d, 2d)``, the
    activation, ``Linear(2d, d)`` -- a learned map of the fixed features, as in DDPM."""

    def __init__(self, size: int, activation: str = "mish"):
        super().__init__()
        self.size = size
        self.mlp = build_mlp(size, (2 * size,), activation, size)

    def forward(self, timesteps: Tensor) -> Tensor:
        """``timesteps [B]`` (integer indices) -> ``[B, size]`` in the layers' dtype."""
        reference = self.mlp[0].weight
        features = sinusoidal_embedding(timesteps.to(reference.dtype), self.size)
        return self.mlp(features)


class NoisePredictor(nn.Module):
    """``eps_theta(a_t, t, c) = MLP([a_t, e(t), c])``: the noise in ``a_t`` at index ``t``."""

    def __init__(self, action_size: int, condition_size: int, settings: DiffusionSettings):
        super().__init__()
        self.step_embedding = StepEmbedding(settings.step_embedding_size, settings.activation)
        self.mlp = build_mlp(
            action_size + settings.step_embedding_size + condition_size,
            settings.hidden_sizes,
            settings.activation,
            action_size,
        )

    def forward(self, noisy_actions: Tensor, timesteps: Tensor, condition: Tensor) -> Tensor:
        """``noisy_actions [B, A]``, ``timesteps [B]``, ``condition [B, C]`` -> ``[B, A]``."""
        inputs = [noisy_actions, self.step_embedding(timesteps), condition]
        return self.mlp(torch.cat(inputs, dim=-1))


# ------------------------------------------------------------------------------------- model


class ConditionalDiffusion(nn.Module):
    """A diffusion model of ``actions [B, action_size]`` given ``condition [B, condition_size]``
    (module docstring): ``loss`` to train it, ``sample`` to draw actions.

    ``action_low`` / ``action_high`` (scalars or ``[action_size]``; default -1 and 1) clip the
    predicted clean actions (with ``clip_denoised``) and the sampled actions. The network
    weights are initialized from torch's global random state; the schedule and the bounds are
    buffers in torch's default dtype, so ``.to()`` moves and casts them with the weights.
    """

    def __init__(
        self,
        action_size: int,
        condition_size: int,
        settings: DiffusionSettings | None = None,
        action_low: Tensor | None = None,
        action_high: Tensor | None = None,
    ):
        super().__init__()
        check_sizes(action_size, condition_size)
        self.settings = settings or DiffusionSettings()
        self.action_size = action_size
        self.condition_size = condition_size
        self.denoiser = NoisePredictor(action_size, condition_size, self.settings)
        self._register_schedule()
        low, high = action_bounds(action_low, action_high, action_size)
        dtype = torch.get_default_dtype()
        self.register_buffer("action_low", low.to(dtype))
        self.register_buffer("action_high", high.to(dtype))

    def _register_schedule(self) -> None:
        """The schedule and every coefficient the samplers use, derived in float64."""
        betas, alphas, alpha_bars = noise_schedule(self.settings.beta_schedule, self.steps)
        alpha_bars_prev = torch.cat([alpha_bars.new_ones(1), alpha_bars[:-1]])
        one_minus_alpha_bars = 1.0 - alpha_bars
        buffers = {
            "betas": betas,
            "alphas": alphas,
            "alpha_bars": alpha_bars,
            "sqrt_alpha_bars": alpha_bars.sqrt(),
            "sqrt_one_minus_alpha_bars": one_minus_alpha_bars.sqrt(),
            # q(a_{t-1} | a_t, a0): Ho et al. eq. 7.
            "posterior_variances": betas * (1.0 - alpha_bars_prev) / one_minus_alpha_bars,
            "posterior_start_coefficients": betas * alpha_bars_prev.sqrt() / one_minus_alpha_bars,
            "posterior_noisy_coefficients": (
                alphas.sqrt() * (1.0 - alpha_bars_prev) / one_minus_alpha_bars
            ),
        }
        dtype = torch.get_default_dtype()
        for name, values in buffers.items():
            self.register_buffer(name, values.to(dtype))

    @property
    def steps(self) -> int:
        """``T``, the number of diffusion steps the model was built (and is trained) with."""
        return self.settings.steps

    @property
    def device(self) -> torch.device:
        return self.betas.device

    @property
    def dtype(self) -> torch.dtype:
        return self.betas.dtype

    # ------------------------------------------------------------------------------- training

    def add_noise(self, actions: Tensor, timesteps: Tensor, noise: Tensor) -> Tensor:
        """``a_t = sqrt(alpha_bar_t) a + sqrt(1 - alpha_bar_t) noise`` for ``timesteps [B]``."""
        return (
            self.sqrt_alpha_bars[timesteps].unsqueeze(-1) * actions
            + self.sqrt_one_minus_alpha_bars[timesteps].unsqueeze(-1) * noise
        )

    def predict_noise(self, noisy_actions: Tensor, timesteps: Tensor, condition: Tensor) -> Tensor:
        """``eps_theta(a_t, t, c)``, ``[B, action_size]``."""
        return self.denoiser(noisy_actions, timesteps, condition)

    def loss(
        self, actions: Tensor, condition: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """Ho et al.'s simple loss on these rows: the mean over rows and action dimensions of
        ``(eps - eps_theta(a_t, t, c))^2`` with one uniform ``t in {0..T-1}`` and one noise draw
        per row. ``generator`` drives ``t`` and the noise (drawn on its device, then moved)."""
        self.check(actions, condition)
        rows = actions.shape[0]
        draw_device = generator.device if generator is not None else self.device
        timesteps = torch.randint(self.steps, (rows,), generator=generator, device=draw_device)
        timesteps = timesteps.to(self.device)
        noise = self._standard_normal(rows, generator)
        predicted = self.predict_noise(
            self.add_noise(actions, timesteps, noise), timesteps, condition
        )
        return (predicted - noise).pow(2).mean()

    # ------------------------------------------------------------------------------- sampling

    def sample(
        self,
        condition: Tensor,
        *,
        sampler: str = "ddim",
        ddim_steps: int | None = None,
        eta: float = 0.0,
        generator: torch.Generator | None = None,
        grad: bool = False,
    ) -> Tensor:
        """One action per condition row, ``[B, action_size]``, inside the action bounds.

        ``sampler="ddim"`` runs ``ddim_steps`` evenly spaced indices (default: all ``T``) with
        noise scale ``eta`` in ``[0, 1]`` (0: deterministic given the initial noise);
        ``sampler="ddpm"`` runs ancestral sampling over all ``T`` steps and takes neither.
        ``generator`` drives every noise draw (on its device, then moved to the model's).
        Without ``grad`` the chain runs under ``torch.no_grad()``; with ``grad=True`` it keeps
        the graph, so that a loss on the actions reaches the network (Diffusion-QL).
        """
        check_condition(condition, self.condition_size, rows=None)
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; choose one of {SAMPLERS}")
        if sampler == "ddpm" and ddim_steps is not None:
            raise ValueError(
                f"ddim_steps={ddim_steps} only applies to sampler='ddim'; DDPM runs all "
                f"{self.steps} steps"
            )
        if sampler == "ddpm" and eta != 0.0:
            raise ValueError(f"eta={eta} only applies to sampler='ddim'")
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"eta must be in [0, 1], got eta={eta}")
        timesteps = self.ddim_timesteps(ddim_steps) if sampler == "ddim" else None
        with contextlib.nullcontext() if grad else torch.no_grad():
            noisy = self._standard_normal(condition.shape[0], generator)
            if timesteps is None:
                actions = self._ddpm_chain(noisy, condition, generator)
            else:
                actions = self._ddim_chain(noisy, condition, timesteps, eta, generator)
            return self._clip(actions)

    def ddim_timesteps(self, ddim_steps: int | None = None) -> list[int]:
        """The ascending indices DDIM visits: ``floor(k T / S)`` for ``k = 0..S-1`` with
        ``S = ddim_steps`` (default ``T``: every index); module docstring for why the top one
        is ``T - T/S``."""
        if ddim_steps is None:
            ddim_steps = self.steps
        if not is_int(ddim_steps) or not 1 <= ddim_steps <= self.steps:
            raise ValueError(
                f"ddim_steps must be an integer from 1 to the model's steps={self.steps}, "
                f"got ddim_steps={ddim_steps!r}"
            )
        # Strictly increasing because the stride T/S is at least 1.
        return [k * self.steps // ddim_steps for k in range(ddim_steps)]

    def predict_start(self, noisy_actions: Tensor, timestep: int, noise: Tensor) -> Tensor:
        """``a0_hat`` from ``a_t`` at one index and a noise prediction, clipped to the action
        bounds when ``clip_denoised``."""
        start = (
            noisy_actions - self.sqrt_one_minus_alpha_bars[timestep] * noise
        ) / self.sqrt_alpha_bars[timestep]
        return self._clip(start) if self.settings.clip_denoised else start

    def _ddpm_chain(
        self, noisy: Tensor, condition: Tensor, generator: torch.Generator | None
    ) -> Tensor:
        for timestep in reversed(range(self.steps)):
            start = self.predict_start(
                noisy, timestep, self._predict_noise_at(noisy, timestep, condition)
            )
            mean = (
                self.posterior_start_coefficients[timestep] * start
                + self.posterior_noisy_coefficients[timestep] * noisy
            )
            if timestep > 0:
                noise = self._standard_normal(noisy.shape[0], generator)
                noisy = mean + self.posterior_variances[timestep].sqrt() * noise
            else:  # beta~_0 = 0: the last step is the mean, which is a0_hat
                noisy = mean
        return noisy

    def _ddim_chain(
        self,
        noisy: Tensor,
        condition: Tensor,
        timesteps: list[int],
        eta: float,
        generator: torch.Generator | None,
    ) -> Tensor:
        one = self.alpha_bars.new_ones(())
        for position in reversed(range(len(timesteps))):
            timestep = timesteps[position]
            alpha_bar = self.alpha_bars[timestep]
            alpha_bar_prev = self.alpha_bars[timesteps[position - 1]] if position else one
            noise_prediction = self._predict_noise_at(noisy, timestep, condition)
            start = self.predict_start(noisy, timestep, noise_prediction)
            if self.settings.clip_denoised:
                # The noise the clipped a0_hat implies (module docstring).
                noise_prediction = (
                    noisy - self.sqrt_alpha_bars[timestep] * start
                ) / self.sqrt_one_minus_alpha_bars[timestep]
            sigma = eta * torch.sqrt(
                (1.0 - alpha_bar_prev) / (1.0 - alpha_bar) * (1.0 - alpha_bar / alpha_bar_prev)
            )
            # Round-off can push the (non-negative) remainder just below zero.
            direction = (1.0 - alpha_bar_prev - sigma**2).clamp(min=0.0).sqrt()
            noisy = alpha_bar_prev.sqrt() * start + direction * noise_prediction
            if eta > 0.0 and position > 0:  # sigma = 0 on the last step: no draw
                noisy = noisy + sigma * self._standard_normal(noisy.shape[0], generator)
        return noisy

    def _predict_noise_at(self, noisy: Tensor, timestep: int, condition: Tensor) -> Tensor:
        timesteps = torch.full((noisy.shape[0],), timestep, dtype=torch.long, device=self.device)
        return self.predict_noise(noisy, timesteps, condition)

    def _standard_normal(self, rows: int, generator: torch.Generator | None) -> Tensor:
        draw_device = generator.device if generator is not None else self.device
        noise = torch.randn(
            rows, self.action_size, generator=generator, device=draw_device, dtype=self.dtype
        )
        return noise.to(self.device)

    def _clip(self, actions: Tensor) -> Tensor:
        return torch.clamp(actions, min=self.action_low, max=self.action_high)

    # --------------------------------------------------------------------------------- checks

    def check(self, actions: Tensor, condition: Tensor) -> None:
        """Raise ``ValueError`` unless ``actions`` is ``[B, action_size]`` and ``condition``
        ``[B, condition_size]``."""
        check_actions(actions, self.action_size)
        check_condition(condition, self.condition_size, rows=actions.shape[0])

    def extra_repr(self) -> str:
        return (
            f"action_size={self.action_size}, condition_size={self.condition_size}, "
            f"steps={self.steps}, beta_schedule={self.settings.beta_schedule!r}"
        )


def sample_with(
    diffusion: ConditionalDiffusion,
    condition: Tensor,
    sampler: str,
    ddim_steps: int | None,
    eta: float,
    grad: bool = False,
) -> Tensor:
    """``diffusion.sample`` with an algorithm's acting settings: the ``ddim_*`` ones apply to
    ``sampler="ddim"`` only (DDPM runs all ``T`` steps and takes neither)."""
    if sampler == "ddpm":
        return diffusion.sample(condition, sampler="ddpm", grad=grad)
    return diffusion.sample(condition, ddim_steps=ddim_steps, eta=eta, grad=grad)
