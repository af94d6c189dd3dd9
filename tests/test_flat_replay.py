"""The flat prioritized n-step replay: n-step rows against hand-computed ones, the ring, the sum
tree, sampling frequencies, importance weights and seeding."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from ray.rllib.core.columns import Columns
from ray.rllib.env.single_agent_episode import SingleAgentEpisode

from rlscale.algorithms.common.flat_replay import (
    N_STEP,
    PRIORITY_EPSILON,
    WEIGHTS,
    FlatReplay,
    SumTree,
)
from rlscale.errors import IncompatibleSpaceError

OBS_SPACE = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
ACTIONS = gym.spaces.Discrete(2)
REWARDS = np.array([1.0, 2.0, 3.0, 4.0, 5.0], dtype=np.float32)
GAMMA = 0.5


def replay(capacity=100, n_step=3, alpha=0.6, seed=0, gamma=GAMMA) -> FlatReplay:
    return FlatReplay(
        OBS_SPACE, ACTIONS, capacity, n_step=n_step, gamma=gamma, alpha=alpha, seed=seed
    )


def observations(first: int, last: int) -> np.ndarray:
    """States s_first .. s_last, each s_t = [t], so a row's s and s' say which step they are."""
    return np.arange(first, last + 1, dtype=np.float32)[:, None]


def add(buffer, episode_id, first_state, rewards, *, terminated=False, truncated=False):
    """One chunk of ``len(rewards)`` steps from state ``first_state`` on (actions all 0)."""
    rewards = np.asarray(rewards, dtype=np.float32)
    states = observations(first_state, first_state + len(rewards))
    return buffer.add_chunk(
        episode_id,
        states,
        np.zeros(len(rewards)),
        rewards,
        terminated=terminated,
        truncated=truncated,
    )


def add_five_steps_in_two_chunks(buffer: FlatReplay, *, terminated: bool, truncated: bool):
    """Steps 0-1 (the episode runs on), then steps 2-4, which end it."""
    written = buffer.add_chunk(
        "ep", observations(0, 2), np.array([0, 1]), REWARDS[:2], terminated=False, truncated=False
    )
    assert written == 0  # neither step has its 3 steps yet
    buffer.add_chunk(
        "ep",
        observations(2, 5),
        np.array([1, 0, 1]),
        REWARDS[2:],
        terminated=terminated,
        truncated=truncated,
    )


# R_t = Σ_{k<h} γ^k r_{t+k} with γ = 0.5, r = 1..5, h_t = min(3, 5 - t), by hand:
HAND_RETURNS = [
    1 + 0.5 * 2 + 0.25 * 3,
    2 + 0.5 * 3 + 0.25 * 4,
    3 + 0.5 * 4 + 0.25 * 5,
    4 + 0.5 * 5,
    5,
]
HAND_HORIZONS = [3, 3, 3, 2, 1]
HAND_NEXT_STATES = [3, 4, 5, 5, 5]


def test_n_step_rows_of_a_terminated_episode_stop_bootstrapping_at_its_end():
    buffer = replay()
    add_five_steps_in_two_chunks(buffer, terminated=True, truncated=False)
    rows = buffer.stored()
    assert len(buffer) == 5
    np.testing.assert_allclose(rows[Columns.REWARDS], HAND_RETURNS)
    np.testing.assert_array_equal(rows[N_STEP], HAND_HORIZONS)
    np.testing.assert_array_equal(rows[Columns.OBS][:, 0], [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(rows[Columns.NEXT_OBS][:, 0], HAND_NEXT_STATES)
    np.testing.assert_array_equal(rows[Columns.ACTIONS], [0, 1, 1, 0, 1])
    # Rows whose 3 steps reach the terminal state s_5 do not bootstrap; rows 0 and 1 do.
    np.testing.assert_array_equal(rows[Columns.TERMINATEDS], [False, False, True, True, True])


def test_n_step_rows_of_a_truncated_episode_bootstrap_from_its_last_state():
    buffer = replay()
    add_five_steps_in_two_chunks(buffer, terminated=False, truncated=True)
    rows = buffer.stored()
    np.testing.assert_allclose(rows[Columns.REWARDS], HAND_RETURNS)
    np.testing.assert_array_equal(rows[N_STEP], HAND_HORIZONS)  # targets discounted by γ^h
    np.testing.assert_array_equal(rows[Columns.NEXT_OBS][:, 0], HAND_NEXT_STATES)
    assert not rows[Columns.TERMINATEDS].any()


def test_rows_come_out_as_soon_as_their_n_steps_are_known():
    buffer = replay()
    written = buffer.add_chunk(
        "ep", observations(0, 4), np.zeros(4), REWARDS[:4], terminated=False, truncated=False
    )
    assert written == 2  # s_0 and s_1 have 3 steps; s_2 and s_3 wait for the next chunk
    np.testing.assert_array_equal(buffer.stored()[Columns.NEXT_OBS][:, 0], [3, 4])
    buffer.add_chunk(
        "ep", observations(4, 5), np.zeros(1), REWARDS[4:], terminated=True, truncated=False
    )
    np.testing.assert_allclose(buffer.stored()[Columns.REWARDS], HAND_RETURNS)


def test_episodes_sampled_side_by_side_do_not_mix():
    buffer = replay(n_step=2, gamma=1.0)
    add(buffer, "a", 0, [1.0])
    add(buffer, "b", 10, [100.0])
    add(buffer, "a", 1, [2.0], terminated=True)
    add(buffer, "b", 11, [200.0], terminated=True)
    rows = buffer.stored()
    rows_by_state = dict(zip(rows[Columns.OBS][:, 0], rows[Columns.REWARDS], strict=True))
    assert rows_by_state == {0: 3.0, 1: 2.0, 10: 300.0, 11: 200.0}


def test_sampled_episode_chunks_go_in_through_add_episodes():
    """RLlib's episode chunks: the second continues the first (same id, it starts at the
    first's last observation)."""
    episode = SingleAgentEpisode(observations=[np.array([0.0], np.float32)])
    for t in range(3):
        episode.add_env_step(np.array([t + 1.0], np.float32), action=t % 2, reward=float(t + 1))
    episode.to_numpy()
    rest = episode.cut()
    for t in range(3, 5):
        rest.add_env_step(
            np.array([t + 1.0], np.float32), action=t % 2, reward=float(t + 1), terminated=t == 4
        )
    rest.to_numpy()
    buffer = replay()
    assert buffer.add_episodes([episode]) == 3
    assert buffer.add_episodes([rest]) == 2
    rows = buffer.stored()
    np.testing.assert_allclose(np.sort(rows[Columns.REWARDS]), np.sort(HAND_RETURNS))
    by_step = np.argsort(rows[Columns.OBS][:, 0])
    np.testing.assert_array_equal(rows[Columns.ACTIONS][by_step], [0, 1, 0, 1, 0])


