"""Offline algorithms: spec checks, learning checks on small datasets made here, evaluate."""

from __future__ import annotations

import threading

import gymnasium as gym
import numpy as np
import pytest
import torch
from minari.serialization import serialize_space
from ray.rllib.core.columns import Columns

import rlscale
from rlscale.algorithms import get_algorithm
from rlscale.algorithms.common import offline_data
from rlscale.algorithms.common.offline import PREFETCH_THREAD_NAME
from rlscale.algorithms.common.offline_data import LEARNER_BATCH_KEYS, normalized_action_bounds
from rlscale.algorithms.offline.bc import StandardizedBCModule
from rlscale.datasets.collect import CollectionRequest, collect
from rlscale.datasets.ray_data import read_transitions, to_learner_batch, to_unit_range
from rlscale.datasets.store import resolve_dataset
from rlscale.envs import make_env
from rlscale.errors import DatasetError, SpecError, TrainingDivergedError
from rlscale.platform.datasets_api import collect_dataset
from rlscale.platform.experiment import prepare
from rlscale.platform.iteration import non_finite_losses
from rlscale.policies import scripted_policy
from tests.conftest import (
    mean_std_filter_stats,
    pendulum_transition_batch,
    run_cli,
    write_scripted_dataset,
)

EVERY_OFFLINE_ALGORITHM = [
    ("bc", "CartPole-v1", "cartpole_balance"),
    ("cql_discrete", "CartPole-v1", "cartpole_balance"),
    ("cql", "Pendulum-v1", "pendulum_swing_up"),
]
"""Each offline algorithm with an env it accepts and a scripted policy to collect data there."""


def _streamed(algorithm: str) -> dict:
    """Hyper-parameters that send ``algorithm``'s small test dataset through Ray Data (bc reads
    one of up to ``in_memory_transitions`` into memory)."""
    return {"in_memory_transitions": 0} if algorithm == "bc" else {}


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
    batch = to_learner_batch(rows, LEARNER_BATCH_KEYS)
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
    bounds = normalized_action_bounds(config, pendulum)
    assert bounds is not None and bounds[0][0] == -2.0 and bounds[1][0] == 2.0
    config.normalize_actions = False
    assert normalized_action_bounds(config, pendulum) is None
    discrete = {"action_space": serialize_space(gym.spaces.Discrete(2))}
    assert normalized_action_bounds(get_algorithm("bc").make_config(), discrete) is None


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


@pytest.mark.parametrize("algorithm", ["bc", "diffusion_bc", "cql"])
def test_a_dataset_of_states_alone_is_refused_by_algorithms_that_learn_actions(
    minari_root, algorithm
):
    states_only = write_scripted_dataset(
        minari_root, "pend/states-v0", 2, "Pendulum-v1", "pendulum_swing_up", erase_actions=True
    )
    spec = rlscale.ExperimentSpec(algorithm=algorithm, env="Pendulum-v1", dataset=states_only)
    with pytest.raises(DatasetError, match=r"same action at every step.*bco or state_only_il"):
        prepare(spec)
    # The state-only algorithms take it: they ignore its actions.
    prepare(spec.model_copy(update={"algorithm": "bco"}))


def test_only_non_finite_losses_count_as_divergence():
    result = {
        "learners": {
            "default_policy": {
                "policy_loss": float("nan"),
                "td_loss": float("inf"),
                "q_logged_mean": float("nan"),  # not a loss: a NaN statistic alone stops nothing
                "total_loss": 0.5,
            },
            "__all_modules__": {"num_env_steps_trained": 256},
        }
    }
    assert non_finite_losses(result) == {
        "default_policy/policy_loss": pytest.approx(float("nan"), nan_ok=True),
        "default_policy/td_loss": float("inf"),
    }
    assert non_finite_losses({"learners": {"default_policy": {"total_loss": 1.0}}}) == {}
    # An iteration that updated nothing (its EnvRunners died) reports NaN for the losses of no
    # batch: not divergence.
    for trained in (0, float("nan")):
        result["learners"]["__all_modules__"]["num_env_steps_trained"] = trained
        assert non_finite_losses(result) == {}


