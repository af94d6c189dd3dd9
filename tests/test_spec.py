"""The experiment spec: YAML and flags agree, and bad input names what is wrong."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from rlscale.errors import SpecError
from rlscale.platform.spec import (
    DEFAULT_STOP_ITERATIONS,
    ExperimentSpec,
    load_spec,
    load_yaml,
    parse_assignments,
    spec_from_dict,
)

GOOD_YAML = """
algorithm: ppo
env: CartPole-v1
seed: 3
stop:
  reward: 450
  timesteps: 100000
resources:
  num_env_runners: 1
  gpus_per_learner: auto
hyperparameters:
  lr: 0.0005
  num_epochs: 4
output: out
name: my-run
"""


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_good_file_loads(tmp_path):
    spec = load_spec(write(tmp_path, GOOD_YAML))
    assert spec.algorithm == "ppo" and spec.env == "CartPole-v1"
    assert spec.stop.reward == 450 and spec.stop.timesteps == 100_000
    assert spec.stop.iterations is None
    assert spec.resources.num_env_runners == 1
    assert spec.resources.gpus_per_learner == "auto"
    assert spec.hyperparameters == {"lr": 0.0005, "num_epochs": 4}
    assert spec.seed == 3 and spec.run_name() == "my-run"


def test_file_and_flags_give_the_same_spec(tmp_path):
    from_file = load_spec(write(tmp_path, GOOD_YAML))
    flags = {
        "algorithm": "ppo",
        "env": "CartPole-v1",
        "seed": 3,
        "output": "out",
        "name": "my-run",
        "stop": {"reward": 450, "timesteps": 100000},
        **parse_assignments(
            [
                "resources.num_env_runners=1",
                "resources.gpus_per_learner=auto",
                "lr=0.0005",
                "num_epochs=4",
            ]
        ),
    }
    assert load_spec(None, flags) == from_file


def test_flags_override_the_file(tmp_path):
    spec = load_spec(
        write(tmp_path, GOOD_YAML),
        {"seed": 9, "stop": {"reward": 100}, "hyperparameters": {"lr": 0.01}},
    )
    assert spec.seed == 9
    assert spec.stop.reward == 100 and spec.stop.timesteps == 100_000
    assert spec.hyperparameters == {"lr": 0.01, "num_epochs": 4}


def test_spec_round_trips_through_yaml(tmp_path):
    spec = load_spec(write(tmp_path, GOOD_YAML))
    assert load_spec(write(tmp_path, spec.to_yaml(), "again.yaml")) == spec


def test_no_stop_rule_gets_the_default():
    spec = spec_from_dict({"algorithm": "ppo", "env": "CartPole-v1"})
    assert spec.stop.iterations == DEFAULT_STOP_ITERATIONS
    spec = spec_from_dict({"algorithm": "ppo", "env": "CartPole-v1", "stop": {"reward": 1}})
    assert spec.stop.iterations is None


def test_unknown_key_names_the_key_and_nearest(tmp_path):
    path = write(tmp_path, "algorithm: ppo\nenv: CartPole-v1\nstop:\n  rewrad: 10\n")
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    message = str(caught.value)
    assert "stop.rewrad" in message and "Did you mean: reward" in message


def test_unknown_top_level_key(tmp_path):
    with pytest.raises(SpecError, match="unknown key 'hyperparams'.*hyperparameters"):
        load_spec(write(tmp_path, "algorithm: ppo\nenv: CartPole-v1\nhyperparams: {}\n"))


def test_wrong_type_is_reported(tmp_path):
    with pytest.raises(SpecError, match="resources.num_env_runners"):
        load_spec(write(tmp_path, "algorithm: ppo\nenv: X\nresources:\n  num_env_runners: many\n"))


def test_negative_stop_rule_is_rejected():
    with pytest.raises(SpecError, match="stop.iterations"):
        spec_from_dict({"algorithm": "ppo", "env": "CartPole-v1", "stop": {"iterations": 0}})


@pytest.mark.parametrize(
    ("section", "value"),
    [("stop", {"reward": float("nan")}), ("stop", {"time_s": float("inf")})],
)
def test_a_nan_or_infinite_number_is_rejected(section, value):
    key = next(iter(value))
    with pytest.raises(SpecError, match=rf"'{section}.{key}': Input should be a finite number"):
        spec_from_dict({"algorithm": "ppo", "env": "CartPole-v1", section: value})


def test_missing_algorithm_is_reported():
    with pytest.raises(SpecError, match="'algorithm' is required"):
        spec_from_dict({"env": "CartPole-v1"})


def test_malformed_yaml_names_the_line(tmp_path):
    path = write(tmp_path, "algorithm: ppo\nenv: [CartPole-v1\nseed: 1\n")
    with pytest.raises(SpecError, match=r"not valid YAML at line \d+"):
        load_spec(path)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (
            "algorithm: ppo\nenv: CartPole-v1\nalgorithm: dqn\n",
            r"line 3, column 1: the key 'algorithm' is given twice \(first on line 1\)",
        ),
        (
            "algorithm: ppo\nenv: CartPole-v1\nhyperparameters:\n  lr: 0.1\n  lr: 0.2\n",
            r"line 5, column 3: the key 'lr' is given twice \(first on line 4\)",
        ),
    ],
)
def test_a_key_given_twice_is_refused_naming_both_lines(tmp_path, text, where):
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    with pytest.raises(SpecError, match=where):
        load_spec(path)


def test_yaml_merge_keys_still_override():
    assert load_yaml("a: &x {b: 1}\nc:\n  <<: *x\n  b: 2") == {"a": {"b": 1}, "c": {"b": 2}}


def test_yaml_that_is_not_a_mapping(tmp_path):
    with pytest.raises(SpecError, match="must hold a mapping"):
        load_spec(write(tmp_path, "- ppo\n- CartPole-v1\n"))


def test_missing_file(tmp_path):
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(tmp_path / "nope.yaml")


def test_assignments_route_to_spec_fields_or_hyperparameters():
    overrides = parse_assignments(
        [
            "lr=0.001",
            "model_config.fcnet_hiddens=[64, 64]",
            "resources.num_env_runners=2",
            "env_config.max_episode_steps=200",
            "use_kl_loss=false",
            "seed=5",
        ]
    )
    assert overrides == {
        "hyperparameters": {
            "lr": 0.001,
            "model_config": {"fcnet_hiddens": [64, 64]},
            "use_kl_loss": False,
        },
        "resources": {"num_env_runners": 2},
        "env_config": {"max_episode_steps": 200},
        "seed": 5,
    }


def test_exponent_numbers_without_a_dot_are_numbers_in_flags_and_files(tmp_path):
    # YAML 1.1 reads 3e-4 as a string, which RLlib rejected as a learning-rate schedule.
    overrides = parse_assignments(["lr=3e-4", "clip=1E+2", "name_suffix=e5", "tag=3e"])
    assert overrides["hyperparameters"] == {
        "lr": pytest.approx(3e-4),
        "clip": 100.0,
        "name_suffix": "e5",
        "tag": "3e",
    }
    path = write(tmp_path, GOOD_YAML.replace("lr: 0.0005", "lr: 5e-4"))
    assert load_spec(path).hyperparameters["lr"] == pytest.approx(5e-4)


@pytest.mark.parametrize("bad", ["lr", "=3", ""])
def test_malformed_assignment(bad):
    with pytest.raises(SpecError, match="key=value"):
        parse_assignments([bad])


def test_default_run_name_is_filesystem_safe():
    spec = ExperimentSpec(algorithm="ppo", env="pettingzoo:mpe2.simple_spread_v3")
    name = spec.run_name()
    assert name.startswith("ppo-pettingzoo_mpe2.simple_spread_v3-")
    assert "/" not in name and ":" not in name


@pytest.mark.parametrize("name", ["../../elsewhere", "runs/../../x", "/tmp/run", " "])
def test_a_run_name_cannot_leave_the_output_folder(name):
    with pytest.raises(SpecError, match="must be a folder name under the output folder"):
        spec_from_dict({"algorithm": "ppo", "env": "CartPole-v1", "name": name})


def test_a_run_name_may_hold_sub_folders():
    spec = spec_from_dict({"algorithm": "ppo", "env": "CartPole-v1", "name": "sweep1/run3"})
    assert spec.run_name() == "sweep1/run3"
