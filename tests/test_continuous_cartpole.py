"""rlscale.envs.continuous_cartpole: CartPole-v1's physics with a continuous force.

The proof of "same physics": driven with actions +1 / -1, the balance env's states, observations,
rewards and episode ends equal CartPole-v1's under actions 1 / 0, bit for bit. No Ray here.
"""

from __future__ import annotations

import math
import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from rlscale.envs import list_envs, make_env, resolve_env
from rlscale.envs.continuous_cartpole import (
    BALANCE_ID,
    CARTPOLE_V1,
    MAX_EPISODE_STEPS,
    SWING_UP_ID,
    X_THRESHOLD,
    CartPoleParameters,
    ContinuousCartPoleEnv,
    ContinuousCartPoleSwingUpEnv,
    InvalidActionError,
    balance_failed,
    step_dynamics,
    swing_up_reward,
)
from rlscale.errors import RlscaleError

ENV_CLASSES = [ContinuousCartPoleEnv, ContinuousCartPoleSwingUpEnv]
ENV_IDS = [BALANCE_ID, SWING_UP_ID]
INFINITE_BOUND_WARNING = "A Box observation space m"
"""check_env's warning about the unbounded velocities (CartPole-v1 itself draws it)."""


def _push(value: float) -> np.ndarray:
    return np.array([value], dtype=np.float32)


def _balancing_action(state: np.ndarray) -> int:
    """A bang-bang controller that keeps CartPole-v1 up for its 500 steps: 1 pushes right."""
    x, x_dot, theta, theta_dot = state
    return int(theta + 0.5 * theta_dot + 0.05 * x + 0.1 * x_dot > 0)


# --- Gymnasium's env checker -------------------------------------------------------------------


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_env_checker_passes_on_the_registered_env(env_id):
    env = gym.make(env_id, render_mode="rgb_array")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)  # also makes the env in every declared render mode
    others = [str(w.message) for w in caught if INFINITE_BOUND_WARNING not in str(w.message)]
    assert others == []


@pytest.mark.parametrize("env_class", ENV_CLASSES)
def test_env_checker_passes_on_the_bare_class(env_class):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=f".*{INFINITE_BOUND_WARNING}")
        warnings.filterwarnings("ignore", message=".*not having a spec")  # no spec: no make()
        check_env(env_class())


# --- same physics as CartPole-v1 ---------------------------------------------------------------


def test_balance_matches_cartpole_v1_bit_for_bit_over_a_full_episode():
    discrete, continuous = gym.make("CartPole-v1"), gym.make(BALANCE_ID)
    obs_d, _ = discrete.reset(seed=7)
    obs_c, _ = continuous.reset(seed=7)
    assert np.array_equal(obs_d, obs_c)

    for step in range(1, MAX_EPISODE_STEPS + 1):
        action = _balancing_action(discrete.unwrapped.state)
        result_d = discrete.step(action)
        result_c = continuous.step(_push(1.0 if action == 1 else -1.0))
        assert np.array_equal(result_d[0], result_c[0]), step
        assert np.array_equal(discrete.unwrapped.state, continuous.unwrapped.state), step
        assert result_d[1:4] == result_c[1:4], step
        if result_d[2] or result_d[3]:
            break
    assert step == MAX_EPISODE_STEPS  # truncated by the registered TimeLimit, same as CartPole-v1
    assert result_c[3] and not result_c[2]


def test_balance_matches_cartpole_v1_under_random_pushes_until_termination():
    discrete, continuous = gym.make("CartPole-v1"), gym.make(BALANCE_ID)
    rng = np.random.default_rng(0)
    steps = 0
    for seed in range(20):
        obs_d, _ = discrete.reset(seed=seed)
        obs_c, _ = continuous.reset(seed=seed)
        assert np.array_equal(obs_d, obs_c)
        done = False
        while not done:
            action = int(rng.integers(2))
            obs_d, reward_d, term_d, trunc_d, _ = discrete.step(action)
            obs_c, reward_c, term_c, trunc_c, _ = continuous.step(_push(2.0 * action - 1.0))
            assert np.array_equal(obs_d, obs_c)
            assert (reward_d, term_d, trunc_d) == (reward_c, term_c, trunc_c)
            done = term_d or trunc_d
            steps += 1
        assert term_c  # random pushes drop the pole: the angle/track termination is exercised
    assert steps > 200


def test_constants_and_spaces_are_cartpole_v1s():
    cartpole = gym.make("CartPole-v1").unwrapped
    for env in (ContinuousCartPoleEnv(), ContinuousCartPoleSwingUpEnv()):
        for name in ("gravity", "masscart", "masspole", "length", "force_mag", "tau"):
            assert getattr(env, name) == getattr(cartpole, name) == getattr(CARTPOLE_V1, name)
        assert env.total_mass == cartpole.total_mass
        assert env.polemass_length == cartpole.polemass_length
        assert env.x_threshold == cartpole.x_threshold
        assert env.parameters == CARTPOLE_V1
        assert env.action_space == gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    assert ContinuousCartPoleEnv().observation_space == cartpole.observation_space
    assert ContinuousCartPoleEnv().theta_threshold_radians == cartpole.theta_threshold_radians