@pytest.mark.slow
def test_a_loss_that_becomes_nan_stops_training_and_keeps_the_checkpoints_before_it(
    ray_local, minari_root, tmp_path
):
    """bc's learning rate jumps to 1e30 once 51,200 transitions are trained (from iteration 3,
    at 100 updates of 256 per iteration): the run
    stops there with an error naming the iteration, its updates and the checkpoint of
    iteration 2, which stays; no final checkpoint of the NaN policy is written."""
    dataset = write_scripted_dataset(
        minari_root, "pend/expert-v0", 2, "Pendulum-v1", "pendulum_swing_up"
    )
    spec = rlscale.ExperimentSpec(
        algorithm="bc",
        env="Pendulum-v1",
        dataset=dataset,
        seed=0,
        stop={"iterations": 6},
        output=tmp_path / "runs",
        checkpoint={"every": 2},
        hyperparameters={"lr": [[0, 1e-3], [50_000, 1e-3], [50_001, 1e30]]},
    )
    with pytest.raises(TrainingDivergedError) as raised:
        rlscale.train(spec)
    message = str(raised.value)
    assert "in iteration 3 (updates 201-300)" in message, message
    assert "policy_loss = nan" in message, message
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert f"{run_dir / 'checkpoints' / 'iter_000002'}" in message, message
    assert (run_dir / "checkpoints" / "iter_000002").is_dir()
    assert not (run_dir / "checkpoint_final").exists()
    assert len((run_dir / "metrics.csv").read_text().splitlines()) == 1 + 3


@pytest.mark.slow
@pytest.mark.parametrize(("algorithm", "env", "policy"), EVERY_OFFLINE_ALGORITHM)
def test_the_default_shuffle_buffer_mixes_shards_in_every_offline_algorithm(
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
        **_streamed(algorithm),
    )

    # Without the buffer reaching the learner (RLlib's CQL step dropped it, and it was off by
    # default) every minibatch of a 200- or 500-step episode's shard holds that one episode's
    # transitions.
    assert {episode_of[row.tobytes()] for row in minibatches[0]} == {0, 1}


@pytest.mark.parametrize(("algorithm", "env", "policy"), EVERY_OFFLINE_ALGORITHM)
def test_stopping_an_offline_algorithm_closes_its_data_iterator_while_ray_is_up(
    ray_local, root, algorithm, env, policy
):
    # Left open, the iterator was finalized after ray.shutdown(): "Ray is not initialized",
    # and with the shuffle buffer on a large streamed dataset, exit code 1.
    _collect(root, env, policy, "stop/iterator-v0", episodes=2, noise=0.0)
    spec = rlscale.ExperimentSpec(
        algorithm=algorithm,
        env=env,
        dataset="stop/iterator-v0",
        seed=0,
        hyperparameters={"dataset_num_iters_per_learner": 2, **_streamed(algorithm)},
    )
    algo = prepare(spec).config.build_algo()
    algo.train()
    learner = algo.learner_group._learner
    open_epoch = learner.iterator._epoch_iterator
    assert open_epoch.gi_frame is not None  # the Learner keeps it open between updates
    algo.stop()
    assert open_epoch.gi_frame is None
    assert learner.iterator is None
    # Ray Data's prefetch threads have ended too: one left inside ray.get when Ray shuts down
    # aborts the process.
    assert not [t for t in threading.enumerate() if t.name == PREFETCH_THREAD_NAME]


@pytest.mark.slow
def test_bc_on_expert_cartpole_reaches_475_and_evaluates(ray_local, root, tmp_path):
    _collect(root, "CartPole-v1", "cartpole_balance", "cart/expert-v0", episodes=10, noise=0.0)
    result = _train(tmp_path, "bc", "CartPole-v1", "cart/expert-v0", iterations=5)
    final = _last_evaluation(result)
    assert final.return_mean >= 475
    # Evaluated after the first iteration too, not only at RLlib's interval (every 5th).
    assert result.history[0].has_return
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


def test_evaluation_interval_zero_switches_every_evaluation_off(ray_local, root, tmp_path):
    # A benchmark timing training alone sets 0: not even the evaluation an offline run adds
    # after its first iteration may run, and the checkpoint still evaluates afterwards.
    _collect(root, "CartPole-v1", "cartpole_balance", "cart/no-eval-v0", episodes=2, noise=0.0)
    result = _train(
        tmp_path, "bc", "CartPole-v1", "cart/no-eval-v0", iterations=2, evaluation_interval=0
    )
    assert len(result.history) == 2
    assert not any(metrics.has_return for metrics in result.history)
    assert rlscale.evaluate(result.checkpoint, episodes=1).episodes == 1


