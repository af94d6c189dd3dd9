"""A2C, TRPO and PPO: the shared actor-critic, the TRPO step, defaults, and learning checks."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import rlscale
from rlscale.algorithms import get_algorithm
from rlscale.algorithms.policy_gradient import A2CConfig, PPOConfig, TRPOConfig
from rlscale.algorithms.policy_gradient.trpo_step import (
    conjugate_gradient,
    conjugate_gradient_step,
    flat_parameters,
)
from rlscale.errors import IncompatibleSpaceError, SpecError
from rlscale.modules.networks.actor_critic import ActorCritic, ActorCriticShape
from rlscale.platform.experiment import prepare
from tests.conftest import mean_std_filter_stats

ALGORITHMS = ["a2c", "trpo", "ppo"]


# --- the actor-critic network -------------------------------------------------------------


def test_categorical_head_outputs_one_logit_per_action():
    net = ActorCritic(ActorCriticShape(observation_size=4, action_size=3, continuous=False))
    logits, values = net(torch.zeros(5, 4))
    assert logits.shape == (5, 3) and values.shape == (5,)
    assert net.log_std is None


def test_gaussian_head_has_a_state_independent_log_std():
    shape = ActorCriticShape(observation_size=3, action_size=2, continuous=True, initial_log_std=-1)
    net = ActorCritic(shape)
    inputs = net.distribution_inputs(torch.randn(7, 3))
    mean, log_std = inputs.chunk(2, dim=-1)
    assert mean.shape == (7, 2)
    assert torch.all(log_std == -1.0)
    assert any(p is net.log_std for p in net.policy_parameters())


@pytest.mark.parametrize("shared", [True, False])
def test_shared_or_separate_trunks(shared):
    net = ActorCritic(ActorCriticShape(4, 2, continuous=False, shared_trunk=shared))
    policy_ids = {id(p) for p in net.policy_parameters()}
    value_ids = {id(p) for p in net.value_parameters()}
    assert not policy_ids & value_ids
    # A shared trunk: the value loss reaches the policy trunk; separate: it does not.
    net.value(torch.randn(8, 4)).sum().backward()
    trunk_grads = [p.grad for p in net.policy_trunk.parameters()]
    assert all(g is not None for g in trunk_grads) == shared
    if not shared:
        assert all(g is None for g in trunk_grads)


# --- the TRPO step ------------------------------------------------------------------------


def test_conjugate_gradient_solves_a_positive_definite_system():
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(6, 6, generator=generator, dtype=torch.float64)
    matrix = a @ a.T + 6 * torch.eye(6, dtype=torch.float64)
    b = torch.randn(6, generator=generator, dtype=torch.float64)
    x = conjugate_gradient(lambda v: matrix @ v, b, iters=20)
    assert torch.allclose(matrix @ x, b, atol=1e-6)


def _categorical_problem(seed: int = 0):
    """A small categorical policy, fixed states, actions and advantages."""
    torch.manual_seed(seed)
    policy = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    states = torch.randn(256, 4)
    with torch.no_grad():
        old = torch.distributions.Categorical(logits=policy(states))
        actions = old.sample()
        old_logp = old.log_prob(actions)
    advantages = torch.randn(256)

    def surrogate():
        new = torch.distributions.Categorical(logits=policy(states))
        return (torch.exp(new.log_prob(actions) - old_logp) * advantages).mean()

    def mean_kl():
        new = torch.distributions.Categorical(logits=policy(states))
        return torch.distributions.kl_divergence(old, new).mean()

    return policy, surrogate, mean_kl


@pytest.mark.parametrize("max_kl", [0.001, 0.01, 0.05])
def test_trpo_accepted_step_respects_the_kl_bound_and_improves(max_kl):
    policy, surrogate, mean_kl = _categorical_problem()
    with torch.no_grad():
        before = float(surrogate())
    result = conjugate_gradient_step(list(policy.parameters()), surrogate, mean_kl, max_kl=max_kl)
    assert result.accepted
    with torch.no_grad():
        measured = float(mean_kl())
    assert measured == pytest.approx(result.kl, rel=1e-5)
    assert 0 < measured <= max_kl * (1 + 1e-6)
    with torch.no_grad():
        after = float(surrogate())
    assert after - before == pytest.approx(result.improvement, rel=1e-4, abs=1e-7)
    assert result.improvement > 0


def test_trpo_rejected_step_leaves_the_policy_unchanged():
    policy, surrogate, mean_kl = _categorical_problem()
    max_kl = 0.01

    def kl_that_always_breaks_the_bound():
        # A constant offset leaves the Fisher matrix (the KL's Hessian) as it was, so the
        # search direction is the real one, but every trial step now measures KL > δ.
        return mean_kl() + 2 * max_kl

    before = flat_parameters(list(policy.parameters())).clone()
    result = conjugate_gradient_step(
        list(policy.parameters()), surrogate, kl_that_always_breaks_the_bound, max_kl=max_kl
    )
    assert not result.accepted and result.backtracks == 10
    assert torch.equal(flat_parameters(list(policy.parameters())), before)


def test_trpo_rejects_a_step_that_does_not_improve_the_surrogate():
    policy, surrogate, mean_kl = _categorical_problem()
    before = flat_parameters(list(policy.parameters())).clone()
    calls = {"n": 0}

    def surrogate_that_gets_worse():
        # First call (the gradient) is the real surrogate; every trial step then scores lower.
        calls["n"] += 1
        value = surrogate()
        return value if calls["n"] == 1 else value.detach() - 1.0

    result = conjugate_gradient_step(
        list(policy.parameters()), surrogate_that_gets_worse, mean_kl, max_kl=0.01
    )
    assert not result.accepted
    assert torch.equal(flat_parameters(list(policy.parameters())), before)


# --- registry and defaults ----------------------------------------------------------------


@pytest.mark.parametrize("name", ALGORITHMS)
def test_registered_with_their_own_config(name):
    config = get_algorithm(name).make_config()
    assert config.algo_class.__name__.lower() == name


def test_defaults_follow_the_action_space_and_user_values_win():
    discrete = prepare(rlscale.ExperimentSpec(algorithm="ppo", env="CartPole-v1", seed=0)).config
    box = prepare(rlscale.ExperimentSpec(algorithm="ppo", env="Pendulum-v1", seed=0)).config
    assert discrete.normalize_actions is False and box.normalize_actions is True
    assert discrete.gamma != box.gamma
    assert box.initial_log_std == pytest.approx(-0.5)
    mine = prepare(
        rlscale.ExperimentSpec(
            algorithm="ppo", env="Pendulum-v1", seed=0, hyperparameters={"gamma": 0.5}
        )
    ).config
    assert mine.gamma == 0.5


CONFIGS = {"a2c": A2CConfig, "trpo": TRPOConfig, "ppo": PPOConfig}


def test_rlscale_keys_are_accepted_by_training():
    assert TRPOConfig().training(max_kl=0.05).max_kl == 0.05
    ppo = PPOConfig().training(target_kl=0.01, value_clip_param=0.2, hidden_sizes=[32])
    assert (ppo.target_kl, ppo.value_clip_param) == (0.01, 0.2)
    assert ppo.model_config["hidden_sizes"] == [32]


def test_trpo_max_kl_is_one_default_for_both_action_spaces():
    assert TRPOConfig().max_kl == 0.02
    assert TRPOConfig().environment("Pendulum-v1").max_kl == 0.02


@pytest.mark.parametrize("name", ALGORITHMS)
def test_bare_config_is_what_a_discrete_env_runs_but_acts_in_bounds(name):
    bare = CONFIGS[name]().to_dict()
    on_env = CONFIGS[name]().environment("CartPole-v1").to_dict()
    differing = {k for k, v in on_env.items() if bare.get(k) != v and not k.startswith("_rlscale")}
    # RLlib's action normalization stays on until the config knows its actions are Discrete.
    assert differing == {"env", "normalize_actions"}
    assert bare["normalize_actions"] is True


def test_config_applies_box_defaults_itself_and_user_values_win():
    box = PPOConfig().environment("Pendulum-v1")
    assert (box.gamma, box.lambda_, box.train_batch_size_per_learner) == (0.95, 0.95, 2048)
    assert box.normalize_actions is True
    assert box.initial_log_std == pytest.approx(-0.5)
    assert box.model_config["initial_log_std"] == pytest.approx(-0.5)
    assert PPOConfig().training(gamma=0.9).environment("Pendulum-v1").gamma == 0.9
    # Back on a Discrete env, the Box values go away again.
    again = PPOConfig().environment("Pendulum-v1").environment("CartPole-v1")
    assert (again.gamma, again.normalize_actions) == (PPOConfig().gamma, False)


@pytest.mark.parametrize("name", ALGORITHMS)
def test_rejects_image_and_tuple_spaces(name):
    from rlscale.algorithms import check_spaces

    entry = get_algorithm(name)
    box = gym.spaces.Box(-1, 1, (3,), np.float32)
    with pytest.raises(IncompatibleSpaceError, match="Discrete or Box action"):
        check_spaces(entry, box, gym.spaces.Tuple([gym.spaces.Discrete(2)] * 2), "toy")
    with pytest.raises(IncompatibleSpaceError, match="Box \\(vector\\) observation"):
        check_spaces(entry, gym.spaces.Discrete(4), gym.spaces.Discrete(2), "toy")


@pytest.mark.parametrize(
    ("name", "hyperparameters", "message"),
    [
        ("a2c", {"num_epochs": 3}, "one gradient step per batch"),
        ("trpo", {"minibatch_size": 128}, "one policy step on the whole batch"),
        ("trpo", {"max_kl": 0.0}, "max_kl must be > 0"),
    ],
)
def test_config_validation_names_the_problem(name, hyperparameters, message):
    """Refused by prepare(), before Ray starts, with the config's own reason."""
    spec = rlscale.ExperimentSpec(
        algorithm=name, env="CartPole-v1", seed=0, hyperparameters=hyperparameters
    )
    with pytest.raises(SpecError, match=message):
        prepare(spec)


