"""Learned dynamics models: PETS' probabilistic ensemble and a deterministic MLP (no RLlib).

- the loss is the Gaussian NLL of ``torch.distributions.Normal`` plus the bound term, per member;
- normalization statistics come from data, survive constant dimensions, live in the state_dict;
- log-variances stay inside the learned bounds, which receive gradients;
- member batches ``[members, batch, ...]`` train each member on its own data;
- predictions: moment matching, ``predict_member``, elites, reward head, ``torch.func`` Jacobians;
- learning: a noisy linear system (mean and noise level recovered), Pendulum-v1's transitions,
  and the deterministic MLP on a linear system.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import Tensor
from torch.distributions import Normal
from torch.func import jacrev, vmap

from rlscale.modules.dynamics import (
    EnsembleDynamicsModel,
    EnsembleSettings,
    FitSettings,
    MLPDynamicsModel,
    MLPModelSettings,
    PendulumModel,
    ProbabilisticEnsemble,
    bootstrap_indices,
    fit_dynamics,
    gaussian_nll,
)
from rlscale.modules.dynamics.normalizer import Normalizer

STATE_DIM, ACTION_DIM = 3, 2
SMALL = EnsembleSettings(members=3, hidden_sizes=(16, 16))


@pytest.fixture(autouse=True)
def one_thread():
    """Small networks: one intra-op thread is faster than threads contending for shared cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def linear_system(seed: int, scale: float = 0.3) -> tuple[Tensor, Tensor]:
    """A stable random ``x' = A x + B u``: ``A [3, 3]``, ``B [3, 2]``."""
    generator = torch.Generator().manual_seed(seed)
    a = torch.eye(STATE_DIM) + scale * torch.randn(STATE_DIM, STATE_DIM, generator=generator)
    b = torch.randn(STATE_DIM, ACTION_DIM, generator=generator)
    return a, b


