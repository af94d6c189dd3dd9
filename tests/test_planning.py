"""The iLQR/DDP planner, receding-horizon control and the analytic Pendulum model (no RLlib).

- on a linear-quadratic problem one iLQR iteration is the finite-horizon LQR solution of the
  backward Riccati recursion (computed here in closed form), and DDP equals iLQR;
- DDP's backward pass is the second-order expansion of the Q function, checked against
  ``torch.func.hessian`` of the composed cost; the dynamics Hessians match finite differences;
- box bounds hold; bad input raises ``ValueError`` with a message;
- the Pendulum model reproduces Gymnasium's Pendulum-v1 and its cost is minus the reward;
- iLQR-MPC with the analytic model swings the real Pendulum-v1 up and holds it.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import Tensor
from torch.distributions import Normal
from torch.func import grad, hessian

from rlscale.modules.dynamics import (
    DynamicsModel,
    PendulumModel,
    angle_normalize,
    pendulum_cost,
    pendulum_state_from_observation,
    pendulum_terminal_cost,
)
from rlscale.modules.planning import (
    ILQRPlanner,
    ILQRSettings,
    MPCController,
    PlanResult,
    plan,
)
from rlscale.modules.planning.derivatives import trajectory_derivatives
from rlscale.modules.planning.ilqr import backward_pass
from rlscale.modules.planning.rollout import rollout

DTYPE = torch.float64


# ----------------------------------------------------------------------------- test systems


class LinearModel:
    """``x' = A x + B u``."""

    def __init__(self, a: Tensor, b: Tensor):
        self.a, self.b = a, b

    def predict(self, state: Tensor, action: Tensor) -> Tensor:
        return state @ self.a.T + action @ self.b.T


class QuadraticCost:
    """``x^T Q x + u^T R u`` per row, and ``x^T Q_f x`` at the end."""

    def __init__(self, q: Tensor, r: Tensor, q_final: Tensor):
        self.q, self.r, self.q_final = q, r, q_final

    def __call__(self, state: Tensor, action: Tensor) -> Tensor:
        return ((state @ self.q) * state).sum(-1) + ((action @ self.r) * action).sum(-1)

    def terminal(self, state: Tensor) -> Tensor:
        return ((state @ self.q_final) * state).sum(-1)


class CurvedModel:
    """A small nonlinear system whose ``f_xx``, ``f_uu`` and ``f_ux`` are all non-zero."""

    def predict(self, state: Tensor, action: Tensor) -> Tensor:
        position, velocity, force = state[:, 0], state[:, 1], action[:, 0]
        next_position = position + 0.1 * velocity
        next_velocity = (
            velocity - 0.2 * torch.sin(position) + 0.3 * torch.sin(force) + 0.1 * position * force
        )
        return torch.stack([next_position, next_velocity], dim=-1)


def curved_cost(state: Tensor, action: Tensor) -> Tensor:
    return 0.5 * (state**2).sum(-1) + 0.1 * (action**2).sum(-1)


def curved_terminal_cost(state: Tensor) -> Tensor:
    return (state**2).sum(-1) + state[:, 0] ** 4


def lq_problem(action_dim: int) -> tuple[LinearModel, QuadraticCost]:
    generator = torch.Generator().manual_seed(3)
    state_dim = 3
    # Slightly unstable dynamics, so the optimal gains matter.
    a = torch.eye(state_dim, dtype=DTYPE) + 0.1 * torch.randn(
        state_dim, state_dim, generator=generator, dtype=DTYPE
    )
    b = torch.randn(state_dim, action_dim, generator=generator, dtype=DTYPE)
    q = torch.diag(torch.tensor([1.0, 0.5, 2.0], dtype=DTYPE))
    r = 0.1 * torch.eye(action_dim, dtype=DTYPE)
    q_final = 5.0 * torch.eye(state_dim, dtype=DTYPE)
    return LinearModel(a, b), QuadraticCost(q, r, q_final)


