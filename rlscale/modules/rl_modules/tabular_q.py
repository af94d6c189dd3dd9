"""The Q-table RLModule of Q-learning and SARSA: one ``nn.Parameter`` ``[n_states, n_actions]``.

Acting indexes the table with the (integer) observation. ``forward_exploration`` is
ε-greedy with ε decaying linearly in the env steps sampled; ``forward_inference`` is greedy.
Both return ``Columns.ACTIONS`` directly, as RLlib's DQN module does, so RLlib's default
module-to-env connectors pass the actions to the env without sampling a distribution.

Acting reads the table through NumPy (a view of the parameter, no copy): for a handful of rows
per env step, each torch op costs more in dispatch (and, on a busy machine, intra-op thread
wake-ups) than the arithmetic. Training indexes the parameter in torch, so gradients flow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.torch import TorchRLModule

Q_VALUES = "q_values"
NEXT_Q_VALUES = "next_q_values"


@dataclass(frozen=True)
class EpsilonSchedule:
    """ε falls linearly from ``start`` to ``end`` over ``decay_steps`` env steps, then stays."""

    start: float
    end: float
    decay_steps: int

    def value(self, env_steps: int) -> float:
        if self.decay_steps <= 0:
            return self.end
        fraction = min(max(env_steps, 0) / self.decay_steps, 1.0)
        return self.start + fraction * (self.end - self.start)

    @classmethod
    def from_model_config(cls, model_config: dict[str, Any]) -> EpsilonSchedule:
        return cls(
            start=float(model_config["epsilon_start"]),
            end=float(model_config["epsilon_end"]),
            decay_steps=int(model_config["epsilon_decay_steps"]),
        )


def greedy_mask(q_values: torch.Tensor) -> torch.Tensor:
    """1.0 where an action's value ties the row's maximum, else 0.0."""
    return (q_values == q_values.amax(dim=-1, keepdim=True)).float()


def epsilon_greedy_probabilities(q_values: torch.Tensor, epsilon: float) -> torch.Tensor:
    """π_ε(a|s): ε spread uniformly, the rest split evenly among the greedy (tied) actions."""
    greedy = greedy_mask(q_values)
    greedy = greedy / greedy.sum(dim=-1, keepdim=True)
    n_actions = q_values.shape[-1]
    return epsilon / n_actions + (1.0 - epsilon) * greedy


def epsilon_greedy_actions(
    q_values: np.ndarray, epsilon: float, rng: np.random.Generator
) -> np.ndarray:
    """Sample one action per row from π_ε (ties among greedy actions broken at random)."""
    n_rows, n_actions = q_values.shape
    ties = q_values == q_values.max(axis=-1, keepdims=True)
    greedy = np.argmax(ties * rng.random((n_rows, n_actions)), axis=-1)
    uniform = rng.integers(n_actions, size=n_rows)
    return np.where(rng.random(n_rows) < epsilon, uniform, greedy)


class TabularQModule(TorchRLModule):
    """A Q-table for Discrete observations and Discrete actions."""

    def setup(self) -> None:
        if not isinstance(self.observation_space, gym.spaces.Discrete) or not isinstance(
            self.action_space, gym.spaces.Discrete
        ):
            raise ValueError(
                "TabularQModule needs Discrete observation and action spaces, got "
                f"{self.observation_space} and {self.action_space}"
            )
        self.obs_start = int(self.observation_space.start)
        self.action_start = int(self.action_space.start)
        initial = float(self.model_config.get("initial_q", 0.0))
        self.table = torch.nn.Parameter(
            torch.full((int(self.observation_space.n), int(self.action_space.n)), initial)
        )
        self.epsilon_schedule = EpsilonSchedule.from_model_config(self.model_config)
        # Seeded from NumPy's global RNG, which RLlib seeds on every EnvRunner from `seed`.
        self.rng = np.random.default_rng(np.random.randint(2**31))

    def rows(self, observations: torch.Tensor) -> torch.Tensor:
        """Q(s, ·) for a batch of observations (integers as the env emits them)."""
        return self.table[observations.long().reshape(-1) - self.obs_start]

    def table_view(self) -> np.ndarray:
        """The table as a NumPy array sharing the parameter's memory (read-only use)."""
        return self.table.detach().cpu().numpy()

    def act_rows(self, observations: Any) -> np.ndarray:
        """Q(s, ·) as NumPy rows, for acting."""
        index = np.asarray(observations, dtype=np.int64).reshape(-1) - self.obs_start
        return self.table_view()[index]

    def _forward_inference(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        greedy = self.act_rows(batch[Columns.OBS]).argmax(axis=-1)
        return {Columns.ACTIONS: torch.from_numpy(greedy + self.action_start)}

    def _forward_exploration(self, batch: dict[str, Any], t: int = 0, **kwargs) -> dict[str, Any]:
        epsilon = self.epsilon_schedule.value(t)
        actions = epsilon_greedy_actions(self.act_rows(batch[Columns.OBS]), epsilon, self.rng)
        return {Columns.ACTIONS: torch.from_numpy(actions + self.action_start)}

    def _forward_train(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        return {
            Q_VALUES: self.rows(batch[Columns.OBS]),
            NEXT_Q_VALUES: self.rows(batch[Columns.NEXT_OBS]).detach(),
        }

    def greedy_actions(self) -> list[int]:
        """The greedy action in every state, in the env's action numbering."""
        return (self.table_view().argmax(axis=-1) + self.action_start).tolist()
