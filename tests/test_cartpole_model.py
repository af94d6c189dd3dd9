"""The differentiable CartPole model, system identification, and planning with both (no RLlib).

- ``CartPoleModel`` reproduces the env's NumPy ``step_dynamics`` (float64, 1e-12) and
  CartPole-v1 itself; its parameters are the identifiable combinations, and scaling every mass
  and the force together changes nothing it predicts;
- ``fit_physical_parameters`` recovers g, l, m_p / M and force_mag / M from 2,000 random
  transitions of the real continuous CartPole, and the masses given force_mag = 10;
- iLQR-MPC on the *identified* model balances CartPole-v1 for its full 500 steps;
- iLQR-MPC on the analytic model swings the continuous CartPole up from hanging and holds it.
"""

from __future__ import annotations

import dataclasses
import math
import time

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import Tensor, nn
from torch.func import hessian, jacrev, vmap

import rlscale.envs  # noqa: F401  (registers the rlscale/ ids)
from rlscale.envs.continuous_cartpole import (
    BALANCE_ID,
    CARTPOLE_V1,
    SWING_UP_ID,
    CartPoleParameters,
    step_dynamics,
)
from rlscale.modules.dynamics.cartpole import CartPoleModel
from rlscale.modules.dynamics.sysid import (
    IdentificationReport,
    IdentificationSettings,
    fit_physical_parameters,
)
from rlscale.modules.planning import ILQRPlanner, ILQRSettings, MPCController
from rlscale.modules.planning.costs import (
    cartpole_balance_cost,
    cartpole_balance_terminal_cost,
    cartpole_swing_up_cost,
    cartpole_swing_up_terminal_cost,
)

DTYPE = torch.float64
TRUE_VALUES = {
    "gravity": 9.8,
    "length": 0.5,
    "mass_ratio": 0.1 / 1.1,
    "force_per_mass": 10.0 / 1.1,
}
# The initial guess of the fit: every identifiable parameter 35-50% off.
INITIAL_GUESS = {
    "gravity": 9.8 * 1.4,
    "length": 0.5 * 0.6,
    "mass_ratio": 0.1 / 1.1 * 1.5,
    "force_per_mass": 10.0 / 1.1 * 0.65,
}


