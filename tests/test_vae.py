"""Tests of rlscale.modules.generative.vae: the conditional VAE over actions (BCQ, PLAS).

The loss's terms against their closed forms, training on two synthetic conditional datasets (a
unimodal one whose action is a smooth function of the condition plus noise, and a bimodal one),
sampling with BCQ's clipped latents inside asymmetric bounds, the reparameterization's
gradient, the log-std clamp, reproducibility with a generator, and the errors for bad settings
and shapes.

Thresholds were set from runs with seeds 0-3 on one CPU thread (noted at each), leaving margin.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor
from torch.distributions import Normal, kl_divergence

from rlscale.modules.generative.vae import (
    ConditionalVAE,
    VAELoss,
    VAESettings,
    gaussian_kl_to_standard_normal,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = VAESettings(hidden_sizes=(64, 64))
NOISE_STD = 0.05
TRAIN_STEPS = 1500
MODE = 0.6
"""The bimodal dataset's first action dimension is +-MODE (plus noise), each half the time."""


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------------- datasets


def conditional_mean(condition: Tensor) -> Tensor:
    """The unimodal dataset's ``E[a | s]`` for ``s in [-1, 1]^2``: nonlinear, inside +-0.8."""
    first = 0.6 * torch.sin(2.0 * condition[:, 0])
    second = 0.5 * condition[:, 0] * condition[:, 1] + 0.3 * condition[:, 1]
    return torch.stack([first, second], dim=-1)


def unimodal_rows(rows: int, seed: int) -> tuple[Tensor, Tensor]:
    """``(condition [rows, 2], actions [rows, 2])``: ``a = E[a | s] + N(0, NOISE_STD^2)``."""
    generator = seeded(seed)
    condition = 2.0 * torch.rand(rows, 2, generator=generator) - 1.0
    noise = NOISE_STD * torch.randn(rows, 2, generator=generator)
    return condition, conditional_mean(condition) + noise


def bimodal_rows(rows: int, seed: int) -> tuple[Tensor, Tensor]:
    """``(condition [rows, 1], actions [rows, 2])``: ``a_0 = +-MODE`` with equal odds,
    ``a_1 = 0.3 s``, both plus ``N(0, NOISE_STD^2)``."""
    generator = seeded(seed)
    condition = 2.0 * torch.rand(rows, 1, generator=generator) - 1.0
    sign = 2.0 * torch.randint(2, (rows,), generator=generator) - 1.0
    noise = NOISE_STD * torch.randn(rows, 2, generator=generator)
    actions = torch.stack([MODE * sign, 0.3 * condition[:, 0]], dim=-1) + noise
    return condition, actions


def train(vae: ConditionalVAE, condition: Tensor, actions: Tensor, seed: int) -> None:
    """Adam on minibatches of 128 rows for TRAIN_STEPS steps, minibatches and noise seeded."""
    generator = seeded(seed)
    optimizer = torch.optim.Adam(vae.parameters(), lr=1e-3)
    for _ in range(TRAIN_STEPS):
        batch = torch.randint(actions.shape[0], (128,), generator=generator)
        loss = vae.loss(actions[batch], condition[batch], generator=generator).total
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def evaluation_loss(vae: ConditionalVAE, condition: Tensor, actions: Tensor) -> VAELoss:
    with torch.no_grad():
        return vae.loss(actions, condition, generator=seeded(7))


@pytest.fixture(scope="module")
def unimodal_fit() -> dict:
    """A small VAE trained on the unimodal dataset, with its held-out rows and the held-out
    loss before training."""
    torch.manual_seed(0)
    vae = ConditionalVAE(2, 2, SMALL)
    condition, actions = unimodal_rows(1024, seed=100)
    held_out = unimodal_rows(256, seed=200)
    before = evaluation_loss(vae, *held_out)
    train(vae, condition, actions, seed=0)
    return {"vae": vae, "held_out": held_out, "before": before}


