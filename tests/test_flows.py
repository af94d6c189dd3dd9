"""Tests of rlscale.modules.generative.flows: the zuko-backed conditional normalizing flow.

Invertibility, exact densities (the change of variables checked with autograd Jacobians and by
integrating the density over a grid), fits to a known Gaussian and to a conditional two-moons
density, sampling, and the errors for bad shapes and settings.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import Tensor, nn

from rlscale.modules.generative import (
    ConditionalFlow,
    FlowFitSettings,
    FlowSettings,
    fit_flow,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

KINDS = ("realnvp", "spline")

GAUSSIAN_MEAN = torch.tensor([1.0, -2.0])
GAUSSIAN_COVARIANCE = torch.tensor([[2.0, 1.2], [1.2, 1.0]])


def correlated_gaussian() -> torch.distributions.MultivariateNormal:
    return torch.distributions.MultivariateNormal(GAUSSIAN_MEAN, GAUSSIAN_COVARIANCE)


def raw_rows(rows: int, features: int, seed: int) -> Tensor:
    """Rows on scales far from 1 in both directions, so that the normalization matters."""
    generator = torch.Generator().manual_seed(seed)
    scales = torch.logspace(-0.5, 1, features)
    return 3.0 + scales * torch.randn(rows, features, generator=generator)


def conditional_flow(kind: str, features: int = 3, context_features: int = 2) -> ConditionalFlow:
    """An untrained flow with normalization statistics set from raw data."""
    torch.manual_seed(0)
    flow = ConditionalFlow(features, context_features, FlowSettings(kind=kind, transforms=3))
    context = raw_rows(256, context_features, seed=1) if context_features else None
    flow.update_normalization(raw_rows(256, features, seed=2), context)
    return flow


# ------------------------------------------------------------------------------------ inverse


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("context_features", [2, 0])
def test_from_base_inverts_to_base(kind: str, context_features: int) -> None:
    flow = conditional_flow(kind, context_features=context_features)
    x = raw_rows(64, 3, seed=3)
    context = raw_rows(64, context_features, seed=4) if context_features else None
    with torch.no_grad():
        z = flow.to_base(x, context)
        # Round trip to 1e-5 of each dimension's scale (the raw scales span 0.3 to 10).
        assert ((flow.from_base(z, context) - x) / flow.normalizer.std).abs().max() < 1e-5
        base_points = torch.randn(64, 3, generator=torch.Generator().manual_seed(5))
        assert (
            flow.to_base(flow.from_base(base_points, context), context) - base_points
        ).abs().max() < 1e-5
    # The map is not the identity (nor the normalization alone): the check has something to check.
    assert (z - flow.normalizer.normalize(x)).abs().mean() > 0.05


# ------------------------------------------------------------------------------------ density


@pytest.mark.parametrize("kind", KINDS)
def test_log_prob_is_the_change_of_variables_of_to_base(kind: str) -> None:
    """log p(x | c) == log N(to_base(x, c); 0, I) + log|det d to_base / dx|, with the Jacobian
    taken by autograd through the normalization and the flow, row by row."""
    flow = conditional_flow(kind).double()
    x = raw_rows(4, 3, seed=6).double()
    context = raw_rows(4, 2, seed=7).double()
    standard_normal = torch.distributions.Normal(0.0, 1.0)
    with torch.no_grad():
        log_prob = flow.log_prob(x, context)
    for row in range(x.shape[0]):
        row_context = context[row : row + 1]

        def to_base(point: Tensor, row_context: Tensor = row_context) -> Tensor:
            return flow.to_base(point.unsqueeze(0), row_context).squeeze(0)

        jacobian = torch.autograd.functional.jacobian(to_base, x[row])
        z = to_base(x[row]).detach()
        expected = standard_normal.log_prob(z).sum() + torch.linalg.slogdet(jacobian).logabsdet
        assert log_prob[row].item() == pytest.approx(expected.item(), abs=1e-8)


def test_density_in_raw_units_integrates_to_one() -> None:
    """Summing exp(log_prob) over a fine grid in raw units gives 1; without the normalization's
    log-Jacobian it would give the product of the standard deviations (here 2.5)."""
    torch.manual_seed(0)
    flow = ConditionalFlow(2, 1, FlowSettings(transforms=2)).double()
    generator = torch.Generator().manual_seed(8)
    scales = torch.tensor([5.0, 0.5], dtype=torch.float64)
    flow.update_normalization(
        torch.randn(512, 2, generator=generator, dtype=torch.float64) * scales + 1.0,
        torch.randn(512, 1, generator=generator, dtype=torch.float64),
    )
    std = flow.normalizer.std
    assert std.prod().item() == pytest.approx(2.5, rel=0.15)
    points = 400
    axes = [
        torch.linspace(-10, 10, points, dtype=torch.float64) * s + m
        for s, m in zip(std, flow.normalizer.mean, strict=True)
    ]
    grid = torch.cartesian_prod(*axes)
    cell = math.prod((axis[1] - axis[0]).item() for axis in axes)
    context = torch.full((grid.shape[0], 1), 0.7, dtype=torch.float64)
    with torch.no_grad():
        mass = flow.log_prob(grid, context).exp().sum().item() * cell
    assert mass == pytest.approx(1.0, abs=1e-3)


def test_normalization_only_shifts_log_prob_by_the_log_scale() -> None:
    """The same flow on pre-scaled data, with identity statistics, gives log_prob + log-scale."""
    flow = conditional_flow("realnvp")
    unnormalized = copy.deepcopy(flow)
    unnormalized.normalizer.mean.zero_()
    unnormalized.normalizer.std.fill_(1.0)
    x = raw_rows(32, 3, seed=9)
    context = raw_rows(32, 2, seed=10)
    scaled = flow.normalizer.normalize(x)
    with torch.no_grad():
        raw_log_prob = flow.log_prob(x, context)
        scaled_log_prob = unnormalized.log_prob(scaled, context)
    log_scale = flow.normalizer.std.log().sum()
    assert log_scale.abs() > 0.5
    assert torch.allclose(raw_log_prob, scaled_log_prob - log_scale, atol=1e-5)


# ------------------------------------------------------------------------- fitting a Gaussian


@pytest.fixture(scope="module")
def gaussian_flow() -> ConditionalFlow:
    """An unconditional RealNVP fitted to 10,000 samples of a correlated 2-D Gaussian."""
    torch.manual_seed(20)
    data = correlated_gaussian().sample((10_000,))
    torch.manual_seed(0)
    flow = ConditionalFlow(2, 0, FlowSettings(transforms=2, hidden_sizes=(32, 32)))
    settings = FlowFitSettings(steps=400, batch_size=512, learning_rate=3e-3)
    result = fit_flow(flow, data, settings=settings, generator=torch.Generator().manual_seed(1))
    assert result.train_losses.shape == (400,)
    assert result.holdout_rows == 1000 and result.train_rows == 9000
    # The held-out NLL is near the Gaussian's entropy, 0.5 log det(2 pi e Sigma) = 2.55 (the
    # mean over 1000 held-out rows alone scatters by about 0.03 around it).
    entropy = correlated_gaussian().entropy().item()
    assert result.holdout_nll == pytest.approx(entropy, abs=0.1)
    return flow


def test_fitted_flow_matches_the_analytic_gaussian_log_density(
    gaussian_flow: ConditionalFlow,
) -> None:
    torch.manual_seed(11)
    fresh = correlated_gaussian().sample((2000,))
    with torch.no_grad():
        gap = gaussian_flow.log_prob(fresh) - correlated_gaussian().log_prob(fresh)
    assert gap.abs().mean() < 0.06


def test_fitted_flow_samples_have_the_gaussian_moments(gaussian_flow: ConditionalFlow) -> None:
    samples = gaussian_flow.sample(num_samples=20_000, generator=torch.Generator().manual_seed(12))
    assert samples.shape == (20_000, 2)
    assert (samples.mean(dim=0) - GAUSSIAN_MEAN).abs().max() < 0.05
    assert (torch.cov(samples.T) - GAUSSIAN_COVARIANCE).abs().max() < 0.1


# ---------------------------------------------------------------------- a conditional density


def rotated_moons(rows: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Two interleaved half-circles (noise 0.1) rotated by ``pi / 2 * c``, ``c ~ U(-1, 1)``."""
    context = torch.rand(rows, 1, generator=generator) * 2 - 1
    upper = torch.rand(rows, 1, generator=generator) < 0.5
    angle = torch.rand(rows, generator=generator) * math.pi
    upper_moon = torch.stack([torch.cos(angle), torch.sin(angle)], dim=-1)
    lower_moon = torch.stack([1 - torch.cos(angle), 0.5 - torch.sin(angle)], dim=-1)
    points = torch.where(upper, upper_moon, lower_moon) - torch.tensor([0.5, 0.25])
    points = points + 0.1 * torch.randn(rows, 2, generator=generator)
    rotation = math.pi / 2 * context[:, 0]
    cos, sin = torch.cos(rotation), torch.sin(rotation)
    rotated = torch.stack(
        [cos * points[:, 0] - sin * points[:, 1], sin * points[:, 0] + cos * points[:, 1]], dim=-1
    )
    return rotated, context


