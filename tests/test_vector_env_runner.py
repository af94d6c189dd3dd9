"""The vectorized EnvRunner against RLlib's: the same episodes, columns, metrics and filter state.

Each comparison builds both runners in this process from one prepared config, gives them the same
module weights and env seed, and samples the same calls from each; RLlib's runner is the
reference. Greedy sampling must match step by step; exploring with the same torch seed draws the
same actions too (both sample the same distribution classes over the same [N, ...] inputs), and
every stored log-prob is that of the taken action under the stored distribution inputs.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.rllib.connectors.env_to_module import MeanStdFilter
from ray.rllib.core.columns import Columns
from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner
from ray.rllib.utils.filter import RunningStat
from ray.rllib.utils.metrics.metrics_logger import MetricsLogger

import rlscale
from rlscale.algorithms import get_algorithm
from rlscale.algorithms.common.vector_env_runner import (
    VectorEnvRunner,
    VectorFilter,
    push_rows,
    vector_sampling_problem,
)
from rlscale.algorithms.imitation.dagger.module import EXPERT_ACTIONS
from rlscale.platform.experiment import prepare

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _config(algorithm="ppo", env="CartPole-v1", **hyperparameters):
    spec = rlscale.ExperimentSpec(
        algorithm=algorithm, env=env, seed=0, hyperparameters=hyperparameters
    )
    return prepare(spec).config


def _runners(config) -> tuple[VectorEnvRunner, SingleAgentEnvRunner]:
    fast = VectorEnvRunner(config=config)
    reference = SingleAgentEnvRunner(config=config)
    reference.module.set_state(fast.module.get_state())
    assert fast.fallback_reason() is None
    return fast, reference


def _sample_both(fast, reference, calls, **kwargs):
    """The same ``sample()`` calls on both runners, each pair from the same torch seed."""
    pairs = []
    for call, steps in enumerate(calls):
        torch.manual_seed(call)
        mine = fast.sample(num_timesteps=steps, **kwargs)
        torch.manual_seed(call)
        theirs = reference.sample(num_timesteps=steps, **kwargs)
        pairs.append((mine, theirs))
    return pairs


def _assert_same_buffer(mine, theirs, what, rtol=0.0, atol=0.0):
    assert mine.lookback == theirs.lookback, what
    if isinstance(theirs.data, list):
        assert mine.data == theirs.data, what
        return
    assert mine.data.dtype == theirs.data.dtype, (what, mine.data.dtype, theirs.data.dtype)
    assert mine.data.shape == theirs.data.shape, what
    np.testing.assert_allclose(mine.data, theirs.data, rtol=rtol, atol=atol, err_msg=what)


def _assert_same_episodes(mine, theirs, rtol=0.0, atol=0.0):
    """Same chunks in the same order: data, lookback, flags, step counters, model outputs."""
    assert [len(e) for e in mine] == [len(e) for e in theirs]
    for a, b in zip(mine, theirs, strict=True):
        assert (a.t_started, a.t, a.is_terminated, a.is_truncated) == (
            b.t_started,
            b.t,
            b.is_terminated,
            b.is_truncated,
        )
        assert a.is_numpy and b.is_numpy
        _assert_same_buffer(a.observations, b.observations, "observations", rtol, atol)
        _assert_same_buffer(a.infos, b.infos, "infos")
        _assert_same_buffer(a.actions, b.actions, "actions", rtol, atol)
        _assert_same_buffer(a.rewards, b.rewards, "rewards", rtol, atol)
        assert set(a.extra_model_outputs) == set(b.extra_model_outputs)
        for key in b.extra_model_outputs:
            _assert_same_buffer(
                a.extra_model_outputs[key], b.extra_model_outputs[key], key, rtol, atol
            )
        assert a.observation_space == b.observation_space
        a.validate()


def _same_ids_across_calls(pairs):
    """A chunk that continues an episode keeps its id in both runners alike."""

    def continued(episodes_per_call):
        ids = [{e.id_ for e in call} for call in episodes_per_call]
        return [
            [e.id_ in ids[c - 1] for e in episodes]
            for c, episodes in enumerate(episodes_per_call)
            if c > 0
        ]

    return continued([m for m, _ in pairs]) == continued([t for _, t in pairs])


# --- config time: which runner --------------------------------------------------------------


def test_ppo_samples_with_the_vector_runner_by_default_and_can_opt_out():
    config = _config()
    assert config.env_runner_cls is VectorEnvRunner
    assert "VectorEnvRunner" in config.sampling_runner()
    off = _config(vector_sampling=False)
    assert off.env_runner_cls is None  # RLlib picks its SingleAgentEnvRunner
    assert "vector_sampling is off" in off.sampling_runner()


def test_a_runner_class_the_config_names_wins():
    class MyRunner(SingleAgentEnvRunner):
        pass

    config = _config().env_runners(env_runner_cls=MyRunner)
    assert config.env_runner_cls is MyRunner
    assert config.sampling_runner() == "MyRunner (named by the config)"


class _StepCounter(RLlibCallback):
    def on_episode_step(self, **kwargs):
        pass


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda c: c.env_runners(env_to_module_connector=lambda env: []), "own env-to-module"),
        (lambda c: c.callbacks(_StepCounter), "implement on_episode_step"),
        (lambda c: c.env_runners(episode_lookback_horizon=4), "episode_lookback_horizon"),
        (lambda c: c.rl_module(model_config={"use_lstm": True}), "recurrent"),
    ],
)
def test_what_the_vector_runner_does_not_reproduce_keeps_rllibs(change, reason):
    config = change(_config())
    assert config.env_runner_cls is None
    assert reason in config.vector_sampling_problem()


def test_multi_agent_and_dict_observations_keep_rllibs():
    config = _config()
    config.multi_agent(policies={"a", "b"}, policy_mapping_fn=lambda agent, *a, **k: agent)
    assert "multi-agent" in vector_sampling_problem(config, None)
    box = gym.spaces.Box(-1, 1, (2,))
    spaces = (gym.spaces.Dict({"x": box}), gym.spaces.Discrete(2))
    assert "observation space" in vector_sampling_problem(_config(), spaces)


def test_the_observation_filter_is_a_known_piece():
    assert _config(normalize_observations=True).env_runner_cls is VectorEnvRunner


@pytest.mark.parametrize("algorithm", ["bc", "dagger", "bco"])
def test_rllibs_bc_module_samples_with_the_vector_runner_unless_recurrent(algorithm):
    # RLlib's BC module (bc, and dagger's and bco's cloning networks) defines get_initial_state
    # only to pass on its encoder's, which is recurrent only with use_lstm / use_attention.
    config = get_algorithm(algorithm).make_config().environment("CartPole-v1")
    assert config.env_runner_cls is VectorEnvRunner
    config.rl_module(model_config={"use_lstm": True})
    assert config.env_runner_cls is None
    assert "recurrent" in config.vector_sampling_problem()


# --- the observation filter ---------------------------------------------------------------


def test_pushing_rows_at_once_equals_pushing_them_one_by_one():
    rng = np.random.default_rng(0)
    one_by_one, at_once = RunningStat((3,)), RunningStat((3,))
    for rows in (rng.normal(5, 3, (1, 3)), rng.normal(5, 3, (7, 3)), rng.normal(-2, 1, (8, 3))):
        counts, means, _ = push_rows(at_once, rows)
        for j, row in enumerate(rows):
            one_by_one.push(row)
            assert counts[j, 0] == one_by_one.n
            np.testing.assert_allclose(means[j], one_by_one.mean, rtol=1e-12)
    for name in ("mean_array", "sum_sq_diff_array", "mean_delta_array", "sum_sq_diff_delta_array"):
        np.testing.assert_allclose(getattr(at_once, name), getattr(one_by_one, name), rtol=1e-10)
    assert (at_once.num_pushes, at_once.num_pushes_delta) == (16, 16)


def test_vector_filter_normalizes_each_row_as_rllibs_filter_does():
    space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    theirs, mine = MeanStdFilter(), MeanStdFilter()
    for connector in (theirs, mine):
        connector.input_observation_space = space
        connector._init_new_filters()
    rows = np.random.default_rng(1).normal(3, 2, (6, 2)).astype(np.float32)
    expected = np.stack([theirs._filters[None](row) for row in rows])
    got = VectorFilter(mine)(rows)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    # The first row of a fresh filter: std 0 -> RLlib divides by SMALL_NUMBER and clips.
    assert np.all(np.abs(got[0]) <= 10)


# --- sampling: the same episodes as RLlib's runner ------------------------------------------

CALLS = (300, 1, 517, 64)
"""Sample sizes: several calls, so that chunks continue across calls and episodes end in all of
them (one call of a single vector step too)."""


@pytest.mark.parametrize("explore", [False, True], ids=["greedy", "explore"])
def test_cartpole_episodes_match_rllibs_runner(explore):
    fast, reference = _runners(_config())
    pairs = _sample_both(fast, reference, CALLS, explore=explore)
    for mine, theirs in pairs:
        _assert_same_episodes(mine, theirs)
        assert sum(len(e) for e in mine) >= 1
    assert _same_ids_across_calls(pairs)
    done = [e for mine, _ in pairs for e in mine if e.is_done]
    assert done and all(e.is_terminated or e.is_truncated for e in done)


def test_pendulum_with_observation_filter_matches_rllibs_runner():
    """Box actions unsquashed onto [-2, 2], truncation at 200 steps, a MeanStdFilter."""
    config = _config(env="Pendulum-v1", normalize_observations=True)
    fast, reference = _runners(config)
    pairs = _sample_both(fast, reference, (1000, 900, 8), explore=False)
    for mine, theirs in pairs:
        # The filter's running statistics are summed in another order: equal to rounding.
        _assert_same_episodes(mine, theirs, rtol=1e-5, atol=1e-5)
    assert any(e.is_truncated for mine, _ in pairs for e in mine)
    (state_mine,) = fast._env_to_module.get_state().values()
    (state_theirs,) = reference._env_to_module.get_state().values()
    for mine, theirs in zip(
        state_mine[None]["running_stats"], state_theirs[None]["running_stats"], strict=True
    ):
        mine, theirs = RunningStat.from_state(mine), RunningStat.from_state(theirs)
        # Every observation the 8 envs returned (resets and reset steps too), pushed once.
        assert mine.n == theirs.n > 1908 and mine.n % 8 == 0
        np.testing.assert_allclose(mine.mean, theirs.mean, rtol=1e-9)
        np.testing.assert_allclose(mine.std, theirs.std, rtol=1e-6)


def test_dagger_mixture_and_expert_labels_match_rllibs_runner():
    """DAgger's exploration: the expert acts with probability beta and labels every state."""
    spec = rlscale.ExperimentSpec(
        algorithm="dagger", env="CartPole-v1", seed=0, expert="cartpole_balance"
    )
    fast, reference = _runners(prepare(spec).config)
    for runner in (fast, reference):
        runner.module.set_beta(0.5)
    pairs = _sample_both(fast, reference, CALLS, explore=True)
    for mine, theirs in pairs:
        _assert_same_episodes(mine, theirs)
    labels = np.concatenate(
        [e.get_extra_model_outputs(EXPERT_ACTIONS) for mine, _ in pairs for e in mine]
    )
    taken = np.concatenate([e.get_actions() for mine, _ in pairs for e in mine])
    # The mixture: the expert's label taken at some steps, the learner's action at others.
    assert 0 < np.mean(labels == taken) < 1


