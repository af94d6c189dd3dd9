"""Sweep files, their validation (errors name the line), Tune objects and placement; no Ray."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml
from ray import tune

from rlscale.errors import RlscaleError, SpecError
from rlscale.platform.spec import load_spec
from rlscale.platform.tuning import SweepError, load_sweep
from rlscale.platform.tuning.run import _resolve_gpus, check_bundles_fit, trial_resources
from rlscale.platform.tuning.search import param_space, scheduler
from rlscale.platform.tuning.sweep import METRICS
from tests.conftest import REPO_ROOT, run_cli, write_scripted_dataset
from tests.test_cli import assert_clean_failure

TUNE_CONFIGS = sorted((REPO_ROOT / "tune_configs").glob("*.yaml"))

GOOD = """\
algorithm: q_learning
env: FrozenLake-v1
stop: {iterations: 6}
tune:
  metric: return_mean
  num_samples: 2
  scheduler: {type: asha, grace_period: 2}
  param_space:
    hyperparameters.lr: {loguniform: [0.01, 0.5]}
    hyperparameters.epsilon_end: {grid: [0.05, 0.1]}
    seed: {randint: [0, 100]}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def sweep_error(tmp_path: Path, text: str) -> str:
    with pytest.raises(SweepError) as caught:
        load_sweep(write(tmp_path, text))
    return str(caught.value)


@pytest.fixture
def shipped_datasets(minari_root):
    """The datasets the shipped sweep files name (their comments say how users make them),
    made here as one random episode each, in a temporary Minari root."""
    named = {}
    for path in TUNE_CONFIGS:
        base = yaml.safe_load(path.read_text())
        if "dataset" in base:
            named[base["dataset"]] = base["env"]
    for dataset, env in named.items():
        write_scripted_dataset(minari_root, dataset, 1, env, "random")


@pytest.mark.usefixtures("shipped_datasets")
@pytest.mark.parametrize("path", TUNE_CONFIGS, ids=lambda p: p.name)
def test_every_shipped_sweep_file_validates(path):
    sweep = load_sweep(path)
    assert sweep.param_space or sweep.mutations
    assert sweep.tune.metric in METRICS


@pytest.mark.usefixtures("shipped_datasets")
def test_shipped_sweeps_cover_each_algorithm():
    algorithms = {load_sweep(path).base["algorithm"] for path in TUNE_CONFIGS}
    assert {"ppo", "dqn", "q_learning", "sarsa"} <= algorithms


def test_good_sweep_builds_tune_objects(tmp_path):
    sweep = load_sweep(write(tmp_path, GOOD))
    space = param_space(sweep)
    assert isinstance(space["hyperparameters.lr"], tune.search.sample.Float)
    assert space["hyperparameters.epsilon_end"] == {"grid_search": [0.05, 0.1]}
    assert isinstance(space["seed"], tune.search.sample.Integer)
    asha = scheduler(sweep)
    assert isinstance(asha, tune.schedulers.ASHAScheduler)
    assert asha._max_t == 6  # max_t defaults to the spec's stop.iterations
    spec = sweep.spec_for({"hyperparameters.lr": 0.2, "seed": 3})
    assert spec.hyperparameters["lr"] == 0.2 and spec.seed == 3


def test_pbt_mutations_become_the_param_space(tmp_path):
    sweep = load_sweep(REPO_ROOT / "tune_configs" / "ppo_cartpole_pbt.yaml")
    pbt = scheduler(sweep)
    assert isinstance(pbt, tune.schedulers.PopulationBasedTraining)
    assert set(param_space(sweep)) == {"hyperparameters.lr", "hyperparameters.clip_param"}


def test_grid_search_turns_choices_into_grid_axes(tmp_path):
    sweep = load_sweep(write(tmp_path, GOOD.replace(
        "    hyperparameters.lr: {loguniform: [0.01, 0.5]}\n",
        "    hyperparameters.lr: {choice: [0.1, 0.2]}\n",
    ).replace("    seed: {randint: [0, 100]}\n", "").replace("  num_samples: 2\n",
                                                          "  search: grid\n")))
    assert param_space(sweep)["hyperparameters.lr"] == {"grid_search": [0.1, 0.2]}