# ------------------------------------------------------------------------ BC's in-memory data


def test_bc_reads_a_small_dataset_into_memory_and_streams_a_larger_one(minari_root):
    name = write_scripted_dataset(minari_root, "cart/two-v0", 2, "CartPole-v1", "cartpole_balance")
    spec = rlscale.ExperimentSpec(algorithm="bc", env="CartPole-v1", dataset=name, seed=0)
    assert prepare(spec).config.offline_data_class is offline_data.InMemoryOfflineData
    # 1,000 transitions: above a limit of 999 (or 0) they stream through Ray Data.
    for limit in (999, 0):
        streamed = spec.model_copy(update={"hyperparameters": {"in_memory_transitions": limit}})
        assert prepare(streamed).config.offline_data_class is offline_data.MinariOfflineData
    at_limit = spec.model_copy(update={"hyperparameters": {"in_memory_transitions": 1_000}})
    assert prepare(at_limit).config.offline_data_class is offline_data.InMemoryOfflineData
    for bad in (-1, "many", 1.5, True):
        wrong = spec.model_copy(update={"hyperparameters": {"in_memory_transitions": bad}})
        with pytest.raises(SpecError, match="in_memory_transitions must be a"):
            prepare(wrong)


def test_in_memory_data_holds_the_streamed_columns_and_draws_seeded_batches(minari_root):
    name = write_scripted_dataset(
        minari_root, "pendulum/memory-v0", 2, "Pendulum-v1", "pendulum_swing_up"
    )
    spec = rlscale.ExperimentSpec(algorithm="bc", env="Pendulum-v1", dataset=name, seed=3)
    config = prepare(spec).config
    data = offline_data.InMemoryOfflineData(config)
    # The columns Ray Data streams (LEARNER_BATCH_KEYS), actions rescaled to [-1, 1] alike.
    streamed = to_learner_batch(
        read_transitions(resolve_dataset(name), 0, 2),
        LEARNER_BATCH_KEYS,
        normalized_action_bounds(
            config, {"action_space": serialize_space(gym.spaces.Box(-2.0, 2.0, (1,)))}
        ),
    )
    assert len(data) == 400
    for column, key in LEARNER_BATCH_KEYS.items():
        np.testing.assert_array_equal(data.columns[column], streamed[key])
        assert data.columns[column].dtype == streamed[key].dtype
    assert np.abs(data.columns[Columns.ACTIONS]).max() < 1.0
    batch = data.sample(300).policy_batches["default_policy"]
    assert len(batch) == 300 and set(batch.keys()) == set(LEARNER_BATCH_KEYS)

    # Each row is one whole transition of the dataset.
    def transitions(columns):
        whole = [columns[c].reshape(len(columns[c]), -1) for c in (Columns.OBS, Columns.ACTIONS)]
        whole.append(columns[Columns.NEXT_OBS])
        return [row.tobytes() for row in np.concatenate(whole, axis=1)]

    assert set(transitions(batch)) <= set(transitions(data.columns))
    # The same seed draws the same rows; another seed other rows.
    again = offline_data.InMemoryOfflineData(config).sample(300).policy_batches["default_policy"]
    np.testing.assert_array_equal(again[Columns.OBS], batch[Columns.OBS])
    config.seed = 4
    other = offline_data.InMemoryOfflineData(config).sample(300).policy_batches["default_policy"]
    assert not np.array_equal(other[Columns.OBS], batch[Columns.OBS])


def test_bc_trains_from_memory_through_the_lean_loop(ray_local, minari_root, tmp_path):
    name = write_scripted_dataset(minari_root, "cart/lean-v0", 2, "CartPole-v1", "cartpole_balance")
    spec = rlscale.ExperimentSpec(
        algorithm="bc",
        env="CartPole-v1",
        dataset=name,
        seed=0,
        hyperparameters={"dataset_num_iters_per_learner": 3, "evaluation_interval": 0},
    )
    algo = prepare(spec).config.build_algo()
    try:
        learner = algo.learner_group._learner
        assert learner.lean_problem is None
        assert isinstance(algo.offline_data, offline_data.InMemoryOfflineData)
        result = algo.train()
        assert learner.iterator is None  # no Ray Data iterator was opened
    finally:
        algo.stop()
    counts = result["learners"]["__all_modules__"]
    assert counts["num_module_steps_trained"] == 3 * 256
    assert result["num_env_steps_sampled_lifetime"] == 3 * 256
    # The updates, counted as RLlib counts batches pulled from Ray Data.
    assert counts["dataset_num_iters_trained"] == counts["dataset_num_iters_trained_lifetime"] == 3


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
    # Rebuilt without the dataset to act in the env (RLlib's SAC config once refused CQL's
    # replay buffer there).
    assert len(rlscale.evaluate(result.checkpoint, episodes=2).returns) == 2


