"""Transitions ``(observation, planned action, next observation, reward)`` from RLlib episodes
or from a Minari dataset.

The model-based algorithms fit their dynamics models on these. Actions are stored as the planner
sees them: a Discrete env's action becomes the force it declares (CartPole-v1's 0 / 1 -> -1 / +1),
so that the model learns in the planner's action space.

Given a dataset (``--dataset``; the registry entry's ``attach_dataset`` is
:func:`~rlscale.algorithms.common.offline.attach_in_memory_dataset`), ``pets`` and ``sysid``
hold all of its transitions in memory (the datasets of these systems are small) and fit their
models on them instead of sampling the env; greedy episodes in the env evaluate the controller
every few iterations, as for the offline algorithms.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from ray.rllib.env.single_agent_episode import SingleAgentEpisode

from rlscale.algorithms.model_based.systems import ActionInterface
from rlscale.datasets.store import open_dataset

FIELDS = ("obs", "actions", "next_obs", "rewards")


def transitions_from_episodes(
    episodes: Iterable[SingleAgentEpisode], actions: ActionInterface
) -> dict[str, np.ndarray]:
    """Every step of ``episodes`` (chunks or whole episodes) as float32 arrays ``[N, ...]``."""
    return _concatenated(
        _episode_transitions(
            episode.get_observations(), episode.get_actions(), episode.get_rewards(), actions
        )
        for episode in episodes
        if len(episode) > 0
    )


def transitions_from_dataset(
    data_dir: str | Path, actions: ActionInterface
) -> dict[str, np.ndarray]:
    """Every step of the Minari dataset in ``data_dir``, as :func:`transitions_from_episodes`.

    Episodes are read with Minari's own reader. Minari stores each episode's final
    observation, so a truncated episode's last transition has its true next observation.
    """
    dataset = open_dataset(data_dir)
    return _concatenated(
        _episode_transitions(episode.observations, episode.actions, episode.rewards, actions)
        for episode in dataset.iterate_episodes()
        if len(episode.rewards) > 0
    )


def _episode_transitions(
    observations: Any, env_actions: Any, rewards: Any, actions: ActionInterface
) -> dict[str, np.ndarray]:
    """One episode's observations (one more than its actions), actions and rewards -> rows."""
    observations = np.asarray(observations, dtype=np.float32)
    observations = observations.reshape(len(observations), -1)
    return {
        "obs": observations[:-1],
        "next_obs": observations[1:],
        "actions": planned_actions(np.asarray(env_actions), actions),
        "rewards": np.asarray(rewards, dtype=np.float32),
    }


def _concatenated(episodes: Iterable[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    parts: dict[str, list[np.ndarray]] = {field: [] for field in FIELDS}
    for episode in episodes:
        for field in FIELDS:
            parts[field].append(episode[field])
    if not parts["obs"]:
        return {field: np.zeros((0,), dtype=np.float32) for field in FIELDS}
    return {field: np.concatenate(values) for field, values in parts.items()}


def planned_actions(env_actions: np.ndarray, actions: ActionInterface) -> np.ndarray:
    """Env actions ``[N, ...]`` -> the planner's ``[N, action_dim]`` float32 actions."""
    if actions.discrete_forces is None:
        return env_actions.astype(np.float32).reshape(len(env_actions), actions.action_dim)
    forces = np.asarray(actions.discrete_forces, dtype=np.float32)
    return forces[env_actions.astype(np.int64)].reshape(-1, 1)


class TransitionStore:
    """Every transition seen so far, grown in place (PETS keeps all of its data)."""

    def __init__(self) -> None:
        self.data: dict[str, np.ndarray] | None = None

    def __len__(self) -> int:
        return 0 if self.data is None else len(self.data["obs"])

    def add(self, transitions: dict[str, np.ndarray]) -> None:
        if len(transitions["obs"]) == 0:
            return
        if self.data is None:
            self.data = {field: transitions[field].copy() for field in FIELDS}
            return
        self.data = {
            field: np.concatenate([self.data[field], transitions[field]]) for field in FIELDS
        }