@pytest.fixture(scope="module")
def bimodal_fit() -> tuple[ConditionalVAE, tuple[Tensor, Tensor]]:
    torch.manual_seed(1)
    vae = ConditionalVAE(2, 1, SMALL)
    train(vae, *bimodal_rows(1024, seed=101), seed=1)
    return vae, bimodal_rows(256, seed=201)


# ------------------------------------------------------------------------------- loss terms


def test_kl_matches_torch_distributions():
    generator = seeded(0)
    mean = 2.0 * torch.randn(64, 3, generator=generator, dtype=torch.float64)
    log_std = torch.empty(64, 3, dtype=torch.float64).uniform_(-4.0, 2.0, generator=generator)
    expected = kl_divergence(Normal(mean, log_std.exp()), Normal(0.0, 1.0))
    torch.testing.assert_close(gaussian_kl_to_standard_normal(mean, log_std), expected)
    # The prior itself is at distance 0.
    zero = torch.zeros(4, 3)
    assert gaussian_kl_to_standard_normal(zero, zero).abs().max() == 0.0


def test_loss_terms_are_the_documented_means():
    torch.manual_seed(0)
    vae = ConditionalVAE(3, 2, VAESettings(hidden_sizes=(32,), beta=0.7))
    condition, actions = torch.randn(16, 2), 0.5 * torch.randn(16, 3).tanh()
    loss = vae.loss(actions, condition, generator=seeded(3))
    reconstruction, mean, log_std = vae(actions, condition, generator=seeded(3))
    expected_kl = kl_divergence(Normal(mean, log_std.exp()), Normal(0.0, 1.0)).mean()
    torch.testing.assert_close(loss.reconstruction, (reconstruction - actions).pow(2).mean())
    torch.testing.assert_close(loss.kl, expected_kl)
    torch.testing.assert_close(loss.total, loss.reconstruction + 0.7 * loss.kl)
    assert mean.shape == log_std.shape == (16, vae.latent_size)


def test_default_settings_follow_bcq():
    settings = VAESettings()
    assert settings.hidden_sizes == (750, 750)
    assert settings.beta == 0.5
    assert settings.log_std_bounds == (-4.0, 15.0)
    assert settings.latent_clip == 0.5
    vae = ConditionalVAE(3, 5, VAESettings(hidden_sizes=(8,)))
    assert vae.latent_size == 6  # twice the action size
    assert ConditionalVAE(3, 5, VAESettings(hidden_sizes=(8,), latent_size=4)).latent_size == 4


# ---------------------------------------------------------------------------------- training


def test_training_improves_the_elbo(unimodal_fit):
    # Seeds 0-3: about 0.15 before, 0.0027-0.0031 after (reconstruction at the noise floor
    # NOISE_STD^2 = 0.0025, KL near 0: the latent is not needed for unimodal actions).
    after = evaluation_loss(unimodal_fit["vae"], *unimodal_fit["held_out"])
    assert after.total < 0.1 * unimodal_fit["before"].total
    assert after.total < 0.01


def test_reconstructions_reach_the_noise_floor(unimodal_fit):
    vae, (condition, actions) = unimodal_fit["vae"], unimodal_fit["held_out"]
    with torch.no_grad():
        reconstruction, _, _ = vae(actions, condition, generator=seeded(3))
    # Seeds 0-3: 0.0027-0.0032; the noise alone makes 0.0025 unavoidable.
    assert (reconstruction - actions).pow(2).mean() < 2 * NOISE_STD**2


def test_reconstructions_use_the_latent(bimodal_fit):
    """Which mode a row came from is not in the condition, only in the action: a decoder that
    ignored the encoder's latent could at best reconstruct the conditional mean."""
    vae, (condition, actions) = bimodal_fit
    with torch.no_grad():
        reconstruction, _, _ = vae(actions, condition, generator=seeded(3))
    error = (reconstruction - actions).pow(2).mean()
    ignoring_latent = ((actions[:, 0] ** 2).mean() + NOISE_STD**2) / 2  # about 0.18
    # Seeds 0-3: 0.024-0.053.
    assert error < 0.1 < ignoring_latent


