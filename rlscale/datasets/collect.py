"""Parallel collection: K Ray actors roll a policy out; the driver writes one Minari dataset.

Episodes are split into small ordered chunks; each chunk is rolled out by whichever actor is
free, and the driver writes the chunks in order as they arrive (so the dataset is the same for a
given seed whatever the number of workers, and never all in memory at once). Episode ``i`` is
reset with seed ``seed + i`` and its actions draw from ``numpy`` generator ``seed + i``.

Metadata records the env, the policy, the noise and seeds, and two reference returns for
normalized scores: a uniformly random policy's mean return (``ref_min_score``) and the collecting
policy's mean return over the collected episodes (``ref_max_score``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from rlscale.datasets.store import (
    RLSCALE_KEY,
    DatasetWrite,
    EpisodeArrays,
    check_dataset_id,
    check_writable_root,
    datasets_root,
    write_dataset,
)
from rlscale.errors import DatasetError
from rlscale.policies import Noisy, Policy, PolicyFactory, random_policy

EPISODES_PER_CHUNK = 5
RANDOM_REFERENCE_EPISODES = 20

EnvMaker = Callable[[str, Mapping[str, Any]], gym.Env]


@dataclass(frozen=True)
class CollectionRequest:
    env: str
    dataset_id: str
    policy_factory: PolicyFactory
    policy_name: str
    """How the policy is recorded in the metadata: 'random', a scripted name, a checkpoint."""
    episodes: int
    workers: int = 1
    noise: float = 0.0
    seed: int = 0
    env_config: dict[str, Any] = field(default_factory=dict)
    root: str | Path | None = None


@dataclass(frozen=True)
class CollectionResult:
    write: DatasetWrite
    mean_return: float
    random_return: float


def collect(request: CollectionRequest, make_env: EnvMaker) -> CollectionResult:
    """Roll out on ``request.workers`` Ray actors (Ray must be initialized) and write a dataset.

    ``make_env(name, env_config)`` builds the environment on each actor.
    """
    import ray

    _check_request(request)
    env = make_env(request.env, request.env_config)
    observation_space, action_space = env.observation_space, env.action_space
    env_spec = env.spec
    env.close()

    worker_class = ray.remote(num_cpus=1)(RolloutWorker)
    policy = Noisy(request.policy_factory, request.noise)
    actors = [
        worker_class.remote(request.env, request.env_config, policy, make_env)
        for _ in range(request.workers)
    ]
    returns: list[float] = []
    try:
        random_refs = _random_reference(actors[0], request)
        written = write_dataset(
            request.dataset_id,
            _record_and_report(_ordered_rollouts(actors, request), returns, request.episodes),
            observation_space,
            action_space,
            env_spec,
            lambda: _metadata(request, float(np.mean(returns)), float(ray.get(random_refs))),
            root=request.root,
        )
    finally:
        for actor in actors:
            ray.kill(actor)
    return CollectionResult(
        write=written,
        mean_return=float(np.mean(returns)),
        random_return=float(ray.get(random_refs)),
    )


class RolloutWorker:
    """A Ray actor holding one environment and one policy."""

    def __init__(
        self, env_name: str, env_config: Mapping[str, Any], factory: PolicyFactory, make_env
    ):
        self.env = make_env(env_name, env_config)
        self.policy = factory(self.env.observation_space, self.env.action_space)
        self.random = random_policy(self.env.observation_space, self.env.action_space)

    def rollout(self, seeds: list[int]) -> list[EpisodeArrays]:
        return [run_episode(self.env, self.policy, seed) for seed in seeds]

    def random_returns(self, seeds: list[int]) -> float:
        return float(np.mean([run_episode(self.env, self.random, s).total_return for s in seeds]))


def run_episode(env: gym.Env, policy: Policy, seed: int) -> EpisodeArrays:
    """One whole episode (to termination or truncation) with env and action seeds ``seed``."""
    rng = np.random.default_rng(seed)
    observation, _ = env.reset(seed=seed)
    observations, actions, rewards, terminations, truncations = [observation], [], [], [], []
    done = False
    while not done:
        action = policy(observation, rng)
        observation, reward, terminated, truncated, _ = env.step(action)
        observations.append(observation)
        actions.append(action)
        rewards.append(float(reward))
        terminations.append(bool(terminated))
        truncations.append(bool(truncated))
        done = terminated or truncated
    return EpisodeArrays(
        observations=np.asarray(observations, dtype=env.observation_space.dtype),
        actions=np.asarray(actions, dtype=env.action_space.dtype),
        rewards=np.asarray(rewards, dtype=np.float64),
        terminations=np.asarray(terminations, dtype=bool),
        truncations=np.asarray(truncations, dtype=bool),
        seed=seed,
    )


def _ordered_rollouts(actors, request: CollectionRequest) -> Iterator[EpisodeArrays]:
    from ray.util import ActorPool

    seeds = [request.seed + i for i in range(request.episodes)]
    chunks = [seeds[i : i + EPISODES_PER_CHUNK] for i in range(0, len(seeds), EPISODES_PER_CHUNK)]
    pool = ActorPool(actors)
    for chunk in pool.map(lambda actor, chunk_seeds: actor.rollout.remote(chunk_seeds), chunks):
        yield from chunk


def _record_and_report(episodes: Iterator[EpisodeArrays], returns: list[float], total: int):
    """Record each episode's return and report progress on stderr: a rich bar on a terminal,
    one line per tenth of the episodes elsewhere (CI logs, pipes)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True)
    every = max(1, total // 10)
    steps = 0
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, disable=not console.is_terminal) as progress:
        task = progress.add_task("collecting", total=total)
        for done, episode in enumerate(episodes, start=1):
            returns.append(episode.total_return)
            steps += len(episode)
            progress.advance(task)
            if not console.is_terminal and (done % every == 0 or done == total):
                console.print(
                    f"collected {done:,}/{total:,} episodes, {steps:,} steps, "
                    f"mean return {np.mean(returns):.2f}",
                    highlight=False,
                )
            yield episode


