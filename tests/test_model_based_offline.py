"""`pets` and `sysid` fitted from a Minari dataset (``--dataset``) instead of sampling the env.

Datasets are made here: whole episodes rolled out with rlscale's collection step
(``run_episode``) and written with its Minari writer, without Ray.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import rlscale
from rlscale.algorithms import Input, algorithms_taking, get_algorithm
from rlscale.algorithms.common.offline import DATASET_TRANSITIONS
from rlscale.algorithms.model_based import pets as pets_module
from rlscale.algorithms.model_based import sysid as sysid_module
from rlscale.algorithms.model_based.systems import action_interface
from rlscale.algorithms.model_based.transitions import transitions_from_dataset
from rlscale.algorithms.registry import AlgorithmEntry
from rlscale.datasets.collect import run_episode
from rlscale.datasets.store import write_dataset
from rlscale.envs import make_env
from rlscale.errors import DatasetError, SpecError
from rlscale.platform import runner
from rlscale.platform.experiment import prepare
from rlscale.policies import scripted_policy

CARTPOLE_TRUTH = {
    "gravity": 9.8,
    "length": 0.5,
    "mass_ratio": 0.1 / 1.1,
    "force_per_mass": 10 / 1.1,
}
"""CartPole-v1's identifiable constants (see docs/model_based.md)."""


@pytest.fixture
def root(tmp_path, monkeypatch):
    folder = tmp_path / "datasets"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(folder))
    return folder


def _write(root, env_name: str, dataset_id: str, episodes: int, seed: int = 0):
    """``episodes`` episodes of uniformly random actions, reset seeds ``seed, seed + 1, ...``."""
    env = make_env(env_name, {})
    try:
        policy = scripted_policy("random")(env.observation_space, env.action_space)
        rolled = [run_episode(env, policy, seed + i) for i in range(episodes)]
        written = write_dataset(
            dataset_id,
            iter(rolled),
            env.observation_space,
            env.action_space,
            env.spec,
            {"algorithm_name": "random"},
            root=root,
        )
    finally:
        env.close()
    return written, rolled


def _spec(algorithm: str, env: str, dataset: str | None, **kwargs) -> rlscale.ExperimentSpec:
    return rlscale.ExperimentSpec(
        algorithm=algorithm, env=env, dataset=dataset, seed=0, checkpoint={"every": 0}, **kwargs
    )


def _refuse_sampling(*_, **__):
    raise AssertionError("sampled the env for training")


# --- loading ------------------------------------------------------------------------------


def test_transitions_from_a_pendulum_dataset_are_its_steps_with_each_final_observation(root):
    written, episodes = _write(root, "Pendulum-v1", "pendulum/random-v0", episodes=3)
    env = make_env("Pendulum-v1", {})
    transitions = transitions_from_dataset(
        written.data_dir, action_interface("Pendulum-v1", env.action_space)
    )
    env.close()

    assert {key: value.dtype for key, value in transitions.items()} == dict.fromkeys(
        ("obs", "actions", "next_obs", "rewards"), np.dtype(np.float32)
    )
    assert transitions["obs"].shape == (600, 3) and transitions["actions"].shape == (600, 1)
    first, second = episodes[0], episodes[1]
    assert first.truncations[-1] and not first.terminations.any()
    np.testing.assert_array_equal(transitions["obs"][0], first.observations[0])
    np.testing.assert_array_equal(transitions["actions"][7], first.actions[7])
    np.testing.assert_array_equal(transitions["rewards"][:200], first.rewards.astype(np.float32))
    # The truncated episode's last transition ends in its final observation, not the next reset.
    np.testing.assert_array_equal(transitions["obs"][199], first.observations[199])
    np.testing.assert_array_equal(transitions["next_obs"][199], first.observations[200])
    np.testing.assert_array_equal(transitions["obs"][200], second.observations[0])
    np.testing.assert_array_equal(transitions["next_obs"][:200], first.observations[1:])


def test_cartpole_dataset_actions_become_the_forces_the_planner_plans(root):
    written, episodes = _write(root, "CartPole-v1", "cartpole/random-v0", episodes=4)
    env = make_env("CartPole-v1", {})
    transitions = transitions_from_dataset(
        written.data_dir, action_interface("CartPole-v1", env.action_space)
    )
    env.close()

    logged = np.concatenate([episode.actions for episode in episodes])
    assert set(np.unique(logged)) == {0, 1}
    np.testing.assert_array_equal(transitions["actions"][:, 0], np.where(logged == 1, 1.0, -1.0))
    assert len(transitions["obs"]) == written.steps == sum(len(e) for e in episodes)
    # A terminated episode's last next observation is the one the env ended on.
    ends = np.cumsum([len(e) for e in episodes]) - 1
    for end, episode in zip(ends, episodes, strict=True):
        assert episode.terminations[-1]
        np.testing.assert_array_equal(transitions["next_obs"][end], episode.observations[-1])