def test_decoded_samples_land_near_the_conditional_mean(unimodal_fit):
    vae, (condition, _) = unimodal_fit["vae"], unimodal_fit["held_out"]
    samples = vae.sample(condition[:32], num_samples=64, generator=seeded(5))
    assert samples.shape == (32, 64, 2)
    error = (samples.mean(dim=1) - conditional_mean(condition[:32])).abs()
    # Seeds 0-3: largest error 0.026-0.078 over 32 conditions, mean well under that.
    assert error.max() < 0.15
    assert error.mean() < 0.05
    # Clipped latents sample near the mode: tighter than the data's noise.
    assert samples.std(dim=1).mean() < NOISE_STD


def test_samples_cover_both_modes(bimodal_fit):
    vae, _ = bimodal_fit
    condition = torch.linspace(-0.9, 0.9, 8).unsqueeze(1)
    samples = vae.sample(condition, num_samples=256, generator=seeded(5))
    first = samples[..., 0]
    # Seeds 0-3: 0.41-0.56 of each condition's samples on the positive mode.
    positive_share = (first > 0).float().mean(dim=1)
    assert ((positive_share > 0.3) & (positive_share < 0.7)).all()
    # Seeds 0-3: 0.77-0.79 within 0.2 of a mode; a Gaussian with the data's mean and
    # variance would put about a third there.
    near_a_mode = ((first.abs() - MODE).abs() < 0.2).float().mean()
    assert near_a_mode > 0.6
    # The second dimension follows the condition (seeds 0-3: error at most 0.015).
    torch.testing.assert_close(
        samples[..., 1].mean(dim=1), 0.3 * condition[:, 0], atol=0.05, rtol=0.0
    )


# ---------------------------------------------------------------------- sampling and bounds


def asymmetric_vae(latent_clip: float | None = 0.5) -> ConditionalVAE:
    torch.manual_seed(0)
    settings = VAESettings(hidden_sizes=(32, 32), latent_clip=latent_clip)
    return ConditionalVAE(
        2,
        3,
        settings,
        action_low=torch.tensor([-2.0, 0.0]),
        action_high=torch.tensor([1.0, 3.0]),
    )


def test_samples_stay_within_asymmetric_bounds():
    vae = asymmetric_vae()
    condition = 3.0 * torch.randn(50, 3, generator=seeded(1))
    samples = vae.sample(condition, num_samples=20, generator=seeded(2))
    assert samples.shape == (50, 20, 2)
    assert (samples > vae.action_low).all() and (samples < vae.action_high).all()
    # Latents far outside the prior saturate the tanh at the bounds, never past them.
    with torch.no_grad():
        for scale in (-1e4, 1e4):
            latent = torch.full((50, vae.latent_size), scale)
            decoded = vae.decode(condition, latent)
            assert (decoded >= vae.action_low).all() and (decoded <= vae.action_high).all()
    # The middle of the tanh is the middle of the bounds.
    with torch.no_grad():
        vae.decoder[-1].weight.zero_()
        vae.decoder[-1].bias.zero_()
        torch.testing.assert_close(vae.decode(condition[:1]), torch.tensor([[-0.5, 1.5]]))


def test_prior_latent_is_clipped():
    latent = asymmetric_vae(latent_clip=0.5).prior_latent(2000, generator=seeded(0))
    assert latent.shape == (2000, 4)
    assert latent.abs().max() == 0.5  # clipped, and a standard normal often reaches the clip
    assert (latent.abs() == 0.5).float().mean() > 0.5  # P(|z| > 0.5) = 0.62
    unclipped = asymmetric_vae(latent_clip=None).prior_latent(2000, generator=seeded(0))
    assert unclipped.abs().max() > 3.0
    torch.testing.assert_close(unclipped.clamp(-0.5, 0.5), latent)


