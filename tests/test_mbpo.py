"""MBPO: its config, the Learner's model fit and rollouts, the mixed minibatches, and (slow,
long) InvertedPendulum-v5 against SAC."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from ray.rllib.core.columns import Columns

import rlscale
from rlscale.algorithms import get_algorithm
from rlscale.algorithms.model_based.mbpo import MBPO, MBPOConfig
from rlscale.envs import register_with_rllib

OBS_SPACE = gym.spaces.Box(-np.inf, np.inf, (4,), np.float64)
ACTION_SPACE = gym.spaces.Box(-3.0, 3.0, (1,), np.float32)
SMALL_MODEL = {"hidden_sizes": [32, 32]}


def _config(**training) -> MBPOConfig:
    training = {"hidden_sizes": [32, 32], "ensemble": SMALL_MODEL, **training}
    return (
        MBPOConfig()
        .environment(register_with_rllib("InvertedPendulum-v5"))
        .training(**training)
        .debugging(seed=0)
    )


def test_mbpo_is_registered_for_envs_with_a_termination_rule():
    entry = get_algorithm("mbpo")
    assert entry.family == "model_based" and "MBPO" in entry.summary
    assert entry.incompatibility(OBS_SPACE, ACTION_SPACE, "InvertedPendulum-v5") is None
    assert "termination rule" in entry.incompatibility(OBS_SPACE, ACTION_SPACE, "Swimmer-v5")
    assert "Box" in entry.incompatibility(OBS_SPACE, gym.spaces.Discrete(2), "CartPole-v1")


def test_defaults_are_the_papers():
    config = MBPOConfig()
    ensemble = config.effective_ensemble()
    assert (ensemble.members, ensemble.hidden_sizes, ensemble.predict_reward) == (
        7,
        (200, 200, 200, 200),
        True,
    )
    assert (config.elites, config.rollouts_per_step, config.rollout_horizon) == (5, 400, 1)
    assert config.training_intensity == 20 * config.train_batch_size_per_learner  # G = 20
    assert (config.model_train_interval, config.real_ratio) == (250, 0.05)
    assert config.model_replay_capacity() == 400 * 1 * 1_000


@pytest.mark.parametrize(
    ("training", "message"),
    [
        ({"elites": 8}, r"elites must be an integer in \[1, members=7\], got 8"),
        ({"model_holdout_fraction": 0.0}, "set model_holdout_fraction > 0"),
        ({"ensemble": {**SMALL_MODEL, "predict_reward": False}}, "keep predict_reward on"),
        ({"ensemble": {"layers": 3}}, "ensemble has no key 'layers'"),
        ({"rollouts_per_step": 0}, "rollouts_per_step must be an integer of at least 1"),
        ({"rollout_horizon": 0}, "rollout_horizon must be a number of steps >= 1"),
        ({"rollout_horizon": [100, 10, 1, 5]}, r"\[from_env_steps, to_env_steps"),
        ({"real_ratio": 1.5}, r"real_ratio must lie in \[0, 1\], got 1.5"),
        ({"model_updates": -1}, "steps must be non-negative"),
        ({"model_updates": 0}, "model_updates must be an integer of at least 1"),
    ],
)
def test_bad_settings_are_refused_with_what_to_do(training, message):
    with pytest.raises(ValueError, match=message):
        _config(**training).validate()


def test_rollout_horizon_schedule_is_linear_between_its_env_steps():
    config = _config(rollout_horizon=[1_000, 3_000, 1, 5])
    config.validate()
    assert [config.rollout_horizon_at(steps) for steps in (0, 1_000, 2_000, 3_000, 9_000)] == [
        1,
        1,
        3,
        5,
        5,
    ]
    assert config.model_replay_capacity() == 400 * 5 * 1_000


def _pendulum_like_transitions(rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A linear system with a linear reward, never leaving InvertedPendulum's upright zone."""
    rng = np.random.default_rng(seed)
    obs = rng.uniform(-0.15, 0.15, (rows, 4))
    actions = rng.uniform(-1, 1, (rows, 1)).astype(np.float32)
    next_obs = obs + 0.05 * np.concatenate([obs[:, 2:], actions, -actions], axis=1)
    return {
        Columns.OBS: obs,
        Columns.ACTIONS: actions,
        Columns.REWARDS: (10 * obs[:, 0] - actions[:, 0]).astype(np.float32),
        Columns.NEXT_OBS: next_obs,
        Columns.TERMINATEDS: np.zeros(rows, dtype=bool),
    }


def test_learner_fits_the_model_picks_elites_and_rolls_out_the_policy():
    config = _config(model_updates=600, elites=3, ensemble={**SMALL_MODEL, "members": 5})
    learner = config.build_learner(spaces={"default_policy": (OBS_SPACE, ACTION_SPACE)})
    data = _pendulum_like_transitions(1_000)
    metrics = learner.fit_model(data)
    ensemble = learner.module["default_policy"].unwrapped().dynamics
    assert len(ensemble.elites) == 3
    # Standardized units: a model that learned nothing has a held-out MSE near 1.
    assert metrics["model_holdout_mse"] < 0.1, metrics
    rollouts = learner.model_rollouts(data[Columns.OBS][:200], horizon=2)
    assert set(rollouts) == {
        Columns.OBS,
        Columns.ACTIONS,
        Columns.REWARDS,
        Columns.NEXT_OBS,
        Columns.TERMINATEDS,
    }
    # Step 0's rewards: the policy's own actions, so only the reward's law is known.
    first_obs, first_actions = rollouts[Columns.OBS][:200], rollouts[Columns.ACTIONS][:200, 0]
    np.testing.assert_allclose(first_obs, data[Columns.OBS][:200], rtol=1e-6)
    expected = 10 * first_obs[:, 0] - first_actions
    error = np.abs(rollouts[Columns.REWARDS][:200] - expected).mean()
    assert error < 0.2 * expected.std(), (error, expected.std())
    assert np.all(np.abs(rollouts[Columns.ACTIONS]) <= 1.0)  # the policy acts in [-1, 1]
    assert 200 < len(rollouts[Columns.REWARDS]) <= 400


