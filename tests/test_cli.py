"""The `rlscale` command through a subprocess: listings, and bad input that fails cleanly."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

import rlscale
from tests.conftest import run_cli


def assert_clean_failure(result, *fragments: str) -> None:
    """Non-zero exit, one message naming the problem, and no traceback."""
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def test_algos_lists_registered_algorithms():
    result = run_cli("algos")
    assert result.returncode == 0, result.stderr
    names = [line.split()[0] for line in result.stdout.splitlines() if line.strip()]
    assert {"ppo", "dqn"} <= set(names)


def test_envs_lists_spaces():
    result = run_cli("envs", "--family", "classic_control")
    assert result.returncode == 0, result.stderr
    assert "CartPole-v1" in result.stdout and "Discrete(2)" in result.stdout


def test_unknown_env(tmp_path):
    result = run_cli("train", "ppo", "--env", "CartPol-v1", "--output", str(tmp_path))
    assert_clean_failure(result, "CartPol-v1", "CartPole-v1")


def test_unknown_algorithm(tmp_path):
    result = run_cli("train", "ppp", "--env", "CartPole-v1", "--output", str(tmp_path))
    assert_clean_failure(result, "unknown algorithm 'ppp'", "ppo")


@pytest.mark.parametrize(
    ("expert_flags", "expected"),
    [
        ((), "dagger needs an expert: pass --expert"),
        (("--expert", "cartpole_balancer"), "Did you mean: cartpole_balance, cartpole_centered"),
    ],
)
def test_dagger_without_a_usable_expert(tmp_path, expert_flags, expected):
    result = run_cli(
        "train", "dagger", "--env", "CartPole-v1", *expert_flags, "--output", str(tmp_path)
    )
    assert_clean_failure(result, expected)


def test_malformed_yaml(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text("algorithm: ppo\nenv: [CartPole-v1\n")
    result = run_cli("train", "--config", str(spec), "--output", str(tmp_path))
    assert_clean_failure(result, "not valid YAML at line")


def test_unknown_hyperparameter(tmp_path):
    result = run_cli(
        "train", "ppo", "--env", "CartPole-v1", "--set", "lrr=0.1", "--output", str(tmp_path)
    )
    assert_clean_failure(result, "unknown hyper-parameter 'lrr'", "Did you mean: lr")


def test_unreachable_address(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run_cli(
        "train",
        "ppo",
        "--env",
        "CartPole-v1",
        "--address",
        f"127.0.0.1:{port}",
        "--output",
        str(tmp_path),
        timeout=60,
    )
    assert_clean_failure(result, f"cannot reach a Ray cluster at 127.0.0.1:{port}")


def test_unwritable_output_directory(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = run_cli("train", "ppo", "--env", "CartPole-v1", "--output", str(blocker / "runs"))
    assert_clean_failure(result, "cannot write the run's output")
    assert blocker.read_text() == "not a directory"


def test_dqn_on_continuous_actions_lists_fitting_algorithms(tmp_path):
    result = run_cli("train", "dqn", "--env", "Pendulum-v1", "--output", str(tmp_path))
    assert_clean_failure(result, "dqn cannot run on Pendulum-v1", "Discrete", "ppo")


def test_missing_checkpoint(tmp_path):
    result = run_cli("evaluate", str(tmp_path / "nowhere"))
    assert_clean_failure(result, "does not exist")


def test_incomplete_checkpoint_is_refused(tmp_path):
    partial = Path(tmp_path / "checkpoint_final")
    partial.mkdir()
    result = run_cli("evaluate", str(partial))
    assert_clean_failure(result, "not a complete rlscale checkpoint")


@pytest.mark.parametrize("args", [["train"], ["train", "ppo"]])
def test_missing_algorithm_or_env(args, tmp_path):
    result = run_cli(*args, "--output", str(tmp_path))
    assert_clean_failure(result, "is required")


def _ray_noise(text: str) -> list[str]:
    return [line for line in text.splitlines() if "WARNING" in line or "Deprecat" in line]


@pytest.mark.slow
def test_train_and_evaluate_keep_rays_own_messages_in_the_run_folder(tmp_path):
    trained = run_cli(
        "train",
        "ppo",
        "--env",
        "CartPole-v1",
        "--stop-iters",
        "1",
        "--seed",
        "0",
        "--output",
        str(tmp_path),
        "--name",
        "quiet",
    )
    assert trained.returncode == 0, trained.stderr
    assert not _ray_noise(trained.stdout + trained.stderr), trained.stderr
    assert "iter    1" in trained.stderr
    ray_log = tmp_path / "quiet" / "ray.log"
    assert _ray_noise(ray_log.read_text())  # Ray's start-up and deprecation notes, kept

    checkpoint = Path(trained.stdout.strip().splitlines()[-1])
    evaluated = run_cli("evaluate", str(checkpoint), "--episodes", "1", "--verbose")
    assert evaluated.returncode == 0, evaluated.stderr
    assert _ray_noise(evaluated.stderr)  # --verbose shows them, as before
    assert "===== rlscale evaluate" in ray_log.read_text()  # and still keeps a copy


def test_error_messages_keep_their_brackets(tmp_path):
    """Rich markup is escaped: a message quoting brackets prints them, not a markup error."""
    result = run_cli(
        "train",
        "mbpo",
        "--env",
        "InvertedPendulum-v5",
        "--set",
        "rollout_horizon=[5,1,1,3]",
        "--output",
        str(tmp_path),
    )
    assert_clean_failure(
        result, "[from_env_steps, to_env_steps, first_horizon, last_horizon]", "[5, 1, 1, 3]"
    )
    assert not any(tmp_path.iterdir())


def test_version_prints_the_package_version():
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"rlscale {rlscale.__version__}"


@pytest.mark.parametrize("command", ["train", "tune"])
def test_a_spec_path_that_is_missing_or_a_folder_is_named(tmp_path, command):
    flag = ["--config"] if command == "train" else []
    missing = run_cli(command, *flag, str(tmp_path / "missing.yaml"))
    assert missing.returncode == 1 and "missing.yaml does not exist; check its path" in (
        missing.stderr
    )
    folder = run_cli(command, *flag, str(tmp_path))
    assert folder.returncode == 1 and "is a folder; give the path of a YAML spec file" in (
        folder.stderr
    )


def test_help_texts_keep_their_bracketed_defaults_and_flags_show_no_type_tag():
    result = run_cli("train", "--help")
    assert result.returncode == 0
    assert "Root folder for runs [default: runs]." in " ".join(result.stdout.split())
    assert "--verbose <bool>" not in result.stdout


def test_table_cells_are_printed_as_written_not_as_markup():
    from types import SimpleNamespace

    from rich.console import Console
    from rich.table import Table

    from rlscale.cli import _listing_row

    listing = SimpleNamespace(
        name="Box2D-v0",
        kind="gymnasium",
        observation_space=None,
        action_space=None,
        note='needs: pip install "gymnasium[box2d]"',
    )
    table = Table("name", "kind", "observation space", "action space", "note")
    table.add_row(*_listing_row(listing))
    console = Console(width=200, record=True)
    console.print(table)
    assert 'pip install "gymnasium[box2d]"' in console.export_text()


def test_narrow_tables_wrap_long_cells_instead_of_cutting_them():
    from rich.console import Console

    from rlscale.cli import _table

    params = "lr=0.000316 hidden_sizes=[64,64] gamma=0.99 trial=trainable_7f3a2_00003"
    table = _table("params")
    table.add_row(params)
    console = Console(width=24, record=True)
    console.print(table)
    text = console.export_text()
    assert "…" not in text
    squeezed = "".join(ch for ch in text if ch.isalnum() or ch in "_=.[],")
    assert params.replace(" ", "") in squeezed
