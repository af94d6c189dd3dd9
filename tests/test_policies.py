"""Experts and behaviour policies: scripted controllers, noise, a checkpoint's greedy policy."""

from __future__ import annotations

import pickle
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from rlscale.errors import PolicyError
from rlscale.policies import (
    SCRIPTED,
    CheckpointPolicy,
    Noisy,
    cartpole_balance,
    sample_space,
    scripted_policy,
)
from rlscale.policies import scripted as scripted_module
from rlscale.policies.checkpoint import MODULE_PATH, MODULE_STATE_FILE, check_module_state

ENVS_OF = {
    "random": ("CartPole-v1", "Pendulum-v1"),
    "cartpole_balance": ("CartPole-v1",),
    "cartpole_centered": ("CartPole-v1",),
    "pendulum_swing_up": ("Pendulum-v1",),
    "lane_keeping": ("rlscale/LaneKeeping-v0",),
    "inverted_pendulum_balance": ("InvertedPendulum-v5",),
    "point_mass_two_ways": ("rlscale/PointMassObstacle-v1",),
}
"""The environments each scripted policy is made for; a new one must be added here."""


def _episode_return(env: gym.Env, act, seed: int) -> float:
    rng = np.random.default_rng(seed)
    observation, _ = env.reset(seed=seed)
    total, done = 0.0, False
    while not done:
        action = act(observation, rng)
        assert env.action_space.contains(action), action
        observation, reward, terminated, truncated, _ = env.step(action)
        total += float(reward)
        done = terminated or truncated
    return total


def test_every_scripted_policy_is_tested_on_its_envs():
    assert set(SCRIPTED) == set(ENVS_OF)


@pytest.mark.parametrize(
    ("name", "env_name"), [(n, e) for n, envs in ENVS_OF.items() for e in envs]
)
def test_scripted_policies_act_within_the_action_space(name, env_name):
    env = gym.make(env_name)
    act = scripted_policy(name)(env.observation_space, env.action_space)
    _episode_return(env, act, seed=0)  # asserts every action is in the space


def test_scripted_experts_solve_their_tasks():
    cartpole = gym.make("CartPole-v1")
    for name in ("cartpole_balance", "cartpole_centered"):
        act = scripted_policy(name)(cartpole.observation_space, cartpole.action_space)
        assert [_episode_return(cartpole, act, seed) for seed in range(3)] == [500.0] * 3, name
    pendulum = gym.make("Pendulum-v1")
    swing = scripted_policy("pendulum_swing_up")(pendulum.observation_space, pendulum.action_space)
    random = scripted_policy("random")(pendulum.observation_space, pendulum.action_space)
    swung = np.mean([_episode_return(pendulum, swing, seed) for seed in range(3)])
    flailed = np.mean([_episode_return(pendulum, random, seed) for seed in range(3)])
    assert swung > -300 > -800 > flailed
    inverted = gym.make("InvertedPendulum-v5")
    balance = scripted_policy("inverted_pendulum_balance")(
        inverted.observation_space, inverted.action_space
    )
    assert [_episode_return(inverted, balance, seed) for seed in range(3)] == [1000.0] * 3


def test_unknown_policy_name_suggests_the_nearest_and_lists_all():
    with pytest.raises(PolicyError, match="Did you mean: cartpole_balance[,?]") as raised:
        scripted_policy("cartpole_balanse")
    assert (
        "cartpole_balance, cartpole_centered, inverted_pendulum_balance, lane_keeping, "
        "pendulum_swing_up, point_mass_two_ways, random" in str(raised.value)
    )


def test_a_new_scripted_expert_is_one_decorated_function(monkeypatch):
    monkeypatch.setattr(scripted_module, "SCRIPTED", dict(SCRIPTED))

    @scripted_module.register_scripted("always_left")
    def always_left(observation_space: gym.Space, action_space: gym.Space):
        return lambda observation, rng: 0

    assert scripted_module.scripted_policy("always_left") is always_left
    with pytest.raises(ValueError, match="already registered"):
        scripted_module.register_scripted("always_left")(always_left)


def test_noise_zero_is_the_policy_itself_and_noise_is_reproducible():
    env = gym.make("Pendulum-v1")
    base = scripted_policy("pendulum_swing_up")
    observation = np.array([1.0, 0.0, 0.0], dtype=np.float32)
    assert Noisy(base, 0.0)(env.observation_space, env.action_space)(
        observation, np.random.default_rng(0)
    ) == base(env.observation_space, env.action_space)(observation, None)
    noisy = Noisy(base, 0.5)(env.observation_space, env.action_space)
    first = [noisy(observation, rng) for rng in map(np.random.default_rng, range(20))]
    again = [noisy(observation, rng) for rng in map(np.random.default_rng, range(20))]
    np.testing.assert_array_equal(first, again)


