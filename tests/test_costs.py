"""Observation costs for planners with learned models (no RLlib).

- every exact cost is minus the real environment's reward, step by step under random actions,
  on the observation the environment scores (before or after the step);
- for the envs that score the next observation, stage costs plus the terminal cost sum to minus
  the return up to the start's state term;
- every surrogate ranks a failing state (as the real env reaches it) worse than the upright one;
- every cost is twice differentiable (``torch.func.hessian`` on one row); the lookup names the
  supported ids when asked for another.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import Tensor
from torch.func import hessian

import rlscale.envs  # noqa: F401  (registers the rlscale/ ids)
from rlscale.modules.planning.costs import (
    OBSERVATION_COSTS,
    NoObservationCostError,
    ObservationCost,
    cartpole_balance_cost,
    observation_cost,
)

DTYPE = torch.float64
EXACT_IDS = sorted(env_id for env_id, cost in OBSERVATION_COSTS.items() if cost.exact)
SURROGATE_IDS = sorted(env_id for env_id, cost in OBSERVATION_COSTS.items() if not cost.exact)


def as_row(values: np.ndarray | float) -> Tensor:
    return torch.as_tensor(np.asarray(values, dtype=np.float64).reshape(1, -1))


def random_steps(env_id: str, steps: int, seed: int):
    """``(observation before, action, reward, observation after, episode start)`` of random
    actions in the real env, resetting when an episode ends."""
    env = gym.make(env_id)
    env.action_space.seed(seed)
    observation, _ = env.reset(seed=seed)
    start = True
    for _ in range(steps):
        action = env.action_space.sample()
        next_observation, reward, terminated, truncated, _ = env.step(action)
        yield observation, action, float(reward), next_observation, start
        start = terminated or truncated
        observation = env.reset()[0] if start else next_observation
    env.close()


def test_the_table_covers_the_issue_envs() -> None:
    assert set(EXACT_IDS) == {
        "Pendulum-v1",
        "Reacher-v5",
        "rlscale/ContinuousCartPoleSwingUp-v0",
    }
    assert set(SURROGATE_IDS) == {
        "CartPole-v1",
        "InvertedPendulum-v5",
        "rlscale/ContinuousCartPole-v0",
    }


@pytest.mark.parametrize("env_id", sorted(OBSERVATION_COSTS))
def test_cost_shapes_match_the_env_spaces(env_id: str) -> None:
    cost = observation_cost(env_id)
    env = gym.make(env_id)
    assert env.observation_space.shape == (cost.observation_dim,)
    if isinstance(env.action_space, gym.spaces.Box):
        assert env.action_space.shape == (cost.action_dim,)
    else:  # CartPole-v1: one force command in [-1, 1] stands for actions 0 / 1
        assert env.action_space.n == 2 and cost.action_dim == 1
    env.close()


@pytest.mark.parametrize("env_id", EXACT_IDS)
def test_exact_costs_are_minus_the_reward(env_id: str) -> None:
    cost = observation_cost(env_id)
    compared = 0
    for before, action, reward, after, _ in random_steps(env_id, steps=300, seed=0):
        scored = after if cost.reward_on_next_observation else before
        value = float(cost.stage(as_row(scored), as_row(action))[0])
        assert value == pytest.approx(-reward, abs=1e-5), (env_id, scored, action)
        compared += 1
    assert compared == 300


@pytest.mark.parametrize(
    "env_id", [i for i in EXACT_IDS if OBSERVATION_COSTS[i].reward_on_next_observation]
)
def test_stage_and_terminal_costs_sum_to_minus_the_return(env_id: str) -> None:
    """A planner charges ``stage(obs_t, a_t)`` for ``t < H`` and ``terminal(obs_H)``; the env pays
    ``r(obs_{t+1}, a_t)``. The two differ by ``terminal(obs_0)``, which no action changes."""
    cost = observation_cost(env_id)
    assert cost.terminal is not None
    steps = list(random_steps(env_id, steps=40, seed=1))
    assert not any(start for *_, start in steps[1:]), "pick a seed whose episode lasts 40 steps"
    observations = np.stack([steps[0][0]] + [after for _, _, _, after, _ in steps])
    actions = np.stack([action for _, action, *_ in steps])
    planned = float(
        cost.stage(torch.as_tensor(observations[:-1], dtype=DTYPE), torch.as_tensor(actions)).sum()
        + cost.terminal(as_row(observations[-1]))[0]
        - cost.terminal(as_row(observations[0]))[0]
    )
    episode_return = sum(reward for _, _, reward, _, _ in steps)
    assert planned == pytest.approx(-episode_return, abs=1e-4)


def upright_observation(env_id: str) -> np.ndarray:
    return np.zeros(OBSERVATION_COSTS[env_id].observation_dim)


@pytest.mark.parametrize("env_id", SURROGATE_IDS)
def test_surrogates_rank_failing_states_worse_than_upright(env_id: str) -> None:
    """Every observation on which the real env terminated costs more than the upright, centred,
    resting one, and more than every observation the env started from."""
    cost = observation_cost(env_id)
    action = as_row(np.zeros(cost.action_dim))

    def value(observation: np.ndarray) -> float:
        return float(cost.stage(as_row(observation), action)[0])

    upright = value(upright_observation(env_id))
    failing, starting = [], []
    env = gym.make(env_id)
    for seed in range(10):
        observation, _ = env.reset(seed=seed)
        env.action_space.seed(seed)
        starting.append(value(observation))
        terminated = False
        while not terminated:
            observation, _, terminated, truncated, _ = env.step(env.action_space.sample())
            assert not truncated, "random actions should fail long before the time limit"
        failing.append(value(observation))
    env.close()
    assert min(failing) > upright
    assert min(failing) > max(starting)


def test_cartpole_surrogate_charges_the_track_ends() -> None:
    """CartPole-v1 also fails off the track: a centred cart costs less than one past an end."""
    centred = as_row([0.0, 0.0, 0.0, 0.0])
    off_track = as_row([2.5, 0.0, 0.0, 0.0])
    command = as_row([0.0])
    assert float(cartpole_balance_cost(off_track, command)) > float(
        cartpole_balance_cost(centred, command)
    )


@pytest.mark.parametrize("env_id", sorted(OBSERVATION_COSTS))
def test_costs_are_twice_differentiable(env_id: str) -> None:
    cost = observation_cost(env_id)
    env = gym.make(env_id)
    observation, _ = env.reset(seed=0)
    env.close()
    n, m = cost.observation_dim, cost.action_dim
    point = torch.cat([as_row(observation)[0], torch.full((m,), 0.3, dtype=DTYPE)])

    def stage(z: Tensor) -> Tensor:
        return cost.stage(z[None, :n], z[None, n:])[0]

    curvature = hessian(stage)(point)
    assert curvature.shape == (n + m, n + m)
    assert bool(torch.isfinite(curvature).all())
    torch.testing.assert_close(curvature, curvature.T)
    # The action's curvature is positive: the control term is there for every task.
    assert bool((torch.linalg.eigvalsh(curvature[n:, n:]) > 0).all())
    if cost.terminal is not None:
        terminal_curvature = hessian(lambda x: cost.terminal(x[None])[0])(point[:n])
        assert bool(torch.isfinite(terminal_curvature).all())
    # Batched over rows, row by row.
    rows = torch.stack([point, point * 0.5])
    torch.testing.assert_close(
        cost.stage(rows[:, :n], rows[:, n:]), torch.stack([stage(point), stage(point * 0.5)])
    )


def test_unknown_ids_name_the_supported_ones() -> None:
    with pytest.raises(NoObservationCostError, match="costs exist for: CartPole-v1") as caught:
        observation_cost("CartPole-v0")
    assert isinstance(caught.value, ValueError)
    assert "Did you mean: CartPole-v1" in str(caught.value)
    assert isinstance(observation_cost("Reacher-v5"), ObservationCost)


def test_wrong_observation_width_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="CartPole observation has 4 entries"):
        cartpole_balance_cost(torch.zeros(2, 3), torch.zeros(2, 1))
    with pytest.raises(ValueError, match="Reacher-v5 observation has 10 entries"):
        observation_cost("Reacher-v5").stage(torch.zeros(2, 4), torch.zeros(2, 2))