def test_cql_target_networks_move_by_tau_after_every_update(monkeypatch):
    import torch
    from ray.rllib.core.columns import Columns
    from ray.rllib.policy.sample_batch import MultiAgentBatch, SampleBatch

    from rlscale.algorithms.value_based.sac import learner as sac  # CQL's Learner is SAC's

    config = get_algorithm("cql").make_config().training(tau=0.5)
    spaces = (gym.spaces.Box(-1.0, 1.0, (3,)), gym.spaces.Box(-2.0, 2.0, (1,)))
    learner = config.build_learner(spaces={"default_policy": spaces})
    main, target = learner.module["default_policy"].get_target_network_pairs()[0]
    start = [p.detach().clone() for p in target.parameters()]
    main_after_each_step = []
    polyak_step = sac.polyak_step

    def record_and_average(main_net, target_net, tau):
        # Called after each optimizer step: the main critics the targets move towards.
        main_after_each_step.append([p.detach().clone() for p in main_net.parameters()])
        polyak_step(main_net, target_net, tau)

    monkeypatch.setattr(sac, "polyak_step", record_and_average)
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


def _cql_learner(**training):
    config = get_algorithm("cql").make_config().training(**training)
    spaces = (gym.spaces.Box(-1.0, 1.0, (3,)), gym.spaces.Box(-2.0, 2.0, (1,)))
    return config.build_learner(spaces={"default_policy": spaces})


def test_cql_regularizer_scores_sampled_actions_at_the_logged_state():
    import torch
    from ray.rllib.core.columns import Columns

    learner = _cql_learner()
    module = learner.module["default_policy"].unwrapped()
    with torch.no_grad():  # a near-deterministic policy: its samples are tanh(mean)
        module.policy.log_std.weight.zero_()
        module.policy.log_std.bias.fill_(-20.0)
    batch, samples = pendulum_transition_batch(64), learner.config.num_actions
    rows = batch[Columns.OBS].shape[0]
    critic_inputs = []
    module.critics.register_forward_hook(lambda mod, args, out: critic_inputs.append(args[0]))
    module.forward_train(batch)

    # The first critic call is the regularizer's: 1 + 3 * num_actions actions for each row.
    inputs = critic_inputs[0].reshape(1 + 3 * samples, rows, 4)
    obs, actions = inputs[..., :3], inputs[..., 3:]
    # Every action is scored at the logged state s (Kumar et al. 2020), none at s'.
    torch.testing.assert_close(obs, batch[Columns.OBS].expand_as(obs))
    torch.testing.assert_close(actions[0], batch[Columns.ACTIONS])
    # Uniform actions in [-1, 1], where the policy and the rescaled logged actions live
    # (Pendulum's bounds are ±2).
    uniform = actions[1 : 1 + samples]
    assert uniform.abs().max() <= 1.0 and uniform.min() < -0.5 and uniform.max() > 0.5
    with torch.no_grad():
        at_obs = module.policy(batch[Columns.OBS]).greedy()
        at_next_obs = module.policy(batch[Columns.NEXT_OBS]).greedy()
    for policy_samples, expected in (
        (actions[1 + samples : 1 + 2 * samples], at_obs),
        (actions[1 + 2 * samples :], at_next_obs),
    ):
        torch.testing.assert_close(policy_samples, expected.expand_as(policy_samples))


