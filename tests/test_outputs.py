"""Run outputs and stop rules, on hand-made RLlib results (no Ray)."""

from __future__ import annotations

import math

import pytest

from rlscale.errors import CheckpointError
from rlscale.platform.episode_stats import (
    EPISODE_LENGTHS_KEY,
    EPISODE_RETURNS_KEY,
    EpisodeWindow,
)
from rlscale.platform.outputs import (
    CHECKPOINT_MARKER,
    IterationMetrics,
    flatten_numbers,
    read_checkpoint,
)
from rlscale.platform.plots import plot_learning_curve
from rlscale.platform.runner import first_stop_reason
from rlscale.platform.spec import StopRules


def result(iteration: int, steps: int, returns, lengths) -> dict:
    return {
        "training_iteration": iteration,
        "num_env_steps_sampled_lifetime": steps,
        "env_runners": {
            EPISODE_RETURNS_KEY: returns,
            EPISODE_LENGTHS_KEY: lengths,
            "num_episodes_lifetime": 3,
        },
    }


def test_window_keeps_the_last_100_whole_episodes():
    window = EpisodeWindow()
    window.add_from(result(1, 10, list(range(150)), [1] * 150))
    assert len(window.returns) == 100 and window.returns[0] == 50.0


def test_window_accepts_rllibs_bare_single_item():
    window = EpisodeWindow()
    window.add_from(result(1, 10, 7.0, 7))
    window.add_from({"env_runners": {}})
    assert list(window.returns) == [7.0] and list(window.lengths) == [7]


def test_iteration_metrics_average_the_window_and_rate_the_steps():
    window = EpisodeWindow()
    window.add_from(result(1, 1000, [10.0, 30.0], [10, 30]))
    first = IterationMetrics.from_result(result(1, 1000, [], []), window, 2.0, None)
    assert first.return_mean == 20.0 and first.return_min == 10.0 and first.return_max == 30.0
    assert first.episode_len_mean == 20.0 and first.steps_per_s == 500.0
    second = IterationMetrics.from_result(result(2, 3000, [], []), window, 3.0, first)
    assert second.steps_per_s == 2000.0


def test_no_finished_episode_yet_has_no_return():
    metrics = IterationMetrics.from_result(result(1, 10, [], []), EpisodeWindow(), 1.0, None)
    assert not metrics.has_return and math.isnan(metrics.return_mean)
    assert first_stop_reason(StopRules(reward=-1e9), metrics) is None


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        ({"reward": 100}, "mean return 150.0 >= 100"),
        ({"reward": 200, "iterations": 5}, "5 iterations"),
        ({"reward": 200, "timesteps": 4000}, "5,000 env steps"),
        ({"time_s": 10}, "12s of training"),
        ({"reward": 200, "iterations": 6, "timesteps": 6000, "time_s": 60}, None),
    ],
)
def test_first_stop_reason(rules, expected):
    metrics = IterationMetrics(
        iteration=5,
        env_steps=5000,
        episodes=9,
        return_mean=150.0,
        return_min=1.0,
        return_max=200.0,
        episode_len_mean=150.0,
        time_s=12.0,
        steps_per_s=100.0,
    )
    assert first_stop_reason(StopRules(**rules), metrics) == expected


def test_flatten_numbers_keeps_finite_numeric_leaves_of_result_sections():
    flat = flatten_numbers(
        {
            "env_runners": {
                "episode_return_mean": 1.5,
                "flag": True,
                "series": [1, 2],
                "nested": {"x": 2},
            },
            "learners": {"default_policy": {"total_loss": float("nan"), "vf_loss": 0.25}},
            "config": {"lr": 0.1},
        }
    )
    assert flat == {
        "env_runners/episode_return_mean": 1.5,
        "env_runners/nested/x": 2.0,
        "learners/default_policy/vf_loss": 0.25,
    }


def test_damaged_checkpoint_marker_is_reported(tmp_path):
    (tmp_path / CHECKPOINT_MARKER).write_text("{not json")
    with pytest.raises(CheckpointError, match="damaged"):
        read_checkpoint(tmp_path)


def test_plot_without_finished_episodes_still_writes_a_png(tmp_path):
    metrics = IterationMetrics.from_result(result(1, 10, [], []), EpisodeWindow(), 1.0, None)
    path = plot_learning_curve([metrics], tmp_path / "curve.png", "empty")
    assert path.read_bytes()[:4] == b"\x89PNG"
    assert [p.name for p in tmp_path.iterdir()] == ["curve.png"]
