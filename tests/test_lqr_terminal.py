"""The LQR terminal cost: the Riccati solution of a known system, recomputed as the model
changes, and a fallback where the linearized model cannot be stabilized."""

from __future__ import annotations

import math

import gymnasium as gym
import pytest
import torch
from torch import nn
from torch.distributions import Normal

from rlscale.modules.planning.lqr_terminal import LQRTerminalCost, lqr_cost_to_go


class ScalarLinearModel(nn.Module):
    """``x' = a x + b u``, with ``a`` and ``b`` as parameters (as a learned model's weights)."""

    def __init__(self, a: float, b: float):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a, dtype=torch.float64))
        self.b = nn.Parameter(torch.tensor(b, dtype=torch.float64))

    def predict(self, state, action):
        return Normal(self.a * state + self.b * action, torch.full_like(state, 1e-3))


def quadratic_cost(state, action):
    """``1/2 (x^2 + u^2)``: Hessian blocks Q = R = 1."""
    return 0.5 * (state[..., 0] ** 2 + action[..., 0] ** 2)


def scalar_riccati_solution(a: float, b: float) -> float:
    """The positive root of ``p = 1 + a^2 p - a^2 b^2 p^2 / (1 + b^2 p)`` (Q = R = 1), i.e. of
    ``b^2 p^2 + (1 - a^2 - b^2) p - 1 = 0``, solved by hand."""
    linear = 1 - a**2 - b**2
    return (-linear + math.sqrt(linear**2 + 4 * b**2)) / (2 * b**2)


def test_cost_to_go_of_an_unstable_scalar_system_solves_the_riccati_equation():
    model = ScalarLinearModel(1.1, 1.0)
    solution = lqr_cost_to_go(
        model, quadratic_cost, torch.zeros(1, dtype=torch.float64), torch.zeros(1)
    )
    assert solution.shape == (1, 1)
    assert solution.item() == pytest.approx(scalar_riccati_solution(1.1, 1.0), rel=1e-9)
    assert solution.item() == pytest.approx(1.77377, abs=1e-5)  # (1.21 + sqrt(5.4641)) / 2


def test_terminal_cost_is_half_the_quadratic_form_around_the_balance_point():
    model = ScalarLinearModel(1.1, 1.0)
    terminal = LQRTerminalCost(model, quadratic_cost, [0.5], [0.0], fallback=None)
    states = torch.tensor([[0.5], [1.5], [-0.5]], dtype=torch.float64)
    p = scalar_riccati_solution(1.1, 1.0)
    expected = torch.tensor([0.0, 0.5 * p, 0.5 * p], dtype=torch.float64)
    torch.testing.assert_close(terminal(states), expected)


def test_cost_to_go_is_recomputed_when_the_model_changes():
    model = ScalarLinearModel(1.1, 1.0)
    terminal = LQRTerminalCost(model, quadratic_cost, [0.0], [0.0], fallback=None)
    state = torch.ones(1, 1, dtype=torch.float64)
    before = terminal(state).item()
    with torch.no_grad():  # an in-place update, as an optimizer step makes
        model.a.fill_(1.3)
    after_step = terminal(state).item()
    assert after_step == pytest.approx(0.5 * scalar_riccati_solution(1.3, 1.0), rel=1e-9)
    assert after_step > before
    model.load_state_dict(  # a weight sync
        {"a": torch.tensor(0.9, dtype=torch.float64), "b": torch.tensor(2.0, dtype=torch.float64)}
    )
    assert terminal(state).item() == pytest.approx(
        0.5 * scalar_riccati_solution(0.9, 2.0), rel=1e-9
    )


def test_an_uncontrollable_model_falls_back_to_the_given_terminal_cost_with_a_warning():
    model = ScalarLinearModel(1.1, 0.0)  # unstable, and the action does nothing
    terminal = LQRTerminalCost(
        model, quadratic_cost, [0.0], [0.0], fallback=lambda state: 7.0 * state[..., 0]
    )
    with pytest.warns(UserWarning, match="no LQR cost-to-go"):
        value = terminal(torch.ones(2, 1, dtype=torch.float64))
    torch.testing.assert_close(value, torch.full((2,), 7.0, dtype=torch.float64))
    assert terminal.cost_to_go is None
    with torch.no_grad():
        model.b.fill_(1.0)  # once the model changes, the LQR cost is tried again
    assert terminal(torch.ones(1, 1, dtype=torch.float64)).item() == pytest.approx(
        0.5 * scalar_riccati_solution(1.1, 1.0), rel=1e-9
    )


def test_pets_plans_inverted_pendulum_with_the_lqr_terminal_cost():
    """InvertedPendulum-v5's cost declares its balance point, so the PETS module's planner ends
    its plans with the ensemble's LQR cost-to-go; Pendulum's swing-up keeps its own."""
    from rlscale.algorithms.model_based import PETSConfig

    def planner_terminal_cost(env_id: str):
        config = PETSConfig().environment(env_id).training(ensemble={"members": 2})
        module = config.get_rl_module_spec(env=gym.make(env_id)).build()
        return module, module.planner.rollout.terminal_cost

    module, terminal = planner_terminal_cost("InvertedPendulum-v5")
    assert isinstance(terminal, LQRTerminalCost)
    assert terminal.dynamics is module.dynamics
    _, pendulum_terminal = planner_terminal_cost("Pendulum-v1")
    assert not isinstance(pendulum_terminal, LQRTerminalCost)
