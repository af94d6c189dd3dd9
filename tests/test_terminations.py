"""Termination rules on observations (MBPO's rollouts) against the real envs, and the rollouts."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import rlscale.envs  # noqa: F401  (registers rlscale's envs with Gymnasium)
from rlscale.modules.dynamics.branched import branched_rollouts
from rlscale.modules.dynamics.ensemble import EnsembleSettings, ProbabilisticEnsemble
from rlscale.modules.dynamics.terminations import (
    TERMINATION_RULES,
    inverted_pendulum_fell,
    termination_rule,
)


def _random_transitions(env_id: str, steps: int, seed: int = 0):
    """(next observation, terminated) of ``steps`` random steps, resetting at each end."""
    env = gym.make(env_id)
    env.action_space.seed(seed)
    env.reset(seed=seed)
    observations, terminations = [], []
    for _ in range(steps):
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        observations.append(obs)
        terminations.append(terminated)
        if terminated or truncated:
            env.reset()
    env.close()
    return np.asarray(observations, dtype=np.float64), np.asarray(terminations)


@pytest.mark.parametrize("env_id", sorted(TERMINATION_RULES))
def test_rule_matches_the_env_on_random_steps(env_id):
    observations, terminated = _random_transitions(env_id, 600)
    predicted = termination_rule(env_id)(torch.as_tensor(observations)).numpy()
    np.testing.assert_array_equal(predicted, terminated)
    if env_id not in ("Pendulum-v1", "Reacher-v5"):
        # Random actions end these episodes within 600 steps: both outcomes were compared.
        assert terminated.any() and not terminated.all(), env_id


def test_a_diverged_observation_terminates_and_unknown_envs_are_named():
    obs = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, float("nan"), 0.0, 0.0]])
    assert inverted_pendulum_fell(obs).tolist() == [False, True]
    assert termination_rule("Pendulum-v1")(torch.tensor([[float("inf"), 0.0, 0.0]])).item()
    with pytest.raises(ValueError, match=r"no termination rule for 'Acrobot-v1'.*Hopper-v5"):
        termination_rule("Acrobot-v1")


def _ensemble(members: int = 3) -> ProbabilisticEnsemble:
    torch.manual_seed(0)
    settings = EnsembleSettings(members=members, hidden_sizes=(16,), predict_reward=True)
    return ProbabilisticEnsemble(4, 1, settings)


def test_branched_rollouts_stop_rows_where_the_rule_says_and_chain_the_rest():
    ensemble = _ensemble()
    starts = torch.zeros(50, 4)
    starts[:, 1] = torch.linspace(-0.3, 0.3, 50)  # some start past InvertedPendulum's 0.2
    generator = torch.Generator().manual_seed(0)
    out = branched_rollouts(
        ensemble,
        lambda obs: torch.zeros(obs.shape[0], 1),
        starts,
        3,
        inverted_pendulum_fell,
        generator,
    )
    done = out["terminateds"]
    assert done.dtype == torch.bool
    np.testing.assert_array_equal(done.numpy(), inverted_pendulum_fell(out["next_obs"]).numpy())
    first_step = slice(0, 50)
    torch.testing.assert_close(out["obs"][first_step], starts)
    # Step 2 starts exactly from the step-1 rows that did not terminate, in order.
    survivors = out["next_obs"][first_step][~done[first_step]]
    second_step = slice(50, 50 + len(survivors))
    torch.testing.assert_close(out["obs"][second_step], survivors)
    assert out["rewards"].shape == (len(done),)
    assert len(done) < 3 * 50  # some rows ended early


def test_branched_rollouts_draw_only_elites_and_refuse_bad_input():
    ensemble = _ensemble(members=3)
    ensemble.set_elites([1])
    starts = torch.zeros(20, 4)
    policy = lambda obs: torch.zeros(obs.shape[0], 1)  # noqa: E731
    out = branched_rollouts(
        ensemble, policy, starts, 1, inverted_pendulum_fell, torch.Generator().manual_seed(1)
    )
    member_one, _ = ensemble.member_moments(starts, torch.zeros(20, 1))
    # Every next state lies near member 1's mean (its std is far smaller than the gap).
    expected = starts + member_one[1, :, :4]
    other = starts + member_one[0, :, :4]
    assert (out["next_obs"] - expected).abs().mean() < (out["next_obs"] - other).abs().mean()
    with pytest.raises(ValueError, match="horizon of at least 1"):
        branched_rollouts(ensemble, policy, starts, 0, inverted_pendulum_fell)
    with pytest.raises(ValueError, match="at least one start state"):
        branched_rollouts(ensemble, policy, starts[:0], 1, inverted_pendulum_fell)
    no_reward = ProbabilisticEnsemble(4, 1, EnsembleSettings(members=2, hidden_sizes=(8,)))
    with pytest.raises(ValueError, match="reward head"):
        branched_rollouts(no_reward, policy, starts, 1, inverted_pendulum_fell)
