"""DAgger: the beta schedules, the expert in the exploration pass, the aggregate, bad input, a
run that keeps its aggregate across a restore and writes it as a Minari dataset, and (slow)
DAgger against behaviour cloning."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.env.single_agent_episode import SingleAgentEpisode

import rlscale
from rlscale.algorithms import get_algorithm
from rlscale.algorithms.imitation.dagger import (
    AGGREGATE_SIZE,
    BETA,
    EXPERT_ACTIONS,
    EXPERT_LABELS,
    DAggerConfig,
    LabelledStates,
)
from rlscale.datasets.store import open_dataset
from rlscale.envs import lane_keeping
from rlscale.errors import PolicyError, SpecError
from rlscale.platform.experiment import prepare
from rlscale.policies import cartpole_balance


def _module(env_id: str = "CartPole-v1", **training):
    config = DAggerConfig().environment(env_id).training(expert="cartpole_balance", **training)
    return config.get_rl_module_spec(env=gym.make(env_id)).build()


def test_dagger_is_registered_and_needs_an_expert():
    entry = get_algorithm("dagger")
    assert entry.family == "imitation"
    assert entry.requires(rlscale.algorithms.Input.EXPERT)
    box = gym.spaces.Box(-1.0, 1.0, (3,))
    assert entry.incompatibility(box, gym.spaces.Discrete(2)) is None
    assert entry.incompatibility(box, box) is None
    assert "Discrete or Box" in entry.incompatibility(box, gym.spaces.MultiBinary(2))
    with pytest.raises(SpecError, match="dagger needs an expert: pass --expert"):
        prepare(rlscale.ExperimentSpec(algorithm="dagger", env="CartPole-v1", seed=0))


def test_beta_schedules():
    linear = DAggerConfig().training(beta_decay_iterations=4)
    assert [linear.beta(i) for i in range(6)] == [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    exponential = DAggerConfig().training(beta_schedule="exponential", beta_base=0.5)
    assert [exponential.beta(i) for i in range(4)] == [1.0, 0.5, 0.25, 0.125]
    expert_only = DAggerConfig().training(beta_schedule="exponential", beta_base=1.0)
    assert {expert_only.beta(i) for i in range(10)} == {1.0}


@pytest.mark.parametrize(
    ("training", "message"),
    [
        ({"beta_schedule": "cosine"}, "beta_schedule must be one of linear, exponential"),
        ({"beta_decay_iterations": 0}, "beta_decay_iterations must be a positive integer"),
        ({"updates_per_iteration": 0}, "updates_per_iteration must be a positive integer"),
        ({"beta_base": 1.5}, r"beta_base must lie in \[0, 1\]"),
        ({"aggregate_capacity": 0}, "aggregate_capacity must be a positive integer or None"),
        ({"aggregate_dataset": "no version"}, "aggregate_dataset: 'no version' is not a Minari"),
    ],
)
def test_bad_settings_are_refused_before_ray_starts(training, message):
    spec = rlscale.ExperimentSpec(
        algorithm="dagger",
        env="CartPole-v1",
        expert="cartpole_balance",
        seed=0,
        hyperparameters=training,
    )
    with pytest.raises(Exception, match=message):
        prepare(spec)


def test_a_taken_aggregate_dataset_name_is_refused_before_ray_starts(minari_root):
    (minari_root / "dagger" / "taken-v0").mkdir(parents=True)
    spec = rlscale.ExperimentSpec(
        algorithm="dagger",
        env="CartPole-v1",
        expert="cartpole_balance",
        hyperparameters={"aggregate_dataset": "dagger/taken-v0"},
    )
    with pytest.raises(SpecError, match="a dataset dagger/taken-v0 already exists"):
        prepare(spec)


def _fake_checkpoint(folder, algorithm: str, env_config: dict, with_policy: bool):
    """A checkpoint folder as `rlscale train` marks one, holding a policy's folders or not."""
    import json

    from rlscale.platform.outputs import CHECKPOINT_MARKER
    from rlscale.policies.checkpoint import MODULE_PATH

    spec = {"algorithm": algorithm, "env": "CartPole-v1", "env_config": env_config}
    folder.mkdir(parents=True)
    (folder / CHECKPOINT_MARKER).write_text(json.dumps({"format": 1, "spec": spec}))
    if with_policy:
        (folder / MODULE_PATH).mkdir(parents=True)
        (folder / "env_runner").mkdir()
    return folder