# --- learning checks (slow) ---------------------------------------------------------------


def train_then_evaluate(algorithm: str, env: str, stop: dict, tmp_path, episodes: int = 10):
    """Train with the defaults (seed 0), then run greedy episodes from the checkpoint."""
    spec = rlscale.ExperimentSpec(
        algorithm=algorithm,
        env=env,
        seed=0,
        output=tmp_path,
        name=f"{algorithm}-{env}",
        stop=stop,
        checkpoint={"every": 1000, "keep": 1},
    )
    result = rlscale.train(spec)
    report = rlscale.evaluate(result.checkpoint, episodes=episodes, seed=1)
    return result, report


@pytest.mark.slow
@pytest.mark.parametrize(("algorithm", "budget"), [("a2c", 250_000), ("trpo", 200_000)])
def test_learns_cartpole(ray_local, tmp_path, algorithm, budget):
    # PPO's CartPole check is tests/test_training.py::test_checkpoint_restores_and_evaluates.
    result, report = train_then_evaluate(
        algorithm, "CartPole-v1", {"reward": 475, "timesteps": budget}, tmp_path
    )
    assert report.mean_return >= 475, (result.final, report.returns)


@pytest.mark.slow
def test_ppo_learns_pendulum(ray_local, tmp_path):
    result, report = train_then_evaluate(
        "ppo", "Pendulum-v1", {"reward": -220, "timesteps": 200_000}, tmp_path
    )
    assert report.mean_return >= -250, (result.final, report.returns)


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_learns_inverted_pendulum(ray_local, tmp_path, algorithm):
    # Episodes last up to 1000 steps, so the 100-episode training mean lags the policy by
    # tens of thousands of steps: training stops at 600 and the greedy check asks for 950.
    result, report = train_then_evaluate(
        algorithm, "InvertedPendulum-v5", {"reward": 600, "timesteps": 200_000}, tmp_path
    )
    assert report.mean_return >= 950, (result.final, report.returns)


