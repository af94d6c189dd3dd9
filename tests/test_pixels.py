"""rlscale.envs.pixels: image observations from any env that renders (env_config ``pixels``)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import rlscale
from rlscale.envs import make_env, resolve_env
from rlscale.envs.pixels import DEFAULT_SIZE, PIXELS_KEY
from rlscale.errors import IncompatibleSpaceError, RlscaleError
from rlscale.platform.experiment import prepare
from tests.conftest import run_cli
from tests.test_cli import assert_clean_failure


def test_pendulum_frames_are_small_rgb_observations():
    env = make_env("Pendulum-v1", {PIXELS_KEY: True})
    try:
        space = env.observation_space
        assert space == gym.spaces.Box(0, 255, (DEFAULT_SIZE, DEFAULT_SIZE, 3), np.uint8)
        first, _ = env.reset(seed=0)
        assert first.shape == (64, 64, 3) and first.dtype == np.uint8
        assert space.contains(first)
        frames = [first] + [env.step(np.array([2.0], np.float32))[0] for _ in range(10)]
    finally:
        env.close()
    # a white background with the pendulum drawn on it, and the pendulum moves
    assert first.mean() > 128 and first.min() < 128
    assert np.abs(frames[-1].astype(int) - first.astype(int)).sum() > 0


def test_frame_size_and_spaces_through_resolve_env():
    info = resolve_env("Pendulum-v1", {PIXELS_KEY: {"size": 32}})
    assert info.observation_space.shape == (32, 32, 3)
    assert info.action_space == make_env("Pendulum-v1", {}).action_space
    assert resolve_env("CartPole-v1", {PIXELS_KEY: 48}).observation_space.shape == (48, 48, 3)


def test_mujoco_renders_at_the_frame_size_on_the_cpu():
    env = make_env("InvertedPendulum-v5", {PIXELS_KEY: {"size": 32}})
    try:
        frame, _ = env.reset(seed=0)
        assert frame.shape == (32, 32, 3) and frame.dtype == np.uint8
        assert frame.std() > 0  # a picture, not a blank buffer
    finally:
        env.close()


def test_an_env_that_cannot_render_is_refused_by_name():
    with pytest.raises(RlscaleError, match=r"'rlscale/PointMassObstacle-v1' cannot render"):
        make_env("rlscale/PointMassObstacle-v1", {PIXELS_KEY: True})


@pytest.mark.parametrize("value", ["big", 0, {"size": 2000}, {"width": 64}, False])
def test_bad_pixel_settings_say_what_is_accepted(value):
    with pytest.raises(RlscaleError, match=r"'pixels' must be true, a frame size"):
        make_env("Pendulum-v1", {PIXELS_KEY: value})


def test_mlp_algorithms_refuse_pixel_observations_before_ray():
    spec = rlscale.ExperimentSpec(algorithm="sac", env="Pendulum-v1", env_config={"pixels": 32})
    with pytest.raises(IncompatibleSpaceError, match="observations are images"):
        prepare(spec)


def test_cli_refuses_pixels_of_an_env_that_cannot_render(tmp_path):
    result = run_cli(
        "train",
        "latent_mpc",
        "--env",
        "rlscale/PointMassObstacle-v1",
        "--set",
        "env_config.pixels=true",
        "--output",
        str(tmp_path),
    )
    assert_clean_failure(result, "cannot render rgb_array frames")