def test_ring_keeps_the_newest_rows_and_overwrites_the_oldest():
    buffer = replay(capacity=4, n_step=1)
    for t in range(6):
        add(buffer, f"ep{t}", t, [t], terminated=True)
    assert len(buffer) == 4
    # Rows 4 and 5 took the slots of rows 0 and 1.
    np.testing.assert_array_equal(buffer.stored()[Columns.OBS][:, 0], [4, 5, 2, 3])
    np.testing.assert_array_equal(buffer.stored()[Columns.REWARDS], [4, 5, 2, 3])
    # A chunk longer than the whole buffer leaves only its newest rows.
    add(buffer, "long", 100, np.arange(10.0), terminated=True)
    assert sorted(buffer.stored()[Columns.OBS][:, 0]) == [106, 107, 108, 109]
    batch, indices = buffer.sample(50, beta=0.4)
    assert set(batch[Columns.OBS][:, 0]) <= {106, 107, 108, 109} and indices.max() < 4


def test_sum_tree_finds_the_same_leaf_as_a_cumulative_sum():
    rng = np.random.default_rng(0)
    tree = SumTree(13)  # not a power of two: the last three leaves of 16 stay empty
    values = rng.random(13)
    tree.update(np.arange(13), values)
    tree.update(np.array([5, 5, 2]), np.array([9.0, 0.25, 0.0]))  # repeated: the last wins
    values[[5, 2]] = [0.25, 0.0]
    assert tree.total == pytest.approx(values.sum())
    assert tree.min == pytest.approx(values.min())
    queries = rng.random(10_000) * values.sum()
    expected = np.searchsorted(np.cumsum(values), queries, side="right")
    np.testing.assert_array_equal(tree.find(queries), expected)
    assert 2 not in tree.find(queries)  # a zero priority is never drawn


def fill_with_priorities(priorities, alpha=0.7, seed=0) -> FlatReplay:
    buffer = replay(capacity=len(priorities), n_step=1, alpha=alpha, seed=seed)
    size = len(priorities)
    add(buffer, "ep", 0, np.zeros(size), terminated=True)
    buffer.update_priorities(np.arange(size), np.asarray(priorities) - PRIORITY_EPSILON)
    return buffer