def lqr_actions(model: LinearModel, cost: QuadraticCost, starts: Tensor, horizon: int) -> Tensor:
    """Finite-horizon LQR by the backward Riccati recursion, rolled out from ``starts``.

    For stage cost ``x'Qx + u'Ru`` and terminal ``x'Q_f x``: ``P_H = Q_f``,
    ``K_t = (R + B'P_{t+1}B)^-1 B'P_{t+1}A``, ``P_t = Q + A'P_{t+1}(A - B K_t)``,
    ``u_t = -K_t x_t``.
    """
    a, b = model.a, model.b
    p = cost.q_final
    gains = []
    for _ in range(horizon):
        k = torch.linalg.solve(cost.r + b.T @ p @ b, b.T @ p @ a)
        p = cost.q + a.T @ p @ (a - b @ k)
        gains.append(k)
    gains.reverse()
    state, actions = starts, []
    for k in gains:
        action = -state @ k.T
        actions.append(action)
        state = model.predict(state, action)
    return torch.stack(actions, dim=1)


def lq_starts() -> Tensor:
    return torch.tensor(
        [[1.0, -0.5, 0.3], [0.0, 2.0, -1.0], [-1.5, 0.2, 0.8], [0.4, 0.4, 0.4], [3.0, -2.0, 1.0]],
        dtype=DTYPE,
    )


# ----------------------------------------------------------------------------- LQ checks


@pytest.mark.parametrize("action_dim", [1, 2])
def test_one_ilqr_iteration_is_the_lqr_solution(action_dim: int) -> None:
    model, cost = lq_problem(action_dim)
    starts, horizon = lq_starts(), 15
    result = plan(
        starts,
        model,
        cost,
        horizon,
        terminal_cost=cost.terminal,
        action_dim=action_dim,
        settings=ILQRSettings(max_iterations=1),
    )
    assert result.iterations == 1
    expected = lqr_actions(model, cost, starts, horizon)
    torch.testing.assert_close(result.actions, expected, atol=1e-5, rtol=0)


def test_ddp_equals_ilqr_on_a_linear_system() -> None:
    model, cost = lq_problem(2)
    starts = lq_starts()
    results = {
        method: plan(
            starts, model, cost, 12, terminal_cost=cost.terminal, action_dim=2, method=method
        )
        for method in ("ilqr", "ddp")
    }
    torch.testing.assert_close(results["ddp"].actions, results["ilqr"].actions, atol=1e-9, rtol=0)
    torch.testing.assert_close(results["ddp"].cost, results["ilqr"].cost, atol=1e-9, rtol=0)
    assert bool(results["ilqr"].converged.all())


# ----------------------------------------------------------------------------- DDP's second order


def test_dynamics_hessians_match_finite_differences() -> None:
    model = PendulumModel()
    # Small speeds: away from the speed clip, where the model is smooth.
    states = torch.tensor([[0.3, 0.5], [2.5, -1.0], [-1.2, 0.1]], dtype=DTYPE)
    actions = torch.tensor([[[0.5]], [[-1.0]], [[1.5]]], dtype=DTYPE)
    trajectory = rollout(states, actions, model, pendulum_cost, pendulum_terminal_cost)
    derivatives = trajectory_derivatives(
        trajectory, model, pendulum_cost, pendulum_terminal_cost, second_order_dynamics=True
    )
    assert derivatives.f_zz is not None
    points = torch.cat([states, actions[:, 0]], dim=-1)
    step = 1e-5
    for j in range(points.shape[-1]):
        shift = torch.zeros_like(points)
        shift[:, j] = step
        jacobians = [
            trajectory_derivatives(
                rollout(p[:, :2], p[:, None, 2:], model, pendulum_cost, None),
                model,
                pendulum_cost,
                None,
                second_order_dynamics=False,
            ).f_z[:, 0]
            for p in (points + shift, points - shift)
        ]
        finite_difference = (jacobians[0] - jacobians[1]) / (2 * step)
        torch.testing.assert_close(
            derivatives.f_zz[:, 0, :, :, j], finite_difference, atol=1e-7, rtol=0
        )
    # Pendulum's only curvature: d2 theta_dot' / d theta2 = -(3 g / 2 l) sin(theta) dt.
    expected = -1.5 * model.gravity / model.length * torch.sin(states[:, 0]) * model.time_step
    torch.testing.assert_close(derivatives.f_xx[:, 0, 1, 0, 0], expected)


