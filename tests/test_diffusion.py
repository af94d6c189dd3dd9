"""Tests of rlscale.modules.generative.diffusion: the conditional DDPM/DDIM over action vectors.

Noise schedules against their closed forms, the step embedding, the loss, fits to a two-mode
mixture (both samplers recover both modes) and to a conditional target (the condition picks the
mode), DDIM's determinism and its equality with DDPM at ``S = T, eta = 1``, the action bounds,
gradients through the sampling chain, dtype moves, and the errors for bad settings and shapes.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from itertools import pairwise

import pytest
import torch
from torch import Tensor

from rlscale.modules.generative.diffusion import (
    BETA_SCHEDULES,
    MAX_BETA,
    ConditionalDiffusion,
    DiffusionSettings,
    StepEmbedding,
    noise_schedule,
    sinusoidal_embedding,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MODE = 1.0
MODE_STD = 0.1
BOUND = 1.5  # both modes, three standard deviations wide, lie inside [-1.5, 1.5]
SMALL = DiffusionSettings(hidden_sizes=(64, 64, 64))  # the default T=100 cosine schedule
TRAIN_STEPS = 3000
SAMPLES = 4000


def bounded_model(
    action_size: int = 1,
    condition_size: int = 0,
    settings: DiffusionSettings = SMALL,
    bound: float = BOUND,
    seed: int = 0,
) -> ConditionalDiffusion:
    torch.manual_seed(seed)
    return ConditionalDiffusion(
        action_size,
        condition_size,
        settings,
        action_low=torch.full((action_size,), -bound),
        action_high=torch.full((action_size,), bound),
    )


def train(
    model: ConditionalDiffusion,
    draw_batch: Callable[[torch.Generator], tuple[Tensor, Tensor]],
    steps: int = TRAIN_STEPS,
    seed: int = 1,
) -> Tensor:
    """Adam with a cosine-annealed learning rate on ``model.loss``; the losses, ``[steps]``."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    losses = []
    for _ in range(steps):
        loss = model.loss(*draw_batch(generator), generator=generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.detach())
    return torch.stack(losses)


def random_signs(rows: int, generator: torch.Generator) -> Tensor:
    return torch.randint(0, 2, (rows, 1), generator=generator).float() * 2 - 1


def mixture_batch(generator: torch.Generator, rows: int = 256) -> tuple[Tensor, Tensor]:
    """Actions from 0.5 N(-1, 0.1^2) + 0.5 N(1, 0.1^2), no condition."""
    actions = MODE * random_signs(rows, generator) + MODE_STD * torch.randn(
        rows, 1, generator=generator
    )
    return actions, torch.empty(rows, 0)


def conditional_batch(generator: torch.Generator, rows: int = 256) -> tuple[Tensor, Tensor]:
    """Condition c in {-1, 1}; action ~ N(c, 0.1^2)."""
    condition = random_signs(rows, generator)
    return MODE * condition + MODE_STD * torch.randn(rows, 1, generator=generator), condition


@pytest.fixture(scope="module")
def mixture_fit() -> tuple[ConditionalDiffusion, Tensor]:
    model = bounded_model()
    losses = train(model, mixture_batch)
    return model, losses


@pytest.fixture(scope="module")
def conditional_model() -> ConditionalDiffusion:
    model = bounded_model(condition_size=1)
    train(model, conditional_batch, steps=2000)
    return model


def no_condition(rows: int = SAMPLES) -> Tensor:
    return torch.empty(rows, 0)


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------ schedules


@pytest.mark.parametrize("name", BETA_SCHEDULES)
@pytest.mark.parametrize("steps", [2, 5, 100, 1000])
def test_schedules_are_monotone_and_consistent(name: str, steps: int) -> None:
    betas, alphas, alpha_bars = noise_schedule(name, steps)
    assert betas.shape == alphas.shape == alpha_bars.shape == (steps,)
    assert betas.dtype == torch.float64
    assert (betas > 0).all() and (betas <= MAX_BETA).all()
    assert (betas[1:] >= betas[:-1]).all()  # noise grows along the chain
    assert torch.equal(alphas, 1 - betas)
    assert torch.allclose(alpha_bars, torch.cumprod(alphas, 0), rtol=1e-12, atol=0)
    assert (alpha_bars > 0).all() and (alpha_bars < 1).all()
    assert (alpha_bars[1:] < alpha_bars[:-1]).all()
    assert alpha_bars[-1] < 0.01  # the chain ends close to pure noise