@pytest.mark.parametrize(
    ("env_config", "with_policy", "message"),
    [
        ({"sutton_barto_reward": True}, True, "with env_config {'sutton_barto_reward': True}"),
        ({}, False, "holds no single-agent policy"),
    ],
)
def test_an_expert_checkpoint_that_cannot_act_here_is_refused_before_ray_starts(
    tmp_path, env_config, with_policy, message
):
    """A checkpoint of the same env built with other settings, or of an algorithm whose
    checkpoint holds no single-agent policy (a multi-agent one, or an incomplete copy)."""
    checkpoint = _fake_checkpoint(tmp_path / "ckpt", "ppo", env_config, with_policy)
    spec = rlscale.ExperimentSpec(algorithm="dagger", env="CartPole-v1", expert=str(checkpoint))
    with pytest.raises(PolicyError, match=message):
        prepare(spec)


def test_an_unknown_expert_names_the_scripted_ones():
    spec = rlscale.ExperimentSpec(
        algorithm="dagger", env="CartPole-v1", expert="cartpole_balancer", seed=0
    )
    suggestion = r"Did you mean: cartpole_balance, cartpole_centered[^?]*\? .*pendulum_swing_up"
    with pytest.raises(PolicyError, match=suggestion):
        prepare(spec)


def test_exploration_mixes_expert_and_learner_and_always_returns_the_expert_label():
    module = _module()
    rng = np.random.default_rng(0)
    observations = rng.uniform(-0.2, 0.2, size=(64, 4)).astype(np.float32)
    expert = cartpole_balance(None, None)
    labels = np.array([expert(row, rng) for row in observations])
    batch = {Columns.OBS: torch.as_tensor(observations)}
    learner = module.forward_inference(batch)[Columns.ACTION_DIST_INPUTS].argmax(-1).numpy()
    assert (learner != labels).any()  # an untrained network disagrees with the expert somewhere

    module.set_beta(1.0)
    out = module.forward_exploration(batch)
    np.testing.assert_array_equal(out[Columns.ACTIONS].numpy(), labels)
    np.testing.assert_array_equal(out[EXPERT_ACTIONS].numpy(), labels)

    module.set_beta(0.0)
    out = module.forward_exploration(batch)
    np.testing.assert_array_equal(out[Columns.ACTIONS].numpy(), learner)
    np.testing.assert_array_equal(out[EXPERT_ACTIONS].numpy(), labels)

    module.set_beta(0.5)
    taken = module.forward_exploration(batch)[Columns.ACTIONS].numpy()
    from_expert = (taken == labels) & (labels != learner)
    from_learner = (taken == learner) & (labels != learner)
    assert from_expert.any() and from_learner.any()


def test_the_module_is_standardized_unless_asked_not_to_be():
    """With ``standardize`` (the default) the module holds observation (and Box action)
    statistics, at the identity until the first round sets the aggregate's; without, it is
    RLlib's BC module."""
    module = _module("Pendulum-v1")
    np.testing.assert_array_equal(module.obs_mean.numpy(), np.zeros(3))
    np.testing.assert_array_equal(module.action_std.numpy(), np.ones(1))

    def dist_inputs(observations):
        batch = {Columns.OBS: torch.as_tensor(observations, dtype=torch.float32)}
        return module.forward_inference(batch)[Columns.ACTION_DIST_INPUTS].detach()

    at_zero = dist_inputs([[0.0, 0.0, 0.0]])
    module.set_statistics(
        {"obs_mean": [1.0, 0.0, 2.0], "obs_std": [1.0, 1.0, 1.0], "action_mean": [0.5]}
    )
    # The observation at the new mean is seen as zero; the predicted mean moves by the action
    # mean, the log std not at all.
    at_mean = dist_inputs([[1.0, 0.0, 2.0]])
    torch.testing.assert_close(at_mean, at_zero + torch.tensor([[0.5, 0.0]]))
    plain = _module("Pendulum-v1", standardize=False)
    assert plain.obs_mean is None and plain.action_mean is None


def test_each_env_runner_draws_its_own_mixture():
    observations = np.random.default_rng(0).uniform(-0.2, 0.2, size=(256, 4)).astype(np.float32)
    batch = {Columns.OBS: torch.as_tensor(observations)}
    module = _module()
    module.set_beta(0.5)
    taken = []
    for runner_index in (1, 2, 1):
        module.seed_mixing(0, runner_index)
        taken.append(module.forward_exploration(batch)[Columns.ACTIONS].numpy())
    assert not np.array_equal(taken[0], taken[1])
    np.testing.assert_array_equal(taken[0], taken[2])


