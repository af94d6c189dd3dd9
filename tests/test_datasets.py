"""Minari datasets: collection on Ray actors, atomic writes, listing, validation, bad input,
and the Python API (``rlscale.list_datasets``, ...) the CLI wraps."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import h5py
import minari
import numpy as np
import pytest

import rlscale
from rlscale.algorithms import get_algorithm
from rlscale.algorithms.common import offline_data
from rlscale.datasets.collect import CollectionRequest, CollectionResult, collect
from rlscale.datasets.combine import combine
from rlscale.datasets.ray_data import read_transitions, to_learner_batch, transitions_dataset
from rlscale.datasets.store import (
    DatasetSummary,
    DatasetWrite,
    EpisodeArrays,
    UnreadableDataset,
    list_datasets,
    open_dataset,
    summarize,
    write_dataset,
)
from rlscale.datasets.validate import ValidationReport, validate_dataset
from rlscale.envs import make_env
from rlscale.errors import CheckpointError, DatasetError, PolicyError, UnknownEnvironmentError
from rlscale.platform import datasets_api
from rlscale.policies import cartpole_balance, scripted_policy
from tests.conftest import run_cli


@pytest.fixture
def root(tmp_path, monkeypatch) -> Path:
    """A private datasets root, also as MINARI_DATASETS_PATH so Minari's own API sees it."""
    folder = tmp_path / "datasets"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(folder))
    return folder


def _collect(root, name="cartpole/expert-v0", policy="cartpole_balance", episodes=6, **kw):
    request = CollectionRequest(
        env=kw.pop("env", "CartPole-v1"),
        dataset_id=name,
        policy_factory=scripted_policy(policy),
        policy_name=policy,
        episodes=episodes,
        root=root,
        **kw,
    )
    return collect(request, make_env)


def _cartpole_episode(steps: int = 5, reward: float = 1.0) -> EpisodeArrays:
    return EpisodeArrays(
        observations=np.zeros((steps + 1, 4), dtype=np.float32),
        actions=np.zeros(steps, dtype=np.int64),
        rewards=np.full(steps, reward),
        terminations=np.array([False] * (steps - 1) + [True]),
        truncations=np.zeros(steps, dtype=bool),
    )


def _write(root, name, episodes):
    env = gym.make("CartPole-v1")
    return write_dataset(
        name, episodes, env.observation_space, env.action_space, env.spec, {}, root=root
    )


def test_collect_on_two_workers_writes_a_dataset_minari_loads(ray_local, root, capsys):
    result = _collect(root, workers=2, episodes=7, noise=0.1, seed=3)
    progress = capsys.readouterr().err
    assert f"collected 7/7 episodes, {result.write.steps:,} steps" in progress
    dataset = minari.load_dataset("cartpole/expert-v0")
    assert dataset.total_episodes == 7
    assert dataset.total_steps == result.write.steps
    assert "cartpole/expert-v0" in minari.list_local_datasets()
    metadata = dataset.storage.metadata
    assert metadata["ref_max_score"] == pytest.approx(result.mean_return)
    assert metadata["ref_min_score"] == pytest.approx(result.random_return)
    assert result.mean_return > 400 > 50 > result.random_return
    provenance = metadata["rlscale"]
    assert provenance["policy"] == "cartpole_balance"
    assert provenance["seed"] == 3 and provenance["noise"] == 0.1
    assert dataset.env_spec.id == "CartPole-v1"
    seeds = [episode["seed"] for episode in dataset.storage.get_episode_metadata(range(7))]
    assert seeds == list(range(3, 10))
    assert validate_dataset("cartpole/expert-v0").ok


def test_collection_is_the_same_whatever_the_number_of_workers(ray_local, root):
    _collect(root, name="a/one-v0", policy="random", workers=1, episodes=6)
    _collect(root, name="a/two-v0", policy="random", workers=2, episodes=6)
    one, two = (open_dataset(name).storage for name in ("a/one-v0", "a/two-v0"))
    for first, second in zip(one.get_episodes(range(6)), two.get_episodes(range(6)), strict=True):
        np.testing.assert_array_equal(first["observations"], second["observations"])
        np.testing.assert_array_equal(first["actions"], second["actions"])