def _quadratic_q_gains(
    q_function, point: Tensor, state_dim: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Gains ``k, K`` from the exact second-order expansion of ``q_function`` at ``point``, and
    the value's gradient and Hessian it leaves behind (``V_x``, ``V_xx``)."""
    gradient, curvature = grad(q_function)(point), hessian(q_function)(point)
    x, u = slice(0, state_dim), slice(state_dim, None)
    q_uu_inverse = torch.linalg.inv(curvature[u, u])
    k = -q_uu_inverse @ gradient[u]
    big_k = -q_uu_inverse @ curvature[u, x]
    value_x = gradient[x] + big_k.T @ gradient[u]
    value_xx = curvature[x, x] + curvature[x, u] @ big_k
    return k, big_k, value_x, value_xx


def test_ddp_backward_pass_is_the_second_order_expansion_of_q() -> None:
    """DDP (Mayne 1966) expands Q(x, u) = l(x, u) + V'(f(x, u)) to second order. Here that is done
    by ``torch.func.hessian`` of the composed functions, stage by stage from the end, and the
    planner's DDP gains must match; iLQR's, which drop the dynamics' curvature, must not."""
    model, state_dim = CurvedModel(), 2
    start = torch.tensor([[0.7, -0.4]], dtype=DTYPE)
    actions = torch.tensor([[[0.3], [-0.2]]], dtype=DTYPE)
    trajectory = rollout(start, actions, model, curved_cost, curved_terminal_cost)
    states = trajectory.states[0]

    def q_function_of(value_next):
        """``Q(z) = l(z) + V'(f(z))`` as a function of one ``z = [x, u]``."""

        def q_function(point: Tensor) -> Tensor:
            x, u = point[None, :state_dim], point[None, state_dim:]
            return curved_cost(x, u)[0] + value_next(model.predict(x, u)[0])

        return q_function

    def quadratic_value(value_x: Tensor, value_xx: Tensor, center: Tensor):
        def value(x: Tensor) -> Tensor:
            offset = x - center
            return value_x @ offset + 0.5 * offset @ value_xx @ offset

        return value

    def terminal_value(x: Tensor) -> Tensor:
        return curved_terminal_cost(x[None])[0]

    expected_k, expected_big_k = [], []
    value_next = terminal_value
    for t in reversed(range(2)):
        point = torch.cat([states[t], actions[0, t]])
        k, big_k, value_x, value_xx = _quadratic_q_gains(q_function_of(value_next), point, 2)
        expected_k.insert(0, k)
        expected_big_k.insert(0, big_k)
        value_next = quadratic_value(value_x, value_xx, states[t])

    gains = {}
    for second_order in (True, False):
        derivatives = trajectory_derivatives(
            trajectory, model, curved_cost, curved_terminal_cost, second_order
        )
        gains[second_order] = backward_pass(
            derivatives, actions, torch.zeros(1, dtype=DTYPE), None, None
        )
    ddp, ilqr = gains[True], gains[False]
    assert not bool(ddp.failed.any())
    torch.testing.assert_close(ddp.feedforward[0], torch.stack(expected_k))
    torch.testing.assert_close(ddp.feedback[0], torch.stack(expected_big_k))
    assert (ilqr.feedforward - ddp.feedforward).abs().max() > 1e-3
    assert (ilqr.feedback - ddp.feedback).abs().max() > 1e-3


@pytest.mark.parametrize("method", ["ilqr", "ddp"])
def test_both_methods_lower_the_pendulum_cost(method: str) -> None:
    starts = torch.tensor([[3.0, 0.0], [1.0, -0.5], [-2.5, 0.3]], dtype=DTYPE)
    horizon = 30
    initial = rollout(
        starts,
        torch.zeros(3, horizon, 1, dtype=DTYPE),
        PendulumModel(),
        pendulum_cost,
        pendulum_terminal_cost,
    )
    result = plan(
        starts,
        PendulumModel(),
        pendulum_cost,
        horizon,
        terminal_cost=pendulum_terminal_cost,
        action_dim=1,
        action_low=-2.0,
        action_high=2.0,
        method=method,
        settings=ILQRSettings(max_iterations=10),
    )
    assert bool((result.cost < 0.95 * initial.cost).all()), (result.cost, initial.cost)
    # The returned trajectory is the model's rollout of the returned actions.
    check = rollout(starts, result.actions, PendulumModel(), pendulum_cost, pendulum_terminal_cost)
    torch.testing.assert_close(check.states, result.states)
    torch.testing.assert_close(check.cost, result.cost)


# ----------------------------------------------------------------------------- bounds, warm start


def test_actions_stay_within_the_bounds() -> None:
    starts = torch.tensor([[3.1, 0.0], [0.5, 4.0], [-2.0, -6.0], [0.0, 0.0]], dtype=DTYPE)
    result = plan(
        starts,
        PendulumModel(),
        pendulum_cost,
        25,
        terminal_cost=pendulum_terminal_cost,
        initial_actions=torch.full((4, 25, 1), 5.0, dtype=DTYPE),  # clamped on entry
        action_low=-2.0,
        action_high=2.0,
        settings=ILQRSettings(max_iterations=8),
    )
    assert float(result.actions.min()) >= -2.0
    assert float(result.actions.max()) <= 2.0
    # Swinging up needs the full torque somewhere: the bounds are active, not idle.
    assert float(result.actions.abs().max()) == pytest.approx(2.0)


def test_bounds_on_several_action_dims_hold_and_lower_the_cost() -> None:
    model, cost = lq_problem(2)
    starts = lq_starts()
    low = torch.tensor([-0.3, -1.0], dtype=DTYPE)
    high = torch.tensor([0.3, 0.2], dtype=DTYPE)
    free = plan(starts, model, cost, 10, terminal_cost=cost.terminal, action_dim=2)
    bounded = plan(
        starts, model, cost, 10, terminal_cost=cost.terminal, action_low=low, action_high=high
    )
    assert bool((bounded.actions >= low).all()) and bool((bounded.actions <= high).all())
    zero = rollout(starts, torch.zeros_like(bounded.actions), model, cost, cost.terminal)
    assert bool((bounded.cost < zero.cost).all())
    assert bool((bounded.cost >= free.cost - 1e-9).all())


def test_a_converged_plan_warm_starts_in_one_iteration() -> None:
    starts = torch.tensor([[1.0, -0.5], [0.2, 0.1]], dtype=DTYPE)
    kwargs = dict(
        terminal_cost=pendulum_terminal_cost, action_dim=1, action_low=-2.0, action_high=2.0
    )
    first = plan(starts, PendulumModel(), pendulum_cost, 20, **kwargs)
    assert bool(first.converged.all())
    again = plan(
        starts, PendulumModel(), pendulum_cost, 20, initial_actions=first.actions, **kwargs
    )
    assert again.iterations == 1
    torch.testing.assert_close(again.actions, first.actions, atol=1e-6, rtol=0)


def test_a_distribution_model_is_planned_through_its_mean() -> None:
    class NoisyPendulum:
        def predict(self, state: Tensor, action: Tensor) -> Normal:
            mean = PendulumModel().predict(state, action)
            return Normal(mean, torch.full_like(mean, 0.1), validate_args=False)

    assert isinstance(NoisyPendulum(), DynamicsModel)
    starts = torch.tensor([[1.0, -0.5]], dtype=DTYPE)
    kwargs = dict(
        terminal_cost=pendulum_terminal_cost, action_dim=1, action_low=-2.0, action_high=2.0
    )
    noisy = plan(starts, NoisyPendulum(), pendulum_cost, 15, **kwargs)
    exact = plan(starts, PendulumModel(), pendulum_cost, 15, **kwargs)
    torch.testing.assert_close(noisy.actions, exact.actions)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(state=torch.zeros(2, dtype=DTYPE)), "state must be \\[batch, state_dim\\]"),
        (dict(state=torch.zeros(1, 2, dtype=torch.long)), "floating-point"),
        (dict(horizon=0), "horizon must be a positive integer"),
        (dict(horizon=2.5), "horizon must be a positive integer"),
        (dict(action_dim=None), "give initial_actions, action_dim"),
        (dict(initial_actions=torch.zeros(1, 4, 1, dtype=DTYPE)), "initial_actions must be"),
        (dict(action_low=2.0, action_high=-2.0), "action_low must not exceed action_high"),
        (dict(action_low=torch.zeros(3, dtype=DTYPE)), "action_low must be a scalar or \\[1\\]"),
        (dict(method="newton"), "method must be one of"),
        (
            dict(
                dynamics=LinearModel(torch.ones(3, 2, dtype=DTYPE), torch.ones(3, 1, dtype=DTYPE))
            ),
            "dynamics.predict must",
        ),
        (dict(cost=lambda x, u: x), "cost must return one value per row"),
    ],
)
def test_bad_input_is_a_value_error(change: dict, message: str) -> None:
    arguments = dict(
        state=torch.zeros(1, 2, dtype=DTYPE),
        dynamics=PendulumModel(),
        cost=pendulum_cost,
        horizon=5,
        action_dim=1,
    )
    arguments.update(change)
    with pytest.raises(ValueError, match=message):
        plan(**arguments)


