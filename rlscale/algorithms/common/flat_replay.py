"""Prioritized n-step replay of single-agent transitions in flat NumPy arrays (DQN's replay).

**n-step transitions** (Sutton & Barto 2018, §7.1; as used in Rainbow, Hessel et al. 2018). Each
stored row is the transition from s_t over h_t = min(n, T − t) steps of an episode that lasts
T steps:

    R_t = Σ_{k<h_t} γ^k r_{t+k},    s' = s_{t+h_t},    discount to the target γ^{h_t},

emitted as soon as n later steps are known, or when the episode ends. A terminated episode's
last rows do not bootstrap (``terminateds`` is true); a truncated one (a time limit) bootstraps
from its last observation with γ^{h_t}. The Learner's target is R_t + γ^{h_t} (1 − d) Q'(s', ·),
so the rows carry ``n_step`` = h_t, the column RLlib's DQN loss raises γ to.

**Proportional prioritized replay** (Schaul et al. 2016, "Prioritized Experience Replay"). Row i
is drawn with probability P(i) = p_i^α / Σ_j p_j^α, where p_i = |δ_i| + ε is its last TD error;
new rows get the largest priority seen so far, so each is replayed at least once soon. A
minibatch of k draws one value from each of k equal slices of [0, Σ_j p_j^α) (the paper's
stratified sampling) and finds its row on a sum tree in O(log N). Each row's loss is weighted
by the importance weight w_i = (N P(i))^{−β} / max_j w_j, where max_j w_j belongs to the row of
smallest priority (kept on a min tree alongside), so weights lie in (0, 1]. α = 0 is uniform
replay (all weights 1).

Rows live in preallocated arrays sized from the observation and action spaces; a full buffer
overwrites its oldest row. Episodes arrive as chunks that continue across sampling calls (the
same episode id, the next chunk starting at the last one's final observation); the last n − 1
steps of an unfinished chunk wait, per episode id, until the rest of their n steps arrive.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from ray.rllib.core.columns import Columns
from ray.rllib.env.single_agent_episode import SingleAgentEpisode

from rlscale.errors import IncompatibleSpaceError

N_STEP = "n_step"
"""The column of h_t, the number of steps the row's return spans (its target is discounted by
γ^{h_t}); RLlib's DQN loss reads it under this name."""
WEIGHTS = "weights"
"""The column of importance weights; RLlib's DQN loss multiplies each row's loss by it."""

PRIORITY_EPSILON = 1e-6
"""Schaul et al.'s ε in p_i = |δ_i| + ε: a row whose TD error reaches 0 stays drawable."""

STALE_AFTER_CALLS = 16
"""Steps waiting for the rest of an episode are dropped when that episode sent no chunk for
this many ``add_episodes`` calls (its EnvRunner was lost or restarted)."""


class SumTree:
    """Sums and minima of ``capacity`` non-negative values on complete binary trees in arrays.

    Node 1 is the root, node i has children 2i and 2i + 1, and leaf j is node ``leaves + j``.
    Updates and prefix-sum searches take a whole batch at once: one NumPy operation per tree
    level, not one Python step per item.
    """

    def __init__(self, capacity: int):
        self.capacity = int(capacity)
        self.depth = max(0, (self.capacity - 1).bit_length())
        self.leaves = 1 << self.depth
        self._sums = np.zeros(2 * self.leaves, dtype=np.float64)
        # Empty leaves are +inf, so the minimum is over the stored values only.
        self._mins = np.full(2 * self.leaves, np.inf, dtype=np.float64)

    @property
    def total(self) -> float:
        return float(self._sums[1])

    @property
    def min(self) -> float:
        return float(self._mins[1])

    def values(self, indices: np.ndarray) -> np.ndarray:
        return self._sums[np.asarray(indices) + self.leaves]

    def update(self, indices: np.ndarray, values: np.ndarray) -> None:
        """Set leaves ``indices`` to ``values`` (for a repeated index the last value wins),
        then recompute their ancestors from their children, level by level (recomputing
        rather than adding differences keeps float error from piling up)."""
        nodes = np.asarray(indices, dtype=np.int64) + self.leaves
        self._sums[nodes] = values
        self._mins[nodes] = values
        for _ in range(self.depth):
            # Repeated parents get the same value written twice: no need to deduplicate.
            nodes = nodes // 2
            left = 2 * nodes
            self._sums[nodes] = self._sums[left] + self._sums[left + 1]
            self._mins[nodes] = np.minimum(self._mins[left], self._mins[left + 1])

    def find(self, prefix_sums: np.ndarray) -> np.ndarray:
        """For each value u in [0, total), the leaf j with Σ_{i<j} v_i <= u < Σ_{i<=j} v_i."""
        remaining = np.array(prefix_sums, dtype=np.float64)
        nodes = np.ones(len(remaining), dtype=np.int64)
        for _ in range(self.depth):
            left = 2 * nodes
            left_sums = self._sums[left]
            # Never step into an empty subtree (u can reach the total through float error).
            go_right = (remaining >= left_sums) & (self._sums[left + 1] > 0)
            remaining -= np.where(go_right, left_sums, 0.0)
            nodes = left + go_right
        return nodes - self.leaves


