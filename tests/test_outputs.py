"""Run outputs, stop rules and the iteration step, on hand-made RLlib results (no Ray)."""

from __future__ import annotations

import json
import math
import os
import pickle
from types import SimpleNamespace

import pytest

import rlscale
from rlscale.errors import CheckpointError, OutputError
from rlscale.platform.episode_stats import (
    EPISODE_LENGTHS_KEY,
    EPISODE_RETURNS_KEY,
    EpisodeWindow,
)
from rlscale.platform.experiment import PreparedExperiment
from rlscale.platform.iteration import IterationStep, first_stop_reason
from rlscale.platform.outputs import (
    CHECKPOINT_MARKER,
    FINAL_CHECKPOINT,
    CheckpointWriter,
    IterationMetrics,
    MetricsLog,
    create_run_dir,
    flatten_numbers,
    latest_checkpoint,
    move_earlier_run_aside,
    read_checkpoint,
    read_metrics,
    restore_or_explain,
)
from rlscale.platform.plots import plot_learning_curve
from rlscale.platform.spec import ExperimentSpec, StopRules


def result(iteration: int, steps: int, returns, lengths) -> dict:
    return {
        "training_iteration": iteration,
        "num_env_steps_sampled_lifetime": steps,
        "env_runners": {
            EPISODE_RETURNS_KEY: returns,
            EPISODE_LENGTHS_KEY: lengths,
            "num_episodes_lifetime": 3,
        },
    }


def test_window_keeps_the_last_100_whole_episodes():
    window = EpisodeWindow()
    window.add_from(result(1, 10, list(range(150)), [1] * 150))
    assert len(window.returns) == 100 and window.returns[0] == 50.0


def test_window_accepts_rllibs_bare_single_item():
    window = EpisodeWindow()
    window.add_from(result(1, 10, 7.0, 7))
    window.add_from({"env_runners": {}})
    assert list(window.returns) == [7.0] and list(window.lengths) == [7]


def test_iteration_metrics_average_the_window_and_rate_the_steps():
    window = EpisodeWindow()
    window.add_from(result(1, 1000, [10.0, 30.0], [10, 30]))
    first = IterationMetrics.from_result(result(1, 1000, [], []), window, 2.0, None)
    assert first.return_mean == 20.0 and first.return_min == 10.0 and first.return_max == 30.0
    assert first.episode_len_mean == 20.0 and first.steps_per_s == 500.0
    second = IterationMetrics.from_result(result(2, 3000, [], []), window, 3.0, first)
    assert second.steps_per_s == 2000.0


def test_no_finished_episode_yet_has_no_return():
    metrics = IterationMetrics.from_result(result(1, 10, [], []), EpisodeWindow(), 1.0, None)
    assert not metrics.has_return and math.isnan(metrics.return_mean)
    assert first_stop_reason(StopRules(reward=-1e9), metrics) is None


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        ({"reward": 100}, "mean return 150.0 >= 100"),
        ({"reward": 200, "iterations": 5}, "5 iterations"),
        ({"reward": 200, "timesteps": 4000}, "5,000 env steps"),
        ({"time_s": 10}, "12s of training"),
        ({"reward": 200, "iterations": 6, "timesteps": 6000, "time_s": 60}, None),
    ],
)
def test_first_stop_reason(rules, expected):
    metrics = IterationMetrics(
        iteration=5,
        env_steps=5000,
        episodes=9,
        return_mean=150.0,
        return_min=1.0,
        return_max=200.0,
        episode_len_mean=150.0,
        time_s=12.0,
        steps_per_s=100.0,
    )
    assert first_stop_reason(StopRules(**rules), metrics) == expected


def test_flatten_numbers_keeps_finite_numeric_leaves_of_result_sections():
    flat = flatten_numbers(
        {
            "env_runners": {
                "episode_return_mean": 1.5,
                "flag": True,
                "series": [1, 2],
                "nested": {"x": 2},
            },
            "learners": {"default_policy": {"total_loss": float("nan"), "vf_loss": 0.25}},
            "config": {"lr": 0.1},
        }
    )
    assert flat == {
        "env_runners/episode_return_mean": 1.5,
        "env_runners/nested/x": 2.0,
        "learners/default_policy/vf_loss": 0.25,
    }


def test_damaged_checkpoint_marker_is_reported(tmp_path):
    (tmp_path / CHECKPOINT_MARKER).write_text("{not json")
    with pytest.raises(CheckpointError, match="damaged"):
        read_checkpoint(tmp_path)