def test_interrupted_write_leaves_nothing_that_loads(root):
    def episodes():
        yield _cartpole_episode()
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _write(root, "cut/short-v0", episodes())
    assert minari.list_local_datasets() == {}
    assert not (root / "cut" / "short-v0").exists()
    assert [p.name for p in root.iterdir() if p.name.startswith(".")] == []


def test_a_killed_writers_partial_folder_is_removed_by_the_next_write(root):
    """SIGKILL skips a writer's clean-up; the next write in the root removes what it left, and
    leaves alone the folder of a writer still running."""
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    root.mkdir(parents=True, exist_ok=True)
    stale = root / f".partial-{finished.pid}-0123456789ab"
    live = root / f".partial-{os.getpid()}-ba9876543210"
    for folder in (stale, live):
        (folder / "data").mkdir(parents=True)
    _write(root, "after/kill-v0", [_cartpole_episode()])
    assert not stale.exists()
    assert live.is_dir()


@pytest.mark.slow
def test_a_collection_killed_midway_leaves_nothing_that_loads_and_the_next_one_cleans_up(root):
    """A real SIGKILL of `rlscale datasets collect` while it streams episodes into its hidden
    partial folder: no dataset appears, and the next collection in the root removes what the
    dead writer left."""
    import signal
    import time

    environment = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    environment["MINARI_DATASETS_PATH"] = str(root)
    collector = subprocess.Popen(
        [str(Path(sys.executable).with_name("rlscale")), "datasets", "collect",
         "--env", "CartPole-v1", "--policy", "random", "--episodes", "1000000",
         "--name", "killed/midway-v0"],
        env=environment, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while not any(path.is_file() for path in root.glob(".partial-*/**/*")):
            assert collector.poll() is None, "the collection ended before it could be killed"
            assert time.monotonic() < deadline, "no partial write appeared in time"
            time.sleep(0.5)
        time.sleep(1.0)  # well inside the stream of episodes
        os.killpg(collector.pid, signal.SIGKILL)  # the CLI and its embedded Ray
        collector.wait(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(collector.pid, signal.SIGKILL)
    left = [path.name for path in root.glob(".partial-*")]
    assert left, "the kill should have left the writer's partial folder behind"
    assert not (root / "killed").exists()
    assert list_datasets(root) == []

    after = run_cli(
        "datasets", "collect", "--env", "CartPole-v1", "--policy", "random", "--episodes", "2",
        "--name", "next/after-v0", env={"MINARI_DATASETS_PATH": str(root)},
    )  # fmt: skip
    assert after.returncode == 0, after.stderr[-2000:]
    assert [entry.dataset_id for entry in list_datasets(root)] == ["next/after-v0"]
    assert not list(root.glob(".partial-*")), "the dead writer's folder was not removed"


def test_existing_dataset_is_never_overwritten(root):
    _write(root, "x/data-v0", [_cartpole_episode()])
    with pytest.raises(DatasetError, match="already exists"):
        _write(root, "x/data-v0", [_cartpole_episode()])


def test_empty_dataset_is_refused_and_nothing_is_written(root):
    with pytest.raises(DatasetError, match="no episodes"):
        _write(root, "x/empty-v0", [])
    assert list_datasets(root) == []


def test_a_root_that_is_a_file_is_an_error_not_an_empty_list(tmp_path):
    (tmp_path / "datasets").write_text("not a folder")
    with pytest.raises(DatasetError, match="is a file, not a folder"):
        list_datasets(tmp_path / "datasets")


def test_unwritable_root_is_a_clear_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(DatasetError, match="cannot write datasets"):
        _write(blocker / "datasets", "x/data-v0", [_cartpole_episode()])


def test_validation_reports_every_problem(root):
    bad = EpisodeArrays(
        observations=np.full((4, 4), np.nan, dtype=np.float32),
        actions=np.array([0, 5, 1], dtype=np.int64),
        rewards=np.array([1.0, np.nan, 1.0]),
        terminations=np.array([True, False, False]),
        truncations=np.array([False, False, False]),
    )
    _write(root, "x/bad-v0", [_cartpole_episode(), bad])
    report = validate_dataset("x/bad-v0")
    text = "\n".join(report.problems)
    assert not report.ok
    for expected in (
        "NaN or inf",
        "reward(s) are NaN",
        "outside Discrete(2)",
        "at step 0",
        "neither terminated nor truncated",
    ):
        assert expected in text, text
    assert all(problem.startswith("episode 1") for problem in report.problems)


def test_space_mismatch_with_the_env_is_reported(root):
    _write(root, "x/cart-v0", [_cartpole_episode()])
    env = gym.make("Pendulum-v1")
    report = validate_dataset("x/cart-v0", env_spaces=(env.observation_space, env.action_space))
    assert any("observation space" in p for p in report.problems)
    assert any("action space" in p for p in report.problems)


def test_corrupt_data_file_is_a_clear_error(root):
    written = _write(root, "x/corrupt-v0", [_cartpole_episode()])
    (written.data_dir / "main_data.hdf5").write_bytes(b"not hdf5 at all")
    with pytest.raises(DatasetError, match="cannot open|damaged"):
        validate_dataset("x/corrupt-v0")
    (listed,) = list_datasets(root)
    assert isinstance(listed, UnreadableDataset) and listed.dataset_id == "x/corrupt-v0"
    assert "cannot open" in listed.problem and listed.data_dir == written.data_dir


def test_missing_dataset_names_where_it_looked(root):
    with pytest.raises(DatasetError, match="not found.*rlscale datasets list"):
        summarize("nope/nothing-v0")


def test_info_and_list_read_datasets_written_by_minari_itself(root):
    from minari.data_collector import EpisodeBuffer

    episode = _cartpole_episode()
    minari.create_dataset_from_buffers(
        "other/by-minari-v0",
        [
            EpisodeBuffer(
                observations=episode.observations,
                actions=episode.actions,
                rewards=episode.rewards,
                terminations=episode.terminations,
                truncations=episode.truncations,
            )
        ],
        env="CartPole-v1",
        algorithm_name="hand-made",
        author="someone",
        author_email="someone@example.org",
        code_permalink="none",
        description="written through Minari's API",
    )
    summary = summarize("other/by-minari-v0")
    assert summary.episodes == 1 and summary.steps == 5 and summary.env == "CartPole-v1"
    assert [s.dataset_id for s in list_datasets(root)] == ["other/by-minari-v0"]
    assert summarize(str(root / "other" / "by-minari-v0")).dataset_id == "other/by-minari-v0"


def test_combine_makes_a_mixed_dataset(root):
    _write(root, "mix/a-v0", [_cartpole_episode(3)] * 2)
    _write(root, "mix/b-v0", [_cartpole_episode(7)])
    written = combine(["mix/a-v0", "mix/b-v0"], "mix/both-v0")
    dataset = minari.load_dataset("mix/both-v0")
    assert (written.episodes, dataset.total_steps) == (3, 13)
    assert dataset.combined_datasets == ["mix/a-v0", "mix/b-v0"]


def test_combine_refuses_different_spaces(root):
    _write(root, "mix/cart-v0", [_cartpole_episode()])
    env = gym.make("Pendulum-v1")
    write_dataset(
        "mix/pend-v0",
        [
            EpisodeArrays(
                np.zeros((3, 3), np.float32),
                np.zeros((2, 1), np.float32),
                np.zeros(2),
                np.array([False, True]),
                np.zeros(2, bool),
            )
        ],
        env.observation_space,
        env.action_space,
        env.spec,
        {},
        root=root,
    )
    with pytest.raises(DatasetError, match="cannot combine"):
        combine(["mix/cart-v0", "mix/pend-v0"], "mix/bad-v0")
    assert not (root / "mix" / "bad-v0").exists()


def test_python_api_lists_describes_validates_and_combines(root):
    _write(root, "api/a-v0", [_cartpole_episode(3)] * 2)
    _write(root, "api/b-v0", [_cartpole_episode(4)])
    broken = _write(root, "api/broken-v0", [_cartpole_episode()])
    (broken.data_dir / "main_data.hdf5").write_bytes(b"garbage")

    listed = rlscale.list_datasets(root)
    assert [entry.dataset_id for entry in listed] == ["api/a-v0", "api/b-v0", "api/broken-v0"]
    assert [(entry.episodes, entry.steps) for entry in listed[:2]] == [(2, 6), (1, 4)]
    assert isinstance(listed[2], UnreadableDataset) and "damaged" in listed[2].problem
    assert [entry.dataset_id for entry in rlscale.list_datasets()] == [
        entry.dataset_id for entry in listed
    ]  # the default root is MINARI_DATASETS_PATH

    info = rlscale.dataset_info("api/a-v0", root)
    assert isinstance(info, DatasetSummary)
    assert (info.env, info.episodes, info.steps) == ("CartPole-v1", 2, 6)
    assert info.to_dict()["path"] == str(root / "api" / "a-v0")

    report = rlscale.validate_dataset("api/a-v0", root, env="CartPole-v1")
    assert isinstance(report, ValidationReport) and report.ok and report.steps == 6
    mismatch = rlscale.validate_dataset(str(root / "api" / "a-v0"), env="Pendulum-v1")
    assert not mismatch.ok and len(mismatch.problems) == 2
    with pytest.raises(UnknownEnvironmentError, match="Did you mean: CartPole-v1"):
        rlscale.validate_dataset("api/a-v0", root, env="CartPol-v1")
    with pytest.raises(DatasetError, match="cannot open"):
        rlscale.validate_dataset("api/broken-v0", root)

    written = rlscale.combine_datasets(["api/a-v0", "api/b-v0"], "api/both-v0", root=root)
    assert isinstance(written, DatasetWrite) and (written.episodes, written.steps) == (3, 10)
    combined = rlscale.dataset_info("api/both-v0", root)
    assert combined.rlscale["sources"] == ["api/a-v0", "api/b-v0"]
    with pytest.raises(DatasetError, match="already exists"):
        rlscale.combine_datasets(["api/a-v0", "api/b-v0"], "api/both-v0", root=root)


def test_python_api_collects_with_a_named_policy_or_a_factory(ray_local, root):
    by_name = rlscale.collect_dataset(
        "CartPole-v1", "cartpole_balance", episodes=2, dataset_id="api/named-v0", root=root
    )
    assert isinstance(by_name, CollectionResult) and by_name.mean_return == 500.0
    by_factory = rlscale.collect_dataset(
        "CartPole-v1", cartpole_balance, episodes=2, dataset_id="api/factory-v0", root=root
    )
    assert by_factory.write.steps == by_name.write.steps == 1000
    provenance = rlscale.dataset_info("api/factory-v0", root).rlscale
    assert provenance["policy"] == "cartpole_balance"


def test_python_api_refuses_bad_policies_before_starting_ray(root):
    with pytest.raises(PolicyError, match="Did you mean: cartpole_balance"):
        rlscale.collect_dataset("CartPole-v1", "cartpole_balanse", 2, "api/x-v0", root=root)
    with pytest.raises(CheckpointError, match="does not exist"):
        rlscale.collect_dataset("CartPole-v1", "/no/such/ckpt", 2, "api/x-v0", root=root)
    with pytest.raises(PolicyError, match="'cartpole_balance' cannot act in Pendulum-v1"):
        rlscale.collect_dataset("Pendulum-v1", "cartpole_balance", 2, "api/x-v0", root=root)
    with pytest.raises(PolicyError, match="outside InvertedPendulum-v5's action space"):
        rlscale.collect_dataset("InvertedPendulum-v5", "cartpole_balance", 2, "api/x-v0", root=root)


def test_every_dataset_function_is_exported_lazily():
    for name in (
        "list_datasets",
        "dataset_info",
        "validate_dataset",
        "combine_datasets",
        "collect_dataset",
        "download_dataset",
    ):
        assert getattr(rlscale, name) is getattr(datasets_api, name)
        assert name in rlscale.__all__


def test_transitions_stream_through_ray_data(ray_local, root, monkeypatch):
    episodes = [_cartpole_episode(steps) for steps in (3, 4, 5)]
    written = _write(root, "x/stream-v0", episodes)
    rows = read_transitions(written.data_dir, 0, 3)
    assert len(rows["obs"]) == 12 and rows["new_obs"].shape == (12, 4)
    assert rows["terminateds"].sum() == 3
    dataset = transitions_dataset(written.data_dir, 3, episodes_per_shard=1, seed=0)
    assert dataset.count() == 12
    streamed = dataset.take_batch(12)
    # Every transition exactly once: shuffled shards and rows, nothing lost or repeated.
    got = zip(streamed["eps_id"], streamed["rewards"], streamed["obs"][:, 0], strict=True)
    expected = zip(np.repeat([0, 1, 2], [3, 4, 5]), rows["rewards"], rows["obs"][:, 0], strict=True)
    assert sorted(got) == sorted(expected)
    # Shard order is drawn before reading: neither the transitions nor the learners' offline
    # data have an all-to-all step that waits for (and holds) every block read.
    assert "RandomizeBlockOrder" not in str(dataset)
    monkeypatch.setattr(offline_data, "SMALL_DATASET_MB", -1.0)  # lazy, as for big datasets
    config = get_algorithm("bc").make_config().training(train_batch_size_per_learner=4)
    offline_data.use_minari_dataset(config, written.data_dir)
    learner_data = offline_data.MinariOfflineData(config).data
    assert "RandomizeBlockOrder" not in str(learner_data)
    # The conversion to the learner's layout runs inside the read tasks, not as a second
    # operator whose tasks wait behind the reads.
    assert len(learner_data.take_batch(12)["default_policy/rewards"]) == 12
    assert "MapBatches(_read_shard_batch)->MapBatches(to_learner_batch)" in learner_data.stats()


def test_ray_data_workers_import_neither_rllib_nor_torch():
    # Every read worker imports the module of the functions it runs; RLlib costs ~7 s of CPU
    # each, which on 2 cores added some 10 s to the first CQL iteration on 1M transitions.
    probe = (
        "import sys, rlscale.datasets.ray_data; "
        "print(sorted(m for m in ('ray.rllib', 'torch') if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "[]"
    assert to_learner_batch.__module__ == "rlscale.datasets.ray_data"


def test_cli_datasets_list_info_validate_and_bad_input(root, tmp_path):
    written = _write(root, "cli/data-v0", [_cartpole_episode()])
    env = {"MINARI_DATASETS_PATH": str(root)}
    listing = run_cli("datasets", "list", env=env)
    assert listing.returncode == 0 and "cli/data-v0" in listing.stdout
    info = run_cli("datasets", "info", "cli/data-v0", "--json", env=env)
    assert json.loads(info.stdout.splitlines()[-1])["steps"] == 5
    assert run_cli("datasets", "validate", "cli/data-v0", env=env).returncode == 0
    mismatch = run_cli("datasets", "validate", "cli/data-v0", "--env", "Pendulum-v1", env=env)
    assert mismatch.returncode == 1 and "observation space" in mismatch.stderr
    missing = run_cli("datasets", "info", "cli/missing-v0", env=env)
    assert missing.returncode == 1 and "not found" in missing.stderr
    (written.data_dir / "main_data.hdf5").write_bytes(b"garbage")
    corrupt = run_cli("datasets", "validate", "cli/data-v0", env=env)
    assert corrupt.returncode == 1 and "damaged" in corrupt.stderr
    for result in (missing, corrupt, mismatch):
        assert "Traceback" not in result.stderr


def test_cli_collect_refuses_bad_input_without_traceback(root):
    env = {"MINARI_DATASETS_PATH": str(root)}
    common = ["datasets", "collect", "--env", "CartPole-v1", "--episodes", "2"]
    bad_policy = run_cli(*common, "--policy", "cartpole_balanse", "--name", "a/b-v0", env=env)
    assert bad_policy.returncode == 1 and "cartpole_balance" in bad_policy.stderr
    bad_name = run_cli(*common, "--policy", "random", "--name", "no version", env=env)
    assert bad_name.returncode == 1 and "NAMESPACE/NAME-vN" in bad_name.stderr
    bad_ckpt = run_cli(*common, "--policy", "/no/such/ckpt", "--name", "a/b-v0", env=env)
    assert bad_ckpt.returncode == 1 and "does not exist" in bad_ckpt.stderr
    for result in (bad_policy, bad_name, bad_ckpt):
        assert "Traceback" not in result.stderr
    assert not root.exists() or list_datasets(root) == []


def test_nan_rewards_in_hdf5_are_found(root):
    written = _write(root, "x/nan-v0", [_cartpole_episode()])
    with h5py.File(written.data_dir / "main_data.hdf5", "a") as file:
        file["episode_0/rewards"][2] = np.nan
    report = validate_dataset("x/nan-v0")
    assert report.problems == ["episode 0: 1 reward(s) are NaN or inf"]