def test_linear_schedule_endpoints_scale_with_the_number_of_steps() -> None:
    betas = noise_schedule("linear", 1000).betas
    assert betas[0].item() == pytest.approx(1e-4)
    assert betas[-1].item() == pytest.approx(0.02)
    assert torch.allclose(betas.diff(), betas.diff()[0].expand(999), rtol=1e-9)
    # Scaled by 1000 / T: ten times the betas over a tenth of the steps, the same total noise.
    betas_100, _, alpha_bars_100 = noise_schedule("linear", 100)
    assert betas_100[0].item() == pytest.approx(1e-3)
    assert betas_100[-1].item() == pytest.approx(0.2)
    assert betas_100.sum().item() == pytest.approx(betas.sum().item(), rel=1e-9)
    assert betas.sum().item() == pytest.approx(1000 * (1e-4 + 0.02) / 2)
    for alpha_bars in (alpha_bars_100, noise_schedule("linear", 1000).alpha_bars):
        assert math.log(alpha_bars[-1].item()) == pytest.approx(-10.0, rel=0.1)
    # Few steps: the scaled betas reach the cap.
    assert noise_schedule("linear", 10).betas[-1].item() == pytest.approx(MAX_BETA)


def test_cosine_schedule_follows_its_closed_form_until_the_cap() -> None:
    steps, offset = 100, 0.008
    _, _, alpha_bars = noise_schedule("squaredcos_cap_v2", steps)

    def f(t: float) -> float:
        return math.cos((t / steps + offset) / (1 + offset) * math.pi / 2) ** 2

    for index in [0, 1, 10, 50, 90, 98]:  # index t is the paper's step t + 1
        assert alpha_bars[index].item() == pytest.approx(f(index + 1) / f(0), rel=1e-9)
    betas = noise_schedule("squaredcos_cap_v2", steps).betas
    assert betas[-1].item() == pytest.approx(MAX_BETA)  # 1 - f(T)/f(T-1) = 1, capped
    assert betas[-2].item() < MAX_BETA


def test_vp_schedule_integrates_the_linear_beta_function() -> None:
    """alpha_bar_t = exp(-integral_0^{(t+1)/T} (0.1 + 9.9 s) ds) in closed form."""
    steps = 5
    alpha_bars = noise_schedule("vp", steps).alpha_bars
    for index in range(steps):
        end = (index + 1) / steps
        expected = math.exp(-(0.1 * end + 9.9 * end**2 / 2))
        assert alpha_bars[index].item() == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("name", BETA_SCHEDULES)
def test_a_single_step_takes_the_data_to_noise(name: str) -> None:
    betas, _, alpha_bars = noise_schedule(name, 1)
    assert alpha_bars.tolist() == pytest.approx((1 - betas).tolist())
    assert alpha_bars.item() < 0.01
    if name != "vp":  # the linear and cosine schedules' one step is the capped last one
        assert betas.tolist() == pytest.approx([MAX_BETA])
    model = bounded_model(
        settings=DiffusionSettings(steps=1, hidden_sizes=(8,), beta_schedule=name)
    )
    for sampler in ("ddpm", "ddim"):
        actions = model.sample(no_condition(16), sampler=sampler, generator=seeded(0))
        assert actions.shape == (16, 1) and torch.isfinite(actions).all()
    assert torch.isfinite(model.loss(torch.zeros(8, 1), no_condition(8)))


def test_noise_schedule_refuses_bad_names_and_step_counts() -> None:
    with pytest.raises(ValueError, match="unknown beta_schedule 'quadratic'"):
        noise_schedule("quadratic", 10)
    with pytest.raises(ValueError, match="steps=0"):
        noise_schedule("linear", 0)


def test_ddim_timesteps_are_evenly_spaced_and_strictly_increasing() -> None:
    model = bounded_model(settings=DiffusionSettings(steps=100, hidden_sizes=(8,)))
    assert model.ddim_timesteps(10) == list(range(0, 100, 10))
    assert model.ddim_timesteps() == list(range(100))
    assert model.ddim_timesteps(100) == list(range(100))
    assert model.ddim_timesteps(1) == [0]
    odd = bounded_model(settings=DiffusionSettings(steps=37, hidden_sizes=(8,)))
    for count in range(1, 38):
        timesteps = odd.ddim_timesteps(count)
        assert len(timesteps) == count and timesteps[0] == 0 and timesteps[-1] <= 36
        assert all(later > earlier for earlier, later in pairwise(timesteps))
        assert max(b - a for a, b in pairwise([*timesteps, 37])) <= math.ceil(37 / count)