def test_cql_losses_share_one_backward_pass_and_move_only_their_own_parameters():
    """Actor, critics and temperature get exactly the gradients of their own losses."""
    import torch

    learner = _cql_learner(bc_iters=0)
    module = learner.module["default_policy"].unwrapped()
    batch = pendulum_transition_batch(64)
    torch.manual_seed(0)
    fwd_out = module.forward_train(batch)
    total = learner.compute_loss_for_module(
        module_id="default_policy", config=learner.config, batch=batch, fwd_out=fwd_out
    )

    def grads_of(loss, params):
        return torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)

    alpha = module.log_alpha.exp().detach()
    critic_loss = learner._td_loss(learner.config, batch, fwd_out, alpha)
    critic_loss = critic_loss + learner._conservative_loss(learner.config, fwd_out, 1)
    actor_loss = (alpha * fwd_out["logp_actor"] - fwd_out["q_actor"]).mean()
    alpha_loss = -(module.log_alpha * (fwd_out["logp_actor"].detach() - 1.0)).mean()
    torch.testing.assert_close(total, critic_loss + actor_loss + alpha_loss)
    # The total's gradient on each group equals that of the group's own loss alone.
    groups = (
        (list(module.critics.parameters()), critic_loss),
        (list(module.policy.parameters()), actor_loss),
        ([module.log_alpha], alpha_loss),
    )
    for params, own_loss in groups:
        for got, want in zip(grads_of(total, params), grads_of(own_loss, params), strict=True):
            torch.testing.assert_close(got, want)
    critics = groups[0][0]
    # The actor's Q is the critics' with their weights held: no gradient reaches the critics.
    assert all(g is None for g in grads_of(fwd_out["q_actor"].sum(), critics))


def test_cql_steps_each_optimizer_like_adam_and_zeroes_non_finite_gradients():
    import torch

    learner = _cql_learner()
    module = learner.module["default_policy"].unwrapped()
    config = learner.config
    groups = (
        (list(module.policy.parameters()), config.actor_lr),
        (list(module.critics.parameters()), config.critic_lr),
        ([module.log_alpha], config.alpha_lr),
    )
    trained = [param for params, _ in groups for param in params]
    generator = torch.Generator().manual_seed(0)
    for param in trained:
        param.grad = torch.randn(param.shape, generator=generator)
    references = []
    for params, lr in groups:
        copies = [torch.nn.Parameter(p.detach().clone()) for p in params]
        for copy, param in zip(copies, params, strict=True):
            copy.grad = param.grad.clone()
        torch.optim.Adam(copies, lr=lr).step()  # torch's reference (for-loop) Adam
        references += copies
    gradients = {pid: param.grad for pid, param in learner._params.items()}
    learner.apply_gradients(gradients)
    for param, reference in zip(trained, references, strict=True):
        torch.testing.assert_close(param.detach(), reference.detach())

    # A nan gradient is zeroed, as RLlib's Learner does: that parameter stays put (a first
    # Adam step with a zero gradient), the others still step.
    learner = _cql_learner()
    module = learner.module["default_policy"].unwrapped()
    for param in learner._params.values():
        param.grad = torch.zeros_like(param)
    critic_weight = module.critics.layers[0].weight
    before = critic_weight.detach().clone()
    critic_weight.grad = torch.full_like(critic_weight, float("nan"))
    module.log_alpha.grad = torch.tensor(1.0)
    alpha_before = module.log_alpha.item()
    learner.apply_gradients({pid: param.grad for pid, param in learner._params.items()})
    torch.testing.assert_close(critic_weight.detach(), before)
    assert module.log_alpha.item() == pytest.approx(alpha_before - config.alpha_lr, rel=1e-3)


def test_cql_clones_the_data_for_bc_iters_updates_then_follows_q():
    import torch

    from rlscale.algorithms.offline.cql import module as out_keys

    learner = _cql_learner(bc_iters=3)
    rows, samples = 4, learner.config.num_actions
    fwd_out = {
        out_keys.Q_LOGGED: torch.zeros(2, rows),
        out_keys.Q_SAMPLED: torch.zeros(2, 3, samples, rows),
        out_keys.LOGP_SAMPLED: torch.zeros(2, samples, rows),
        out_keys.Q_ACTOR: torch.full((rows,), 7.0),
        out_keys.LOGP_ACTOR: torch.zeros(rows),
        out_keys.LOGP_LOGGED: torch.full((rows,), 1.0),
        out_keys.Q_TARGET_NEXT: torch.zeros(rows),
        out_keys.LOGP_NEXT: torch.zeros(rows),
    }
    batch = pendulum_transition_batch(rows)
    actor_losses = []
    for _ in range(5):
        learner.compute_loss_for_module(
            module_id="default_policy", config=learner.config, batch=batch, fwd_out=fwd_out
        )
        actor_losses.append(learner.metrics.peek(("default_policy", "policy_loss")))
    # -log pi(a_data | s) for three updates, then -Q(s, a ~ pi(s)).
    assert actor_losses == [-1.0] * 3 + [-7.0] * 2


