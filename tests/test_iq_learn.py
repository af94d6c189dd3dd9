"""IQ-Learn (offline, discrete): its loss, the demonstration budget, bad input, and the issue's
check that it learns CartPole-v1 from one subsampled expert episode.

Demonstrations are made here: whole episodes of a scripted expert written as a Minari dataset
without Ray (``write_scripted_dataset``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import rlscale
from rlscale.algorithms.imitation.demonstrations import load_demonstrations
from rlscale.algorithms.imitation.iq_learn import iq_learn_loss, pearson_correlation
from rlscale.datasets.store import resolve_dataset
from rlscale.errors import DatasetError, IncompatibleSpaceError
from rlscale.platform.experiment import prepare
from tests.conftest import write_scripted_dataset


def _collect(minari_root, name, episodes, env="CartPole-v1", policy="cartpole_centered"):
    return write_scripted_dataset(minari_root, name, episodes, env, policy)


def _spec(tmp_path, dataset, env="CartPole-v1", **hyperparameters):
    return rlscale.ExperimentSpec(
        algorithm="iq_learn",
        env=env,
        dataset=dataset,
        stop={"iterations": 10},
        seed=0,
        output=tmp_path / "runs",
        hyperparameters=hyperparameters,
        checkpoint={"every": 0},
    )


def test_the_loss_is_the_papers_chi_squared_objective_on_a_hand_computed_batch():
    q = torch.tensor([[1.0, 0.0], [0.5, 2.0]])
    next_q = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    actions, terminated = torch.tensor([0, 1]), torch.tensor([0.0, 1.0])
    gamma, tau, alpha = 0.9, 1.0, 0.5
    loss, reward = iq_learn_loss(
        q, next_q, actions, terminated, gamma=gamma, temperature=tau, chi2_alpha=alpha
    )
    v = [np.log(np.exp(1.0) + 1.0), np.log(np.exp(0.5) + np.exp(2.0))]
    v_next = [np.log(2.0), 0.0]  # the second next state is terminal
    r = [1.0 - gamma * v_next[0], 2.0 - gamma * v_next[1]]
    per_row = [v[i] - gamma * v_next[i] - (r[i] - r[i] ** 2 / (4 * alpha)) for i in (0, 1)]
    expected = np.mean(per_row)
    np.testing.assert_allclose(reward.numpy(), r, rtol=1e-6)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_the_loss_prefers_the_q_function_that_ranks_the_expert_action_first():
    next_q, terminated = torch.zeros(1, 2), torch.zeros(1)
    settings = dict(gamma=0.99, temperature=0.1, chi2_alpha=0.5)
    expert_first, _ = iq_learn_loss(
        torch.tensor([[1.0, 0.0]]), next_q, torch.tensor([0]), terminated, **settings
    )
    expert_second, _ = iq_learn_loss(
        torch.tensor([[0.0, 1.0]]), next_q, torch.tensor([0]), terminated, **settings
    )
    assert expert_first < expert_second


def test_correlation_is_none_for_a_constant_reward():
    assert pearson_correlation(torch.arange(4.0), torch.ones(4)) is None
    assert pearson_correlation(torch.arange(4.0), 2 * torch.arange(4.0) + 1) == pytest.approx(1)


def test_the_budget_takes_the_first_episodes_and_whole_subsampled_transitions(minari_root):
    data_dir = resolve_dataset(_collect(minari_root, "cartpole/centered-v0", episodes=3))
    every = load_demonstrations(data_dir, num_demos=None, subsample_every=1, seed=0)
    assert (every.episodes, len(every)) == (3, 1500)
    one = load_demonstrations(data_dir, num_demos=1, subsample_every=4, seed=0)
    assert (one.episodes, len(one)) == (1, 125)
    # Each kept row is a whole one-step transition (s, s') of the first episode.
    first_episode = {
        tuple(observation): next_observation
        for observation, next_observation in zip(
            every.observations[:500], every.next_observations[:500], strict=True
        )
    }
    for observation, next_observation in zip(one.observations, one.next_observations, strict=True):
        np.testing.assert_array_equal(first_episode[tuple(observation)], next_observation)


def test_a_budget_larger_than_the_dataset_is_refused_before_ray(minari_root, tmp_path):
    name = _collect(minari_root, "cartpole/two-v0", episodes=2)
    with pytest.raises(DatasetError, match=r"num_demos=3 .* \(2 episodes in .*at most 2"):
        prepare(_spec(tmp_path, name, num_demos=3))
    with pytest.raises(DatasetError, match="subsample_every must be a positive integer"):
        prepare(_spec(tmp_path, name, subsample_every=0))


def test_demonstrations_of_another_env_are_refused(minari_root, tmp_path):
    name = _collect(
        minari_root, "pendulum/swing-v0", 1, env="Pendulum-v1", policy="pendulum_swing_up"
    )
    with pytest.raises(DatasetError, match="cannot train on CartPole-v1"):
        prepare(_spec(tmp_path, name))


def test_box_actions_are_refused_with_what_to_use_instead(minari_root, tmp_path):
    name = _collect(
        minari_root, "pendulum/swing-v0", 1, env="Pendulum-v1", policy="pendulum_swing_up"
    )
    with pytest.raises(IncompatibleSpaceError, match="Discrete actions only .*bc or dagger"):
        prepare(_spec(tmp_path, name, env="Pendulum-v1"))


@pytest.mark.slow
def test_iq_learn_offline_learns_cartpole_from_one_subsampled_demonstration(
    ray_local, minari_root, tmp_path
):
    """The issue's check: >= 475 from 1 expert episode, subsampled (every 4th of its 500
    transitions: 125), 10 greedy evaluation episodes after 5,000 updates."""
    name = _collect(minari_root, "cartpole/centered-v0", episodes=2)
    result = rlscale.train(_spec(tmp_path, name, num_demos=1, subsample_every=4))
    evaluated = [metrics for metrics in result.history if metrics.has_return]
    assert evaluated, "no evaluation ran"
    assert evaluated[-1].return_mean >= 475, [m.return_mean for m in evaluated]