# --- the registry and prepare() --------------------------------------------------------------


def test_pets_and_sysid_may_take_a_dataset_and_stay_online_algorithms():
    for name in ("pets", "sysid"):
        entry = get_algorithm(name)
        assert entry.takes(Input.DATASET) and not entry.requires(Input.DATASET)
        assert entry.takes(Input.ENVIRONMENT) and not entry.offline
    assert get_algorithm("bc").offline and get_algorithm("bc").requires(Input.DATASET)
    assert {"pets", "sysid", "bc", "cql"} <= set(algorithms_taking(Input.DATASET))
    assert "mpc" not in algorithms_taking(Input.DATASET)


def test_an_entry_declaring_an_input_both_required_and_optional_is_refused():
    with pytest.raises(ValueError, match="dataset required and optional"):
        AlgorithmEntry(
            name="both",
            family="test",
            summary="",
            config_class=dict,
            inputs=(Input.DATASET,),
            optional_inputs=(Input.DATASET,),
        )
    with pytest.raises(ValueError, match="attach_dataset but takes no dataset"):
        AlgorithmEntry(
            name="hook", family="test", summary="", config_class=dict, attach_dataset=print
        )


def test_pets_without_a_dataset_is_prepared_as_before():
    config = prepare(_spec("pets", "Pendulum-v1", None)).config
    assert config.dataset_dir is None and not config.evaluation_interval


def test_a_dataset_makes_pets_fit_from_it_and_evaluate_in_the_env(root):
    written, _ = _write(root, "Pendulum-v1", "pendulum/random-v0", episodes=1)
    prepared = prepare(_spec("pets", "Pendulum-v1", "pendulum/random-v0"))
    assert prepared.config.dataset_dir == str(written.data_dir)
    assert prepared.dataset is not None and prepared.dataset.steps == 200
    assert prepared.config.evaluation_interval == 5
    assert prepared.config.evaluation_duration == 10
    assert prepared.config.evaluation_config == {"explore": False}
    assert not prepared.config.is_offline  # not RLlib's Ray Data input

    # Evaluation settings the user gives are kept.
    kept = prepare(
        _spec(
            "pets",
            "Pendulum-v1",
            "pendulum/random-v0",
            hyperparameters={"evaluation_duration": 2, "evaluation_interval": 1},
        )
    ).config
    assert (kept.evaluation_duration, kept.evaluation_interval) == (2, 1)

    # `rlscale evaluate` rebuilds it without the dataset, to act in the env.
    evaluating = prepare(_spec("pets", "Pendulum-v1", "pendulum/random-v0"), attach_dataset=False)
    assert evaluating.config.dataset_dir is None and evaluating.config.is_online


def test_sysid_accepts_a_cartpole_dataset(root):
    written, _ = _write(root, "CartPole-v1", "cartpole/random-v0", episodes=2)
    config = prepare(_spec("sysid", "CartPole-v1", "cartpole/random-v0")).config
    assert config.dataset_dir == str(written.data_dir)


def test_a_dataset_of_another_env_is_refused_before_ray_or_a_run_folder(
    root, tmp_path, monkeypatch
):
    _write(root, "CartPole-v1", "cartpole/random-v0", episodes=2)

    def no_ray(*_, **__):
        raise AssertionError("Ray started before the dataset was checked")

    monkeypatch.setattr(runner, "ray_session", no_ray)
    output = tmp_path / "runs"
    spec = _spec("pets", "Pendulum-v1", "cartpole/random-v0", output=output)
    with pytest.raises(DatasetError, match=r"cannot train on Pendulum-v1:\n.*observation space"):
        rlscale.train(spec)
    assert not output.exists()


def test_a_dataset_given_to_mpc_or_a_config_naming_no_dataset_is_refused(root, tmp_path):
    _write(root, "Pendulum-v1", "pendulum/random-v0", episodes=1)
    with pytest.raises(SpecError, match="mpc takes no dataset; drop --dataset.*pets.*sysid"):
        prepare(_spec("mpc", "Pendulum-v1", "pendulum/random-v0"))
    with pytest.raises(SpecError, match="dataset_dir .* is not a Minari dataset"):
        prepare(_spec("pets", "Pendulum-v1", None, hyperparameters={"dataset_dir": str(tmp_path)}))