def test_cql_refuses_settings_its_module_does_not_implement():
    config = get_algorithm("cql").make_config().offline_data(input_="data")
    with pytest.raises(ValueError, match="lagrangian=False"):
        config.copy().training(lagrangian=True).validate()
    with pytest.raises(ValueError, match="normalize_actions=True"):
        config.copy().environment(normalize_actions=False).validate()
    with pytest.raises(ValueError, match="target_action must be one of mean, sample"):
        config.copy().training(target_action="max").validate()
    with pytest.raises(ValueError, match="target_action='sample'"):
        config.copy().training(deterministic_backup=False).validate()


@pytest.mark.parametrize("target_action", ["mean", "sample"])
def test_cql_bootstraps_from_the_greedy_next_action_by_default(target_action):
    import torch
    from ray.rllib.core.columns import Columns

    learner = _cql_learner(target_action=target_action)
    module = learner.module["default_policy"].unwrapped()
    batch = pendulum_transition_batch(64)
    with torch.no_grad():
        greedy_next = module.policy(batch[Columns.NEXT_OBS]).greedy()
        at_greedy = (
            module._critic_values(
                module._target_critics, batch[Columns.NEXT_OBS], greedy_next.unsqueeze(0)
            )[:, 0]
            .min(dim=0)
            .values
        )
        q_target_next = module.forward_train(batch)["q_target_next"]
    # The mean keeps the target on the policy's own action; a sample of the (wide) policy
    # lands elsewhere. Sampled targets let Q diverge on Hopper data.
    assert torch.allclose(q_target_next, at_greedy) == (target_action == "mean")


def test_cql_greedy_action_is_the_squashed_mean_inside_the_bounds():
    import torch

    from rlscale.modules.distributions.squashed_gaussian import SquashedGaussian

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

    from rlscale.policies import CheckpointPolicy

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


def _linear_widths(network) -> list[int]:
    import torch

    return [layer.out_features for layer in network.modules() if isinstance(layer, torch.nn.Linear)]


def test_discrete_cql_and_dqn_build_the_same_q_module():
    from rlscale.algorithms.offline import DiscreteCQLConfig
    from rlscale.algorithms.value_based import DQNConfig
    from rlscale.modules.rl_modules.discrete_q import DiscreteQModule

    for config_class in (DQNConfig, DiscreteCQLConfig):
        spec = config_class().environment("CartPole-v1").get_rl_module_spec()
        assert spec.module_class is DiscreteQModule


def test_cql_accepts_its_target_action_through_training():
    from rlscale.algorithms.offline import CQLConfig

    config = CQLConfig().training(target_action="sample", deterministic_backup=False)
    assert config.target_action == "sample"
    assert config.model_config["target_action"] == "sample"


@pytest.mark.parametrize(
    ("algorithm", "env"),
    [("cql", "Pendulum-v1"), ("cql_discrete", "CartPole-v1"), ("bc", "CartPole-v1")],
)
def test_hidden_sizes_set_the_width_of_every_offline_network(algorithm, env):
    config = get_algorithm(algorithm).make_config().environment(env)
    config.training(hidden_sizes=[24, 12])
    module = config.get_rl_module_spec(env=make_env(env)).build()
    if algorithm == "cql":
        assert _linear_widths(module.policy.trunk) == [24, 12]
        assert [layer.weight.shape[-1] for layer in module.critics.layers] == [24, 12, 1]
    elif algorithm == "cql_discrete":
        assert _linear_widths(module.q_network.trunk) == [24, 12]
    else:  # RLlib's BC module reads the same width under RLlib's names
        assert _linear_widths(module._encoder) == [24, 12]


# ------------------------------------------------------------------------ BC standardization