def linear_transitions(
    rows: int, a: Tensor, b: Tensor, noise_std: float, seed: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """States, actions, noisy next states and the noiseless next states."""
    generator = torch.Generator().manual_seed(seed)
    states = torch.randn(rows, STATE_DIM, generator=generator)
    actions = torch.rand(rows, ACTION_DIM, generator=generator) * 2 - 1
    clean = states @ a.T + actions @ b.T
    noisy = clean + noise_std * torch.randn(rows, STATE_DIM, generator=generator)
    return states, actions, noisy, clean


def pendulum_transitions(rows: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    theta = (torch.rand(rows, generator=generator) * 2 - 1) * math.pi
    theta_dot = (torch.rand(rows, generator=generator) * 2 - 1) * 8.0
    states = torch.stack([theta, theta_dot], dim=-1)
    actions = (torch.rand(rows, 1, generator=generator) * 2 - 1) * 2.0
    return states, actions, PendulumModel().predict(states, actions)


def small_ensemble(seed: int = 0, **overrides) -> ProbabilisticEnsemble:
    torch.manual_seed(seed)
    settings = dataclasses.replace(SMALL, **overrides)
    return ProbabilisticEnsemble(STATE_DIM, ACTION_DIM, settings)


def normalized_data(model, rows: int = 64, seed: int = 1, rewards: bool = False):
    a, b = linear_system(0)
    states, actions, next_states, _ = linear_transitions(rows, a, b, 0.1, seed)
    reward = states.sum(-1) if rewards else None
    model.update_normalization(states, actions, next_states, reward)
    return states, actions, next_states, reward


# ------------------------------------------------------------------------------------- loss


def test_gaussian_nll_is_normal_log_prob_on_fixed_outputs() -> None:
    generator = torch.Generator().manual_seed(0)
    mean, logvar, target = torch.randn(3, 4, 7, 5, generator=generator).unbind(0)
    expected = -Normal(mean, torch.exp(logvar / 2)).log_prob(target).mean(dim=(1, 2))
    torch.testing.assert_close(gaussian_nll(mean, logvar, target), expected)


@pytest.mark.parametrize("with_reward", [False, True])
def test_loss_is_summed_member_nll_plus_bound_term(with_reward: bool) -> None:
    model = small_ensemble(predict_reward=with_reward)
    with torch.no_grad():  # move the bounds off their start so the bound term is non-trivial
        model.max_logvar.add_(0.3 * torch.randn_like(model.max_logvar))
        model.min_logvar.add_(0.3 * torch.randn_like(model.min_logvar))
    states, actions, next_states, rewards = normalized_data(model, rewards=with_reward)
    mean, logvar = model.normalized_outputs(states, actions)
    target = model.normalizer.targets(states, next_states, rewards)
    by_hand = -Normal(mean, torch.exp(logvar / 2)).log_prob(target.expand_as(mean))
    bound_term = 0.01 * (model.max_logvar.sum() - model.min_logvar.sum())
    expected = by_hand.mean(dim=(1, 2)).sum() + bound_term

    torch.testing.assert_close(model.loss(states, actions, next_states, rewards), expected)
    # Member batches holding the same rows for every member give the same loss.
    stacked = [
        None if t is None else t.expand(model.members, *t.shape)
        for t in (states, actions, next_states, rewards)
    ]
    torch.testing.assert_close(model.loss(*stacked, member_batches=True), expected)
    # Distinct rows per member: member b's term is its own NLL on its own rows.
    shifted = [
        None if t is None else torch.stack([t.roll(b, 0) for b in range(3)])
        for t in (states, actions, next_states, rewards)
    ]
    per_member = []
    for b in range(3):
        rows = [None if t is None else t[b] for t in shifted]
        mean_b, logvar_b = model.normalized_outputs(rows[0], rows[1])
        target_b = model.normalizer.targets(rows[0], rows[2], rows[3])
        normal_b = Normal(mean_b[b], torch.exp(logvar_b[b] / 2))
        per_member.append(-normal_b.log_prob(target_b).mean())
    expected_distinct = torch.stack(per_member).sum() + bound_term
    torch.testing.assert_close(model.loss(*shifted, member_batches=True), expected_distinct)
    # Hand-check the target layout: [next - state, reward], standardized.
    raw = next_states - states
    if with_reward:
        raw = torch.cat([raw, rewards[:, None]], dim=-1)
    torch.testing.assert_close(target, (raw - raw.mean(0)) / raw.std(0, unbiased=False))


def test_loss_rejects_bad_shapes_and_missing_rewards() -> None:
    model = small_ensemble()
    states, actions, next_states, _ = normalized_data(model)
    with pytest.raises(ValueError, match="members=3"):
        model.loss(states, actions, next_states, member_batches=True)
    with pytest.raises(ValueError, match="actions"):
        model.loss(states, actions[:, :1], next_states)
    with pytest.raises(ValueError, match="next_states"):
        model.loss(states, actions, next_states[:10])
    with pytest.raises(ValueError, match="without a reward head"):
        model.loss(states, actions, next_states, states[:, 0])
    with pytest.raises(ValueError, match="no reward head"):
        model.predict_reward(states, actions)
    rewarded = small_ensemble(predict_reward=True)
    with pytest.raises(ValueError, match="needs rewards"):
        rewarded.loss(states, actions, next_states)
    with pytest.raises(ValueError, match="leading shape"):
        rewarded.loss(states, actions, next_states, states[:, :1])


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"members": 0}, "at least one member"),
        ({"activation": "swish"}, "unknown activation 'swish'"),
        ({"hidden_sizes": (8, 0)}, "positive"),
        ({"initial_min_logvar": 1.0}, "below initial_max_logvar"),
        ({"logvar_bound_weight": -1.0}, "non-negative"),
    ],
)
def test_bad_settings_raise(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EnsembleSettings(**settings)


def test_bad_fit_settings_raise() -> None:
    with pytest.raises(ValueError, match="holdout_fraction"):
        FitSettings(holdout_fraction=1.0)
    with pytest.raises(ValueError, match="batch_size"):
        FitSettings(batch_size=0)
    model = small_ensemble()
    states, actions, next_states, _ = normalized_data(model, rows=4)
    with pytest.raises(ValueError, match="at least 2 training rows"):
        fit_dynamics(
            model, states, actions, next_states, settings=FitSettings(holdout_fraction=0.9)
        )


# ---------------------------------------------------------------------------- normalization


def test_normalization_from_data_and_constant_dimensions() -> None:
    generator = torch.Generator().manual_seed(0)
    rows = 2000
    states = torch.randn(rows, STATE_DIM, generator=generator) * torch.tensor([0.01, 5.0, 100.0])
    states = states + torch.tensor([3.0, -20.0, 500.0])
    actions = torch.cat([torch.rand(rows, 1, generator=generator), torch.full((rows, 1), 2.0)], -1)
    next_states = states + 0.1 * torch.randn(rows, STATE_DIM, generator=generator)
    model = small_ensemble()
    model.update_normalization(states, actions, next_states)

    inputs = model.normalizer.inputs(states, actions)
    torch.testing.assert_close(inputs.mean(0), torch.zeros(5), atol=1e-4, rtol=0)
    torch.testing.assert_close(inputs[:, :4].std(0), torch.ones(4), atol=1e-3, rtol=0)
    # The constant action is shifted to 0 and divided by 1, not by ~0.
    assert model.normalizer.input.std[4].item() == 1.0
    assert inputs[:, 4].abs().max().item() == 0.0
    targets = model.normalizer.targets(states, next_states)
    torch.testing.assert_close(targets.std(0), torch.ones(3), atol=1e-3, rtol=0)
    restored = model.normalizer.input.denormalize(inputs)
    torch.testing.assert_close(restored, torch.cat([states, actions], -1), atol=1e-3, rtol=1e-5)
    # Predictions on those inputs stay finite and on the data's scale.
    assert torch.isfinite(model.predict(states, actions).mean).all()

    normalizer = Normalizer(2)
    normalizer.fit(torch.zeros(10, 2))
    assert torch.equal(normalizer.std, torch.ones(2))
    with pytest.raises(ValueError, match="last dimension"):
        normalizer.fit(torch.zeros(10, 3))


def test_statistics_are_buffers_that_move_with_the_model() -> None:
    model = small_ensemble()
    normalized_data(model)
    keys = model.state_dict().keys()
    for name in ("input.mean", "input.std", "target.mean", "target.std"):
        assert f"normalizer.{name}" in keys
    assert "elite_mask" in keys
    double = model.to(torch.float64)
    assert double.normalizer.input.mean.dtype == torch.float64
    assert double.elite_mask.dtype == torch.bool


# ------------------------------------------------------------------------- log-variance bounds


def test_logvar_stays_within_learned_bounds() -> None:
    model = small_ensemble()
    states, actions, next_states, _ = normalized_data(model)
    with torch.no_grad():  # huge raw outputs of both signs
        model.network.layers[-1].weight.mul_(1e4)
    _, logvar = model.normalized_outputs(states * 10, actions)
    upper = model.max_logvar[:, None, :].expand_as(logvar)
    lower = model.min_logvar[:, None, :].expand_as(logvar)
    # The second softplus can lift a value at the upper bound by softplus(min - max) at most.
    overshoot = torch.nn.functional.softplus(lower - upper)
    assert (logvar <= upper + overshoot + 1e-6).all() and (logvar >= lower - 1e-6).all()
    assert (logvar > upper - 1e-3).any() and (logvar < lower + 1e-3).any()  # both bounds reached

    model.loss(states, actions, next_states).backward()
    assert model.max_logvar.grad.abs().sum() > 0 and model.min_logvar.grad.abs().sum() > 0


# ------------------------------------------------------------------------------- predictions


def test_predict_is_moment_matching_and_predict_member_is_the_members_output() -> None:
    model = small_ensemble()
    states, actions, _, _ = normalized_data(model)
    assert isinstance(model, EnsembleDynamicsModel)
    member_mean, member_var = model.member_moments(states, actions)  # [members, rows, 3]
    combined = model.predict(states, actions)
    torch.testing.assert_close(combined.mean, states + member_mean.mean(0))
    mixture_var = member_var.mean(0) + member_mean.var(0, unbiased=False)
    torch.testing.assert_close(combined.variance, mixture_var)

    member = torch.arange(states.shape[0]) % model.members
    per_row = model.predict_member(states, actions, member)
    rows = torch.arange(states.shape[0])
    torch.testing.assert_close(per_row.mean, states + member_mean[member, rows])
    torch.testing.assert_close(per_row.variance, member_var[member, rows])
    with pytest.raises(ValueError, match="one index per row"):
        model.predict_member(states, actions, member[:3])


def test_elites_restrict_prediction_and_drawing() -> None:
    model = small_ensemble()
    states, actions, _, _ = normalized_data(model)
    model.set_elites([2])
    only = model.predict_member(states, actions, torch.full((states.shape[0],), 2))
    torch.testing.assert_close(model.predict(states, actions).mean, only.mean)
    torch.testing.assert_close(model.predict(states, actions).variance, only.variance)
    model.set_elites([0, 2])
    drawn = model.draw_members(500, torch.Generator().manual_seed(0))
    assert set(drawn.tolist()) == {0, 2}
    assert model.elites.tolist() == [0, 2]
    model.set_elites(None)
    assert model.elites.tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        model.set_elites([3])
    with pytest.raises(ValueError, match="distinct"):
        model.set_elites([1, 1])


def test_state_dict_round_trip_keeps_predictions() -> None:
    model = small_ensemble(seed=0, predict_reward=True)
    states, actions, next_states, rewards = normalized_data(model, rewards=True)
    fit_dynamics(
        model,
        states,
        actions,
        next_states,
        rewards,
        settings=FitSettings(steps=5, batch_size=16, holdout_fraction=0.0),
    )
    model.set_elites([0, 2])
    copy = small_ensemble(seed=123, predict_reward=True)
    copy.load_state_dict(model.state_dict())
    member = torch.arange(states.shape[0]) % 3
    for name in ("mean", "stddev"):
        assert torch.equal(
            getattr(copy.predict(states, actions), name),
            getattr(model.predict(states, actions), name),
        )
    assert torch.equal(
        copy.predict_member(states, actions, member).mean,
        model.predict_member(states, actions, member).mean,
    )
    assert torch.equal(copy.predict_reward(states, actions), model.predict_reward(states, actions))
    assert copy.elites.tolist() == [0, 2]


def test_predict_is_differentiable_with_torch_func() -> None:
    model = small_ensemble()
    states, actions, _, _ = normalized_data(model, rows=4)

    def next_mean(state: Tensor, action: Tensor) -> Tensor:
        return model.predict(state, action).mean

    # Batched jacrev: rows are independent, so the cross-row blocks vanish.
    jac_state, jac_action = jacrev(next_mean, argnums=(0, 1))(states, actions)
    assert jac_state.shape == (4, STATE_DIM, 4, STATE_DIM)
    rows = torch.arange(4)
    per_row_state = jac_state[rows, :, rows]  # [4, 3, 3]
    off_diagonal = jac_state.sum(dim=2) - per_row_state
    assert off_diagonal.abs().max() < 1e-6
    # Per-row Jacobians under vmap agree, and match central finite differences.
    row_state, row_action = vmap(jacrev(next_mean, argnums=(0, 1)))(states, actions)
    torch.testing.assert_close(row_state, per_row_state)
    torch.testing.assert_close(row_action, jac_action[rows, :, rows])
    double = model.to(torch.float64)
    s64, a64 = states.double(), actions.double()
    epsilon = 1e-6
    for j in range(ACTION_DIM):
        step = torch.zeros_like(a64)
        step[:, j] = epsilon
        difference = double.predict(s64, a64 + step).mean - double.predict(s64, a64 - step).mean
        finite = difference / (2 * epsilon)
        torch.testing.assert_close(finite.float(), row_action[..., j], atol=1e-4, rtol=1e-3)
    # The predicted spread is differentiable too (the variance depends on the inputs).
    grad = jacrev(lambda s: double.predict(s, a64).stddev.sum())(s64)
    assert grad.abs().sum() > 0


def test_bootstrap_indices() -> None:
    first = bootstrap_indices(10, 4, 50, torch.Generator().manual_seed(0))
    again = bootstrap_indices(10, 4, 50, torch.Generator().manual_seed(0))
    assert first.shape == (4, 50) and first.dtype == torch.long
    assert torch.equal(first, again)
    assert first.min() >= 0 and first.max() <= 9
    assert not torch.equal(first[0], first[1])  # each member draws its own rows
    with pytest.raises(ValueError, match="positive"):
        bootstrap_indices(0, 4, 50)


# --------------------------------------------------------------------------------- learning


def test_member_batches_train_each_member_on_its_own_data() -> None:
    torch.manual_seed(0)
    model = ProbabilisticEnsemble(
        STATE_DIM, ACTION_DIM, EnsembleSettings(members=2, hidden_sizes=(32, 32))
    )
    systems = [linear_system(1), linear_system(2)]
    data = [linear_transitions(1000, a, b, 0.01, seed=10 + i) for i, (a, b) in enumerate(systems)]
    states, actions, next_states = (torch.stack([d[i] for d in data]) for i in range(3))
    model.update_normalization(states, actions, next_states)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(300):
        rows = bootstrap_indices(1000, 2, 64, generator)
        batch = [
            t.gather(1, rows[..., None].expand(-1, -1, t.shape[-1]))
            for t in (states, actions, next_states)
        ]
        loss = model.loss(*batch, member_batches=True)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    test_states, test_actions, _, _ = linear_transitions(500, *systems[0], 0.0, seed=99)
    errors = torch.empty(2, 2)  # [member, system]
    for member in range(2):
        index = torch.full((500,), member)
        with torch.no_grad():
            predicted = model.predict_member(test_states, test_actions, index).mean
        for system, (a, b) in enumerate(systems):
            truth = test_states @ a.T + test_actions @ b.T
            errors[member, system] = (predicted - truth).square().mean().sqrt()
    print(f"member x system RMSE: {errors.tolist()}")
    # Each member learned its own system, and not the other one.
    assert errors[0, 0] < 0.15 and errors[1, 1] < 0.15, errors
    assert errors[0, 1] > 5 * errors[0, 0] and errors[1, 0] > 5 * errors[1, 1], errors


def test_ensemble_recovers_a_noisy_linear_system_and_its_noise_level() -> None:
    noise_std = 0.1
    a, b = linear_system(3)
    states, actions, next_states, _ = linear_transitions(4000, a, b, noise_std, seed=4)
    torch.manual_seed(0)
    model = ProbabilisticEnsemble(
        STATE_DIM, ACTION_DIM, EnsembleSettings(members=3, hidden_sizes=(32, 32))
    )
    result = fit_dynamics(
        model,
        states,
        actions,
        next_states,
        settings=FitSettings(steps=800, batch_size=128, learning_rate=3e-3),
        generator=torch.Generator().manual_seed(0),
    )
    test_states, test_actions, _, clean = linear_transitions(1000, a, b, noise_std, seed=5)
    with torch.no_grad():
        predicted = model.predict(test_states, test_actions)
    mean_rmse = (predicted.mean - clean).square().mean().sqrt().item()
    predicted_std = predicted.stddev.mean().item()
    print(
        f"linear: mean RMSE {mean_rmse:.4f}, predicted std {predicted_std:.4f} "
        f"(noise {noise_std}), holdout NLL {result.holdout.nll.tolist()}"
    )
    assert mean_rmse < 0.05
    assert abs(predicted_std - noise_std) < 0.3 * noise_std


@pytest.mark.slow
def test_ensemble_fits_pendulum_transitions() -> None:
    # Random states over Pendulum-v1's whole range; the largest errors sit at the speed clip
    # (|theta_dot| = 8), where the true dynamics have a kink.
    states, actions, next_states = pendulum_transitions(3000, seed=0)
    torch.manual_seed(0)
    model = ProbabilisticEnsemble(2, 1, EnsembleSettings(members=5, hidden_sizes=(64, 64)))
    result = fit_dynamics(
        model,
        states,
        actions,
        next_states,
        settings=FitSettings(steps=1500, batch_size=128, holdout_fraction=0.2),
        generator=torch.Generator().manual_seed(0),
    )
    test_states, test_actions, test_next = pendulum_transitions(1000, seed=1)
    with torch.no_grad():
        predicted = model.predict(test_states, test_actions).mean
    rmse = (predicted - test_next).square().mean(0).sqrt()
    print(
        f"pendulum: RMSE theta {rmse[0]:.4f}, theta_dot {rmse[1]:.4f}; holdout NLL "
        f"{result.holdout.nll.tolist()}, MSE {result.holdout.mse.tolist()}"
    )
    assert rmse[0] < 0.006 and rmse[1] < 0.12, rmse
    assert result.holdout.mse.max() < 0.01, result.holdout.mse
    assert result.holdout.nll.mean() < -2.0, result.holdout.nll
    assert result.train_rows == 2400 and result.holdout_rows == 600
    assert result.best_members(2).tolist() == result.holdout.mse.argsort()[:2].tolist()


def test_mlp_model_fits_a_linear_system() -> None:
    a, b = linear_system(3)
    states, actions, next_states, _ = linear_transitions(2000, a, b, 0.0, seed=6)
    torch.manual_seed(0)
    model = MLPDynamicsModel(STATE_DIM, ACTION_DIM, MLPModelSettings(hidden_sizes=(32, 32)))
    result = fit_dynamics(
        model,
        states,
        actions,
        next_states,
        settings=FitSettings(steps=400, batch_size=128, learning_rate=3e-3),
        generator=torch.Generator().manual_seed(0),
    )
    test_states, test_actions, _, clean = linear_transitions(500, a, b, 0.0, seed=7)
    with torch.no_grad():
        predicted = model.predict(test_states, test_actions)
    assert predicted.shape == (500, STATE_DIM)
    rmse = (predicted - clean).square().mean().sqrt().item()
    print(f"mlp linear: RMSE {rmse:.4f}, holdout MSE {result.holdout.mse.item():.5f}")
    assert rmse < 0.1
    assert result.holdout.nll is None
    jacobian = vmap(jacrev(model.predict, argnums=0))(test_states[:5], test_actions[:5])
    torch.testing.assert_close(jacobian, a.expand(5, -1, -1), atol=0.15, rtol=0)


def test_reward_heads_learn_a_reward() -> None:
    a, b = linear_system(3)
    states, actions, next_states, _ = linear_transitions(2000, a, b, 0.0, seed=8)
    rewards = -states.square().sum(-1) - 0.1 * actions.square().sum(-1)
    generator = torch.Generator().manual_seed(0)
    settings = FitSettings(steps=300, batch_size=128, learning_rate=3e-3)
    torch.manual_seed(0)
    ensemble = small_ensemble(predict_reward=True, hidden_sizes=(32, 32))
    mlp = MLPDynamicsModel(
        STATE_DIM, ACTION_DIM, MLPModelSettings(hidden_sizes=(32, 32), predict_reward=True)
    )
    for model in (ensemble, mlp):
        fit_dynamics(
            model, states, actions, next_states, rewards, settings=settings, generator=generator
        )
    test_states, test_actions, _, _ = linear_transitions(500, a, b, 0.0, seed=9)
    truth = -test_states.square().sum(-1) - 0.1 * test_actions.square().sum(-1)
    with torch.no_grad():
        for model in (ensemble, mlp):
            error = (model.predict_reward(test_states, test_actions) - truth).abs().mean()
            assert error < 0.15 * truth.abs().mean(), (type(model).__name__, error)
        member = torch.zeros(500, dtype=torch.long)
        next_state, reward = ensemble.predict_member_with_reward(test_states, test_actions, member)
        assert next_state.mean.shape == (500, STATE_DIM) and reward.mean.shape == (500,)