def test_rows_are_drawn_in_proportion_to_their_priority_to_the_alpha():
    priorities = np.array([0.1, 0.5, 1.0, 2.0, 4.0, 0.3, 8.0, 1.5])
    alpha = 0.7
    buffer = fill_with_priorities(priorities, alpha=alpha)
    expected = priorities**alpha / np.sum(priorities**alpha)
    np.testing.assert_allclose(buffer.probabilities(), expected)
    draws = np.concatenate([buffer.sample(64, beta=0.4)[1] for _ in range(500)])
    counts = np.bincount(draws, minlength=len(priorities))
    chi_square = np.sum((counts - len(draws) * expected) ** 2 / (len(draws) * expected))
    # 7 degrees of freedom: chi-square exceeds 24.3 with probability 0.001.
    assert chi_square < 24.3, (counts, len(draws) * expected)
    uniform = len(draws) / len(priorities)
    assert np.sum((counts - uniform) ** 2 / uniform) > 1000  # far from uniform draws


def test_importance_weights_correct_for_the_priorities_and_peak_at_one():
    priorities = np.array([0.5, 1.0, 2.0, 4.0])
    alpha, beta = 0.6, 0.4
    buffer = fill_with_priorities(priorities, alpha=alpha)
    batch, indices = buffer.sample(256, beta=beta)
    probabilities = priorities**alpha / np.sum(priorities**alpha)
    weights = (len(priorities) * probabilities) ** -beta
    np.testing.assert_allclose(batch[WEIGHTS], (weights / weights.max())[indices], rtol=1e-6)
    assert batch[WEIGHTS][indices == 0].max() == pytest.approx(1.0)  # the least likely row
    # The normalizer is the whole buffer's largest weight, not the batch's.
    batch, indices = buffer.sample(2, beta=beta)
    while 0 in indices:
        batch, indices = buffer.sample(2, beta=beta)
    assert batch[WEIGHTS].max() < 0.99
    # Uniform replay (alpha = 0): every weight is 1.
    uniform = fill_with_priorities(priorities, alpha=0.0)
    np.testing.assert_allclose(uniform.sample(64, beta=1.0)[0][WEIGHTS], 1.0)


def test_new_rows_get_the_largest_priority_seen():
    buffer = replay(capacity=4, n_step=1, alpha=1.0)
    add(buffer, "a", 0, [0.0, 0.0], terminated=True)
    buffer.update_priorities(np.array([0, 1]), np.array([-3.0, 0.5]))  # |δ| counts
    add(buffer, "b", 5, [0.0], terminated=True)
    np.testing.assert_allclose(buffer.probabilities(), np.array([3.0, 0.5, 3.0]) / 6.5, rtol=1e-5)


def test_the_same_seed_replays_the_same_rows_and_another_seed_does_not():
    priorities = np.linspace(0.1, 3.0, 50)
    first = fill_with_priorities(priorities, seed=7)
    second = fill_with_priorities(priorities, seed=7)
    other = fill_with_priorities(priorities, seed=8)
    draws = [buffer.sample(32, beta=0.4)[1] for buffer in (first, second, other)]
    np.testing.assert_array_equal(draws[0], draws[1])
    assert not np.array_equal(draws[0], draws[2])


def test_state_round_trip_gives_the_same_rows_priorities_and_draws():
    buffer = fill_with_priorities(np.linspace(0.1, 3.0, 10), seed=3)
    add(buffer, "open", 0, [1.0])  # overwrites row 0
    restored = replay(capacity=10, n_step=1, alpha=0.7, seed=99)
    restored.set_state(buffer.get_state())
    np.testing.assert_allclose(restored.probabilities(), buffer.probabilities())
    np.testing.assert_array_equal(restored.sample(16, 0.4)[1], buffer.sample(16, 0.4)[1])


def test_dict_observations_are_refused_with_what_to_do():
    with pytest.raises(IncompatibleSpaceError, match="FlattenObservation"):
        FlatReplay(gym.spaces.Dict({"x": OBS_SPACE}), ACTIONS, 10)


def test_td_errors_must_match_the_sampled_rows():
    buffer = fill_with_priorities([1.0, 2.0])
    with pytest.raises(ValueError, match="2 sampled rows"):
        buffer.update_priorities(np.array([0, 1]), np.array([1.0]))