def test_bad_settings_are_value_errors() -> None:
    with pytest.raises(ValueError, match="max_iterations"):
        ILQRSettings(max_iterations=0)
    with pytest.raises(ValueError, match="decreasing"):
        ILQRSettings(step_sizes=(0.5, 1.0))


# ----------------------------------------------------------------------------- Pendulum model


def test_pendulum_model_reproduces_gymnasium() -> None:
    env = gym.make("Pendulum-v1")
    env.reset(seed=0)
    model = PendulumModel()
    rng = np.random.default_rng(0)
    for _ in range(60):
        state = np.array(env.unwrapped.state, dtype=np.float64)
        torque = rng.uniform(-3.0, 3.0, size=1)  # beyond the bounds: the model clips too
        _, reward, *_ = env.step(torque.astype(np.float32))
        state_tensor = torch.tensor(state[None], dtype=DTYPE)
        action_tensor = torch.tensor(torque[None], dtype=DTYPE)
        predicted = model.predict(state_tensor, action_tensor)[0].numpy()
        np.testing.assert_allclose(predicted, env.unwrapped.state, atol=1e-5)
        cost = pendulum_cost(state_tensor, action_tensor)
        assert float(cost) == pytest.approx(-reward, abs=1e-5)
    env.close()


def test_observations_convert_to_states() -> None:
    theta = torch.tensor([0.0, 1.0, -2.0, 3.1], dtype=DTYPE)
    observation = torch.stack([theta.cos(), theta.sin(), torch.ones_like(theta)], dim=-1)
    torch.testing.assert_close(
        pendulum_state_from_observation(observation),
        torch.stack([theta, torch.ones_like(theta)], -1),
    )
    torch.testing.assert_close(angle_normalize(theta + 4 * torch.pi), theta)
    with pytest.raises(ValueError, match="3 entries"):
        pendulum_state_from_observation(torch.zeros(2, 2))