class ConditionalGaussian(nn.Module):
    """The baseline: an MLP giving a diagonal Gaussian's mean and log-std from the context."""

    def __init__(self) -> None:
        super().__init__()
        self.network = nn.Sequential(
            nn.Linear(1, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 4)
        )

    def nll(self, x: Tensor, context: Tensor) -> Tensor:
        mean, log_std = self.network(context).split(2, dim=-1)
        return -torch.distributions.Normal(mean, log_std.exp()).log_prob(x).sum(dim=-1)


def fit_gaussian_baseline(
    x: Tensor, context: Tensor, settings: FlowFitSettings, seed: int
) -> ConditionalGaussian:
    """The same steps, batch size, learning rate and cosine decay as ``fit_flow``."""
    torch.manual_seed(0)
    baseline = ConditionalGaussian()
    optimizer = torch.optim.Adam(baseline.parameters(), lr=settings.learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=settings.steps)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(settings.steps):
        batch = torch.randint(x.shape[0], (settings.batch_size,), generator=generator)
        loss = baseline.nll(x[batch], context[batch]).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    return baseline


@pytest.mark.parametrize(("kind", "margin"), [("realnvp", 0.5), ("spline", 0.7)])
def test_conditional_flow_fits_rotated_moons_better_than_a_gaussian(
    kind: str, margin: float
) -> None:
    generator = torch.Generator().manual_seed(13)
    x, context = rotated_moons(8000, generator)
    test_x, test_context = rotated_moons(2000, generator)
    settings = FlowFitSettings(steps=400, batch_size=256, learning_rate=3e-3, holdout_fraction=0)
    torch.manual_seed(0)
    flow = ConditionalFlow(2, 1, FlowSettings(kind=kind))
    fit_flow(flow, x, context, settings=settings, generator=torch.Generator().manual_seed(14))
    baseline = fit_gaussian_baseline(x, context, settings, seed=14)
    with torch.no_grad():
        flow_nll = -flow.log_prob(test_x, test_context).mean().item()
        gaussian_nll = baseline.nll(test_x, test_context).mean().item()
    print(f"{kind}: held-out NLL flow {flow_nll:.3f}, conditional Gaussian {gaussian_nll:.3f}")
    assert flow_nll < gaussian_nll - margin


