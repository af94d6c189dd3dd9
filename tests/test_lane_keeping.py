"""rlscale/LaneKeeping-v0 and its scripted expert (Gymnasium's checker: test_envs.py): the
expert keeps the lane for the whole episode without ever leaving the centre line, random
steering leaves it early, and following the curve with a tiny constant error leaves it too
(the drift that makes cloned errors compound)."""

from __future__ import annotations

import numpy as np
import pytest

from rlscale.datasets.collect import run_episode
from rlscale.envs import lane_keeping, make_env
from rlscale.policies import scripted_policy


@pytest.fixture
def env():
    return make_env(lane_keeping.ENV_ID, {})


def _policy(env, name: str):
    return scripted_policy(name)(env.observation_space, env.action_space)


def test_the_expert_keeps_the_lane_on_the_centre_line(env):
    episodes = [run_episode(env, _policy(env, "lane_keeping"), seed) for seed in range(10)]
    assert [episode.total_return for episode in episodes] == [200.0] * 10
    # Its states show no deviation to learn a correction from.
    assert max(np.abs(episode.observations[:, :2]).max() for episode in episodes) < 1e-6


def test_random_steering_leaves_the_lane_early(env):
    returns = [run_episode(env, _policy(env, "random"), seed).total_return for seed in range(20)]
    assert np.mean(returns) < 60


def test_following_the_curve_with_a_tiny_error_leaves_the_lane(env):
    """Steering by the curvature alone, off by 1e-4 of the range, drifts out in 113 steps."""

    def slightly_off(observation, rng):
        return np.array([observation[2] + 1e-4], dtype=np.float32)

    assert run_episode(env, slightly_off, seed=0).total_return < 150


def test_every_episode_starts_on_the_centre_line_at_rest_on_a_curve_of_its_own(env):
    starts = np.array([env.reset(seed=seed)[0] for seed in range(5)])
    np.testing.assert_array_equal(starts[:, :2], 0.0)
    assert len(set(starts[:, 2].tolist())) == 5


def test_a_non_finite_action_is_refused(env):
    env.reset(seed=0)
    with pytest.raises(ValueError, match="finite"):
        env.step(np.array([np.nan], np.float32))