def test_the_aggregate_grows_and_drops_its_oldest_rows_at_capacity():
    store = LabelledStates(capacity=5)
    store.add(np.arange(3.0)[:, None], np.array([0, 1, 0]))
    store.add(np.arange(3.0, 7.0)[:, None], np.array([1, 1, 0, 1]))
    assert len(store) == 5
    np.testing.assert_array_equal(store.observations[:, 0], [2.0, 3.0, 4.0, 5.0, 6.0])
    np.testing.assert_array_equal(store.actions, [0, 1, 1, 0, 1])
    unbounded = LabelledStates(capacity=None)
    for _ in range(3):
        unbounded.add(np.zeros((4, 2)), np.zeros(4))
    assert len(unbounded) == 12


def _labelled_chunk(observations, labels, rewards, terminated=False, truncated=False):
    return SingleAgentEpisode(
        observations=[np.array([o], dtype=np.float32) for o in observations],
        actions=[0] * len(labels),
        rewards=rewards,
        extra_model_outputs={EXPERT_ACTIONS: labels},
        terminated=terminated,
        truncated=truncated,
        len_lookback_buffer=0,
    )


def test_the_aggregate_keeps_episodes_whole_across_rounds():
    """Chunks of one episode from two rounds make one episode; an episode the run stopped in
    the middle of ends truncated; the actions written are the expert's labels."""
    store = LabelledStates(capacity=None)
    first = _labelled_chunk([0.0, 1.0, 2.0], [1, 0], [1.0, 1.0])
    other = _labelled_chunk([10.0, 11.0], [1], [0.5], terminated=True)
    assert store.add_episodes([first, other]) == 3
    rest = first.cut()
    for observation, label in ((3.0, 1), (4.0, 1)):
        rest.add_env_step(
            np.array([observation], dtype=np.float32),
            0,
            1.0,
            extra_model_outputs={EXPERT_ACTIONS: label},
        )
    assert store.add_episodes([rest]) == 2
    episodes = list(store.episodes())
    assert [len(e) for e in episodes] == [4, 1]
    np.testing.assert_array_equal(episodes[0].observations[:, 0], [0.0, 1.0, 2.0, 3.0, 4.0])
    np.testing.assert_array_equal(episodes[0].actions, [1, 0, 1, 1])
    np.testing.assert_array_equal(episodes[0].terminations, [False] * 4)
    np.testing.assert_array_equal(episodes[0].truncations, [False, False, False, True])
    np.testing.assert_array_equal(episodes[1].terminations, [True])
    np.testing.assert_array_equal(episodes[1].truncations, [False])
    assert store.episodes_seen == 2


def test_a_run_reports_labels_every_iteration_and_a_restore_keeps_the_aggregate(
    ray_local, tmp_path
):
    spec = rlscale.ExperimentSpec(
        algorithm="dagger",
        env="CartPole-v1",
        expert="cartpole_balance",
        seed=0,
        hyperparameters={"train_batch_size_per_learner": 100, "updates_per_iteration": 5},
    )
    algorithm = prepare(spec).config.build_algo()
    try:
        sizes = []
        for expected_beta in (1.0, 0.9):
            result = algorithm.train()
            assert result[EXPERT_LABELS] >= 100
            assert result[BETA] == pytest.approx(expected_beta)
            sizes.append(result[AGGREGATE_SIZE])
        assert sizes[1] == sizes[0] + result[EXPERT_LABELS]
        # The aggregate's statistics reach the acting copy with the weights.
        aggregate_mean = algorithm.aggregate.observations.mean(axis=0)
        acting = algorithm.env_runner.module
        np.testing.assert_allclose(acting.obs_mean.numpy(), aggregate_mean, rtol=1e-5, atol=1e-6)
        saved = algorithm.save_to_path(tmp_path / "checkpoint")
    finally:
        algorithm.stop()
    restored = prepare(spec).config.build_algo()
    try:
        restored.restore_from_path(saved)
        assert len(restored.aggregate) == sizes[1]
        assert restored.train()[BETA] == pytest.approx(0.8)
    finally:
        restored.stop()


def test_the_aggregate_is_written_as_a_minari_dataset_when_the_run_stops(ray_local, minari_root):
    spec = rlscale.ExperimentSpec(
        algorithm="dagger",
        env="CartPole-v1",
        expert="cartpole_balance",
        seed=0,
        hyperparameters={
            "train_batch_size_per_learner": 150,
            "updates_per_iteration": 5,
            "aggregate_dataset": "dagger/aggregate-v0",
        },
    )
    algorithm = prepare(spec).config.build_algo()
    try:
        for _ in range(2):
            algorithm.train()
        states = algorithm.aggregate.observations.copy()
        labels = algorithm.aggregate.actions.copy()
    finally:
        algorithm.stop()
    dataset = open_dataset("dagger/aggregate-v0")
    assert dataset.total_steps == len(states)
    assert dataset.env_spec.id == "CartPole-v1"
    episodes = list(dataset.iterate_episodes())
    np.testing.assert_array_equal(np.concatenate([e.actions for e in episodes]), labels)
    np.testing.assert_allclose(np.concatenate([e.observations[:-1] for e in episodes]), states)
    assert all(e.terminations[-1] or e.truncations[-1] for e in episodes)