def test_given_latent_is_used_unclipped():
    vae = asymmetric_vae(latent_clip=0.5)
    condition = torch.randn(8, 3, generator=seeded(0))
    latent = torch.full((8, vae.latent_size), 3.0)
    with torch.no_grad():
        far = vae.decode(condition, latent)
        at_clip = vae.decode(condition, latent.clamp(-0.5, 0.5))
    assert not torch.allclose(far, at_clip)


# --------------------------------------------------------------------- gradients and clamping


def test_reconstruction_gradient_reaches_the_encoder():
    torch.manual_seed(0)
    vae = ConditionalVAE(2, 2, VAESettings(hidden_sizes=(16,)))
    condition, actions = unimodal_rows(32, seed=0)
    vae.loss(actions, condition, generator=seeded(1)).reconstruction.backward()
    encoder_gradients = [parameter.grad for parameter in vae.encoder.parameters()]
    assert all(gradient is not None for gradient in encoder_gradients)
    assert all(gradient.abs().sum() > 0 for gradient in encoder_gradients)
    # Through both the mean and the log-std halves of the encoder's output.
    head_gradient = vae.encoder[-1].bias.grad
    assert head_gradient[: vae.latent_size].abs().min() > 0
    assert head_gradient[vae.latent_size :].abs().min() > 0


def test_decode_is_differentiable_in_the_latent():
    """PLAS trains a policy whose output is the latent: its gradient must pass the decoder."""
    torch.manual_seed(0)
    vae = ConditionalVAE(2, 2, VAESettings(hidden_sizes=(16,)))
    latent = torch.zeros(4, vae.latent_size, requires_grad=True)
    vae.decode(torch.randn(4, 2), latent).sum().backward()
    assert latent.grad is not None and latent.grad.abs().sum() > 0


@pytest.mark.parametrize("bias", [100.0, -100.0])
def test_log_std_is_clamped(bias: float):
    torch.manual_seed(0)
    vae = ConditionalVAE(2, 2, VAESettings(hidden_sizes=(16,), log_std_bounds=(-2.0, 1.0)))
    with torch.no_grad():
        vae.encoder[-1].bias[vae.latent_size :] = bias
    condition, actions = unimodal_rows(32, seed=0)
    _, log_std = vae.encode(actions, condition)
    expected = 1.0 if bias > 0 else -2.0
    assert (log_std == expected).all()


def test_log_std_inside_the_bounds_is_untouched():
    torch.manual_seed(0)
    vae = ConditionalVAE(2, 2, VAESettings(hidden_sizes=(16,)))
    condition, actions = unimodal_rows(32, seed=0)
    _, log_std = vae.encode(actions, condition)
    raw = vae.encoder(torch.cat([condition, actions], dim=-1))[:, vae.latent_size :]
    torch.testing.assert_close(log_std, raw)


# --------------------------------------------------------------------- reproducibility, dtype


def test_seeded_generator_makes_draws_reproducible():
    vae = asymmetric_vae()
    condition = torch.randn(10, 3, generator=seeded(0))
    actions = vae.sample(condition, num_samples=4, generator=seeded(0))
    reconstruction = vae.decode(condition, generator=seeded(1))
    torch.testing.assert_close(vae.sample(condition, num_samples=4, generator=seeded(0)), actions)
    torch.testing.assert_close(vae.decode(condition, generator=seeded(1)), reconstruction)
    assert not torch.equal(vae.sample(condition, num_samples=4, generator=seeded(9)), actions)
    inputs = (torch.rand(10, 2), condition)
    first, second = (vae.loss(*inputs, generator=seeded(2)) for _ in range(2))
    assert torch.equal(first.total, second.total)