def test_greedy_then_exploring_chunks_keep_rllibs_lookback():
    """A greedy Box draw's log-prob is [1] per step, an exploring one's a scalar: the chunk that
    continues across the switch and the ones after it keep RLlib's shapes."""
    fast, reference = _runners(_config(env="Pendulum-v1"))
    for explore, calls in ((False, (200, 333)), (True, (200, 333))):
        for mine, theirs in _sample_both(fast, reference, calls, explore=explore):
            _assert_same_episodes(mine, theirs)


def test_explored_actions_carry_their_own_log_probs():
    for env in ("CartPole-v1", "Pendulum-v1"):
        fast, _ = _runners(_config(env=env))
        episodes = fast.sample(num_timesteps=256, explore=True)
        module = fast.module
        for episode in episodes:
            inputs = torch.from_numpy(episode.get_extra_model_outputs(Columns.ACTION_DIST_INPUTS))
            distribution = module.get_exploration_action_dist_cls().from_logits(inputs)
            logp = distribution.logp(torch.from_numpy(episode.get_actions()))
            np.testing.assert_allclose(
                logp.numpy(), episode.get_extra_model_outputs(Columns.ACTION_LOGP), rtol=1e-5
            )
        actions = np.concatenate([e.get_actions() for e in episodes])
        if env == "Pendulum-v1":
            assert np.abs(actions).max() > 0.1  # it explored: not all at the mean
        else:
            assert set(np.unique(actions)) == {0, 1}