def test_bc_standardizes_with_the_datasets_statistics_in_the_learners_units(minari_root, tmp_path):
    name = write_scripted_dataset(
        minari_root, "pendulum/swing-v0", 2, "Pendulum-v1", "pendulum_swing_up"
    )
    spec = rlscale.ExperimentSpec(algorithm="bc", env="Pendulum-v1", dataset=name, seed=0)
    config = prepare(spec).config
    columns = {
        k: np.asarray(v, np.float64)
        for k, v in read_transitions(resolve_dataset(name), 0, 2).items()
        if k in ("obs", "actions")
    }
    statistics = config.dataset_statistics
    np.testing.assert_allclose(statistics["obs_mean"], columns["obs"].mean(0), rtol=1e-6)
    np.testing.assert_allclose(statistics["obs_std"], columns["obs"].std(0), rtol=1e-6)
    # Actions in the policy's [-1, 1] (Pendulum's bounds are +-2), as the learner sees them.
    unit = to_unit_range(columns["actions"].reshape(-1, 1), np.array([-2.0]), np.array([2.0]))
    np.testing.assert_allclose(statistics["action_mean"], unit.mean(0), rtol=1e-5)
    np.testing.assert_allclose(statistics["action_std"], unit.std(0), rtol=1e-5)
    assert config.model_config["free_log_std"] is True
    discrete = write_scripted_dataset(
        minari_root, "cart/b-v0", 1, "CartPole-v1", "cartpole_balance"
    )
    spec = rlscale.ExperimentSpec(algorithm="bc", env="CartPole-v1", dataset=discrete, seed=0)
    config = prepare(spec).config
    assert set(config.dataset_statistics) == {"obs_mean", "obs_std"}
    assert config.model_config["free_log_std"] is False
    off = prepare(spec.model_copy(update={"hyperparameters": {"standardize": False}})).config
    assert off.dataset_statistics is None and off.model_config["free_log_std"] is False
    with pytest.raises(SpecError, match="standardize must be true or false"):
        prepare(spec.model_copy(update={"hyperparameters": {"standardize": "yes"}}))


def test_the_standardized_bc_module_maps_its_outputs_back_to_the_action_units():
    statistics = {
        "obs_mean": [1.0, -1.0, 0.0],
        "obs_std": [2.0, 0.5, 1.0],
        "action_mean": [0.1],
        "action_std": [0.01],
    }
    kwargs = {
        "observation_space": gym.spaces.Box(-10.0, 10.0, (3,), np.float32),
        "action_space": gym.spaces.Box(-1.0, 1.0, (1,), np.float32),
    }
    plain_config = {"fcnet_hiddens": [8], "fcnet_activation": "tanh", "free_log_std": True}
    standardized = StandardizedBCModule(
        **kwargs,
        model_config=plain_config | {"standardize": True, "dataset_statistics": statistics},
    )
    plain = StandardizedBCModule(**kwargs, model_config=plain_config | {"standardize": False})
    plain.load_state_dict(
        {
            k: v
            for k, v in standardized.state_dict().items()
            if not k.startswith(("obs_", "action_"))
        }
    )
    obs = torch.tensor([[3.0, -0.5, 2.0], [1.0, -1.0, 0.0]])
    out = standardized.forward_inference({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS]
    inner = plain.forward_inference({Columns.OBS: torch.tensor([[1.0, 1.0, 2.0], [0.0, 0.0, 0.0]])})
    mean, log_std = inner[Columns.ACTION_DIST_INPUTS].chunk(2, dim=-1)
    expected = torch.cat([mean * 0.01 + 0.1, log_std + np.log(0.01)], dim=-1)
    torch.testing.assert_close(out, expected)
    # Built without statistics (evaluation), it takes the saved ones with the weights.
    restored = StandardizedBCModule(
        **kwargs, model_config=plain_config | {"standardize": True, "dataset_statistics": None}
    )
    restored.load_state_dict(standardized.state_dict())
    torch.testing.assert_close(
        restored.forward_inference({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS], out
    )


@pytest.mark.slow
def test_bc_clones_an_expert_whose_actions_barely_vary(ray_local, minari_root, tmp_path):
    """InvertedPendulum-v5's balance expert acts with a standard deviation of 0.0028 on
    observations varying by at most 0.007: BC from 4 episodes (2,000 updates) holds the pole
    for the whole 1,000 steps (without ``standardize`` it fell within 50 steps)."""
    name = write_scripted_dataset(
        minari_root, "ip/balance-v0", 4, "InvertedPendulum-v5", "inverted_pendulum_balance"
    )
    spec = rlscale.ExperimentSpec(
        algorithm="bc",
        env="InvertedPendulum-v5",
        dataset=name,
        seed=0,
        stop={"iterations": 20},
        output=tmp_path / "runs",
        checkpoint={"every": 0},
    )
    result = rlscale.train(spec)
    evaluation = rlscale.evaluate(result.checkpoint, episodes=5, seed=100)
    assert evaluation.mean_return >= 950, evaluation.returns
