"""Shared fixtures: one embedded Ray per test session, bound to loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small networks: one intra-op thread is faster than threads contending for shared cores.
    A test module opts in with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def ray_local():
    """The session's one Ray; rlscale.train/evaluate reuse it instead of starting their own."""
    import ray

    from rlscale.platform.runtime import start_local_ray

    if not ray.is_initialized():
        start_local_ray(num_cpus=2)
    yield ray
    ray.shutdown()


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run the `rlscale` console script as a user would."""
    full_env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    full_env.update(env or {})
    executable = Path(sys.executable).with_name("rlscale")
    return subprocess.run(
        [str(executable), *args],
        cwd=cwd or REPO_ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def mean_std_filter_stats(filter_state: dict) -> list:
    """The ``RunningStat`` of each observation component in a ``MeanStdFilter`` state."""
    from ray.rllib.utils.filter import RunningStat

    return [
        RunningStat.from_state(stat)
        for agent_state in filter_state.values()
        for stat in agent_state["running_stats"]
    ]


@pytest.fixture
def minari_root(tmp_path, monkeypatch):
    """A fresh Minari root for the test's datasets (``MINARI_DATASETS_PATH``)."""
    folder = tmp_path / "datasets"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(folder))
    return folder


def write_scripted_dataset(
    root: Path, name: str, episodes: int, env: str, policy: str, erase_actions: bool = False
) -> str:
    """``episodes`` whole episodes (seeds 0, 1, ...) of a scripted policy, rolled out in this
    process (no Ray) and written with rlscale's Minari writer as the dataset ``name``.
    ``erase_actions`` records every action as 0: the states of a demonstration alone."""
    import dataclasses

    import numpy as np

    from rlscale.datasets.collect import run_episode
    from rlscale.datasets.store import write_dataset
    from rlscale.envs import make_env
    from rlscale.policies import scripted_policy

    environment = make_env(env, {})
    try:
        act = scripted_policy(policy)(environment.observation_space, environment.action_space)
        rolled = [run_episode(environment, act, seed) for seed in range(episodes)]
        if erase_actions:
            rolled = [
                dataclasses.replace(episode, actions=np.zeros_like(episode.actions))
                for episode in rolled
            ]
        write_dataset(
            name,
            iter(rolled),
            environment.observation_space,
            environment.action_space,
            environment.spec,
            {"algorithm_name": policy},
            root=root,
        )
    finally:
        environment.close()
    return name


def pendulum_transition_batch(rows: int, seed: int = 0) -> dict:
    """A batch of random Pendulum-shaped transitions (3 observations, 1 action in [-1, 1],
    nothing terminated) for the offline learners' unit tests; ``seed`` fixes it."""
    import torch
    from ray.rllib.core.columns import Columns

    generator = torch.Generator().manual_seed(seed)
    return {
        Columns.OBS: torch.rand(rows, 3, generator=generator) * 2 - 1,
        Columns.NEXT_OBS: torch.rand(rows, 3, generator=generator) * 2 - 1,
        Columns.ACTIONS: torch.rand(rows, 1, generator=generator) * 2 - 1,
        Columns.REWARDS: torch.randn(rows, generator=generator),
        Columns.TERMINATEDS: torch.zeros(rows, dtype=torch.bool),
    }