def test_the_expected_trial_count_is_the_grid_times_the_samples(tmp_path):
    from rlscale.platform.tuning.search import expected_trials

    # GOOD: one grid axis of 2 values, 2 samples of the rest.
    assert expected_trials(load_sweep(write(tmp_path, GOOD))) == 4
    sampled = GOOD.replace("hyperparameters.epsilon_end: {grid: [0.05, 0.1]}",
                           "hyperparameters.epsilon_end: {uniform: [0.05, 0.1]}")
    assert expected_trials(load_sweep(write(tmp_path, sampled))) == 2


def test_unknown_tune_key_names_line_and_nearest(tmp_path):
    message = sweep_error(tmp_path, GOOD.replace("num_samples: 2", "num_sample: 2"))
    assert "sweep.yaml line 6:" in message
    assert "unknown key 'tune.num_sample'" in message and "Did you mean: num_samples" in message


def test_malformed_distributions_name_their_lines(tmp_path):
    text = GOOD.replace("{loguniform: [0.01, 0.5]}", "{loguniform: [0.01]}").replace(
        "{randint: [0, 100]}", "{randnt: [0, 100]}"
    )
    message = sweep_error(tmp_path, text)
    assert "line 9: 'loguniform' takes a list [lower, upper, [base]]" in message
    assert "line 11: unknown distribution 'randnt'" in message and "randint" in message


@pytest.mark.parametrize(
    ("distribution", "expected"),
    [
        ("{uniform: [0.5, 0.1]}", "needs lower < upper"),
        ("{loguniform: [0, 0.1]}", "needs lower > 0"),
        ("{choice: []}", "non-empty list"),
        ("0.1", "one distribution written as a one-key mapping"),
        ("{quniform: [0.1, 0.5, 0]}", "needs q > 0"),
    ],
)
def test_bad_distribution_values(tmp_path, distribution, expected):
    text = GOOD.replace("{loguniform: [0.01, 0.5]}", distribution)
    message = sweep_error(tmp_path, text)
    assert "line 9:" in message and expected in message


def test_metric_the_algorithm_does_not_report(tmp_path):
    message = sweep_error(tmp_path, GOOD.replace("metric: return_mean", "metric: episode_reward"))
    assert "line 5: metric 'episode_reward' is not reported" in message
    assert "return_mean" in message


def test_unknown_hyperparameter_in_param_space(tmp_path):
    message = sweep_error(tmp_path, GOOD.replace("hyperparameters.lr:", "hyperparameters.lrr:"))
    assert "line 9: unknown hyper-parameter 'lrr'" in message and "Did you mean: lr" in message


def test_spec_part_errors_have_lines_too(tmp_path):
    message = sweep_error(tmp_path, GOOD.replace("stop: {iterations: 6}", "stopp: {iterations: 6}"))
    assert "line 3: unknown key 'stopp'" in message and "Did you mean: stop" in message


def test_untunable_and_unknown_paths(tmp_path):
    text = GOOD.replace("    seed: {randint: [0, 100]}\n", (
        "    resources.num_env_runners: {choice: [0, 1]}\n"
        "    hyperparamters.gamma: {choice: [0.9]}\n"
    ))
    message = sweep_error(tmp_path, text)
    assert "line 11: 'resources.num_env_runners' cannot vary between trials" in message
    assert "line 12: 'hyperparamters.gamma' is not a path into the spec" in message


def test_grid_search_rejects_continuous_distributions(tmp_path):
    message = sweep_error(tmp_path, GOOD.replace("num_samples: 2", "search: grid"))
    assert "line 9: search: grid needs a list of values" in message