# ------------------------------------------------------------------------------ step embedding


def test_sinusoidal_embedding_values_and_shape() -> None:
    timesteps = torch.tensor([0, 1, 7, 99])
    embedding = sinusoidal_embedding(timesteps, 16)
    assert embedding.shape == (4, 16) and embedding.dtype == torch.float32
    assert torch.equal(embedding[0], torch.cat([torch.zeros(8), torch.ones(8)]))
    # The first frequency is 1: sin(t) and cos(t).
    assert embedding[2, 0].item() == pytest.approx(math.sin(7), abs=1e-6)
    assert embedding[2, 8].item() == pytest.approx(math.cos(7), abs=1e-6)
    # The last frequency is 10000^(-7/8).
    assert embedding[3, 7].item() == pytest.approx(math.sin(99 * 10000 ** (-7 / 8)), abs=1e-6)
    assert torch.allclose(embedding[:, :8] ** 2 + embedding[:, 8:] ** 2, torch.ones(4, 8))


def test_step_embedding_separates_every_step() -> None:
    torch.manual_seed(0)
    embed = StepEmbedding(16)
    with torch.no_grad():
        features = embed(torch.arange(100))
    assert features.shape == (100, 16)
    distances = torch.cdist(features, features) + torch.eye(100)
    assert distances.min() > 1e-4


# ------------------------------------------------------------------------------------- loss


def test_loss_is_finite_differentiable_and_reproducible() -> None:
    model = bounded_model(action_size=2, condition_size=3, settings=DiffusionSettings())
    actions = torch.rand(32, 2, generator=seeded(0)) * 2 - 1
    condition = torch.randn(32, 3, generator=seeded(1))
    loss = model.loss(actions, condition, generator=seeded(2))
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
    assert any(parameter.grad.abs().sum() > 0 for parameter in model.parameters())
    with torch.no_grad():
        again = model.loss(actions, condition, generator=seeded(2))
        other = model.loss(actions, condition, generator=seeded(3))
    assert again.item() == pytest.approx(loss.item(), rel=1e-6)
    assert other.item() != pytest.approx(loss.item(), rel=1e-3)


def test_loss_is_the_noise_prediction_error() -> None:
    """A predictor that knows the noise has zero loss; one that says zero has E[eps^2] = 1."""
    model = bounded_model(settings=DiffusionSettings(steps=10, hidden_sizes=(8,)))
    actions = torch.full((20000, 1), 0.5)
    with torch.no_grad():
        assert model.loss(actions, no_condition(20000), generator=seeded(0)).item() > 0
    model.predict_noise = lambda noisy, timesteps, condition: torch.zeros_like(noisy)
    loss = model.loss(actions, no_condition(20000), generator=seeded(0))
    assert loss.item() == pytest.approx(1.0, abs=0.03)

    def oracle(noisy: Tensor, timesteps: Tensor, condition: Tensor) -> Tensor:
        return (
            noisy - model.sqrt_alpha_bars[timesteps].unsqueeze(-1) * actions
        ) / model.sqrt_one_minus_alpha_bars[timesteps].unsqueeze(-1)

    model.predict_noise = oracle
    assert model.loss(actions, no_condition(20000), generator=seeded(0)).item() < 1e-8


def test_training_lowers_the_loss(mixture_fit: tuple[ConditionalDiffusion, Tensor]) -> None:
    _, losses = mixture_fit
    assert torch.isfinite(losses).all()
    assert losses[-300:].mean() < 0.6 * losses[:100].mean()


# ------------------------------------------------------------------------------------ fits


