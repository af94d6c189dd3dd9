"""`rlscale datasets validate`: check a Minari dataset and report every problem, not the first.

Checks, per episode: observations and actions fit the dataset's spaces (dtype kind, shape,
bounds for Discrete), one more observation than actions, no NaN or inf in observations, actions
or rewards, and episode boundaries: only the last step may end the episode, it must end by
termination or truncation, and not both. With an environment given, the dataset's spaces must
match the environment's.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import gymnasium as gym
import numpy as np

from rlscale.datasets.store import open_dataset
from rlscale.errors import DatasetError

MAX_PROBLEMS_PER_KIND = 5
"""Beyond this many episodes with the same problem, the rest are counted, not listed."""


@dataclass
class ValidationReport:
    dataset: str
    episodes: int = 0
    steps: int = 0
    problems: list[str] = field(default_factory=list)
    actions_vary: bool = False
    """Some recorded action differs from the first: the dataset holds actions, not only states
    (a state-only demonstration records one placeholder action throughout)."""

    @property
    def ok(self) -> bool:
        return not self.problems


def validate_dataset(
    name_or_path: str | Path, root: str | Path | None = None, env_spaces=None
) -> ValidationReport:
    """Check every episode; ``env_spaces`` (observation, action) also checks the spaces match."""
    dataset = open_dataset(name_or_path, root)
    report = ValidationReport(dataset=str(name_or_path))
    observation_space, action_space = dataset.observation_space, dataset.action_space
    if env_spaces is not None:
        report.problems.extend(space_mismatches(observation_space, action_space, *env_spaces))
    counts: dict[str, int] = {}
    storage = dataset.storage
    first_action = None
    for episode in _read_episodes(storage):
        report.episodes += 1
        report.steps += len(episode["rewards"])
        actions = episode["actions"]
        if not isinstance(actions, np.ndarray):
            report.actions_vary = True  # Dict/Tuple actions: not compared, taken as recorded
        elif not report.actions_vary and len(actions):
            first_action = actions[0] if first_action is None else first_action
            report.actions_vary = bool(np.any(actions != first_action))
        for kind, text in _episode_problems(episode, observation_space, action_space):
            counts[kind] = counts.get(kind, 0) + 1
            if counts[kind] <= MAX_PROBLEMS_PER_KIND:
                report.problems.append(f"episode {episode['id']}: {text}")
    for kind, count in counts.items():
        if count > MAX_PROBLEMS_PER_KIND:
            report.problems.append(
                f"... and {count - MAX_PROBLEMS_PER_KIND} more episodes with: {kind}"
            )
    if report.episodes == 0:
        report.problems.append("the dataset holds no episodes")
    if storage.total_steps != report.steps:
        report.problems.append(
            f"metadata says {storage.total_steps} steps, the episodes hold {report.steps}"
        )
    return report


def _read_episodes(storage) -> Iterator[dict]:
    episodes = iter(storage.get_episodes(range(storage.total_episodes)))
    index = 0
    while True:
        try:
            episode = next(episodes)
        except StopIteration:
            return
        except Exception as exc:  # h5py/arrow errors on damaged files come in many types
            raise DatasetError(
                f"cannot read episode {index} of {storage.data_path}: {type(exc).__name__}: "
                f"{exc}. The data file is damaged; re-collect the dataset."
            ) from None
        index += 1
        yield episode


def space_mismatches(
    data_obs: gym.Space, data_act: gym.Space, env_obs: gym.Space, env_act: gym.Space
) -> list[str]:
    """Why a dataset's spaces do not fit an environment's (empty when they do)."""
    problems = []
    for what, data_space, env_space in (
        ("observation", data_obs, env_obs),
        ("action", data_act, env_act),
    ):
        if not _same_space(data_space, env_space):
            problems.append(
                f"the dataset's {what} space {data_space} differs from the environment's "
                f"{env_space}"
            )
    return problems


def _same_space(a: gym.Space, b: gym.Space) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, gym.spaces.Discrete):
        return a.n == b.n and a.start == b.start
    if isinstance(a, gym.spaces.Box):
        return (
            a.shape == b.shape
            and np.allclose(a.low, b.low, equal_nan=True)
            and np.allclose(a.high, b.high, equal_nan=True)
        )
    return a == b


def _episode_problems(
    episode: dict, observation_space: gym.Space, action_space: gym.Space
) -> Iterator[tuple[str, str]]:
    observations = episode["observations"]
    actions = episode["actions"]
    rewards = np.asarray(episode["rewards"])
    terminations = np.asarray(episode["terminations"]).astype(bool)
    truncations = np.asarray(episode["truncations"]).astype(bool)
    steps = len(rewards)
    if steps == 0:
        yield "empty episode", "has no steps"
        return
    yield from _array_problems("observations", observations, observation_space, steps + 1)
    yield from _array_problems("actions", actions, action_space, steps)
    if not np.all(np.isfinite(rewards)):
        bad = int(np.sum(~np.isfinite(rewards)))
        yield "non-finite rewards", f"{bad} reward(s) are NaN or inf"
    for name, flags in (("terminations", terminations), ("truncations", truncations)):
        if len(flags) != steps:
            yield f"{name} length", f"{len(flags)} {name} for {steps} steps"
    if len(terminations) == steps and len(truncations) == steps:
        ended_early = np.flatnonzero((terminations | truncations)[:-1])
        if len(ended_early):
            yield (
                "ends before its last step",
                f"terminated or truncated at step {int(ended_early[0])} of {steps} "
                "(episode boundaries inside an episode)",
            )
        if not (terminations[-1] or truncations[-1]):
            yield "does not end", "its last step is neither terminated nor truncated"
        if terminations[-1] and truncations[-1]:
            yield "both terminated and truncated", "its last step is both terminated and truncated"


def _array_problems(
    name: str, data, space: gym.Space, expected_rows: int
) -> Iterator[tuple[str, str]]:
    if not isinstance(data, np.ndarray):
        return  # Dict/Tuple spaces: Minari's own decoding already checked the structure.
    if len(data) != expected_rows:
        yield f"{name} count", f"{len(data)} {name}, expected {expected_rows}"
    if isinstance(space, gym.spaces.Box):
        if data.shape[1:] != space.shape:
            yield f"{name} shape", f"{name} have shape {data.shape[1:]}, the space {space.shape}"
        if data.dtype.kind != np.dtype(space.dtype).kind:
            yield f"{name} dtype", f"{name} are {data.dtype}, the space holds {space.dtype}"
        elif not np.all(np.isfinite(data)):
            yield (
                f"non-finite {name}",
                f"{int(np.sum(~np.isfinite(data)))} {name} values are NaN or inf",
            )
    elif isinstance(space, gym.spaces.Discrete):
        if data.dtype.kind not in "iu":
            yield f"{name} dtype", f"{name} are {data.dtype}, a Discrete space holds integers"
        elif data.size and (data.min() < space.start or data.max() >= space.start + space.n):
            yield (
                f"{name} out of range",
                f"{name} range over [{data.min()}, {data.max()}], outside {space}",
            )