def test_step_dynamics_is_batched_and_agrees_with_the_env():
    env = ContinuousCartPoleEnv()
    rng = np.random.default_rng(1)
    states = rng.uniform(-0.2, 0.2, size=(5, 4))
    actions = rng.uniform(-1.0, 1.0, size=5).astype(np.float32)  # as the env's Box

    batched = step_dynamics(states, env.force_mag * actions.astype(np.float64), env.parameters)

    assert batched.shape == (5, 4) and batched.dtype == np.float64
    for state, action, expected in zip(states, actions, batched, strict=True):
        env.state = state.copy()
        env.step(_push(action))
        np.testing.assert_allclose(env.state, expected, rtol=1e-12, atol=1e-15)
    # one force broadcasts over a batch of states
    np.testing.assert_array_equal(
        step_dynamics(states, 3.0), step_dynamics(states, np.full(5, 3.0))
    )


def test_step_dynamics_uses_the_parameters_it_is_given():
    state = np.array([0.0, 0.0, 0.1, 0.0])
    heavier = CartPoleParameters(masspole=0.5)
    assert not np.allclose(step_dynamics(state, 0.0, heavier), step_dynamics(state, 0.0))
    at_rest_upright = step_dynamics(np.zeros(4), 0.0)
    np.testing.assert_array_equal(at_rest_upright, np.zeros(4))


def test_balance_failure_thresholds_are_cartpole_v1s():
    states = np.array(
        [
            [0.0, 0.0, 0.2, 0.0],  # 11.5 degrees: still up
            [0.0, 0.0, 0.21, 0.0],  # past 12 degrees
            [2.39, 0.0, 0.0, 0.0],
            [-2.41, 0.0, 0.0, 0.0],
        ]
    )
    np.testing.assert_array_equal(balance_failed(states), [False, True, False, True])


# --- swing-up ----------------------------------------------------------------------------------


def test_swing_up_starts_hanging_down_with_small_noise():
    env = gym.make(SWING_UP_ID)
    for seed in range(10):
        obs, _ = env.reset(seed=seed)
        assert abs(obs[2] - math.pi) <= 0.05 + 1e-6
        assert np.all(np.abs(obs[[0, 1, 3]]) <= 0.05)
    first, _ = env.reset(seed=3)
    again, _ = env.reset(seed=3)
    assert np.array_equal(first, again)


def test_swing_up_never_terminates_on_the_angle_and_is_truncated_at_500():
    env = gym.make(SWING_UP_ID)
    env.reset(seed=0)
    steps = 0
    truncated = False
    while not truncated:
        obs, reward, terminated, truncated, _ = env.step(_push(0.0))
        steps += 1
        assert abs(obs[2]) > 12 * math.pi / 180  # far past the balance task's limit
        assert 0.0 <= reward <= 1.0
        assert not terminated
    assert steps == MAX_EPISODE_STEPS


def test_swing_up_terminates_when_the_cart_leaves_the_track():
    env = gym.make(SWING_UP_ID)
    env.reset(seed=0)
    for _ in range(MAX_EPISODE_STEPS):
        obs, _, terminated, truncated, _ = env.step(_push(1.0))
        if terminated or truncated:
            break
    assert terminated and not truncated
    assert obs[0] > X_THRESHOLD


def test_swing_up_reward_is_the_documented_formula():
    env = ContinuousCartPoleSwingUpEnv()
    env.reset(seed=4)
    _, reward, *_ = env.step(_push(0.5))
    x, _, theta, _ = env.state
    expected = 1.0 - (0.4 * (1 - math.cos(theta)) + 0.1 * (x / 2.4) ** 2 + 0.1 * 0.5**2)
    assert reward == pytest.approx(expected, rel=1e-12)

    assert swing_up_reward(np.zeros(4), 0.0) == 1.0  # upright, centred, no force
    hanging_at_the_end_pushing = np.array([X_THRESHOLD, 0.0, math.pi, 0.0])
    assert swing_up_reward(hanging_at_the_end_pushing, 1.0) == pytest.approx(0.0, abs=1e-12)
    batch = swing_up_reward(np.zeros((3, 4)), np.zeros(3))
    assert batch.shape == (3,)