@pytest.mark.parametrize(
    "sampling",
    [{"sampler": "ddpm"}, {"sampler": "ddim", "ddim_steps": 10, "eta": 0.0}],
    ids=["ddpm", "ddim10"],
)
def test_both_samplers_recover_both_modes(
    mixture_fit: tuple[ConditionalDiffusion, Tensor], sampling: dict
) -> None:
    model, _ = mixture_fit
    actions = model.sample(no_condition(), generator=seeded(2), **sampling)[:, 0]
    upper, lower = actions[actions > 0], actions[actions <= 0]
    assert 0.3 < upper.numel() / SAMPLES < 0.7
    assert upper.mean().item() == pytest.approx(MODE, abs=0.1)
    assert lower.mean().item() == pytest.approx(-MODE, abs=0.1)
    # Each mode is a narrow bump, not a smear between the two.
    assert upper.std().item() < 0.25 and lower.std().item() < 0.25
    assert (actions.abs() < 0.5).float().mean() < 0.05
    if sampling["sampler"] == "ddpm":  # the full chain also gets the width right
        assert upper.std().item() == pytest.approx(MODE_STD, abs=0.05)
        assert lower.std().item() == pytest.approx(MODE_STD, abs=0.05)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_the_condition_selects_the_mode(
    conditional_model: ConditionalDiffusion, sampler: str
) -> None:
    condition = torch.cat([torch.ones(1000, 1), -torch.ones(1000, 1)])
    ddim_steps = 10 if sampler == "ddim" else None
    actions = conditional_model.sample(
        condition, sampler=sampler, ddim_steps=ddim_steps, generator=seeded(3)
    )[:, 0]
    upper, lower = actions[:1000], actions[1000:]
    assert upper.mean().item() == pytest.approx(MODE, abs=0.1)
    assert lower.mean().item() == pytest.approx(-MODE, abs=0.1)
    assert (upper > 0).float().mean() > 0.97 and (lower < 0).float().mean() > 0.97


# ----------------------------------------------------------------------------------- samplers


def test_ddim_without_noise_is_deterministic(
    mixture_fit: tuple[ConditionalDiffusion, Tensor],
) -> None:
    model, _ = mixture_fit
    first = model.sample(no_condition(256), ddim_steps=10, generator=seeded(4))
    assert torch.equal(first, model.sample(no_condition(256), ddim_steps=10, generator=seeded(4)))
    # eta = 0: only the initial noise is random, so another seed gives other actions ...
    assert not torch.allclose(
        first, model.sample(no_condition(256), ddim_steps=10, generator=seeded(5))
    )
    # ... and eta > 0 adds fresh noise on the way, reproducible from the seed too.
    noisy = model.sample(no_condition(256), ddim_steps=10, eta=1.0, generator=seeded(4))
    assert (noisy - first).abs().mean() > 0.05
    assert torch.equal(
        noisy, model.sample(no_condition(256), ddim_steps=10, eta=1.0, generator=seeded(4))
    )


def test_ddim_with_every_step_and_full_noise_is_ddpm(
    mixture_fit: tuple[ConditionalDiffusion, Tensor],
) -> None:
    """With S = T and eta = 1 DDIM's step is DDPM's posterior step (Song et al. 2021), and both
    draw the same noise in the same order: same generator, same actions."""
    model, _ = mixture_fit
    ddpm = model.sample(no_condition(512), sampler="ddpm", generator=seeded(6))
    ddim = model.sample(no_condition(512), sampler="ddim", eta=1.0, generator=seeded(6))
    assert (ddpm - ddim).abs().max() < 1e-3  # float32 round-off over 100 steps


@pytest.mark.parametrize("clip_denoised", [True, False])
def test_ddim_equals_ddpm_at_full_noise_with_and_without_clipping(clip_denoised: bool) -> None:
    settings = DiffusionSettings(steps=20, hidden_sizes=(16,), clip_denoised=clip_denoised)
    model = bounded_model(action_size=2, condition_size=1, settings=settings, bound=0.5)
    condition = torch.randn(64, 1, generator=seeded(7))
    ddpm = model.sample(condition, sampler="ddpm", generator=seeded(8))
    ddim = model.sample(condition, eta=1.0, generator=seeded(8))
    assert (ddpm - ddim).abs().max() < 1e-3
    # The check has something to check: the chain is random, and fewer steps change it.
    assert not torch.allclose(ddpm, model.sample(condition, sampler="ddpm", generator=seeded(9)))
    assert not torch.allclose(
        ddim, model.sample(condition, ddim_steps=5, eta=1.0, generator=seeded(8))
    )