def test_unknown_scheduler_and_asha_options(tmp_path):
    message = sweep_error(tmp_path, GOOD.replace("type: asha", "type: hyperband"))
    assert "line 7: unknown scheduler 'hyperband'" in message
    message = sweep_error(tmp_path, GOOD.replace("grace_period: 2", "grace_period: 20"))
    assert "grace_period 20 is longer than max_t 6" in message
    message = sweep_error(tmp_path, GOOD.replace("grace_period: 2", "perturbation_interval: 2"))
    assert "unknown key 'tune.scheduler.perturbation_interval'" in message


def test_all_problems_reported_at_once(tmp_path):
    text = GOOD.replace("num_samples: 2", "num_samples: 0").replace("mode", "mode")
    text = text.replace("metric: return_mean", "metric: loss")
    message = sweep_error(tmp_path, text)
    assert "2 problems" in message and "num_samples" in message and "loss" in message


def test_train_config_rejects_a_sweep_file(tmp_path):
    with pytest.raises(SpecError, match="is a sweep file .*`rlscale tune "):
        load_spec(write(tmp_path, GOOD))


def test_tune_rejects_a_plain_spec(tmp_path):
    path = write(tmp_path, "algorithm: ppo\nenv: CartPole-v1\n")
    with pytest.raises(SweepError, match="no `tune:` section"):
        load_sweep(path)


def test_trial_placement_group_requests_learner_gpus(tmp_path):
    text = GOOD.replace("stop: {iterations: 6}", (
        "stop: {iterations: 6}\nresources: {num_env_runners: 2, gpus_per_learner: auto}"
    ))
    sweep = load_sweep(write(tmp_path, text))
    on_cpus = trial_resources(sweep, _resolve_gpus(sweep, cluster_gpus=0)).bundles
    assert [b.get("GPU", 0) for b in on_cpus] == [0, 0, 0]
    on_gpus = trial_resources(sweep, _resolve_gpus(sweep, cluster_gpus=1)).bundles
    # num_learners 0: the trial's own process is the learner and holds its GPU.
    assert on_gpus[0]["GPU"] == 1 and len(on_gpus) == 3
    with pytest.raises(RlscaleError, match="gpus_per_learner=2 but the Ray cluster has 0"):
        bad = load_sweep(write(tmp_path, text.replace("gpus_per_learner: auto",
                                                      "gpus_per_learner: 2")))
        _resolve_gpus(bad, cluster_gpus=0)


def test_bundles_that_no_node_can_hold_fail_at_once():
    nodes = [{"CPU": 1.0}, {"CPU": 1.0}]
    check_bundles_fit([{"CPU": 1.0}, {"CPU": 1.0}], nodes)
    with pytest.raises(RlscaleError, match="no node of the Ray cluster has that much"):
        check_bundles_fit([{"CPU": 1.0, "GPU": 1.0}], nodes)
    with pytest.raises(RlscaleError, match="one trial needs 3 CPUs"):
        check_bundles_fit([{"CPU": 1.0}] * 3, nodes)


def test_cli_sweep_error_without_traceback(tmp_path):
    path = write(tmp_path, GOOD.replace("metric: return_mean", "metric: reward"))
    result = run_cli("tune", str(path), "--output", str(tmp_path))
    assert_clean_failure(result, "line 5: metric 'reward' is not reported")
    assert not any(tmp_path.glob("sweep-*")), "nothing is written for an invalid sweep"


def test_cli_resume_of_unknown_experiment(tmp_path):
    path = write(tmp_path, GOOD)
    result = run_cli("tune", str(path), "--output", str(tmp_path), "--resume", "--name", "nope")
    assert_clean_failure(result, "nothing to resume at")


def test_cli_unreachable_address_leaves_nothing_behind(tmp_path):
    from tests.ray_head import free_port

    port = free_port()
    result = run_cli("tune", str(write(tmp_path, GOOD)), "--output", str(tmp_path / "out"),
                     "--name", "x", "--address", f"127.0.0.1:{port}", timeout=60)
    assert_clean_failure(result, f"cannot reach a Ray cluster at 127.0.0.1:{port}")
    assert not (tmp_path / "out" / "x").exists()


