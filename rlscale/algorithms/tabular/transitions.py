"""Episode chunks from the EnvRunners -> arrays of (s, a, r, s', terminated[, a']) transitions.

RLlib cuts ongoing episodes at every ``sample()`` boundary into chunks that share an id. The
last transition of an ongoing chunk has no next action yet; SARSA needs it, so with
``needs_next_action`` that transition waits here until the episode's next chunk arrives.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from ray.rllib.core.columns import Columns

NEXT_ACTIONS = "next_actions"
"""The action actually taken in the next state (SARSA); only meaningful where HAS_NEXT_ACTION."""
HAS_NEXT_ACTION = "has_next_action"
"""False where the episode was truncated right after the transition (no next action exists)."""

COLUMNS = (
    Columns.OBS,
    Columns.ACTIONS,
    Columns.REWARDS,
    Columns.NEXT_OBS,
    Columns.TERMINATEDS,
    NEXT_ACTIONS,
    HAS_NEXT_ACTION,
)


@dataclass
class _Pending:
    """The last transition of an ongoing chunk, waiting for the next action."""

    obs: int
    action: int
    reward: float
    next_obs: int


@dataclass
class TransitionBuilder:
    """Turns episode chunks into one batch of transition arrays per call."""

    needs_next_action: bool
    _pending: dict[str, _Pending] = field(default_factory=dict)

    def __call__(self, chunks: list) -> dict[str, np.ndarray]:
        parts = [self._chunk_transitions(chunk) for chunk in chunks if len(chunk) > 0]
        if not parts:
            return empty_batch()
        return {column: np.concatenate([part[column] for part in parts]) for column in COLUMNS}

    @property
    def num_pending(self) -> int:
        return len(self._pending)

    def _chunk_transitions(self, chunk) -> dict[str, np.ndarray]:
        observations = np.asarray(chunk.get_observations(), dtype=np.int64)
        actions = np.asarray(chunk.get_actions(), dtype=np.int64)
        rewards = np.asarray(chunk.get_rewards(), dtype=np.float32)
        n = len(actions)
        terminated = np.zeros(n, dtype=bool)
        terminated[-1] = chunk.is_terminated
        next_actions = np.zeros(n, dtype=np.int64)
        next_actions[:-1] = actions[1:]
        has_next = np.ones(n, dtype=bool)
        has_next[-1] = False
        batch = {
            Columns.OBS: observations[:-1],
            Columns.ACTIONS: actions,
            Columns.REWARDS: rewards,
            Columns.NEXT_OBS: observations[1:],
            Columns.TERMINATEDS: terminated,
            NEXT_ACTIONS: next_actions,
            HAS_NEXT_ACTION: has_next,
        }
        if not self.needs_next_action:
            return batch
        batch = self._prepend_pending(chunk.id_, batch, first_action=int(actions[0]))
        if not chunk.is_done:
            self._hold_back_last(chunk.id_, batch)
            batch = {column: values[:-1] for column, values in batch.items()}
        return batch

    def _prepend_pending(
        self, episode_id: str, batch: dict[str, np.ndarray], first_action: int
    ) -> dict[str, np.ndarray]:
        pending = self._pending.pop(episode_id, None)
        if pending is None:
            return batch
        row = {
            Columns.OBS: pending.obs,
            Columns.ACTIONS: pending.action,
            Columns.REWARDS: pending.reward,
            Columns.NEXT_OBS: pending.next_obs,
            Columns.TERMINATEDS: False,
            NEXT_ACTIONS: first_action,
            HAS_NEXT_ACTION: True,
        }
        return {
            column: np.concatenate([np.asarray([row[column]], dtype=values.dtype), values])
            for column, values in batch.items()
        }

    def _hold_back_last(self, episode_id: str, batch: dict[str, np.ndarray]) -> None:
        self._pending[episode_id] = _Pending(
            obs=int(batch[Columns.OBS][-1]),
            action=int(batch[Columns.ACTIONS][-1]),
            reward=float(batch[Columns.REWARDS][-1]),
            next_obs=int(batch[Columns.NEXT_OBS][-1]),
        )


def empty_batch() -> dict[str, np.ndarray]:
    dtypes = {
        Columns.REWARDS: np.float32,
        Columns.TERMINATEDS: bool,
        HAS_NEXT_ACTION: bool,
    }
    return {column: np.zeros(0, dtype=dtypes.get(column, np.int64)) for column in COLUMNS}