@pytest.mark.slow
def test_trpo_accepted_steps_stay_within_max_kl(ray_local):
    from ray.rllib.core.rl_module.rl_module import DEFAULT_MODULE_ID

    spec = rlscale.ExperimentSpec(
        algorithm="trpo",
        env="CartPole-v1",
        seed=0,
        hyperparameters={"train_batch_size_per_learner": 512, "max_kl": 0.005},
    )
    config = prepare(spec).config
    algo = config.build_algo()
    accepted = 0
    try:
        for _ in range(5):
            stats = algo.train()["learners"][DEFAULT_MODULE_ID]
            if stats["trpo_step_accepted"]:
                accepted += 1
                assert 0 < stats["trpo_kl"] <= 0.005 * (1 + 1e-6), stats
                assert stats["trpo_surrogate_improvement"] > 0
            else:
                assert stats["trpo_kl"] == 0
    finally:
        algo.stop()
    assert accepted >= 1


@pytest.mark.slow
def test_ppo_kl_early_stop_and_value_clipping(ray_local):
    from ray.rllib.core.rl_module.rl_module import DEFAULT_MODULE_ID

    spec = rlscale.ExperimentSpec(
        algorithm="ppo",
        env="CartPole-v1",
        seed=0,
        hyperparameters={
            "train_batch_size_per_learner": 512,
            "target_kl": 1e-6,
            "value_clip_param": 0.2,
        },
    )
    algo = prepare(spec).config.build_algo()
    try:
        stats = algo.train()["learners"][DEFAULT_MODULE_ID]
    finally:
        algo.stop()
    # The first minibatch steps (its KL is 0); a later one passes 1.5e-6 and stops the update.
    assert stats["kl_early_stopped"] == 1.0
    assert np.isfinite(stats["vf_loss"])


@pytest.mark.slow
def test_observation_normalization_filters_and_travels_in_checkpoints(ray_local, tmp_path):
    from ray.rllib.connectors.env_to_module import MeanStdFilter

    spec = rlscale.ExperimentSpec(
        algorithm="ppo",
        env="Pendulum-v1",
        seed=0,
        hyperparameters={"normalize_observations": True, "train_batch_size_per_learner": 512},
    )

    def mean_std_filter(algo) -> MeanStdFilter:
        pieces = [c for c in algo.env_runner._env_to_module if isinstance(c, MeanStdFilter)]
        assert len(pieces) == 1, algo.env_runner._env_to_module
        return pieces[0]

    algo = prepare(spec).config.build_algo()
    try:
        algo.train()
        trained = mean_std_filter(algo).get_state()
        algo.save_to_path(str(tmp_path / "checkpoint"))
    finally:
        algo.stop()
    (running,) = mean_std_filter_stats(trained)
    # Pendulum's (cos, sin, velocity): the filter saw every sampled step and learned their scale.
    assert running.n >= 512
    assert np.all(running.std > 0.1)

    restored = prepare(spec).config.build_algo()
    try:
        restored.restore_from_path(str(tmp_path / "checkpoint"))
        (loaded,) = mean_std_filter_stats(mean_std_filter(restored).get_state())
    finally:
        restored.stop()
    assert loaded.n == running.n
    np.testing.assert_allclose(loaded.mean, running.mean)