def _random_reference(actor, request: CollectionRequest):
    # Seeds far from the collection's, so the reference does not replay the dataset's resets.
    base = request.seed + 1_000_000
    return actor.random_returns.remote(list(range(base, base + RANDOM_REFERENCE_EPISODES)))


def _metadata(request: CollectionRequest, mean_return: float, random_return: float) -> dict:
    return {
        "algorithm_name": request.policy_name,
        "description": (
            f"{request.episodes} episodes of {request.env} from policy {request.policy_name} "
            f"(noise {request.noise:g}, seed {request.seed}), collected by rlscale"
        ),
        "ref_min_score": random_return,
        "ref_max_score": mean_return,
        "num_episodes_average_score": RANDOM_REFERENCE_EPISODES,
        RLSCALE_KEY: {
            "env": request.env,
            "env_config": request.env_config,
            "policy": request.policy_name,
            "noise": request.noise,
            "seed": request.seed,
            "episode_seeds": [request.seed, request.seed + request.episodes - 1],
            "workers": request.workers,
            "collector_mean_return": mean_return,
            "random_mean_return": random_return,
        },
    }


def _check_request(request: CollectionRequest) -> None:
    check_collection(
        request.dataset_id, request.episodes, request.workers, request.noise, request.root
    )


def check_collection(
    dataset_id: str, episodes: int, workers: int, noise: float, root: str | Path | None
) -> None:
    """The request's numbers, its id, and a writable root where no dataset of that id exists:
    checked before any actor starts (and again by :func:`collect`)."""
    check_dataset_id(dataset_id)
    if episodes < 1:
        raise DatasetError(f"--episodes must be at least 1, got {episodes}.")
    if workers < 1:
        raise DatasetError(f"--workers must be at least 1, got {workers}.")
    if not 0.0 <= noise <= 1.0:
        raise DatasetError(f"--noise must be between 0 and 1, got {noise}.")
    check_writable_root(root)
    if (datasets_root(root) / dataset_id).exists():
        raise DatasetError(
            f"a dataset {dataset_id} already exists under "
            f"{datasets_root(root)}. Choose another name or version."
        )
