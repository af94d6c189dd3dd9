"""Transitions ``(observation, planned action, next observation, reward)`` from RLlib episodes.

The model-based algorithms fit their dynamics models on these. Actions are stored as the planner
sees them: a Discrete env's action becomes the force it declares (CartPole-v1's 0 / 1 -> -1 / +1),
so that the model learns in the planner's action space.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from ray.rllib.env.single_agent_episode import SingleAgentEpisode

from rlscale.algorithms.model_based.systems import ActionInterface

FIELDS = ("obs", "actions", "next_obs", "rewards")


def transitions_from_episodes(
    episodes: Iterable[SingleAgentEpisode], actions: ActionInterface
) -> dict[str, np.ndarray]:
    """Every step of ``episodes`` (chunks or whole episodes) as float32 arrays ``[N, ...]``."""
    parts: dict[str, list[np.ndarray]] = {field: [] for field in FIELDS}
    for episode in episodes:
        if len(episode) == 0:
            continue
        observations = np.asarray(episode.get_observations(), dtype=np.float32)
        observations = observations.reshape(len(observations), -1)
        parts["obs"].append(observations[:-1])
        parts["next_obs"].append(observations[1:])
        parts["actions"].append(planned_actions(np.asarray(episode.get_actions()), actions))
        parts["rewards"].append(np.asarray(episode.get_rewards(), dtype=np.float32))
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
    """Every transition seen so far, grown in place (PETS and MBPO keep all of their data)."""

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