class _Replay:
    """A stand-in replay whose rows say where they came from."""

    def __init__(self, value: float, rows: int):
        self.value, self.rows = value, rows

    def __len__(self) -> int:
        return self.rows

    def sample(self, rows: int) -> dict[str, np.ndarray]:
        return {
            Columns.OBS: np.full((rows, 4), self.value),
            Columns.REWARDS: np.full(rows, self.value, dtype=np.float32),
        }


def test_every_minibatch_mixes_real_and_model_rows_at_real_ratio():
    algo = MBPO.__new__(MBPO)  # only the replay mixing is exercised
    algo.config = _config(real_ratio=0.25, train_batch_size_per_learner=8)
    algo.local_replay_buffer = _Replay(1.0, 100)
    algo.model_replay = _Replay(0.0, 100)
    rows = algo._replayed_transitions(3 * 8)
    minibatches = rows[Columns.REWARDS].reshape(3, 8)
    assert minibatches.sum(axis=1).tolist() == [2.0, 2.0, 2.0]  # 2 of 8 rows real in each
    assert rows[Columns.OBS].shape == (24, 4)
    algo.model_replay = _Replay(0.0, 0)  # no model data yet: all real
    assert algo._replayed_transitions(8)[Columns.REWARDS].sum() == 8.0


def _train(tmp_path, algorithm: str, timesteps: int, **hyperparameters):
    spec = rlscale.ExperimentSpec(
        algorithm=algorithm,
        env="InvertedPendulum-v5",
        seed=0,
        output=tmp_path,
        name=f"{algorithm}-inverted-pendulum",
        stop={"timesteps": timesteps},
        checkpoint={"every": 0},
        hyperparameters=hyperparameters,
    )
    result = rlscale.train(spec)
    return result, rlscale.evaluate(result.checkpoint, episodes=5, seed=0)


def test_an_iteration_fits_the_model_rolls_it_out_and_updates_on_both(ray_local):
    """Mechanics on the real env: the first learning block fits the model and fills the model
    replay with ``rollouts_per_step`` branches per new env step; G updates per env step follow;
    the EnvRunner's module holds no model."""
    config = _config(
        hidden_sizes=[16],
        ensemble={"hidden_sizes": [16], "members": 3},
        elites=2,
        model_updates=20,
        rollouts_per_step=5,
        num_steps_sampled_before_learning_starts=64,
        train_batch_size_per_learner=32,
        training_intensity=2 * 32,  # G = 2
    ).reporting(min_sample_timesteps_per_iteration=64)
    algo = config.build_algo()
    try:
        first = algo.train()  # two blocks of 32 random steps: the second starts learning
        learner = first["learners"]["default_policy"]
        assert "model_holdout_mse" in learner and learner["num_target_updates"] == 2 * 32
        assert 0 < len(algo.model_replay) <= 5 * 32  # one-step branches, some may end early
        second = algo.train()
        assert second["learners"]["default_policy"]["num_target_updates"] == 2 * 32 * 3
        assert len(algo.model_replay) > 5 * 32
        assert not hasattr(algo.env_runner.module.unwrapped(), "dynamics")
        assert len(algo.learner_group._learner.module["default_policy"].dynamics.elites) == 2
    finally:
        algo.stop()


MBPO_CHECK_BUDGET = 4_000
"""Env steps, sampled in 32-step blocks: 1,024 random, then the policy's (G = 20 updates each)
until at least 4,000 (4,096)."""
SMALL_NETWORKS = {"hidden_sizes": [64, 64]}


@pytest.mark.long
def test_mbpo_balances_inverted_pendulum_in_fewer_env_steps_than_sac(ray_local, tmp_path):
    """The issue's check: InvertedPendulum-v5 >= 950 in fewer env steps than ``sac``. With
    64-wide SAC networks (the paper's 256 and its 4 x 200 ensemble train slowly on two cores)
    and a 2 x 128 ensemble refitted with 200 steps, MBPO's greedy policy holds the pole for
    >= 950 steps after 4,096 env steps; SAC with the same networks, warm-up and budget does
    not (``benchmarks/sample_efficiency.py`` measures how many steps it needs)."""
    _, mbpo = _train(
        tmp_path,
        "mbpo",
        MBPO_CHECK_BUDGET,
        **SMALL_NETWORKS,
        ensemble={"hidden_sizes": [128, 128]},
        model_updates=200,
    )
    _, sac = _train(tmp_path, "sac", MBPO_CHECK_BUDGET, **SMALL_NETWORKS)
    assert mbpo.mean_return >= 950, (mbpo.returns, sac.returns)
    assert sac.mean_return < 950, (mbpo.returns, sac.returns)