@pytest.mark.parametrize("clip_denoised", [True, False])
@pytest.mark.parametrize("sampling", [{"sampler": "ddpm"}, {"ddim_steps": 4, "eta": 0.5}])
def test_samples_stay_inside_the_bounds(clip_denoised: bool, sampling: dict) -> None:
    settings = DiffusionSettings(steps=10, hidden_sizes=(16,), clip_denoised=clip_denoised)
    low, high = torch.tensor([-0.5, 0.0, -3.0]), torch.tensor([0.2, 3.0, -2.5])
    torch.manual_seed(0)
    model = ConditionalDiffusion(3, 2, settings, action_low=low, action_high=high)
    actions = model.sample(
        torch.randn(500, 2, generator=seeded(10)), generator=seeded(11), **sampling
    )
    assert (actions >= low).all() and (actions <= high).all()
    # An untrained model lands outside these bounds: the clip did the work.
    assert ((actions == low) | (actions == high)).any()


def test_default_bounds_are_plus_minus_one() -> None:
    torch.manual_seed(0)
    model = ConditionalDiffusion(2, 0, DiffusionSettings(steps=5, hidden_sizes=(8,)))
    assert model.action_low.tolist() == [-1.0, -1.0] and model.action_high.tolist() == [1.0, 1.0]
    actions = model.sample(no_condition(300), sampler="ddpm")
    assert actions.abs().max() <= 1.0 and (actions.abs() == 1.0).any()


@pytest.mark.parametrize("sampling", [{"sampler": "ddpm"}, {"ddim_steps": 3}, {"eta": 0.5}])
def test_gradients_flow_through_the_sampling_chain(sampling: dict) -> None:
    settings = DiffusionSettings(steps=5, hidden_sizes=(16, 16), beta_schedule="vp")
    # float64, so that the finite difference below is exact enough for a tight comparison.
    model = bounded_model(action_size=2, condition_size=3, settings=settings, bound=100.0).double()
    condition = torch.randn(8, 3, generator=seeded(12), dtype=torch.float64, requires_grad=True)
    actions = model.sample(condition, generator=seeded(13), grad=True, **sampling)
    assert actions.requires_grad
    actions.pow(2).sum().backward()
    first_layer = model.denoiser.mlp[0].weight
    assert first_layer.grad is not None and first_layer.grad.abs().sum() > 0
    step_layer = model.denoiser.step_embedding.mlp[0].weight
    assert step_layer.grad is not None and step_layer.grad.abs().sum() > 0
    assert condition.grad is not None and condition.grad.abs().sum() > 0
    # The gradient is the true one: a finite difference along the first-layer weights agrees.
    direction = torch.randn(first_layer.shape, generator=seeded(14), dtype=torch.float64)
    step = 1e-5
    with torch.no_grad():
        first_layer += step * direction
        up = model.sample(condition, generator=seeded(13), **sampling).pow(2).sum()
        first_layer -= 2 * step * direction
        down = model.sample(condition, generator=seeded(13), **sampling).pow(2).sum()
        first_layer += step * direction
    numeric = (up - down).item() / (2 * step)
    assert (first_layer.grad * direction).sum().item() == pytest.approx(numeric, rel=1e-6)


def test_sampling_without_grad_keeps_no_graph() -> None:
    model = bounded_model(settings=DiffusionSettings(steps=5, hidden_sizes=(8,)))
    assert not model.sample(no_condition(4)).requires_grad
    assert not model.sample(no_condition(4), sampler="ddpm").requires_grad


# ------------------------------------------------------------------------------- dtype, device


def test_to_float64_moves_every_buffer_and_keeps_working() -> None:
    model = bounded_model(action_size=2, condition_size=1, settings=SMALL)
    reference = copy.deepcopy(model)
    model = model.to(torch.float64)
    assert model.dtype == torch.float64
    for name, buffer in model.named_buffers():
        assert buffer.dtype == torch.float64, name
        assert torch.allclose(buffer, dict(reference.named_buffers())[name].double()), name
    assert torch.allclose(
        model.alpha_bars, noise_schedule(SMALL.beta_schedule, SMALL.steps).alpha_bars, rtol=1e-6
    )
    condition = torch.randn(64, 1, dtype=torch.float64, generator=seeded(15))
    actions = torch.rand(64, 2, dtype=torch.float64, generator=seeded(16))
    loss = model.loss(actions, condition, generator=seeded(17))
    assert loss.dtype == torch.float64 and torch.isfinite(loss)
    for sampler in ("ddpm", "ddim"):
        sampled = model.sample(condition, sampler=sampler, generator=seeded(18))
        assert sampled.dtype == torch.float64 and sampled.abs().max() <= BOUND
    assert model.device == torch.device("cpu")