class _FakeTrial:
    trial_id = "abc_00001"
    status = "RUNNING"
    config = {"hyperparameters.lr": 0.01}
    last_result = {"training_iteration": 3, "env_steps": 3000, "return_mean": 12.5}


def test_live_trial_table_on_a_terminal_and_lines_elsewhere():
    import io
    import pickle

    from rich.console import Console

    from rlscale.platform.tuning.progress import TrialTable

    terminal = Console(file=io.StringIO(), force_terminal=True, width=120)
    table = TrialTable("return_mean", ["hyperparameters.lr"], terminal)
    table.on_step_end(1, [_FakeTrial()])
    table.on_experiment_end([_FakeTrial()])
    drawn = terminal.file.getvalue()
    assert "abc_00001" in drawn and "3,000" in drawn and "12.5" in drawn

    log = Console(file=io.StringIO(), force_terminal=False, width=200)
    lines = TrialTable("return_mean", ["hyperparameters.lr"], log)
    lines.on_trial_complete(1, [_FakeTrial()], _FakeTrial())
    assert "trial abc_00001 finished hyperparameters.lr=0.01 iter=3 return_mean=12.5" in (
        log.file.getvalue()
    )
    # The total is the sweep's, not the trials Tune has created so far.
    counted = TrialTable("return_mean", ["hyperparameters.lr"], log, total=8)
    counted.on_trial_start(1, [_FakeTrial()], _FakeTrial())
    assert "[0/8 done] trial abc_00001 started" in log.file.getvalue()
    # Tune pickles callbacks with the experiment state (for --resume).
    assert pickle.loads(pickle.dumps(table)).metric == "return_mean"
    assert pickle.loads(pickle.dumps(counted)).total == 8


def test_a_restored_trial_logs_each_iteration_once(tmp_path):
    """A trial restored from its checkpoint at iteration 2 after it had logged 1-4: before
    iteration 3 is logged again, rows 3 and 4 leave progress.csv and result.json, and Tune's
    logger, appending through the handle it already holds, writes after what is kept."""
    import json
    from types import SimpleNamespace

    from rlscale.platform.tuning.logs import OneRowPerIteration

    progress, results = tmp_path / "progress.csv", tmp_path / "result.json"
    progress.write_text("".join(["training_iteration,return_mean\n"] +
                                [f"{i},{10 * i}\n" for i in range(1, 5)]))
    results.write_text("".join(json.dumps({"training_iteration": i}) + "\n" for i in range(1, 5)))
    logger_handle = progress.open("a")  # Tune's CSV logger holds the file open like this
    trial = SimpleNamespace(trial_id="t1", local_path=str(tmp_path))
    callback = OneRowPerIteration()

    callback.on_trial_result(1, [trial], trial, {"training_iteration": 3})
    logger_handle.write("3,33\n")
    logger_handle.flush()
    callback.on_trial_result(2, [trial], trial, {"training_iteration": 4})  # past the last: kept
    logger_handle.write("4,44\n")
    logger_handle.close()

    assert progress.read_text().splitlines() == [
        "training_iteration,return_mean", "1,10", "2,20", "3,33", "4,44"
    ]
    assert [json.loads(line)["training_iteration"] for line in results.read_text().splitlines()
            ] == [1, 2]
    # A new driver (--resume) reads the last logged iteration from the file.
    fresh = OneRowPerIteration()
    fresh.on_trial_result(1, [trial], trial, {"training_iteration": 5})
    assert progress.read_text().splitlines()[-1] == "4,44"


def test_each_sweep_curve_is_labelled_with_its_trials_searched_values():
    from types import SimpleNamespace

    from rlscale.platform.tuning.plots import trial_label

    result = SimpleNamespace(
        config={"lr": 0.000316227766, "gamma": 0.99, "fixed": 1}, path="/x/trainable_ab12_00003"
    )
    assert trial_label(result, ["lr", "gamma"]) == "lr=0.0003162 gamma=0.99"
    assert trial_label(result, []) == "trainable_ab12_00003"