# ----------------------------------------------------------------------------------- sampling


def test_sample_shapes_generator_and_reparameterization() -> None:
    flow = conditional_flow("spline")
    context = raw_rows(5, 2, seed=15)
    assert flow.sample(context).shape == (5, 3)
    assert flow.sample(context, 4).shape == (4, 5, 3)
    first = flow.sample(context, 4, generator=torch.Generator().manual_seed(16))
    again = flow.sample(context, 4, generator=torch.Generator().manual_seed(16))
    assert torch.equal(first, again)
    # Row j of every sample block is drawn given context row j.
    block = flow.from_base(
        torch.randn(20, 3, generator=torch.Generator().manual_seed(16))[5:10], context
    )
    assert torch.allclose(first[1], block.detach(), atol=1e-6)
    assert not first.requires_grad
    drawn = flow.rsample(context, generator=torch.Generator().manual_seed(17))
    drawn.sum().backward()
    assert all(p.grad is not None for p in flow.parameters())
    unconditional = conditional_flow("realnvp", context_features=0)
    assert unconditional.sample(num_samples=7).shape == (7, 3)


# ------------------------------------------------------------------------------ device, dtype

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_flow_follows_its_device_and_dtype(device: str) -> None:
    torch.manual_seed(0)
    settings = FlowSettings(kind="spline", transforms=2, hidden_sizes=(16, 16))
    flow = ConditionalFlow(2, 1, settings).to(device=device, dtype=torch.float64)
    generator = torch.Generator().manual_seed(21)
    x = torch.randn(64, 2, generator=generator)
    context = torch.randn(64, 1, generator=generator)
    # float32 data on the CPU and a CPU generator: fit_flow moves the data to the flow.
    fit_settings = FlowFitSettings(steps=5, batch_size=16)
    result = fit_flow(
        flow, x, context, settings=fit_settings, generator=torch.Generator().manual_seed(23)
    )
    assert torch.isfinite(result.train_losses).all() and result.holdout_nll is not None
    assert flow.normalizer.mean.dtype == torch.float64
    x, context = (t.to(device=device, dtype=torch.float64) for t in (x, context))
    log_prob = flow.log_prob(x, context)
    samples = flow.sample(context, 3, generator=torch.Generator().manual_seed(22))
    for tensor in (log_prob, samples):
        assert tensor.dtype == torch.float64 and tensor.device.type == device