# ------------------------------------------------------------------------------------ errors


def test_sampling_errors_name_the_bad_value() -> None:
    model = bounded_model(condition_size=2, settings=DiffusionSettings(steps=10, hidden_sizes=(8,)))
    condition = torch.zeros(4, 2)
    with pytest.raises(ValueError, match=r"from 1 to the model's steps=10, got ddim_steps=11"):
        model.sample(condition, ddim_steps=11)
    with pytest.raises(ValueError, match=r"steps=10, got ddim_steps=0"):
        model.sample(condition, ddim_steps=0)
    with pytest.raises(ValueError, match="unknown sampler 'euler'; choose one of"):
        model.sample(condition, sampler="euler")
    with pytest.raises(ValueError, match="ddim_steps=5 only applies to sampler='ddim'"):
        model.sample(condition, sampler="ddpm", ddim_steps=5)
    with pytest.raises(ValueError, match="eta=0.5 only applies to sampler='ddim'"):
        model.sample(condition, sampler="ddpm", eta=0.5)
    with pytest.raises(ValueError, match=r"eta must be in \[0, 1\], got eta=1.5"):
        model.sample(condition, eta=1.5)
    with pytest.raises(ValueError, match=r"expected condition of shape \[batch, 2\], got \(4, 3\)"):
        model.sample(torch.zeros(4, 3))
    with pytest.raises(ValueError, match=r"expected condition of shape \[batch, 2\], got \(2,\)"):
        model.sample(torch.zeros(2))
    with pytest.raises(ValueError, match="got NoneType"):
        model.sample(None)


def test_loss_errors_name_the_bad_shape() -> None:
    model = bounded_model(action_size=2, condition_size=1)
    with pytest.raises(ValueError, match=r"expected actions of shape \[batch, 2\], got \(4, 3\)"):
        model.loss(torch.zeros(4, 3), torch.zeros(4, 1))
    with pytest.raises(ValueError, match=r"expected condition of shape \[batch, 1\], got \(4, 2\)"):
        model.loss(torch.zeros(4, 2), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="condition has 3 rows but the actions have 4"):
        model.loss(torch.zeros(4, 2), torch.zeros(3, 1))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"steps": 0}, "steps must be a positive integer, got steps=0"),
        ({"steps": 2.5}, "got steps=2.5"),
        ({"beta_schedule": "cosine"}, "unknown beta_schedule 'cosine'; choose one of"),
        ({"hidden_sizes": (64, 0)}, r"hidden_sizes must be positive integers, got \(64, 0\)"),
        ({"step_embedding_size": 15}, "step_embedding_size must be an even integer .* got 15"),
        ({"step_embedding_size": 0}, "got 0"),
        ({"activation": "gelu"}, "unknown activation 'gelu'; choose one of"),
        ({"clip_denoised": "yes"}, "clip_denoised must be True or False, got 'yes'"),
    ],
)
def test_settings_refuse_bad_values(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DiffusionSettings(**overrides)


def test_model_refuses_bad_sizes_and_bounds() -> None:
    settings = DiffusionSettings(steps=5, hidden_sizes=(8,))
    with pytest.raises(ValueError, match="action_size must be a positive integer, got 0"):
        ConditionalDiffusion(0, 1, settings)
    with pytest.raises(ValueError, match="condition_size must be 0 .* got -1"):
        ConditionalDiffusion(1, -1, settings)
    with pytest.raises(
        ValueError, match=r"below action_high .* low=\[0.0, 1.0\], high=\[1.0, 1.0\]"
    ):
        ConditionalDiffusion(2, 0, settings, torch.tensor([0.0, 1.0]), torch.tensor(1.0))
    with pytest.raises(ValueError, match=r"scalars or of shape \[2\], got shapes \(3,\) and \(\)"):
        ConditionalDiffusion(2, 0, settings, torch.zeros(3), torch.tensor(1.0))
    with pytest.raises(ValueError, match="must be finite"):
        ConditionalDiffusion(2, 0, settings, torch.tensor(-math.inf), torch.tensor(1.0))
