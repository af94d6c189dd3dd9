"""Spec -> RLlib config, checked before Ray starts."""

from __future__ import annotations

import pytest

from rlscale.errors import IncompatibleSpaceError, RlscaleError, SpecError, UnknownAlgorithmError
from rlscale.platform.episode_stats import EpisodeTotals
from rlscale.platform.experiment import cpu_demand, place_on_cluster, prepare
from rlscale.platform.spec import ExperimentSpec


def spec(**fields) -> ExperimentSpec:
    return ExperimentSpec(**{"algorithm": "ppo", "env": "CartPole-v1", "seed": 0, **fields})


def test_defaults_come_from_the_algorithm_config_class():
    config = prepare(spec()).config
    assert config.num_env_runners == 0 and config.num_envs_per_env_runner == 8
    assert config.train_batch_size_per_learner == 1024 and config.lr == 1e-3
    assert config.seed == 0


def test_hyperparameters_and_resources_override_defaults():
    config = prepare(
        spec(
            hyperparameters={
                "lr": 0.01,
                "lambda": 0.5,
                "train_batch_size_per_learner": 512,
                "model_config": {"fcnet_hiddens": [32]},
            },
            resources={"num_env_runners": 1, "num_envs_per_env_runner": 2},
        )
    ).config
    assert config.lr == 0.01 and config.lambda_ == 0.5
    assert config.train_batch_size_per_learner == 512
    assert config.model_config["fcnet_hiddens"] == [32]
    assert config.num_env_runners == 1 and config.num_envs_per_env_runner == 2


def test_unknown_hyperparameter_names_nearest():
    with pytest.raises(SpecError, match="unknown hyper-parameter 'num_epoch'.*num_epochs"):
        prepare(spec(hyperparameters={"num_epoch": 3}))


def test_unknown_algorithm_lists_registered():
    with pytest.raises(UnknownAlgorithmError, match="Did you mean: dqn"):
        prepare(spec(algorithm="dq"))


def test_dqn_on_continuous_actions_is_refused():
    with pytest.raises(IncompatibleSpaceError, match="Pendulum-v1.*Discrete.*fit.*ppo"):
        prepare(spec(algorithm="dqn", env="Pendulum-v1"))


def test_missing_seed_is_drawn_and_recorded():
    prepared = prepare(spec(seed=None))
    assert isinstance(prepared.spec.seed, int)
    assert prepared.config.seed == prepared.spec.seed


def test_episode_totals_are_tracked_alongside_user_callbacks():
    config = prepare(spec()).config
    assert EpisodeTotals in config.callbacks_class


def test_per_agent_policies_for_pettingzoo():
    prepared = prepare(
        spec(env="pettingzoo:mpe2.simple_spread_v3", multi_agent={"policies": "per_agent"})
    )
    assert set(prepared.config.policies) == set(prepared.env.agent_ids)
    mapping = prepared.config.policy_mapping_fn
    assert {mapping(agent, None) for agent in prepared.env.agent_ids} == set(prepared.env.agent_ids)


def test_placement_resolves_auto_gpus_and_checks_cpus():
    prepared = prepare(spec(resources={"num_env_runners": 2}))
    config = place_on_cluster(prepared.config, prepared.spec, cluster_cpus=2, cluster_gpus=0)
    assert config.num_gpus_per_learner == 0
    assert cpu_demand(config) == 2
    prepared = prepare(spec(resources={"num_env_runners": 3}))
    with pytest.raises(RlscaleError, match="needs 3 CPUs"):
        place_on_cluster(prepared.config, prepared.spec, cluster_cpus=2, cluster_gpus=0)


def test_dataset_given_to_an_online_algorithm_is_refused():
    with pytest.raises(SpecError, match="ppo takes no dataset; drop --dataset.*cql_discrete"):
        prepare(spec(dataset="some/dataset-v0"))


@pytest.fixture
def expert_algorithm(monkeypatch):
    """A registered algorithm that takes an expert as well as the environment."""
    from rlscale.algorithms import registry
    from rlscale.algorithms.registry import AlgorithmEntry, Input

    ppo = registry.get_algorithm("ppo")

    def config_with_expert():
        config = ppo.make_config()
        config.expert = None
        return config

    entry = AlgorithmEntry(
        name="expert_probe",
        family="imitation",
        summary="a PPO that is handed an expert (test only)",
        config_class=config_with_expert,
        inputs=(Input.ENVIRONMENT, Input.EXPERT),
    )
    monkeypatch.setitem(registry._REGISTRY, entry.name, entry)
    return entry


def test_an_expert_input_is_checked_and_handed_to_the_config(expert_algorithm):
    prepared = prepare(spec(algorithm="expert_probe", expert="cartpole_balance"))
    assert prepared.config.expert == "cartpole_balance"
    with pytest.raises(SpecError, match="expert_probe needs an expert"):
        prepare(spec(algorithm="expert_probe"))
    with pytest.raises(RlscaleError, match="cartpole_balanse.*cartpole_balance"):
        prepare(spec(algorithm="expert_probe", expert="cartpole_balanse"))
    with pytest.raises(SpecError, match="ppo takes no expert.*expert_probe"):
        prepare(spec(expert="cartpole_balance"))


def test_an_expert_checkpoint_must_exist_and_fit_the_env(expert_algorithm, tmp_path):
    from rlscale.errors import CheckpointError

    with pytest.raises(CheckpointError, match="not a complete rlscale checkpoint"):
        prepare(spec(algorithm="expert_probe", expert=str(tmp_path)))


def test_the_expert_key_stays_out_of_specs_that_do_not_use_it():
    assert "expert" not in spec().to_yaml()
    assert "expert: cartpole_balance" in spec(expert="cartpole_balance").to_yaml()