# ------------------------------------------------------------------------------------- errors


def test_wrong_widths_and_contexts_raise_clear_errors() -> None:
    flow = conditional_flow("realnvp")
    x = raw_rows(4, 3, seed=18)
    context = raw_rows(4, 2, seed=19)
    with pytest.raises(ValueError, match=r"expected x of shape \[batch, 3\], got \(4, 2\)"):
        flow.log_prob(x[:, :2], context)
    with pytest.raises(ValueError, match=r"expected x of shape \[batch, 3\], got \(3,\)"):
        flow.log_prob(x[0], context)
    with pytest.raises(ValueError, match=r"expected context of shape \[batch, 2\], got \(4, 1\)"):
        flow.log_prob(x, context[:, :1])
    with pytest.raises(ValueError, match="this flow is conditional: pass a context"):
        flow.to_base(x)
    with pytest.raises(ValueError, match="context has 3 rows but the input has 4"):
        flow.log_prob(x, context[:3])
    with pytest.raises(ValueError, match=r"expected z of shape \[batch, 3\]"):
        flow.from_base(x[:, :1], context)
    unconditional = conditional_flow("realnvp", context_features=0)
    with pytest.raises(ValueError, match=r"unconditional \(context_features=0\) but a context"):
        unconditional.log_prob(x, context)
    with pytest.raises(ValueError, match="pass num_samples"):
        unconditional.sample()
    with pytest.raises(ValueError, match="give at least 2 training rows"):
        fit_flow(unconditional, x[:1])


def test_invalid_settings_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="unknown flow kind 'maf'"):
        FlowSettings(kind="maf")
    with pytest.raises(ValueError, match="at least one transform, got transforms=0"):
        FlowSettings(transforms=0)
    with pytest.raises(ValueError, match=r"hidden_sizes must be positive integers, got \(64, 0\)"):
        FlowSettings(hidden_sizes=(64, 0))
    with pytest.raises(ValueError, match="spline_bins must be at least 2"):
        FlowSettings(spline_bins=1)
    with pytest.raises(ValueError, match="at least one feature, got features=0"):
        ConditionalFlow(0, 1)
    with pytest.raises(ValueError, match="context_features must be 0"):
        ConditionalFlow(2, -1)
    with pytest.raises(ValueError, match=r"holdout_fraction must lie in \[0, 1\), got 1"):
        FlowFitSettings(holdout_fraction=1)
    with pytest.raises(ValueError, match="batch_size must be positive"):
        FlowFitSettings(batch_size=0)
