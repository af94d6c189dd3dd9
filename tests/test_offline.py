"""Offline algorithms: spec checks, learning checks on small datasets made here, evaluate."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from minari.serialization import serialize_space

import rlscale
from rlscale.algorithms import get_algorithm
from rlscale.algorithms.offline import data as offline_data
from rlscale.algorithms.offline.data import (
    _normalized_action_bounds,
    to_learner_batch,
    to_unit_range,
)
from rlscale.datasets.collect import CollectionRequest, collect
from rlscale.datasets.policies import scripted_policy
from rlscale.envs import make_env
from rlscale.errors import DatasetError, SpecError
from rlscale.platform.collection import collect_dataset
from rlscale.platform.experiment import prepare
from tests.conftest import mean_std_filter_stats, run_cli


@pytest.fixture
def root(tmp_path, monkeypatch):
    folder = tmp_path / "datasets"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(folder))
    return folder


def _collect(root, env, policy, name, episodes, noise, seed=0):
    request = CollectionRequest(
        env=env,
        dataset_id=name,
        policy_factory=scripted_policy(policy),
        policy_name=policy,
        episodes=episodes,
        workers=2,
        noise=noise,
        seed=seed,
        root=root,
    )
    return collect(request, make_env)


def _train(tmp_path, algorithm, env, dataset, iterations, **hyperparameters):
    spec = rlscale.ExperimentSpec(
        algorithm=algorithm,
        env=env,
        dataset=dataset,
        stop={"iterations": iterations},
        seed=0,
        output=tmp_path / "runs",
        hyperparameters=hyperparameters,
        checkpoint={"every": 0},
    )
    return rlscale.train(spec)


def _last_evaluation(result):
    evaluated = [m for m in result.history if m.has_return]
    assert evaluated, "no evaluation ran"
    return evaluated[-1]


def test_float64_observations_reach_the_learner_as_float32():
    # MuJoCo envs (Hopper-v5) log float64 observations; RLlib's nets are float32.
    rows = {
        "obs": np.zeros((4, 11), dtype=np.float64),
        "new_obs": np.ones((4, 11), dtype=np.float64),
        "actions": np.zeros((4, 3), dtype=np.float32),
        "rewards": np.ones(4, dtype=np.float32),
        "terminateds": np.zeros(4, dtype=bool),
        "truncateds": np.zeros(4, dtype=bool),
    }
    batch = to_learner_batch(rows)
    assert batch["default_policy/obs"].dtype == np.float32
    assert batch["default_policy/new_obs"].dtype == np.float32
    np.testing.assert_array_equal(batch["default_policy/new_obs"], rows["new_obs"])


def test_logged_box_actions_are_rescaled_to_the_policy_range():
    low, high = np.array([-2.0, 0.0]), np.array([2.0, 10.0])
    logged = np.array([[-2.0, 0.0], [0.0, 5.0], [2.0, 10.0], [3.0, -1.0]])
    np.testing.assert_allclose(
        to_unit_range(logged, low, high), [[-1, -1], [0, 0], [1, 1], [1, -1]], atol=2e-4
    )
    assert np.abs(to_unit_range(logged, low, high)).max() < 1.0  # atanh stays finite
    pendulum = {"action_space": serialize_space(gym.spaces.Box(-2.0, 2.0, (1,)))}
    config = get_algorithm("cql").make_config()
    bounds = _normalized_action_bounds(config, pendulum)
    assert bounds is not None and bounds[0][0] == -2.0 and bounds[1][0] == 2.0
    config.normalize_actions = False
    assert _normalized_action_bounds(config, pendulum) is None
    discrete = {"action_space": serialize_space(gym.spaces.Discrete(2))}
    assert _normalized_action_bounds(get_algorithm("bc").make_config(), discrete) is None


def test_offline_algorithm_needs_a_dataset_and_online_refuses_one():
    with pytest.raises(SpecError, match="needs a dataset"):
        prepare(rlscale.ExperimentSpec(algorithm="bc", env="CartPole-v1"))
    with pytest.raises(SpecError, match="takes no dataset.*cql_discrete"):
        prepare(rlscale.ExperimentSpec(algorithm="ppo", env="CartPole-v1", dataset="a/b-v0"))


def test_dataset_problems_stop_training_before_it_starts(ray_local, root, tmp_path):
    _collect(root, "CartPole-v1", "random", "cart/random-v0", episodes=2, noise=0.0)
    with pytest.raises(DatasetError, match="observation space"):
        prepare(
            rlscale.ExperimentSpec(algorithm="cql", env="Pendulum-v1", dataset="cart/random-v0")
        )
    with pytest.raises(DatasetError, match="not found"):
        prepare(rlscale.ExperimentSpec(algorithm="bc", env="CartPole-v1", dataset="no/such-v0"))
    cli = run_cli(
        "train",
        "cql_discrete",
        "--env",
        "CartPole-v1",
        "--dataset",
        "no/such-v0",
        "--output",
        str(tmp_path / "runs"),
        env={"MINARI_DATASETS_PATH": str(root)},
    )
    assert cli.returncode == 1 and "not found" in cli.stderr and "Traceback" not in cli.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    ("algorithm", "env", "policy"),
    [
        ("bc", "CartPole-v1", "cartpole_balance"),
        ("cql_discrete", "CartPole-v1", "cartpole_balance"),
        ("cql", "Pendulum-v1", "pendulum_swing_up"),
    ],
)
def test_a_shuffle_buffer_set_by_the_user_mixes_shards_in_every_offline_algorithm(
    ray_local, root, tmp_path, monkeypatch, algorithm, env, policy
):
    import minari
    from ray.rllib.utils.minibatch_utils import MiniBatchRayDataIterator

    _collect(root, env, policy, "mix/shards-v0", episodes=2, noise=0.0)
    episode_of = {
        row.astype(np.float32).tobytes(): episode.id
        for episode in minari.load_dataset("mix/shards-v0").iterate_episodes()
        for row in episode.observations[:-1]
    }
    monkeypatch.setattr(offline_data, "TRANSITIONS_PER_SHARD", 1)  # one episode per shard
    minibatches = []
    iterate = MiniBatchRayDataIterator.__iter__

    def record(self):
        for batch in iterate(self):
            minibatches.append(batch["default_policy"]["obs"].numpy())
            yield batch

    monkeypatch.setattr(MiniBatchRayDataIterator, "__iter__", record)
    _train(
        tmp_path,
        algorithm,
        env,
        "mix/shards-v0",
        iterations=1,
        dataset_num_iters_per_learner=2,
        iter_batches_kwargs={"local_shuffle_buffer_size": 1000, "local_shuffle_seed": 0},
    )

    # Without the buffer reaching the learner (RLlib's CQL step dropped it) every minibatch of
    # a 200- or 500-step episode's shard holds that one episode's transitions.
    assert {episode_of[row.tobytes()] for row in minibatches[0]} == {0, 1}


@pytest.mark.slow
def test_bc_on_expert_cartpole_reaches_475_and_evaluates(ray_local, root, tmp_path):
    _collect(root, "CartPole-v1", "cartpole_balance", "cart/expert-v0", episodes=10, noise=0.0)
    result = _train(tmp_path, "bc", "CartPole-v1", "cart/expert-v0", iterations=5)
    final = _last_evaluation(result)
    assert final.return_mean >= 475
    assert final.normalized_return == pytest.approx(
        100 * (final.return_mean - 20.95) / (500 - 20.95), rel=0.05
    )
    report = rlscale.evaluate(result.checkpoint, episodes=2)
    assert report.mean_return >= 475
    # The trained checkpoint can collect a dataset of its own.
    recollected = collect_dataset(
        env="CartPole-v1",
        policy=str(result.checkpoint),
        episodes=2,
        dataset_id="cart/from-bc-v0",
        workers=2,
    )
    assert recollected.mean_return >= 475
    assert recollected.write.episodes == 2


@pytest.mark.slow
def test_discrete_cql_beats_the_noisy_policy_that_collected_its_data(ray_local, root, tmp_path):
    collected = _collect(
        root, "CartPole-v1", "cartpole_balance", "cart/noisy-v0", episodes=30, noise=0.5
    )
    assert 100 <= collected.mean_return <= 250
    result = _train(tmp_path, "cql_discrete", "CartPole-v1", "cart/noisy-v0", iterations=5)
    final = _last_evaluation(result)
    assert final.return_mean > collected.mean_return
    assert final.normalized_return > 100


@pytest.mark.slow
def test_cql_beats_the_noisy_policy_that_collected_its_pendulum_data(ray_local, root, tmp_path):
    collected = _collect(
        root, "Pendulum-v1", "pendulum_swing_up", "pend/noisy-v0", episodes=30, noise=1.0
    )
    assert -800 <= collected.mean_return <= -300  # mediocre: random is about -1200, best -150
    result = _train(tmp_path, "cql", "Pendulum-v1", "pend/noisy-v0", iterations=40)
    final = _last_evaluation(result)
    assert final.return_mean > collected.mean_return + 100
    assert final.normalized_return > 100


def test_cql_target_networks_move_by_tau_after_every_update(monkeypatch):
    import torch
    from ray.rllib.core.columns import Columns
    from ray.rllib.core.learner.torch.torch_learner import TorchLearner
    from ray.rllib.policy.sample_batch import MultiAgentBatch, SampleBatch

    config = get_algorithm("cql").make_config().training(tau=0.5)
    spaces = (gym.spaces.Box(-1.0, 1.0, (3,)), gym.spaces.Box(-2.0, 2.0, (1,)))
    learner = config.build_learner(spaces={"default_policy": spaces})
    main, target = learner.module["default_policy"].get_target_network_pairs()[0]
    start = [p.detach().clone() for p in target.parameters()]
    main_after_each_step = []
    optimizer_step = TorchLearner.apply_gradients

    def step_and_record(self, gradients_dict):
        optimizer_step(self, gradients_dict)
        main_after_each_step.append([p.detach().clone() for p in main.parameters()])

    monkeypatch.setattr(TorchLearner, "apply_gradients", step_and_record)
    rng = np.random.default_rng(0)
    rows = 8
    columns = {
        Columns.OBS: rng.uniform(-1, 1, (rows, 3)).astype(np.float32),
        Columns.NEXT_OBS: rng.uniform(-1, 1, (rows, 3)).astype(np.float32),
        Columns.ACTIONS: rng.uniform(-1, 1, (rows, 1)).astype(np.float32),
        Columns.REWARDS: rng.normal(size=rows).astype(np.float32),
        Columns.TERMINATEDS: np.zeros(rows, dtype=bool),
        Columns.TRUNCATEDS: np.zeros(rows, dtype=bool),
    }
    batch = MultiAgentBatch({"default_policy": SampleBatch(columns)}, env_steps=rows)
    # One update call of three minibatches, as an offline iteration runs many.
    learner.update(batch=batch, minibatch_size=rows, num_epochs=3)

    assert len(main_after_each_step) == 3
    expected = start
    for main_params in main_after_each_step:
        expected = [0.5 * t + 0.5 * m for t, m in zip(expected, main_params, strict=True)]
    for got, want in zip(target.parameters(), expected, strict=True):
        torch.testing.assert_close(got, want)


def test_cql_regularizer_scores_sampled_actions_at_the_logged_state():
    import torch
    from ray.rllib.core.columns import Columns

    config = get_algorithm("cql").make_config()
    spaces = (gym.spaces.Box(-1.0, 1.0, (3,)), gym.spaces.Box(-2.0, 2.0, (1,)))
    module = config.get_multi_rl_module_spec(spaces={"default_policy": spaces}).build()
    module = module["default_policy"]
    module.make_target_networks()  # as the Learner does
    rows, samples = 64, config.num_actions
    generator = torch.Generator().manual_seed(0)
    batch = {
        Columns.OBS: torch.rand(rows, 3, generator=generator) * 2 - 1,
        Columns.NEXT_OBS: torch.rand(rows, 3, generator=generator) * 2 - 1,
        Columns.ACTIONS: torch.zeros(rows, 1),
    }
    out = module.forward_train(batch)

    # Pendulum's bounds are ±2; with normalize_actions the policy and the data use [-1, 1].
    random_actions = out["actions_rand_repeat"]
    assert random_actions.abs().max() <= 1.0
    assert random_actions.min() < -0.5 and random_actions.max() > 0.5

    def q_at(obs, actions):
        repeated = {
            Columns.OBS: torch.repeat_interleave(obs, samples, dim=0),
            Columns.ACTIONS: actions,
        }
        q = module._qf_forward_train_helper(repeated, module.qf_encoder, module.qf)
        return q.view(rows, samples, 1)

    # Actions drawn from the policy at s' are scored at s (Kumar et al. 2020), not at s'.
    next_actions = out["actions_next_repeat"]
    torch.testing.assert_close(out["q_next_repeat"], q_at(batch[Columns.OBS], next_actions))
    assert not torch.allclose(out["q_next_repeat"], q_at(batch[Columns.NEXT_OBS], next_actions))


def test_cql_clones_the_data_for_bc_iters_updates_then_follows_q(monkeypatch):
    from ray.rllib.algorithms.cql.torch.cql_torch_learner import CQLTorchLearner

    config = get_algorithm("cql").make_config()
    config.environment(
        observation_space=gym.spaces.Box(-1.0, 1.0, (3,)),
        action_space=gym.spaces.Box(-2.0, 2.0, (1,)),
    ).training(bc_iters=3)
    learner = config.build_learner()
    phases = []
    monkeypatch.setattr(
        CQLTorchLearner,
        "compute_loss_for_module",
        lambda self, *, module_id, config, batch, fwd_out: phases.append(config.bc_iters),
    )
    for _ in range(5):
        learner.compute_loss_for_module(
            module_id="default_policy", config=learner.config, batch={}, fwd_out={}
        )
    # RLlib's loss clones while its counter is below bc_iters: inf = cloning, 0 = SAC actor.
    assert phases == [float("inf")] * 3 + [0] * 2


def test_cql_greedy_action_is_the_squashed_mean_inside_the_bounds():
    import torch

    from rlscale.algorithms.offline.cql_module import SquashedGaussian

    logits = torch.tensor([[3.0, 0.0], [-0.5, 0.0]])  # pre-tanh mean, log-std
    greedy = SquashedGaussian.from_logits(logits).to_deterministic().sample()
    torch.testing.assert_close(greedy, torch.tanh(torch.tensor([[3.0], [-0.5]])))


@pytest.mark.slow
def test_checkpoint_policy_filters_observations_and_maps_actions_onto_the_bounds(
    ray_local, tmp_path
):
    """Collection acts as the trained EnvRunner does: saved MeanStdFilter statistics on the way
    in, [-1, 1] actions mapped onto Pendulum's ±2 torque on the way out."""
    import torch
    from ray.rllib.core.columns import Columns

    from rlscale.platform.collection import CheckpointPolicy

    result = rlscale.train(
        rlscale.ExperimentSpec(
            algorithm="ppo",
            env="Pendulum-v1",
            seed=0,
            stop={"iterations": 1},
            output=tmp_path,
            hyperparameters={"normalize_observations": True, "train_batch_size_per_learner": 512},
        )
    )
    algo = prepare(result.spec).config.build_algo()
    try:
        algo.restore_from_path(str(result.checkpoint))
        module = algo.get_module()
        filter_state = algo.env_runner._env_to_module.get_state()["MeanStdFilter"]
    finally:
        algo.stop()
    (stats,) = mean_std_filter_stats(filter_state)

    env = make_env("Pendulum-v1")
    act = CheckpointPolicy(str(result.checkpoint))(env.observation_space, env.action_space)
    for observation in ([1.0, 0.0, 6.0], [-1.0, 0.0, -7.5], [0.0, 1.0, 0.5]):
        observation = np.asarray(observation, dtype=np.float32)
        filtered = np.clip((observation - stats.mean) / (stats.std + 1e-8), -10, 10)
        with torch.no_grad():
            out = module.forward_inference({Columns.OBS: torch.as_tensor(filtered[None])})
        unit = np.clip(out[Columns.ACTION_DIST_INPUTS][0, :1].numpy(), -1, 1)  # Gaussian mean
        np.testing.assert_allclose(act(observation, None), 2.0 * unit, rtol=1e-4, atol=1e-5)