def _spec(tmp_path, name=None) -> ExperimentSpec:
    return ExperimentSpec(algorithm="ppo", env="CartPole-v1", output=tmp_path, name=name)


def test_a_named_run_never_writes_over_an_earlier_run(tmp_path):
    run_dir = create_run_dir(_spec(tmp_path, name="x"))
    (run_dir / "metrics.csv").write_text("first run's metrics")
    with pytest.raises(
        OutputError,
        match=r"already holds a run \(spec.yaml, metrics.csv\).*--resume .*x.*--overwrite",
    ):
        create_run_dir(_spec(tmp_path, name="x"))
    assert (run_dir / "metrics.csv").read_text() == "first run's metrics"


def test_overwrite_moves_the_earlier_run_aside_whole_before_the_new_one_starts(tmp_path):
    assert move_earlier_run_aside(_spec(tmp_path, name="x")) is None  # nothing there yet
    run_dir = create_run_dir(_spec(tmp_path, name="x"))
    (run_dir / "metrics.csv").write_text("first run's metrics")
    aside = move_earlier_run_aside(_spec(tmp_path, name="x"))
    assert aside.name.startswith("x.replaced-") and aside.parent == tmp_path
    assert (aside / "metrics.csv").read_text() == "first run's metrics"
    assert create_run_dir(_spec(tmp_path, name="x")) == run_dir
    assert not (run_dir / "metrics.csv").exists()


def test_a_generated_run_name_that_is_taken_gets_a_suffix(tmp_path, monkeypatch):
    monkeypatch.setattr(ExperimentSpec, "run_name", lambda self: "ppo-CartPole-v1-same-second")
    first, second = create_run_dir(_spec(tmp_path)), create_run_dir(_spec(tmp_path))
    assert (first.name, second.name) == (
        "ppo-CartPole-v1-same-second",
        "ppo-CartPole-v1-same-second-2",
    )


class _SavingAlgorithm:
    """Writes one file, tagged, where RLlib's ``save_to_path`` would write a checkpoint."""

    def __init__(self, tag: str, fail: bool = False):
        self.tag, self.fail = tag, fail

    def save_to_path(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, "state"), "w") as file:
            file.write(self.tag)
        if self.fail:
            raise KeyboardInterrupt  # killed while writing


def test_a_save_keeps_the_previous_checkpoint_until_the_new_one_is_in_place(tmp_path):
    writer = CheckpointWriter(tmp_path, _spec(tmp_path))
    final = writer.save_final(_SavingAlgorithm("first"), None)
    with pytest.raises(KeyboardInterrupt):
        writer.save_final(_SavingAlgorithm("second", fail=True), None)
    assert (final / "state").read_text() == "first"
    assert read_checkpoint(final).path == final
    writer.save_final(_SavingAlgorithm("third"), None)
    assert (final / "state").read_text() == "third"
    assert sorted(path.name for path in tmp_path.iterdir()) == [FINAL_CHECKPOINT]


KILLED_WRITER = """
import os, sys, time
from pathlib import Path
from rlscale.platform.outputs import CheckpointWriter
from rlscale.platform.spec import ExperimentSpec

class HalfWrittenSave:
    def save_to_path(self, path):
        os.makedirs(path, exist_ok=True)
        Path(path, "state").write_text("second")
        print("writing", flush=True)
        time.sleep(120)  # killed here, in the middle of the save

output = Path(sys.argv[1])
spec = ExperimentSpec(algorithm="ppo", env="CartPole-v1", output=output)
CheckpointWriter(output, spec).save_final(HalfWrittenSave(), None)
"""


def test_a_process_killed_while_saving_keeps_the_previous_checkpoint(tmp_path):
    """A real SIGKILL in the middle of a save (no handler runs): the previous final checkpoint
    still loads as it was, the half-written one is a hidden folder nothing loads, and the next
    save clears it away."""
    import subprocess
    import sys

    writer = CheckpointWriter(tmp_path, _spec(tmp_path))
    final = writer.save_final(_SavingAlgorithm("first"), None)
    saver = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert saver.stdout.readline().strip() == "writing"
    finally:
        saver.kill()
        saver.wait(timeout=30)
    assert (final / "state").read_text() == "first"
    assert read_checkpoint(final).path == final
    hidden = [path.name for path in tmp_path.iterdir() if path.name.startswith(".")]
    assert hidden == [f".{FINAL_CHECKPOINT}.partial"]
    writer.save_final(_SavingAlgorithm("third"), None)
    assert (final / "state").read_text() == "third"
    assert sorted(path.name for path in tmp_path.iterdir()) == [FINAL_CHECKPOINT]