def test_box_noise_stays_within_the_bounds_and_scales_with_the_range():
    env = gym.make("Pendulum-v1")  # torque in [-2, 2]: half range 2
    swing_up = scripted_policy("pendulum_swing_up")
    noisy = Noisy(swing_up, 0.1)(env.observation_space, env.action_space)
    upright = np.array([1.0, 0.0, 0.0], dtype=np.float32)  # the PD law answers 0 here
    rng = np.random.default_rng(0)
    actions = np.array([noisy(upright, rng) for _ in range(2000)])
    assert actions.dtype == np.float32 and actions.shape == (2000, 1)
    assert np.std(actions) == pytest.approx(0.2, rel=0.1)
    edge = np.array([-1.0, 0.0, 8.0], dtype=np.float32)  # full torque: noise is clipped
    assert all(env.action_space.contains(noisy(edge, rng)) for _ in range(200))


def test_discrete_noise_is_epsilon_greedy():
    env = gym.make("CartPole-v1")
    noisy = Noisy(cartpole_balance, 0.4)(env.observation_space, env.action_space)
    leaning_right = np.array([0.0, 0.0, 0.1, 0.0], dtype=np.float32)  # the rule pushes right (1)
    rng = np.random.default_rng(0)
    actions = np.array([noisy(leaning_right, rng) for _ in range(4000)])
    # A random action replaces the rule's with probability 0.4, and is "left" half the time.
    assert np.mean(actions == 0) == pytest.approx(0.2, abs=0.03)


def test_factories_pickle_for_ray_actors():
    for factory in (*SCRIPTED.values(), Noisy(cartpole_balance, 0.1), CheckpointPolicy("/ckpt")):
        assert pickle.loads(pickle.dumps(factory)) == factory


def test_sample_space_is_reproducible_and_refuses_other_spaces():
    box = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    np.testing.assert_array_equal(
        sample_space(box, np.random.default_rng(1)), sample_space(box, np.random.default_rng(1))
    )
    assert sample_space(gym.spaces.Discrete(3, start=5), np.random.default_rng(0)) in (5, 6, 7)
    with pytest.raises(PolicyError, match="not supported"):
        sample_space(gym.spaces.MultiBinary(2), np.random.default_rng(0))


def test_checkpoint_without_a_policy_is_a_clear_error(tmp_path):
    env = gym.make("CartPole-v1")
    with pytest.raises(PolicyError, match="holds no single-agent policy"):
        CheckpointPolicy(tmp_path)(env.observation_space, env.action_space)


def test_checkpoint_policy_acts_through_the_saved_connectors(tmp_path):
    """The greedy action of a saved RLModule, with the EnvRunner's own connectors: saved
    MeanStdFilter statistics on the way in (and not updated by acting), [-1, 1] actions mapped
    onto Pendulum's ±2 torque on the way out. No training: an untrained module is enough."""
    import torch
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.connectors.env_to_module import MeanStdFilter
    from ray.rllib.core.columns import Columns
    from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner

    from tests.conftest import mean_std_filter_stats

    config = (
        PPOConfig()
        .environment("Pendulum-v1")
        .env_runners(env_to_module_connector=lambda *args, **kwargs: MeanStdFilter())
    )
    runner = SingleAgentEnvRunner(config=config)
    runner.sample(num_timesteps=200, random_actions=True)  # gives the filter statistics
    runner.save_to_path(str(tmp_path / "env_runner"))
    runner.module.save_to_path(str(tmp_path / MODULE_PATH))
    (stats,) = mean_std_filter_stats(runner._env_to_module.get_state()["MeanStdFilter"])
    assert not np.allclose(stats.mean, 0.0)

    env = gym.make("Pendulum-v1")
    act = CheckpointPolicy(Path(tmp_path))(env.observation_space, env.action_space)
    for observation in ([1.0, 0.0, 6.0], [-1.0, 0.0, -7.5], [0.0, 1.0, 0.5]) * 2:
        observation = np.asarray(observation, dtype=np.float32)
        filtered = np.clip((observation - stats.mean) / (stats.std + 1e-8), -10, 10)
        with torch.no_grad():
            out = runner.module.forward_inference(
                {Columns.OBS: torch.as_tensor(filtered[None], dtype=torch.float32)}
            )
        unit = np.clip(out[Columns.ACTION_DIST_INPUTS][0, :1].numpy(), -1, 1)  # Gaussian mean
        action = act(observation, None)
        assert env.action_space.contains(action)
        np.testing.assert_allclose(action, 2.0 * unit, rtol=1e-4, atol=1e-5)


def test_a_checkpoint_whose_weights_are_truncated_is_refused_before_any_worker(tmp_path):
    state_file = tmp_path / MODULE_PATH / MODULE_STATE_FILE
    state_file.parent.mkdir(parents=True)
    state_file.write_bytes(pickle.dumps({"weights": list(range(1000))}))
    check_module_state(tmp_path)
    state_file.write_bytes(state_file.read_bytes()[:100])
    with pytest.raises(PolicyError, match="is damaged: its policy weights .* do not load"):
        check_module_state(tmp_path)