def test_random_actions_match_rllibs_columns():
    fast, reference = _runners(_config())
    fast.env.action_space.seed(3)
    reference.env.action_space.seed(3)
    mine = fast.sample(num_timesteps=100, random_actions=True)
    theirs = reference.sample(num_timesteps=100, random_actions=True)
    _assert_same_episodes(mine, theirs)
    assert set(mine[0].extra_model_outputs) == {"weights_seq_no"}


def test_metrics_match_rllibs_runner():
    fast, reference = _runners(_config())
    _sample_both(fast, reference, (700, 700), explore=False)
    mine, theirs = (MetricsLogger.peek_results(r.get_metrics()) for r in (fast, reference))
    for key in (
        "num_env_steps_sampled",
        "num_env_steps_sampled_lifetime",
        "num_episodes",
        "episode_return_mean",
        "episode_len_mean",
        "episode_return_max",
        "rlscale_episode_returns",
    ):
        assert key in mine, key
        np.testing.assert_allclose(np.asarray(mine[key]), np.asarray(theirs[key]), err_msg=key)
    # Only the connector pipelines' own timers and counters are missing: no pipeline runs.
    missing = set(theirs) - set(mine)
    assert all(key.startswith(("env_to_module", "module_to_env")) for key in missing), missing


def test_whole_episodes_run_rllibs_loop_and_sampling_resumes_after():
    fast, _ = _runners(_config())
    fast.sample(num_timesteps=100, explore=True)
    episodes = fast.sample(num_episodes=3, explore=False)
    assert len([e for e in episodes if e.is_done]) >= 3
    resumed = fast.sample(num_timesteps=64, explore=True)
    assert all(e.t_started == 0 for e in resumed)  # started from fresh resets
    assert sum(len(e) for e in resumed) >= 64


# --- in an algorithm ------------------------------------------------------------------------


@pytest.mark.slow
def test_ppo_trains_through_remote_vector_runners(ray_local):
    """One PPO iteration with two EnvRunner actors of the vector runner (built on the workers)."""
    config = _config(train_batch_size_per_learner=512)
    config.env_runners(num_env_runners=2)
    algo = config.build_algo()
    try:
        classes = algo.env_runner_group.foreach_env_runner(
            lambda runner: (type(runner).__name__, runner.fallback_reason()), local_env_runner=False
        )
        result = algo.train()
    finally:
        algo.stop()
    assert classes == [("VectorEnvRunner", None)] * 2
    assert result["env_runners"]["num_env_steps_sampled"] >= 512


@pytest.mark.slow
def test_train_verbose_names_the_env_runner(ray_local, tmp_path):
    import io

    from rich.console import Console

    out = io.StringIO()
    spec = rlscale.ExperimentSpec(
        algorithm="a2c", env="CartPole-v1", seed=0, output=tmp_path, stop={"iterations": 1}
    )
    rlscale.train(spec, console=Console(file=out, width=200), verbose=True)
    assert "sampling with rlscale's VectorEnvRunner" in out.getvalue()
