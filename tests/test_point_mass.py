"""rlscale/PointMassObstacle-v1 and its two-way scripted expert (Gymnasium's checker:
test_envs.py): the expert succeeds on both sides about equally often, and the mean of its two
actions drives into the obstacle."""

from __future__ import annotations

import numpy as np
import pytest

from rlscale.datasets.collect import run_episode
from rlscale.envs import make_env, point_mass
from rlscale.policies import scripted_policy
from rlscale.policies.scripted import point_mass_steering

EPISODES = 40


@pytest.fixture
def env():
    return make_env(point_mass.ENV_ID, {})


def test_the_expert_succeeds_going_either_way(env):
    expert = scripted_policy("point_mass_two_ways")(env.observation_space, env.action_space)
    episodes = [run_episode(env, expert, seed) for seed in range(EPISODES)]
    successes = [episode.rewards.sum() for episode in episodes]
    assert np.mean(successes) == 1.0
    went_left = [episode.observations[1][0] < 0 for episode in episodes]
    assert 0.3 <= np.mean(went_left) <= 0.7
    assert max(len(episode.actions) for episode in episodes) < point_mass.MAX_EPISODE_STEPS


def _mean_of_both_sides(observation, rng) -> np.ndarray:
    """What a policy that averages the expert's two modes does."""
    position = np.asarray(observation, dtype=np.float64)
    return np.mean([point_mass_steering(position, sign) for sign in (-1.0, 1.0)], axis=0)


def test_the_mean_of_the_two_sides_fails(env):
    episodes = [run_episode(env, _mean_of_both_sides, seed) for seed in range(10)]
    assert np.mean([episode.rewards.sum() for episode in episodes]) <= 0.1


def test_reaching_the_goal_succeeds_and_touching_the_obstacle_ends_the_episode(env):
    env.reset(seed=0)
    env.unwrapped._position = point_mass.GOAL - np.array([0.0, 0.2])
    _, reward, terminated, _, info = env.step(np.array([0.0], np.float32))
    assert (reward, terminated, info["is_success"]) == (1.0, True, True)
    env.reset(seed=0)
    env.unwrapped._position = np.array([0.0, -0.5])
    _, reward, terminated, _, info = env.step(np.array([0.5], np.float32))
    assert (reward, terminated, info["is_success"]) == (0.0, True, False)


def test_from_the_start_only_a_firm_step_to_a_side_clears_the_obstacle(env):
    """The expert's two first actions (+-1) pass; anything within half of their mean (0) runs
    into the obstacle."""
    for steer, collides in ((0.0, True), (0.5, True), (-0.5, True), (0.6, False), (-1.0, False)):
        env.reset(seed=0)
        _, _, terminated, _, _ = env.step(np.array([steer], np.float32))
        assert terminated == collides, steer


def test_a_non_finite_action_is_refused(env):
    env.reset(seed=0)
    with pytest.raises(ValueError, match="finite"):
        env.step(np.array([np.nan], np.float32))


def test_every_episode_starts_at_the_same_point(env):
    starts = [env.reset(seed=seed)[0] for seed in range(3)]
    assert all(np.array_equal(start, point_mass.START) for start in starts)
