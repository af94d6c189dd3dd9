"""The greedy policy of a Q-table on a grid world, drawn as arrows.

FrozenLake marks holes ``H`` and the goal ``G``; CliffWalking marks the cliff ``C`` and the goal
``G``. Other environments (Taxi's states are not grid cells) get no picture.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.envs.toy_text.cliffwalking import CliffWalkingEnv
from gymnasium.envs.toy_text.frozen_lake import FrozenLakeEnv

FROZEN_LAKE_ARROWS = ("←", "↓", "→", "↑")
"""FrozenLake's actions: 0 left, 1 down, 2 right, 3 up."""
CLIFF_WALKING_ARROWS = ("↑", "→", "↓", "←")
"""CliffWalking's actions: 0 up, 1 right, 2 down, 3 left."""


def describe_greedy_policy(module: Any, env: gym.Env) -> str | None:
    """Arrows for ``module``'s greedy action in each cell, or None when ``env`` is no grid."""
    return policy_arrows(module.greedy_actions(), env)


def policy_arrows(greedy_actions: list[int], env: gym.Env) -> str | None:
    """One line per grid row; holes, cliff and goal marked instead of an arrow."""
    base = env.unwrapped
    if isinstance(base, FrozenLakeEnv):
        marks = _frozen_lake_marks(base)
        arrows = FROZEN_LAKE_ARROWS
    elif isinstance(base, CliffWalkingEnv):
        marks = _cliff_walking_marks(base)
        arrows = CLIFF_WALKING_ARROWS
    else:
        return None
    rows, cols = marks.shape
    lines = []
    for row in range(rows):
        cells = []
        for col in range(cols):
            mark = marks[row, col]
            cells.append(mark or arrows[greedy_actions[row * cols + col]])
        lines.append(" ".join(cells))
    return "\n".join(lines)


def _frozen_lake_marks(env: FrozenLakeEnv) -> np.ndarray:
    desc = np.asarray(env.desc).astype(str)
    return np.where(np.isin(desc, ("H", "G")), desc, "")


def _cliff_walking_marks(env: CliffWalkingEnv) -> np.ndarray:
    marks = np.where(env._cliff, "C", "").astype(object)
    marks[env.shape[0] - 1, env.shape[1] - 1] = "G"
    return marks