def test_swing_up_is_solvable_within_the_track():
    """Energy pumping, then a linear balance controller (hand-tuned): the pole comes up and stays.

    A reference for planners: this scripted controller scores about 440 of a possible 500.
    """
    env = gym.make(SWING_UP_ID)
    p = env.unwrapped.parameters

    def controller(state: np.ndarray) -> float:
        x, x_dot, theta, theta_dot = (float(v) for v in state)
        from_upright = (theta + math.pi) % (2 * math.pi) - math.pi
        if abs(from_upright) < 0.3:
            force = 1.0 * x + 2.0 * x_dot + 40.0 * from_upright + 7.0 * theta_dot
            return force / p.force_mag
        # The pole's energy, zero upright at rest; pumping raises it towards zero.
        inertia = 4.0 / 3.0 * p.masspole * p.length**2
        energy = 0.5 * inertia * theta_dot**2 + p.masspole * p.gravity * p.length * (
            math.cos(theta) - 1.0
        )
        return 5.0 * energy * theta_dot * math.cos(theta) - 1.0 * x - 1.0 * x_dot

    for seed in range(2):
        obs, _ = env.reset(seed=seed)
        total, upright_steps = 0.0, 0
        for _ in range(MAX_EPISODE_STEPS):
            obs, reward, terminated, truncated, _ = env.step(_push(controller(obs)))
            total += reward
            upright_steps += math.cos(obs[2]) > 0.95
            if terminated or truncated:
                break
        assert truncated and not terminated
        assert total > 400 and upright_steps > 350


# --- actions -----------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_actions_raise_a_clear_error(bad):
    env = ContinuousCartPoleEnv()
    env.reset(seed=0)
    with pytest.raises(InvalidActionError, match="finite") as caught:
        env.step(_push(bad))
    assert isinstance(caught.value, RlscaleError)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("bad", [np.zeros(2, np.float32), "left", None])
def test_actions_that_are_not_one_number_raise_a_clear_error(bad):
    env = ContinuousCartPoleSwingUpEnv()
    env.reset(seed=0)
    with pytest.raises(InvalidActionError, match="one number"):
        env.step(bad)


@pytest.mark.parametrize("outside, edge", [(5.0, 1.0), (-3.0, -1.0)])
def test_actions_outside_the_box_are_clipped(outside, edge):
    clipped, reference = ContinuousCartPoleSwingUpEnv(), ContinuousCartPoleSwingUpEnv()
    clipped.reset(seed=2)
    reference.reset(seed=2)
    result = clipped.step(_push(outside))
    expected = reference.step(_push(edge))
    assert np.array_equal(result[0], expected[0])
    assert result[1] == expected[1]  # the control cost sees the clipped action


def test_scalar_actions_are_accepted():
    env, reference = ContinuousCartPoleEnv(), ContinuousCartPoleEnv()
    env.reset(seed=5)
    reference.reset(seed=5)
    assert np.array_equal(env.step(0.25)[0], reference.step(_push(0.25))[0])


def test_step_before_reset_and_after_termination():
    env = ContinuousCartPoleEnv()
    with pytest.raises(gym.error.ResetNeeded):
        env.step(_push(0.0))
    env.reset(seed=0)
    terminated = False
    while not terminated:
        _, reward, terminated, _, _ = env.step(_push(1.0))
        assert reward == 1.0  # the terminating step is rewarded, as in CartPole-v1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, reward, terminated, _, _ = env.step(_push(1.0))
    assert reward == 0.0 and terminated
    assert any("reset()" in str(w.message) for w in caught)


def test_rendering_gives_an_rgb_frame():
    env = ContinuousCartPoleSwingUpEnv(render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (400, 600, 3) and frame.dtype == np.uint8
    assert (frame != 255).any()
    with pytest.raises(RlscaleError, match="rgb_array"):
        ContinuousCartPoleEnv(render_mode="human")


# --- registration and rlscale's env registry ---------------------------------------------------


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_registered_ids_make_with_a_500_step_limit(env_id):
    env = gym.make(env_id)
    assert env.spec.id == env_id and env.spec.max_episode_steps == MAX_EPISODE_STEPS
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert isinstance(make_env(env_id), gym.Env)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_resolve_env_and_listing_know_the_ids(env_id):
    info = resolve_env(env_id)
    assert info.action_space == gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    assert info.observation_space.shape == (4,)
    assert info.family == "rlscale"
    listed = {listing.name: listing for listing in list_envs(include_spaces=False)}
    assert listed[env_id].family == "rlscale"
    rlscale_ids = [listing.name for listing in list_envs(include_spaces=False, family="rlscale")]
    assert {BALANCE_ID, SWING_UP_ID} <= set(rlscale_ids)


def test_importing_rlscale_envs_registers_the_ids_in_a_fresh_process():
    code = (
        "import gymnasium as gym, rlscale.envs; "
        f"gym.make({BALANCE_ID!r}); gym.make({SWING_UP_ID!r}); "
        f"gym.make('rlscale.envs:{SWING_UP_ID}')"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