def _scripted_returns(env_id: str, policy_name: str, episodes: int, seed: int) -> list[float]:
    """Returns of a scripted policy from the start states ``rlscale.evaluate(seed=seed)`` uses
    (the env reset with the seed once, then reset on)."""
    from rlscale.policies import scripted_policy

    env = gym.make(env_id)
    act = scripted_policy(policy_name)(env.observation_space, env.action_space)
    rng = np.random.default_rng(seed)
    returns = []
    observation, _ = env.reset(seed=seed)
    for episode in range(episodes):
        if episode:
            observation, _ = env.reset()
        total, done = 0.0, False
        while not done:
            observation, reward, terminated, truncated, _ = env.step(act(observation, rng))
            total, done = total + float(reward), terminated or truncated
        returns.append(total)
    return returns


@pytest.mark.slow
def test_dagger_reaches_the_expert_where_behaviour_cloning_does_not(ray_local, tmp_path):
    """The issue's check, on rlscale/LaneKeeping-v0 with its scripted expert and a budget of
    800 expert labels (4 rounds of 200 steps) for both, with the defaults otherwise: DAgger
    (beta 1, 2/3, 1/3, 0) reaches >= 0.95 of the expert's return on the random-to-expert
    scale, and behaviour cloning (the expert acting in every round: the same learner on the
    expert's own states) does not.

    The expert never leaves the lane's centre line, so its states show no correction, and the
    lane's drift makes any cloned error grow (the figures over seeds: docs/imitation.md). On
    Pendulum-v1 and CartPole-v1 the random starts already show deviations, and cloning
    reaches the expert."""
    env_id, expert_name, episodes, seed = lane_keeping.ENV_ID, "lane_keeping", 5, 0
    expert = float(np.mean(_scripted_returns(env_id, expert_name, episodes, seed)))
    random = float(np.mean(_scripted_returns(env_id, "random", 20, seed)))

    def normalized_return(name: str, schedule: dict) -> float:
        spec = rlscale.ExperimentSpec(
            algorithm="dagger",
            env=env_id,
            expert=expert_name,
            seed=seed,
            output=tmp_path,
            name=name,
            stop={"iterations": 4},
            checkpoint={"every": 0},
            hyperparameters={"train_batch_size_per_learner": 200, **schedule},
        )
        result = rlscale.train(spec)
        assert result.final.env_steps == 800
        evaluation = rlscale.evaluate(result.checkpoint, episodes=episodes, seed=seed)
        return (evaluation.mean_return - random) / (expert - random)

    dagger = normalized_return("dagger", {"beta_decay_iterations": 3})
    behaviour_cloning = normalized_return("bc", {"beta_schedule": "exponential", "beta_base": 1.0})
    assert dagger >= 0.95, (dagger, expert, random)
    assert behaviour_cloning < 0.95, (behaviour_cloning, expert, random)


def test_a_checkpoint_expert_labels_the_visited_states(ray_local, tmp_path):
    """An rlscale checkpoint as the expert: it is built on the EnvRunner, and the aggregate
    holds its greedy actions."""
    from rlscale.policies import CheckpointPolicy

    trained = rlscale.train(
        rlscale.ExperimentSpec(
            algorithm="ppo",
            env="CartPole-v1",
            seed=0,
            output=tmp_path,
            name="expert",
            stop={"iterations": 1},
            checkpoint={"every": 0},
        )
    )
    spec = rlscale.ExperimentSpec(
        algorithm="dagger",
        env="CartPole-v1",
        expert=str(trained.checkpoint),
        seed=0,
        hyperparameters={"train_batch_size_per_learner": 100, "updates_per_iteration": 5},
    )
    algorithm = prepare(spec).config.build_algo()
    try:
        assert algorithm.train()[EXPERT_LABELS] >= 100
        observations, labels = algorithm.aggregate.observations, algorithm.aggregate.actions
    finally:
        algorithm.stop()
    env = gym.make("CartPole-v1")
    expert = CheckpointPolicy(trained.checkpoint)(env.observation_space, env.action_space)
    rng = np.random.default_rng(0)
    expected = [int(expert(row, rng)) for row in observations[:50]]
    np.testing.assert_array_equal(labels[:50], expected)
