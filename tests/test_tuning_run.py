"""Real sweeps through `rlscale tune`: ranked results, best spec and checkpoint, --resume."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rlscale.platform.spec import load_spec
from tests.conftest import REPO_ROOT, run_cli

pytestmark = pytest.mark.slow

SWEEP = """\
algorithm: q_learning
env: FrozenLake-v1
seed: 0
stop: {{iterations: {iterations}}}
checkpoint: {{every: 2, keep: 1}}
hyperparameters: {{epsilon_decay_steps: 5000}}
tune:
  metric: return_mean
  mode: max
  num_samples: {samples}
  max_concurrent_trials: {concurrent}
  scheduler: {scheduler}
  param_space:
    hyperparameters.lr: {lr}
    hyperparameters.epsilon_end: {{grid: [0.05, 0.2]}}
"""


def read_trials(experiment: Path) -> list[dict[str, str]]:
    with (experiment / "trials.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_asha_sweep_ranks_trials_and_writes_best_spec_checkpoint_and_curves(tmp_path, ray_local):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(SWEEP.format(
        iterations=4, samples=2, concurrent=2, lr="{loguniform: [0.05, 0.5]}",
        scheduler="{type: asha, grace_period: 2, reduction_factor: 2}",
    ))
    result = run_cli("tune", str(sweep), "--output", str(tmp_path), "--name", "asha")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    experiment = tmp_path / "asha"
    best_checkpoint = Path(result.stdout.strip().splitlines()[-1])
    assert (best_checkpoint / "rlscale.json").is_file()

    trials = read_trials(experiment)
    assert len(trials) == 4 and {t["status"] for t in trials} == {"TERMINATED"}
    returns = [float(t["return_mean"]) for t in trials]
    assert returns == sorted(returns, reverse=True)
    assert Path(trials[0]["checkpoint"]) == best_checkpoint
    # ASHA runs every trial at least the grace period and none past the horizon.
    assert all(2 <= int(t["iterations"]) <= 4 for t in trials)

    best_spec = load_spec(experiment / "best_spec.yaml")
    assert best_spec.hyperparameters["lr"] == pytest.approx(float(trials[0]["hyperparameters.lr"]))
    assert best_spec.resources.gpus_per_learner == "auto"
    curves = experiment / "learning_curves.png"
    assert curves.stat().st_size > 10_000
    summary = json.loads((experiment / "summary.json").read_text())
    assert summary["best_checkpoint"] == str(best_checkpoint)
    assert "rank" in result.stderr and "best spec" in result.stderr

    # The best checkpoint is an ordinary rlscale checkpoint.
    from rlscale.platform.evaluation import evaluate

    assert evaluate(best_checkpoint, episodes=3).episodes == 3


OFFLINE_SWEEP = """\
algorithm: bc
env: CartPole-v1
env_config: {{max_episode_steps: {horizon}}}
dataset: {dataset}
seed: 0
stop: {{iterations: 2}}
checkpoint: {{every: 0}}
hyperparameters:
  evaluation_interval: 1
  evaluation_duration: 2
  dataset_num_iters_per_learner: 2
  train_batch_size_per_learner: 32
tune:
  param_space:
    hyperparameters.lr: {{choice: [0.001]}}