# ----------------------------------------------------------------------------- MPC


def _mpc_controller(method: str = "ilqr") -> MPCController:
    planner = ILQRPlanner(
        dynamics=PendulumModel(),
        cost=pendulum_cost,
        horizon=30,
        action_dim=1,
        terminal_cost=pendulum_terminal_cost,
        action_low=-2.0,
        action_high=2.0,
        method=method,
        # Warm-started from the last plan, one iteration per step is enough (mpc's default); the
        # first step of an episode converges over its cold-start rounds.
        settings=ILQRSettings(max_iterations=1),
    )
    return MPCController(planner, cold_start_rounds=10)


def run_pendulum_episodes(controller: MPCController, seeds: list[int]) -> np.ndarray:
    """Returns of one 200-step Pendulum-v1 episode per seed, controlled as one batch."""
    envs = [gym.make("Pendulum-v1") for _ in seeds]
    observations = np.stack(
        [env.reset(seed=seed)[0] for env, seed in zip(envs, seeds, strict=True)]
    )
    returns = np.zeros(len(seeds))
    controller.reset()
    for _ in range(200):
        states = pendulum_state_from_observation(torch.as_tensor(observations, dtype=DTYPE))
        actions = controller.act(states).numpy().astype(np.float32)
        assert np.all(np.abs(actions) <= 2.0)
        steps = [env.step(action) for env, action in zip(envs, actions, strict=True)]
        observations = np.stack([step[0] for step in steps])
        returns += [step[1] for step in steps]
    for env in envs:
        env.close()
    return returns