def test_a_save_interrupted_between_its_renames_points_to_the_previous_checkpoint(tmp_path):
    writer = CheckpointWriter(tmp_path, _spec(tmp_path))
    final = writer.save_final(_SavingAlgorithm("first"), None)
    previous = tmp_path / f".{FINAL_CHECKPOINT}.previous"
    os.replace(final, previous)  # where a kill after the first rename leaves it
    with pytest.raises(CheckpointError, match="previous checkpoint is intact at .*previous"):
        read_checkpoint(final)
    writer.save_final(_SavingAlgorithm("second"), None)
    assert (final / "state").read_text() == "second"
    assert not previous.exists()


def test_a_run_folder_stands_for_its_final_checkpoint(tmp_path):
    (tmp_path / "spec.yaml").write_text(_spec(tmp_path).to_yaml())
    with pytest.raises(CheckpointError, match="holds no checkpoint.*checkpoint.every=N"):
        read_checkpoint(tmp_path)
    writer = CheckpointWriter(tmp_path, _spec(tmp_path))
    periodic = writer.save(
        _SavingAlgorithm("early"), tmp_path / "checkpoints" / "iter_000002", None
    )
    with pytest.raises(CheckpointError, match=f"no final checkpoint.*{periodic}: pass that folder"):
        read_checkpoint(tmp_path)
    final = writer.save_final(_SavingAlgorithm("last"), None)
    assert read_checkpoint(tmp_path).path == final.resolve()


def test_a_file_given_as_a_checkpoint_is_called_a_file(tmp_path):
    file = tmp_path / "notes.txt"
    file.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="notes.txt is a file; pass the checkpoint folder"):
        read_checkpoint(file)


class _OtherAlgorithm(_SavingAlgorithm):
    pass


def test_the_marker_records_the_saved_algorithm_and_refuses_another(tmp_path):
    final = CheckpointWriter(tmp_path, _spec(tmp_path)).save_final(_SavingAlgorithm("x"), None)
    marker = json.loads((final / CHECKPOINT_MARKER).read_text())
    assert marker["algorithm_class"].endswith("test_outputs._SavingAlgorithm")
    assert marker["rlscale_version"] == rlscale.__version__
    info = read_checkpoint(final)
    info.check_algorithm_class(_SavingAlgorithm)
    with pytest.raises(CheckpointError, match=r"names algorithm 'ppo' .*state is a .*_Saving"):
        info.check_algorithm_class(_OtherAlgorithm)


def test_a_marker_whose_algorithm_disagrees_with_its_spec_is_damaged(tmp_path):
    final = CheckpointWriter(tmp_path, _spec(tmp_path)).save_final(_SavingAlgorithm("x"), None)
    marker = json.loads((final / CHECKPOINT_MARKER).read_text())
    (final / CHECKPOINT_MARKER).write_text(json.dumps(marker | {"algorithm": "dqn"}))
    with pytest.raises(CheckpointError, match="names algorithm 'dqn' but holds the spec of 'ppo'"):
        read_checkpoint(final)


class _TruncatedState:
    def restore_from_path(self, path: str) -> None:
        raise pickle.UnpicklingError("pickle data was truncated")


def test_a_truncated_saved_state_is_reported_as_a_damaged_checkpoint(tmp_path):
    final = CheckpointWriter(tmp_path, _spec(tmp_path)).save_final(_SavingAlgorithm("x"), None)
    with pytest.raises(CheckpointError, match="is damaged: .*pickle data was truncated"):
        restore_or_explain(_TruncatedState(), read_checkpoint(final))


def test_plot_without_finished_episodes_still_writes_a_png(tmp_path):
    metrics = IterationMetrics.from_result(result(1, 10, [], []), EpisodeWindow(), 1.0, None)
    path = plot_learning_curve([metrics], tmp_path / "curve.png", "empty")
    assert path.read_bytes()[:4] == b"\x89PNG"
    assert [p.name for p in tmp_path.iterdir()] == ["curve.png"]


class FakeAlgorithm:
    """Hands out ready-made RLlib results, one per ``train()``."""

    def __init__(self, results: list[dict]):
        self._results = iter(results)
        self.stopped = False
        # Its results say when it evaluated, as if RLlib's interval were every iteration.
        self.config = SimpleNamespace(evaluation_interval=1)

    def train(self) -> dict:
        return next(self._results)

    def stop(self) -> None:
        self.stopped = True