@dataclass
class _Waiting:
    """The last steps of an unfinished episode chunk, waiting for their n steps to arrive."""

    observations: np.ndarray  # s_t of each waiting step
    actions: np.ndarray
    rewards: np.ndarray
    last_seen: int  # the add_episodes call that brought them


class FlatReplay:
    """Prioritized (or, with ``alpha=0``, uniform) replay of n-step transitions.

    ``sample`` returns the columns RLlib's DQN Learner reads (obs, actions, rewards, new_obs,
    terminateds, ``n_step``, ``weights``) plus the rows drawn, which ``update_priorities``
    takes back with the Learner's TD errors.
    """

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        capacity: int,
        *,
        n_step: int = 1,
        gamma: float = 0.99,
        alpha: float = 0.6,
        seed: int | np.random.Generator | None = None,
    ):
        if int(capacity) < 1:
            raise ValueError(f"replay capacity must be >= 1 transition, got {capacity}.")
        if not isinstance(n_step, int | np.integer) or n_step < 1:
            raise ValueError(
                f"the flat replay computes returns over a fixed number of steps: n_step must "
                f"be an integer >= 1, got {n_step!r}."
            )
        if alpha < 0:
            raise ValueError(f"prioritization exponent alpha must be >= 0, got {alpha}.")
        self.capacity = int(capacity)
        self.n_step = int(n_step)
        self.gamma = float(gamma)
        self.alpha = float(alpha)
        self.rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        obs_shape, obs_dtype = _observation_layout(observation_space)
        action_shape, action_dtype = _action_layout(action_space)
        rows = self.capacity
        self._columns = {
            Columns.OBS: np.zeros((rows, *obs_shape), dtype=obs_dtype),
            Columns.ACTIONS: np.zeros((rows, *action_shape), dtype=action_dtype),
            Columns.REWARDS: np.zeros(rows, dtype=np.float32),
            Columns.NEXT_OBS: np.zeros((rows, *obs_shape), dtype=obs_dtype),
            Columns.TERMINATEDS: np.zeros(rows, dtype=bool),
            N_STEP: np.zeros(rows, dtype=np.float32),
        }
        self._discounts = self.gamma ** np.arange(self.n_step)
        self._tree = SumTree(self.capacity)
        self._max_priority = 1.0  # the largest p_i seen, given to new rows
        self._size = 0
        self._next = 0  # the row the next transition overwrites once the buffer is full
        self._waiting: dict[str, _Waiting] = {}
        self._calls = 0

    def __len__(self) -> int:
        return self._size

    # Insertion.

    def add_episodes(self, episodes: Iterable[SingleAgentEpisode]) -> int:
        """Add the steps of sampled episode chunks; returns how many env steps they held (the
        rows they add come out n − 1 steps later, except at an episode's end)."""
        self._calls += 1
        steps = 0
        for episode in episodes:
            steps += len(episode)
            self.add_chunk(
                episode.id_,
                np.asarray(episode.get_observations(slice(0, len(episode) + 1))),
                np.asarray(episode.get_actions(slice(0, len(episode)))),
                np.asarray(episode.get_rewards(slice(0, len(episode))), dtype=np.float32),
                terminated=episode.is_terminated,
                truncated=episode.is_truncated,
            )
        self._drop_stale()
        return steps

    def add_chunk(
        self,
        episode_id: str,
        observations: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        *,
        terminated: bool,
        truncated: bool,
    ) -> int:
        """Add one chunk of an episode: T actions and rewards, T + 1 observations (s_0 to s_T,
        s_0 being the previous chunk's last observation when the episode ran on). Returns the
        number of rows written."""
        if len(observations) != len(rewards) + 1 or len(actions) != len(rewards):
            raise ValueError(
                f"an episode chunk needs one more observation than actions and rewards, got "
                f"{len(observations)} observations, {len(actions)} actions, {len(rewards)} "
                f"rewards."
            )
        waiting = self._waiting.pop(episode_id, None)
        if waiting is not None:
            observations = np.concatenate([waiting.observations, observations])
            actions = np.concatenate([waiting.actions, actions])
            rewards = np.concatenate([waiting.rewards, rewards])
        done = terminated or truncated
        steps = len(rewards)
        ready = steps if done else max(0, steps - self.n_step + 1)
        if not done and ready < steps:
            self._waiting[episode_id] = _Waiting(
                observations[ready:steps], actions[ready:], rewards[ready:], self._calls
            )
        if ready == 0:
            return 0
        return self._write(self._n_step_rows(observations, actions, rewards, ready, terminated))

    def _n_step_rows(
        self,
        observations: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        ready: int,
        terminated: bool,
    ) -> dict[str, np.ndarray]:
        """The first ``ready`` n-step rows of a run of steps (the run ends the episode when
        ``ready`` covers all of it)."""
        steps = len(rewards)
        starts = np.arange(ready)
        horizons = np.minimum(self.n_step, steps - starts)
        # Rewards past the episode's end are zero padding, so one dot product per row serves
        # the shortened returns at the end as well.
        padded = np.concatenate([rewards, np.zeros(self.n_step - 1, dtype=rewards.dtype)])
        returns = sliding_window_view(padded, self.n_step)[:ready] @ self._discounts
        ends = starts + horizons
        return {
            Columns.OBS: observations[starts],
            Columns.ACTIONS: actions[starts],
            Columns.REWARDS: returns.astype(np.float32),
            Columns.NEXT_OBS: observations[ends],
            # Only the rows whose n steps reach a terminal state stop bootstrapping.
            Columns.TERMINATEDS: np.logical_and(terminated, ends == steps),
            N_STEP: horizons.astype(np.float32),
        }

    def _write(self, rows: dict[str, np.ndarray]) -> int:
        count = len(rows[Columns.REWARDS])
        if count > self.capacity:  # only the newest capacity rows would survive
            rows = {key: value[-self.capacity :] for key, value in rows.items()}
            count = self.capacity
        indices = (self._next + np.arange(count)) % self.capacity
        for column, values in self._columns.items():
            try:
                values[indices] = rows[column]
            except ValueError as error:
                raise ValueError(
                    f"replay column {column!r} holds rows shaped {values.shape[1:]}, got "
                    f"{np.shape(rows[column])[1:]}: the episodes do not match the spaces the "
                    f"replay was built for ({error})."
                ) from None
        self._tree.update(indices, np.full(count, self._max_priority**self.alpha))
        self._next = int((self._next + count) % self.capacity)
        self._size = min(self.capacity, self._size + count)
        return count

    def _drop_stale(self) -> None:
        stale = [
            episode_id
            for episode_id, waiting in self._waiting.items()
            if self._calls - waiting.last_seen > STALE_AFTER_CALLS
        ]
        for episode_id in stale:
            del self._waiting[episode_id]

    # Sampling and priorities.

    def sample(self, rows: int, beta: float) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """``rows`` transitions drawn in proportion to p_i^α (stratified), with their importance
        weights for exponent ``beta``; returns the batch and the drawn row indices."""
        if self._size == 0:
            raise ValueError("cannot sample from an empty replay; add transitions first.")
        total = self._tree.total
        slices = (np.arange(rows) + self.rng.random(rows)) * (total / rows)
        indices = np.minimum(self._tree.find(slices), self._size - 1)
        batch = {column: values[indices] for column, values in self._columns.items()}
        batch[WEIGHTS] = self._importance_weights(indices, beta)
        return batch, indices

    def _importance_weights(self, indices: np.ndarray, beta: float) -> np.ndarray:
        """w_i = (N P(i))^-β / max_j w_j; the largest weight is the least likely row's."""
        total = self._tree.total
        probabilities = self._tree.values(indices) / total
        smallest = self._tree.min / total
        weights = (probabilities / smallest) ** -beta  # the N's cancel in the ratio
        return weights.astype(np.float32)

    def update_priorities(self, indices: np.ndarray, td_errors: np.ndarray) -> None:
        """p_i = |δ_i| + ε for the rows ``indices`` last drawn."""
        priorities = np.abs(np.asarray(td_errors, dtype=np.float64)) + PRIORITY_EPSILON
        if len(priorities) != len(indices):
            raise ValueError(
                f"got {len(priorities)} TD errors for {len(indices)} sampled rows; pass the "
                f"errors of exactly the rows sample() returned."
            )
        self._max_priority = max(self._max_priority, float(priorities.max(initial=0.0)))
        self._tree.update(indices, priorities**self.alpha)

    def probabilities(self) -> np.ndarray:
        """P(i) of every stored row (for tests and diagnostics)."""
        values = self._tree.values(np.arange(self._size))
        return values / values.sum()

    def stored(self) -> dict[str, np.ndarray]:
        """Every stored row (views of the buffer's arrays, ring order; copy to change them)."""
        return {column: values[: self._size] for column, values in self._columns.items()}

    # Algorithm checkpoints (RLlib's ``store_buffer_in_checkpoints``).

    def get_state(self) -> dict[str, Any]:
        return {
            "columns": {key: values[: self._size].copy() for key, values in self._columns.items()},
            "priorities": self._tree.values(np.arange(self._size)).copy(),
            "max_priority": self._max_priority,
            "next": self._next,
            "waiting": {
                key: (w.observations, w.actions, w.rewards) for key, w in self._waiting.items()
            },
            "rng": self.rng.bit_generator.state,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        size = len(state["columns"][Columns.REWARDS])
        if size > self.capacity:
            raise ValueError(
                f"the saved replay holds {size} rows, more than this replay's capacity "
                f"{self.capacity}; restore it with a capacity of at least {size}."
            )
        for key, values in state["columns"].items():
            self._columns[key][:size] = values
        self._size = size
        self._tree = SumTree(self.capacity)
        self._tree.update(np.arange(size), np.asarray(state["priorities"]))
        self._max_priority = float(state["max_priority"])
        self._next = int(state["next"])
        self._waiting = {
            key: _Waiting(*arrays, last_seen=self._calls)
            for key, arrays in state["waiting"].items()
        }
        self.rng.bit_generator.state = state["rng"]


def _observation_layout(space: gym.Space) -> tuple[tuple[int, ...], np.dtype]:
    if isinstance(space, gym.spaces.Box):
        return tuple(space.shape), space.dtype
    if isinstance(space, gym.spaces.Discrete):
        return (), np.dtype(np.int64)
    raise IncompatibleSpaceError(
        f"the flat replay stores array observations (Box or Discrete), got "
        f"{type(space).__name__} observations {space}. Flatten them in the env (gymnasium's "
        f"FlattenObservation wrapper) or use RLlib's episode replay (replay='episode')."
    )


def _action_layout(space: gym.Space) -> tuple[tuple[int, ...], np.dtype]:
    if isinstance(space, gym.spaces.Discrete):
        return (), np.dtype(np.int64)
    if isinstance(space, gym.spaces.Box):
        return tuple(space.shape), np.dtype(np.float32)
    raise IncompatibleSpaceError(
        f"the flat replay stores Discrete or Box actions, got {type(space).__name__} actions "
        f"{space}. Use RLlib's episode replay (replay='episode') for other action spaces."
    )