def test_ilqr_mpc_swings_the_pendulum_up_and_holds_it() -> None:
    """The issue's check: mean return >= -200 over 10 episodes (seeds 0-9), horizon 30."""
    returns = run_pendulum_episodes(_mpc_controller(), seeds=list(range(10)))
    assert returns.mean() >= -200, returns


def test_mpc_keeps_the_shifted_plan() -> None:
    controller = _mpc_controller()
    states = torch.tensor([[2.0, 0.0]], dtype=DTYPE)
    first_action = controller.act(states)
    plan_after_first = controller.last_result
    assert isinstance(plan_after_first, PlanResult)
    torch.testing.assert_close(first_action, plan_after_first.actions[:, 0])
    shifted = controller.shifted_plan(batch=1)
    assert shifted is not None
    torch.testing.assert_close(shifted[:, :-1], plan_after_first.actions[:, 1:])
    torch.testing.assert_close(shifted[:, -1], plan_after_first.actions[:, -1])
    assert controller.shifted_plan(batch=2) is None
    controller.reset()
    assert controller.shifted_plan(batch=1) is None


def test_mpc_falls_back_to_the_previous_plan_on_nan() -> None:
    class DivergingPlanner:
        def __init__(self) -> None:
            self.calls = 0

        def __call__(self, state: Tensor, initial_actions: Tensor | None = None) -> PlanResult:
            self.calls += 1
            actions = torch.full((state.shape[0], 4, 1), 0.5, dtype=DTYPE)
            if self.calls > 1:
                actions = torch.full_like(actions, float("nan"))
            cost = actions.sum(dim=(1, 2))
            states = torch.zeros(state.shape[0], 5, 2, dtype=DTYPE)
            return PlanResult(
                actions, states, cost, 1, torch.ones(state.shape[0], dtype=torch.bool)
            )

    controller = MPCController(DivergingPlanner())
    states = torch.zeros(1, 2, dtype=DTYPE)
    assert float(controller.act(states)) == 0.5
    with pytest.warns(RuntimeWarning, match="non-finite plan"):
        action = controller.act(states)
    assert float(action) == 0.5