class FakeConfig:
    num_learners = 1  # remote Learners: the step leaves this process's torch threads alone
    evaluation_duration = 2

    def __init__(self, results: list[dict]):
        self.algorithm = FakeAlgorithm(results)

    def build_algo(self) -> FakeAlgorithm:
        return self.algorithm


def fake_experiment(results: list[dict], offline: bool) -> PreparedExperiment:
    spec = ExperimentSpec(algorithm="bc", env="CartPole-v1", stop={"iterations": 3})
    dataset = SimpleNamespace(ref_min_score=0.0, ref_max_score=10.0) if offline else None
    return PreparedExperiment(
        spec=spec, algorithm=None, env=None, config=FakeConfig(results), dataset=dataset
    )


def offline_result(iteration: int, evaluated: list[float] | None) -> dict:
    """Training episodes never count offline; only the evaluation section's do."""
    raw = result(iteration, 0, [1000.0], [1000])
    if evaluated is not None:
        raw["evaluation"] = result(iteration, 0, evaluated, [5] * len(evaluated))
    return raw


def test_offline_step_reports_the_latest_evaluation_and_its_normalized_score():
    step = IterationStep(
        fake_experiment(
            [
                offline_result(1, [4.0, 6.0]),
                offline_result(2, None),
                offline_result(3, [2.0, 7.0, 9.0]),
            ],
            offline=True,
        )
    )
    first, second, third = step(), step(), step()
    assert (first.metrics.return_mean, first.metrics.normalized_return) == (5.0, 50.0)
    assert first.metrics.episode_len_mean == 5.0 and first.stop_reason is None
    assert second.metrics.return_mean == 5.0  # no evaluation ran: still the last one's
    # The window holds one evaluation's episodes (evaluation_duration), not 100.
    assert (third.metrics.return_mean, third.metrics.normalized_return) == (8.0, 80.0)
    assert third.stop_reason == "3 iterations"
    assert "evaluation" in third.result
    step.stop()
    assert step.algo.stopped


def test_online_step_counts_training_episodes_and_takes_an_iteration_number():
    step = IterationStep(fake_experiment([result(1, 100, [10.0, 30.0], [10, 30])], offline=False))
    outcome = step(iteration=7)
    assert outcome.metrics.iteration == 7 and outcome.metrics.return_mean == 20.0
    assert math.isnan(outcome.metrics.normalized_return)
    assert outcome.stop_reason == "7 iterations"


def test_step_state_survives_a_checkpoint_round_trip():
    results = [offline_result(1, [4.0, 6.0]), offline_result(2, None)]
    before = IterationStep(fake_experiment(results[:1], offline=True))
    before()
    state = json.loads(json.dumps(before.state(), allow_nan=True))
    after = IterationStep(fake_experiment(results[1:], offline=True))
    after.load_state(state)
    assert list(after.window.returns) == [4.0, 6.0] and after.window.returns.maxlen == 2
    assert after.previous == before.previous
    assert after.time_s() >= state["time_s"]
    resumed = after()
    # The restored window, clock and previous row carry on as if never interrupted.
    assert resumed.metrics.return_mean == 5.0 and resumed.metrics.time_s >= state["time_s"]


def test_evaluate_logs_ray_into_the_checkpoints_run_folder(tmp_path):
    from rlscale.platform.evaluation import evaluation_log

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    assert evaluation_log(run / "checkpoint_final") == run / "ray.log"
    assert evaluation_log(run / "checkpoints" / "iter_000004") == run / "ray.log"
    assert evaluation_log(tmp_path / "sweep" / "trial_1" / "checkpoint_000002") is None  # absent
    run.chmod(0o555)
    try:
        if not os.access(run, os.W_OK):  # root writes anywhere
            assert evaluation_log(run / "checkpoint_final") is None
    finally:
        run.chmod(0o755)


