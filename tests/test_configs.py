"""`XConfig()` in Python, `rlscale train x` and a sweep trial run the same configuration.

Every default is a config attribute defined once, and defaults that depend on the action space
are applied by the config itself; the platform adds only what a run needs (its env id, seed and
episode tracking). The CLI and sweeps both build through :func:`prepare`, so checking it against a
bare config covers all three paths.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from rlscale.algorithms import Input, list_algorithms
from rlscale.algorithms.registry import FAMILY_ALGORITHMS, vector_observations_only
from rlscale.envs import register_with_rllib
from rlscale.errors import SpecError
from rlscale.platform.experiment import prepare
from rlscale.platform.spec import ExperimentSpec

CANDIDATE_ENVS = ("CartPole-v1", "Pendulum-v1", "FrozenLake-v1")
"""Discrete actions, Box actions, Discrete observations: every family fits at least one."""
EXPERT = "random"
"""The expert of algorithms that query one: a scripted policy that acts in every env."""
SET_BY_THE_PLATFORM = {
    "callbacks",  # rlscale's whole-episode tracker joins the config's callbacks
    "_is_online",  # an offline algorithm prepared without its dataset acts in the env
    "replay_buffer_config",  # ... with an episode buffer RLlib's SAC config accepts there
}


def _runs() -> list[tuple[str, str]]:
    from rlscale.envs import resolve_env

    spaces = {env: resolve_env(env) for env in CANDIDATE_ENVS}
    runs = []
    for entry in list_algorithms():
        for env, info in spaces.items():
            if entry.incompatibility(info.observation_space, info.action_space, env) is None:
                runs.append((entry.name, env))
    return runs


RUNS = _runs()


def _platform_config(algorithm: str, env: str):
    entry = next(e for e in list_algorithms() if e.name == algorithm)
    dataset = "some/dataset-v0" if entry.takes(Input.DATASET) else None
    expert = EXPERT if entry.takes(Input.EXPERT) else None
    spec = ExperimentSpec(algorithm=algorithm, env=env, seed=0, dataset=dataset, expert=expert)
    return prepare(spec, attach_dataset=False).config


def _python_config(algorithm: str, env: str):
    entry = next(e for e in list_algorithms() if e.name == algorithm)
    config = entry.config_class().environment(register_with_rllib(env)).debugging(seed=0)
    if entry.takes(Input.EXPERT):
        config.expert = EXPERT  # as the platform hands a checked expert on
    return config


def _settings(config) -> dict[str, Any]:
    settings = {k: v for k, v in config.to_dict().items() if k not in SET_BY_THE_PLATFORM}
    settings["model_config"] = config.model_config
    return settings


def test_every_registered_algorithm_is_checked():
    checked = {algorithm for algorithm, _ in RUNS}
    assert checked == {entry.name for entry in list_algorithms()}
    # Both kinds of action space for the families whose defaults depend on it.
    assert ("ppo", "CartPole-v1") in RUNS and ("ppo", "Pendulum-v1") in RUNS


def _differing(python_config, platform_config) -> dict[str, tuple[Any, Any]]:
    python, platform = _settings(python_config), _settings(platform_config)
    return {
        key: (python.get(key), platform.get(key))
        for key in python.keys() | platform.keys()
        if python.get(key) != platform.get(key)
    }


@pytest.mark.parametrize(("algorithm", "env"), RUNS, ids=[f"{a}-{e}" for a, e in RUNS])
def test_python_config_equals_what_rlscale_train_builds(algorithm: str, env: str):
    assert _differing(_python_config(algorithm, env), _platform_config(algorithm, env)) == {}


def test_the_comparison_sees_a_value_only_the_spec_set():
    """The check can fail: a hyper-parameter the spec sets shows up as a difference."""
    spec = ExperimentSpec(
        algorithm="ppo", env="CartPole-v1", seed=0, hyperparameters={"vf_loss_coeff": 0.25}
    )
    differing = _differing(_python_config("ppo", "CartPole-v1"), prepare(spec).config)
    assert set(differing) == {"vf_loss_coeff", "_rlscale_user_keys"}


def test_action_space_defaults_never_replace_what_the_user_set():
    pendulum = _python_config("ppo", "Pendulum-v1")
    cartpole = _python_config("ppo", "CartPole-v1")
    assert pendulum.train_batch_size_per_learner != cartpole.train_batch_size_per_learner
    entry = next(e for e in list_algorithms() if e.name == "ppo")
    user = entry.config_class().training(train_batch_size_per_learner=512)
    user.environment(register_with_rllib("Pendulum-v1"))
    assert user.train_batch_size_per_learner == 512
    from_spec = prepare(
        ExperimentSpec(
            algorithm="ppo",
            env="Pendulum-v1",
            seed=0,
            hyperparameters={"train_batch_size_per_learner": 512},
        )
    ).config
    assert from_spec.train_batch_size_per_learner == 512


@pytest.mark.parametrize("entry", list_algorithms(), ids=lambda e: e.name)
def test_rlscale_keys_are_accepted_by_training(entry):
    config = entry.config_class()
    keys = config.rlscale_keys()
    for key in keys:
        config.training(**{key: getattr(config, key)})
    assert config.user_set_keys() >= set(keys)


WITHOUT_NETWORK = {"mpc", "sysid"}
"""Controllers with an analytic or physical model: no MLP to size."""


@pytest.mark.parametrize(
    "entry",
    [e for e in list_algorithms() if e.family != "tabular" and e.name not in WITHOUT_NETWORK],
    ids=lambda e: e.name,
)
def test_network_width_has_one_name(entry):
    config = entry.config_class().training(hidden_sizes=[17, 9])
    assert config.model_config["hidden_sizes"] == [17, 9]


def _online_runs_with_a_network() -> list[tuple[str, str]]:
    """One env per algorithm that has a network width and needs no dataset (the offline ones
    validate through the same mixin, but only once their dataset is attached)."""
    first_env: dict[str, str] = {}
    for algorithm, env in RUNS:
        entry = next(e for e in list_algorithms() if e.name == algorithm)
        if hasattr(entry.config_class(), "hidden_sizes") and not entry.requires(Input.DATASET):
            first_env.setdefault(algorithm, env)
    return sorted(first_env.items())


@pytest.mark.parametrize("run", _online_runs_with_a_network(), ids=lambda run: run[0])
def test_a_malformed_width_is_refused_by_name_before_ray(run):
    algorithm, env = run
    entry = next(e for e in list_algorithms() if e.name == algorithm)
    spec = ExperimentSpec(
        algorithm=algorithm,
        env=env,
        seed=0,
        expert=EXPERT if entry.takes(Input.EXPERT) else None,
        hyperparameters={"hidden_sizes": 256},
    )
    with pytest.raises(SpecError, match=r"hidden_sizes must be a list of positive layer widths"):
        prepare(spec)


@pytest.mark.parametrize(
    ("algorithm", "hyperparameters", "message"),
    [
        ("ppo", {"num_epochs": "abc"}, r"num_epochs must be a number \(its default is 10\)"),
        ("ppo", {"lr": "fast"}, "lr must be a number"),
        ("dqn", {"double_q": "yes"}, "double_q must be true or false, got 'yes'"),
        ("ppo", {"train_batch_size_per_learner": 1.5}, "must be a whole number"),
        ("ppo", {"lr": -1}, "lr must be a positive learning rate"),
        ("ppo", {"lr": float("nan")}, "lr must be a positive learning rate"),
        ("dqn", {"gamma": 1.5}, r"gamma must be a discount in \[0, 1\]"),
        ("ppo", {"train_batch_size_per_learner": 0}, "train_batch_size_per_learner must be at"),
        ("ppo", {"minibatch_size": 0}, "minibatch_size must be at least 1"),
        ("ppo", {"num_epochs": 0}, "num_epochs must be at least 1"),
    ],
)
def test_a_value_of_the_wrong_type_or_range_is_refused_before_ray(
    algorithm, hyperparameters, message
):
    spec = ExperimentSpec(
        algorithm=algorithm, env="CartPole-v1", seed=0, hyperparameters=hyperparameters
    )
    with pytest.raises(SpecError, match=message):
        prepare(spec)


def test_schedules_and_whole_floats_pass_the_type_checks():
    """A learning-rate schedule stands where a number does; 2.0 is a count of 2."""
    schedule = [[0, 1e-3], [1000, 1e-4]]
    spec = ExperimentSpec(
        algorithm="ppo",
        env="CartPole-v1",
        seed=0,
        hyperparameters={"lr": schedule, "num_epochs": 2.0},
    )
    config = prepare(spec).config
    assert config.lr == schedule
    assert config.num_epochs == 2 and isinstance(config.num_epochs, int)


def test_image_observations_are_refused_by_every_mlp_algorithm_naming_why():
    """An MLP over raw frames ran minutes per iteration with a 604 MB checkpoint: every
    algorithm whose networks take vectors refuses image observations before Ray starts."""
    images = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    vectors = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
    assert vector_observations_only(vectors, gym.spaces.Discrete(2)) is None
    problem = vector_observations_only(images, gym.spaces.Discrete(2))
    assert problem is not None and "images" in problem and "no convolutional encoder" in problem
    takers = [e.name for e in list_algorithms() if vector_observations_only in e.space_checks]
    assert {"ppo", "dqn", "bc", "cql", "diffusion_bc"} <= set(takers)


def test_the_static_family_map_names_exactly_the_registered_algorithms():
    """``FAMILY_ALGORITHMS`` answers name checks without importing RLlib: it must list what
    the family packages register, family by family."""
    registered: dict[str, set[str]] = {}
    for entry in list_algorithms():
        registered.setdefault(entry.family, set()).add(entry.name)
    assert registered == {family: set(names) for family, names in FAMILY_ALGORITHMS.items()}


def test_an_unknown_algorithm_is_refused_without_importing_rllib_or_torch():
    """So that `rlscale train nope` answers in a fraction of a second, not after RLlib's
    seconds of imports."""
    import subprocess
    import sys

    code = (
        "import sys, rlscale.cli\n"
        "from rlscale.algorithms.registry import get_algorithm\n"
        "from rlscale.errors import UnknownAlgorithmError\n"
        "try:\n    get_algorithm('nope')\nexcept UnknownAlgorithmError:\n    pass\n"
        "print('torch' in sys.modules, 'ray.rllib' in sys.modules)"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert loaded.stdout.split() == ["False", "False"], loaded.stderr