def test_unconditional_model_takes_an_empty_condition():
    torch.manual_seed(0)
    vae = ConditionalVAE(2, 0, VAESettings(hidden_sizes=(16,)))
    samples = vae.sample(torch.empty(5, 0), num_samples=3, generator=seeded(0))
    assert samples.shape == (5, 3, 2)
    loss = vae.loss(torch.zeros(5, 2), torch.empty(5, 0), generator=seeded(0))
    assert math.isfinite(loss.total.item())


def test_follows_to_dtype():
    vae = asymmetric_vae().to(torch.float64)
    assert vae.action_low.dtype == vae.action_high.dtype == torch.float64
    condition = torch.randn(4, 3, dtype=torch.float64)
    samples = vae.sample(condition, num_samples=2, generator=seeded(0))
    assert samples.dtype == torch.float64
    assert "action_low" in vae.state_dict() and "action_high" in vae.state_dict()


# ------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"beta": -0.1}, "beta=-0.1"),
        ({"beta": math.inf}, "beta=inf"),
        ({"latent_size": 0}, "latent_size=0"),
        ({"latent_size": 2.5}, "latent_size=2.5"),
        ({"latent_clip": 0.0}, "latent_clip=0.0"),
        ({"latent_clip": -0.5}, "latent_clip=-0.5"),
        ({"latent_clip": math.nan}, "latent_clip=nan"),
        ({"log_std_bounds": (2.0, -2.0)}, "log_std_bounds=(2.0, -2.0)"),
        ({"log_std_bounds": (-4.0,)}, "log_std_bounds=(-4.0,)"),
        ({"hidden_sizes": (64, 0)}, "(64, 0)"),
        ({"activation": "gelu"}, "'gelu'"),
    ],
)
def test_bad_settings_are_named(settings: dict, message: str):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        VAESettings(**settings)


def test_bad_construction_is_named():
    with pytest.raises(ValueError, match="action_size must be a positive integer, got 0"):
        ConditionalVAE(0, 2, SMALL)
    with pytest.raises(ValueError, match="condition_size .* got -1"):
        ConditionalVAE(2, -1, SMALL)
    with pytest.raises(ValueError, match="action_low must be below action_high"):
        ConditionalVAE(2, 2, SMALL, action_low=torch.tensor([0.0, 1.0]), action_high=1.0)
    with pytest.raises(ValueError, match=r"scalars or of shape \[2\]"):
        ConditionalVAE(2, 2, SMALL, action_low=-torch.ones(3))


def test_wrong_input_widths_are_named():
    torch.manual_seed(0)
    vae = ConditionalVAE(2, 3, VAESettings(hidden_sizes=(8,)))
    actions, condition = torch.zeros(4, 2), torch.zeros(4, 3)
    with pytest.raises(ValueError, match=r"actions of shape \[batch, 2\], got \(4, 5\)"):
        vae.loss(torch.zeros(4, 5), condition)
    with pytest.raises(ValueError, match=r"actions of shape \[batch, 2\], got \(2,\)"):
        vae.encode(torch.zeros(2), condition)
    with pytest.raises(ValueError, match=r"condition of shape \[batch, 3\], got \(4, 1\)"):
        vae.encode(actions, torch.zeros(4, 1))
    with pytest.raises(ValueError, match="condition has 3 rows but the actions have 4"):
        vae(actions, torch.zeros(3, 3))
    with pytest.raises(ValueError, match=r"latent of shape \[batch, 4\], got \(4, 2\)"):
        vae.decode(condition, torch.zeros(4, 2))
    with pytest.raises(ValueError, match="latent has 5 rows but the condition has 4"):
        vae.decode(condition, torch.zeros(5, 4))
    with pytest.raises(ValueError, match=r"condition of shape \[batch, 3\], got \(4, 2\)"):
        vae.sample(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="num_samples must be a positive integer, got 0"):
        vae.sample(condition, num_samples=0)
    with pytest.raises(ValueError, match="got NoneType"):
        vae.sample(None)