def test_tensorboard_carries_the_csv_columns_under_rlscale(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log = MetricsLog(tmp_path)
    for iteration, value in ((1, float("nan")), (2, 370.4)):
        row = IterationMetrics(
            iteration=iteration,
            env_steps=1000 * iteration,
            episodes=3,
            return_mean=value,
            return_min=value,
            return_max=value,
            episode_len_mean=value,
            time_s=1.0,
            steps_per_s=1000.0,
            normalized_return=float("nan"),
        )
        log.record(row, {"env_runners": {"episode_return_mean": 500.0}})
    log.close()
    events = EventAccumulator(str(tmp_path / "tensorboard")).Reload()
    returns = events.Scalars("rlscale/return_mean")
    assert [(event.step, event.value) for event in returns] == [(2000, pytest.approx(370.4))]
    assert [event.value for event in events.Scalars("env_runners/episode_return_mean")] == [
        500.0,
        500.0,
    ]


def _row(iteration: int) -> IterationMetrics:
    return IterationMetrics(
        iteration=iteration,
        env_steps=1000 * iteration,
        episodes=10 * iteration,
        return_mean=float(iteration),
        return_min=0.0,
        return_max=2.0 * iteration,
        episode_len_mean=20.0,
        time_s=1.5 * iteration,
        steps_per_s=666.7,
    )


def test_a_resumed_metrics_log_drops_the_rows_after_the_checkpoint_and_appends(tmp_path):
    log = MetricsLog(tmp_path)
    for iteration in range(1, 7):  # the run got to 6; its latest checkpoint is at 4
        log.record(_row(iteration), {})
    log.close()
    resumed = MetricsLog(tmp_path, resume_after=_row(4))
    assert [row.iteration for row in resumed.history] == [1, 2, 3, 4]
    resumed.record(_row(5), {})
    resumed.close()
    rows = read_metrics(tmp_path / "metrics.csv")
    assert [row.iteration for row in rows] == [1, 2, 3, 4, 5]
    assert repr(rows[2]) == repr(_row(3))  # read back exactly, integers as integers (NaN too)


def test_resume_starts_from_the_checkpoint_of_the_highest_iteration(tmp_path):
    writer = CheckpointWriter(tmp_path, _spec(tmp_path))
    with pytest.raises(CheckpointError, match="no complete checkpoint to resume from"):
        latest_checkpoint(tmp_path)
    for iteration in (2, 4):
        destination = tmp_path / "checkpoints" / f"iter_{iteration:06d}"
        writer.save(_SavingAlgorithm(str(iteration)), destination, _row(iteration), {"x": 1})
    (tmp_path / "checkpoints" / ".iter_000006.partial").mkdir()  # killed while saving
    latest = latest_checkpoint(tmp_path)
    assert latest.path.name == "iter_000004"
    assert (latest.metrics["iteration"], latest.step_state) == (4, {"x": 1})
    # Ctrl-C wrote a final checkpoint after the last periodic one: it is the newest.
    writer.save_final(_SavingAlgorithm("final"), _row(5), None)
    assert latest_checkpoint(tmp_path).path.name == FINAL_CHECKPOINT


def test_resume_refuses_before_ray_a_folder_without_a_run_or_a_finished_run(tmp_path, monkeypatch):
    import rlscale.platform.runner as runner

    def no_ray(*args, **kwargs):
        raise AssertionError("resume reached Ray before refusing")

    monkeypatch.setattr(runner, "ray_session", no_ray)
    with pytest.raises(OutputError, match="cannot resume .*: it does not exist"):
        rlscale.resume(tmp_path / "missing")
    with pytest.raises(OutputError, match=r"holds no run \(no spec.yaml\)"):
        rlscale.resume(tmp_path)
    spec = ExperimentSpec(
        algorithm="ppo", env="CartPole-v1", output=tmp_path, name="r", stop={"iterations": 5}
    )
    run_dir = create_run_dir(spec)
    with pytest.raises(CheckpointError, match="no complete checkpoint to resume from"):
        rlscale.resume(run_dir)
    CheckpointWriter(run_dir, spec).save_final(_SavingAlgorithm("done"), _row(5), None)
    with pytest.raises(CheckpointError, match="already finished \\(5 iterations.*--stop-iters 10"):
        rlscale.resume(run_dir)
    other = spec.model_copy(update={"env": "Acrobot-v1"})
    CheckpointWriter(run_dir, other).save_final(_SavingAlgorithm("other"), _row(3), None)
    with pytest.raises(CheckpointError, match="is of ppo on Acrobot-v1.*mixes two runs"):
        rlscale.resume(run_dir)


def test_the_first_offline_evaluation_leaves_trainings_random_streams_as_they_were():
    import random

    import numpy as np
    import torch

    class _EvaluatingAlgorithm:
        def evaluate(self):
            random.random(), np.random.rand(), torch.rand(3)  # as a policy's sampling would
            return {"env_runners": {}}

    step = IterationStep.__new__(IterationStep)
    step.algo = _EvaluatingAlgorithm()
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    expected = random.random(), np.random.rand(), torch.rand(3)
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    assert step._first_evaluation() == {"env_runners": {}}
    drawn = random.random(), np.random.rand(), torch.rand(3)
    assert drawn[:2] == expected[:2] and torch.equal(drawn[2], expected[2])