def random_states_and_commands(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """States far beyond the balance region (any angle, fast spins) and commands beyond the box."""
    rng = np.random.default_rng(seed)
    states = rng.normal(size=(count, 4)) * [1.0, 2.0, 3.0, 5.0]
    commands = rng.uniform(-1.5, 1.5, size=(count, 1))
    return states, commands


# ----------------------------------------------------------------------------- the model


def test_model_matches_the_env_step_dynamics() -> None:
    states, commands = random_states_and_commands(2000, seed=0)
    model = CartPoleModel.from_physical(**dataclasses.asdict(CARTPOLE_V1))
    predicted = model.predict(torch.tensor(states), torch.tensor(commands)).detach().numpy()
    # The env clips the command into [-1, 1] and pushes with force_mag times it.
    force = CARTPOLE_V1.force_mag * np.clip(commands[:, 0], -1.0, 1.0)
    np.testing.assert_allclose(predicted, step_dynamics(states, force), rtol=0, atol=1e-12)


def test_model_matches_other_constants() -> None:
    params = CartPoleParameters(
        gravity=3.7, masscart=2.5, masspole=0.4, length=0.8, force_mag=6.0, tau=0.01
    )
    states, commands = random_states_and_commands(500, seed=1)
    model = CartPoleModel.from_physical(**dataclasses.asdict(params))
    predicted = model.predict(torch.tensor(states), torch.tensor(commands)).detach().numpy()
    expected = step_dynamics(states, params.force_mag * np.clip(commands[:, 0], -1, 1), params)
    np.testing.assert_allclose(predicted, expected, rtol=0, atol=1e-12)


def test_model_reproduces_discrete_cartpole_v1() -> None:
    """Actions 0 / 1 of CartPole-v1 are commands -1 / +1."""
    env = gym.make("CartPole-v1")
    env.reset(seed=3)
    model = CartPoleModel()
    rng = np.random.default_rng(3)
    for _ in range(200):
        state = torch.tensor(np.array(env.unwrapped.state, dtype=np.float64)[None])
        action = int(rng.integers(2))
        *_, terminated, truncated, _ = env.step(action)
        predicted = model.predict(state, torch.tensor([[2.0 * action - 1.0]], dtype=DTYPE))
        np.testing.assert_allclose(predicted[0].detach().numpy(), env.unwrapped.state, atol=1e-12)
        if terminated or truncated:
            env.reset()
    env.close()


def test_parameters_round_trip_and_masses_are_not_identifiable() -> None:
    model = CartPoleModel.from_physical(
        gravity=9.0, masscart=1.5, masspole=0.3, length=0.7, force_mag=12.0, tau=0.02
    )
    expected = {"gravity": 9.0, "length": 0.7, "mass_ratio": 0.3 / 1.8, "force_per_mass": 12 / 1.8}
    assert model.identifiable_parameters() == pytest.approx(expected, rel=1e-12)
    physical = model.physical_parameters(force_mag=12.0)
    assert physical == pytest.approx(
        dict(gravity=9.0, masscart=1.5, masspole=0.3, length=0.7, force_mag=12.0, tau=0.02),
        rel=1e-12,
    )
    assert CartPoleParameters(**physical).masspole == pytest.approx(0.3)
    # Doubling every mass and the force changes no prediction: only the ratios are identifiable.
    doubled = CartPoleModel.from_physical(
        gravity=9.0, masscart=3.0, masspole=0.6, length=0.7, force_mag=24.0, tau=0.02
    )
    states, commands = random_states_and_commands(100, seed=2)
    states_t, commands_t = torch.tensor(states), torch.tensor(commands)
    torch.testing.assert_close(
        doubled.predict(states_t, commands_t), model.predict(states_t, commands_t)
    )
    assert doubled.physical_parameters(force_mag=24.0)["masscart"] == pytest.approx(3.0)


def test_model_is_differentiable_with_torch_func() -> None:
    """iLQR needs Jacobians (and DDP Hessians) in state and action; check them against finite
    differences, and that the model runs under ``vmap`` and follows the inputs' dtype."""
    model = CartPoleModel().requires_grad_(False)
    point = torch.tensor([0.3, -0.4, 2.0, 1.5, 0.2], dtype=DTYPE)

    def step(z: Tensor) -> Tensor:
        return model.predict(z[None, :4], z[None, 4:])[0]

    jacobian = jacrev(step)(point)
    step_size = 1e-6
    columns = [
        (step(point + step_size * e) - step(point - step_size * e)) / (2 * step_size)
        for e in torch.eye(5, dtype=DTYPE)
    ]
    torch.testing.assert_close(jacobian, torch.stack(columns, dim=-1), atol=1e-8, rtol=0)
    curvature = hessian(step)(point)
    assert curvature.shape == (4, 5, 5) and bool(torch.isfinite(curvature).all())
    torch.testing.assert_close(curvature, curvature.transpose(1, 2))

    batch = torch.randn(7, 4, dtype=DTYPE)
    commands = torch.rand(7, 1, dtype=DTYPE) * 2 - 1
    mapped = vmap(model.predict)(batch, commands)
    torch.testing.assert_close(mapped, model.predict(batch, commands))
    assert model.predict(batch.float(), commands.float()).dtype == torch.float32


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (dict(gravity=-1.0), "gravity must be a positive"),
        (dict(length=0.0), "length must be a positive"),
        (dict(mass_ratio=1.0), "mass_ratio"),
        (dict(force_per_mass=float("nan")), "force_per_mass must be a positive"),
        (dict(time_step=0.0), "time_step must be a positive"),
    ],
)
def test_bad_constants_are_value_errors(arguments: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CartPoleModel(**arguments)


def test_bad_physical_constants_are_value_errors() -> None:
    with pytest.raises(ValueError, match="masspole must be a positive"):
        CartPoleModel.from_physical(masspole=0.0)
    with pytest.raises(ValueError, match="force_mag must be a positive"):
        CartPoleModel().physical_parameters(force_mag=-10.0)


# ------------------------------------------------------------------------ system identification


def random_transitions(count: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """``count`` transitions of the real continuous CartPole under uniform random commands,
    resetting when an episode ends (so the states lie in CartPole-v1's balance region)."""
    env = gym.make(BALANCE_ID)
    env.action_space.seed(seed)
    observation, _ = env.reset(seed=seed)
    states, actions, next_states = [], [], []
    while len(states) < count:
        action = env.action_space.sample()
        next_observation, _, terminated, truncated, _ = env.step(action)
        states.append(observation)
        actions.append(action)
        next_states.append(next_observation)
        observation = next_observation
        if terminated or truncated:
            observation, _ = env.reset()
    env.close()
    return tuple(torch.tensor(np.array(x), dtype=DTYPE) for x in (states, actions, next_states))


def relative_errors(found: dict[str, float], truth: dict[str, float]) -> dict[str, float]:
    return {name: abs(found[name] - value) / abs(value) for name, value in truth.items()}


@pytest.fixture(scope="module")
def identified() -> tuple[CartPoleModel, IdentificationReport]:
    """A model fitted to 2,000 real transitions from an initial guess 35-50% off."""
    model = CartPoleModel(**INITIAL_GUESS)
    report = fit_physical_parameters(model, *random_transitions(2000, seed=0))
    return model, report


def test_sysid_recovers_the_identifiable_parameters(
    identified: tuple[CartPoleModel, IdentificationReport],
) -> None:
    model, report = identified
    assert relative_errors(INITIAL_GUESS, TRUE_VALUES)["gravity"] > 0.3
    errors = relative_errors(report.parameters, TRUE_VALUES)
    print("sysid relative errors:", errors, "iterations:", report.iterations)
    assert max(errors.values()) < 0.02, errors
    assert report.final_loss < 1e-6 * report.initial_loss
    assert report.parameters == model.identifiable_parameters()

    physical = model.physical_parameters(force_mag=10.0)
    truth = dataclasses.asdict(CARTPOLE_V1)
    mass_errors = relative_errors(physical, {k: truth[k] for k in ("masscart", "masspole")})
    print("sysid mass errors (force_mag = 10):", mass_errors)
    assert max(mass_errors.values()) < 0.02, mass_errors


def test_sysid_with_adam_and_a_generic_module() -> None:
    """The fit works on any module with parameters and reports them by name without
    ``identifiable_parameters``; Adam gets there too."""

    class Spring(nn.Module):
        """``x' = x + dt v``, ``v' = v - dt k x + dt u`` with a learnable stiffness ``k``."""

        def __init__(self, stiffness: float):
            super().__init__()
            self.stiffness = nn.Parameter(torch.tensor(stiffness, dtype=DTYPE))

        def predict(self, state: Tensor, action: Tensor) -> Tensor:
            x, v = state.unbind(-1)
            return torch.stack([x + 0.1 * v, v - 0.1 * self.stiffness * x + 0.1 * action[:, 0]], -1)

    generator = torch.Generator().manual_seed(0)
    states = torch.randn(200, 2, generator=generator, dtype=DTYPE)
    actions = torch.randn(200, 1, generator=generator, dtype=DTYPE)
    next_states = Spring(3.0).predict(states, actions).detach()
    report = fit_physical_parameters(
        Spring(1.0),
        states,
        actions,
        next_states,
        settings=IdentificationSettings(optimizer="adam", learning_rate=0.05, max_iterations=2000),
    )
    assert report.parameters["stiffness"] == pytest.approx(3.0, rel=1e-3)
    assert report.iterations <= 2000


def test_fit_rejects_bad_input() -> None:
    states, actions, next_states = (torch.zeros(5, 4), torch.zeros(5, 1), torch.zeros(5, 4))
    with pytest.raises(ValueError, match="next_states must be shaped like states"):
        fit_physical_parameters(CartPoleModel(), states, actions, next_states[:, :3])
    with pytest.raises(ValueError, match="same number"):
        fit_physical_parameters(CartPoleModel(), states, actions[:3], next_states)
    with pytest.raises(ValueError, match="NaN or infinite"):
        fit_physical_parameters(CartPoleModel(), states, actions * float("nan"), next_states)
    with pytest.raises(ValueError, match="no trainable parameters"):
        fit_physical_parameters(CartPoleModel().requires_grad_(False), states, actions, next_states)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        IdentificationSettings(optimizer="sgd")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_iterations"):
        IdentificationSettings(max_iterations=0)


# ----------------------------------------------------------------------------- planning


@pytest.mark.slow
def test_ilqr_mpc_on_the_identified_model_balances_cartpole_v1(
    identified: tuple[CartPoleModel, IdentificationReport],
) -> None:
    """The discrete CartPole-v1 pushes with the sign of the planned command, for 500 steps."""
    model, _ = identified
    planner = ILQRPlanner(
        dynamics=model.requires_grad_(False),
        cost=cartpole_balance_cost,
        horizon=10,
        action_dim=1,
        terminal_cost=cartpole_balance_terminal_cost,
        action_low=-1.0,
        action_high=1.0,
        settings=ILQRSettings(max_iterations=1),
    )
    controller = MPCController(planner, cold_start_rounds=5)
    env = gym.make("CartPole-v1")
    observation, _ = env.reset(seed=0)
    start, steps, terminated, largest_angle = time.perf_counter(), 0, False, 0.0
    for steps in range(1, 501):  # noqa: B007 (steps is read after the loop)
        command = controller.act(torch.tensor(observation[None], dtype=DTYPE))
        observation, _, terminated, truncated, _ = env.step(int(float(command[0, 0]) > 0))
        largest_angle = max(largest_angle, abs(float(observation[2])))
        if terminated or truncated:
            break
    env.close()
    print(
        f"balance: {steps} steps, max |theta| {largest_angle:.3f} rad, "
        f"{time.perf_counter() - start:.1f} s"
    )
    assert steps == 500 and not terminated


@pytest.mark.slow
def test_ilqr_mpc_swings_the_continuous_cartpole_up_and_holds_it() -> None:
    """Horizon 80 (1.6 s), one iLQR iteration per step after 60 cold-start rounds, on minus
    the swing-up reward with its state part as terminal cost."""
    planner = ILQRPlanner(
        dynamics=CartPoleModel().requires_grad_(False),
        cost=cartpole_swing_up_cost,
        horizon=80,
        action_dim=1,
        terminal_cost=cartpole_swing_up_terminal_cost,
        action_low=-1.0,
        action_high=1.0,
        settings=ILQRSettings(max_iterations=1),
    )
    controller = MPCController(planner, cold_start_rounds=60)
    env = gym.make(SWING_UP_ID)
    observation, _ = env.reset(seed=0)
    start, episode_return, angles, positions = time.perf_counter(), 0.0, [], []
    for _ in range(500):
        command = controller.act(torch.tensor(observation[None], dtype=DTYPE))
        observation, reward, terminated, truncated, _ = env.step(
            command[0].numpy().astype(np.float32)
        )
        episode_return += reward
        angles.append(abs(math.remainder(float(observation[2]), 2 * math.pi)))
        positions.append(abs(float(observation[0])))
        if terminated or truncated:
            break
    env.close()
    print(
        f"swing-up: return {episode_return:.1f} over {len(angles)} steps, final 100 steps max "
        f"|theta| {max(angles[-100:]):.3f}, max |x| {max(positions):.2f}, "
        f"{time.perf_counter() - start:.1f} s"
    )
    assert len(angles) == 500 and not terminated
    assert max(angles[-100:]) < 0.3
    assert max(positions) < 2.4
    assert episode_return > 400