"""
EVALUATION_HORIZON = 5
"""CartPole cannot fall within 5 steps, so every evaluation episode returns exactly 5."""


def _tiny_cartpole_dataset(folder: Path) -> Path:
    """Four 20-step CartPole episodes of a balancing rule, with reference returns 0 and 10."""
    import gymnasium as gym

    from rlscale.datasets.store import EpisodeArrays, write_dataset

    env = gym.make("CartPole-v1")
    episodes = []
    for seed in range(4):
        observations = [env.reset(seed=seed)[0]]
        actions, rewards = [], []
        for _ in range(20):
            _, _, theta, theta_dot = observations[-1]
            actions.append(int(theta + 0.5 * theta_dot > 0))
            observation, reward, *_ = env.step(actions[-1])
            observations.append(observation)
            rewards.append(reward)
        episodes.append(EpisodeArrays(
            observations=np.array(observations, dtype=np.float32),
            actions=np.array(actions, dtype=np.int64),
            rewards=np.array(rewards, dtype=np.float64),
            terminations=np.zeros(20, dtype=bool),
            truncations=np.array([False] * 19 + [True]),
        ))
    written = write_dataset(
        "cartpole/tiny-v0", episodes, env.observation_space, env.action_space, env.spec,
        {"ref_min_score": 0.0, "ref_max_score": 10.0}, root=folder,
    )
    return written.data_dir.parent


def test_offline_sweep_reports_the_returns_of_its_evaluations(tmp_path, ray_local):
    """BC trials report each evaluation's mean return, as `rlscale train` does, not NaN."""
    from rlscale.platform.tuning.run import tune

    sweep = tmp_path / "offline.yaml"
    sweep.write_text(OFFLINE_SWEEP.format(
        horizon=EVALUATION_HORIZON, dataset=_tiny_cartpole_dataset(tmp_path / "datasets")
    ))
    result = tune(sweep, name="offline", output=tmp_path)
    assert [trial.status for trial in result.trials] == ["TERMINATED"]
    assert result.best is not None and result.best.metric == EVALUATION_HORIZON
    with (result.best.path / "progress.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["iteration"]) for row in rows] == [1, 2]
    for row in rows:
        assert float(row["return_mean"]) == EVALUATION_HORIZON
        assert float(row["episode_len_mean"]) == EVALUATION_HORIZON
        # 100 (R - R_random) / (R_collector - R_random) with the dataset's references 0 and 10.
        assert float(row["normalized_return"]) == pytest.approx(50.0)


def _terminated_trials(experiment: Path) -> set[str]:
    """Trial ids the saved experiment state records as finished."""
    done: set[str] = set()
    for state_file in experiment.glob("experiment_state-*.json"):
        try:
            state = json.loads(state_file.read_text())
        except (json.JSONDecodeError, OSError):
            continue  # being rewritten right now
        for entry in state.get("trial_data", []):
            trial = json.loads(entry[0])
            if trial.get("status") == "TERMINATED":
                done.add(trial["trial_id"])
    return done


def test_resume_after_the_driver_is_killed_keeps_finished_trials(tmp_path):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(SWEEP.format(
        iterations=3, samples=1, concurrent=1, lr="{grid: [0.1, 0.3]}", scheduler="{type: fifo}"
    ))
    experiment = tmp_path / "resumable"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    driver = subprocess.Popen(
        [str(Path(sys.executable).with_name("rlscale")), "tune", str(sweep),
         "--output", str(tmp_path), "--name", "resumable"],
        cwd=REPO_ROOT, env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 400
        while not _terminated_trials(experiment):
            assert driver.poll() is None, "the sweep ended before it could be killed"
            assert time.monotonic() < deadline, "no trial finished in time"
            time.sleep(1)
        finished_before = _terminated_trials(experiment)
        assert len(finished_before) < 4, "all trials finished before the kill"
        progress_before = {
            trial_id: (experiment / f"trial_{trial_id}" / "progress.csv").read_text()
            for trial_id in finished_before
        }
        os.kill(driver.pid, signal.SIGKILL)  # the driver only, as a crash would
        driver.wait(timeout=30)
    finally:
        # Whatever the dead driver left behind (its embedded Ray) is in its process group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGKILL)

    resumed = run_cli("tune", str(sweep), "--output", str(tmp_path), "--name", "resumable",
                      "--resume")
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    trials = read_trials(experiment)
    assert len(trials) == 4
    assert {t["status"] for t in trials} == {"TERMINATED"}
    assert all(int(t["iterations"]) == 3 for t in trials)
    for trial_id, progress in progress_before.items():
        # A finished trial was not run again: its results are exactly what they were.
        assert (experiment / f"trial_{trial_id}" / "progress.csv").read_text() == progress
    for trial_dir in experiment.glob("trial_*"):
        # The trial cut off by the kill ran again from its checkpoint (or from the start); its
        # log holds every iteration once all the same.
        with (trial_dir / "progress.csv").open() as handle:
            logged = [int(row["training_iteration"]) for row in csv.DictReader(handle)]
        assert logged == [1, 2, 3], (trial_dir.name, logged)
    output = resumed.stdout + resumed.stderr
    assert "Traceback" not in output, output[-3000:]
    totals = {line.split("]")[0] for line in output.splitlines() if line.startswith("[")}
    assert totals and all(total.endswith("/4 done") for total in totals), totals


MULTINODE_SWEEP = """\
algorithm: q_learning
env: FrozenLake-v1
seed: 0
stop: {iterations: 2}
resources: {num_env_runners: 1, gpus_per_learner: GPUS}
tune:
  max_concurrent_trials: 2
  param_space:
    hyperparameters.lr: {grid: [0.1, 0.2]}
"""


def test_trials_and_env_runners_spread_over_a_multi_node_cluster(tmp_path):
    """A real 5-node cluster (its own process: the session's Ray stays out of it)."""
    sweep, gpu_sweep = tmp_path / "multinode.yaml", tmp_path / "gpu.yaml"
    sweep.write_text(MULTINODE_SWEEP.replace("GPUS", "auto"))
    gpu_sweep.write_text(MULTINODE_SWEEP.replace("GPUS", "1"))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tests" / "multinode_sweep.py"),
         str(sweep), str(gpu_sweep), str(tmp_path / "out")],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=480,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["statuses"] == ["TERMINATED", "TERMINATED"]
    trial_nodes = [trial["node"] for trial in report["trials"]]
    runner_nodes = [node for trial in report["trials"] for node in trial["env_runner_nodes"]]
    # Each worker node has one CPU: two trials and their two EnvRunners need all four.
    assert len(set(trial_nodes)) == 2 and len(runner_nodes) == 2
    assert len(set(trial_nodes + runner_nodes)) == 4
    # `auto` resolved to 0 GPUs on this CPU-only cluster; an explicit GPU fails at once.
    assert "gpus_per_learner=1 but the Ray cluster has 0 GPU(s)" in report["gpu_error"]
    assert report["gpu_error_s"] < 30