# --- training -------------------------------------------------------------------------------


def test_a_pets_iteration_on_a_dataset_fits_the_model_and_samples_nothing(
    ray_local, root, monkeypatch
):
    _write(root, "Pendulum-v1", "pendulum/random-v0", episodes=2)
    monkeypatch.setattr(pets_module, "sample_env_steps", _refuse_sampling)
    spec = _spec(
        "pets",
        "Pendulum-v1",
        "pendulum/random-v0",
        hyperparameters={"model_updates": 20, "model_batch_size": 32, "hidden_sizes": [16]},
    )
    algo = prepare(spec).config.build_algo()
    try:
        ensemble = algo.learner_group._learner.module["default_policy"].dynamics
        before = [p.detach().clone() for p in ensemble.parameters()]
        first, second = algo.train(), algo.train()
        moved = any(
            not torch.equal(a, b) for a, b in zip(before, ensemble.parameters(), strict=True)
        )
    finally:
        algo.stop()
    assert moved
    assert first["num_env_steps_sampled_lifetime"] == 20 * 32
    assert second["num_env_steps_sampled_lifetime"] == 2 * 20 * 32
    assert second[DATASET_TRANSITIONS] == 400
    assert "model_loss" in second["learners"]["default_policy"]


@pytest.mark.slow
def test_sysid_identifies_cartpole_from_a_dataset_and_balances_in_the_env(
    ray_local, root, tmp_path, monkeypatch
):
    """2,000-odd random CartPole-v1 transitions from a dataset: every identifiable constant
    within 2%; the greedy evaluation during training and `rlscale evaluate` both balance for
    the full 500 steps, and training never samples the env."""
    written, _ = _write(root, "CartPole-v1", "cartpole/random-v0", episodes=90)
    assert written.steps >= 1_800
    monkeypatch.setattr(sysid_module, "sample_env_steps", _refuse_sampling)
    monkeypatch.setattr(
        "rlscale.algorithms.model_based.mpc.sample_env_steps", _refuse_sampling
    )
    spec = _spec(
        "sysid",
        "CartPole-v1",
        "cartpole/random-v0",
        stop={"iterations": 1},
        hyperparameters={"evaluation_interval": 1, "evaluation_duration": 1},
        output=tmp_path / "runs",
    )
    result = rlscale.train(spec)
    assert result.final.env_steps == written.steps  # the transitions identified from
    assert result.final.return_mean == 500.0  # the evaluation episode, in the real env

    from ray.rllib.core.rl_module.rl_module import RLModule

    module_dir = result.checkpoint / "learner_group" / "learner" / "rl_module" / "default_policy"
    identified = RLModule.from_checkpoint(module_dir).dynamics.identifiable_parameters()
    for name, value in CARTPOLE_TRUTH.items():
        assert identified[name] == pytest.approx(value, rel=0.02), (name, identified)
    evaluation = rlscale.evaluate(result.checkpoint, episodes=1, seed=0)
    assert evaluation.returns == [500.0]
    assert evaluation.policy_text is not None and "gravity" in evaluation.policy_text


@pytest.mark.long
def test_pets_fitted_on_random_pendulum_data_swings_up_in_the_env(ray_local, root, tmp_path):
    """PETS's ensemble fitted on 3,000 random Pendulum-v1 transitions (15 episodes) for two
    iterations (1,000 minibatches), with no env step sampled for training; CEM-MPC on it,
    evaluated greedily in the real env over 3 episodes, reaches a mean return >= -250 (the
    online check's threshold). The evaluation's 600 planned steps take most of the time, so it
    runs with ``make test-long``; ``make test`` checks the dataset path's learning with
    ``sysid`` and a pets iteration's mechanics."""
    _write(root, "Pendulum-v1", "pendulum/random-v0", episodes=15)
    spec = _spec(
        "pets",
        "Pendulum-v1",
        "pendulum/random-v0",
        stop={"iterations": 2},
        output=tmp_path / "runs",
    )
    result = rlscale.train(spec)
    assert result.final.env_steps == 2 * 500 * 256  # minibatch rows trained on
    evaluation = rlscale.evaluate(result.checkpoint, episodes=3, seed=0)
    assert evaluation.mean_return >= -250, evaluation.returns
