"""The evaluation episodes both peers of ``cql_hopper.py`` play: the same start states.

Episode i of every evaluation starts from ``env.reset(seed=FIRST_EPISODE_SEED + i)``, for
either peer, every seed and every checkpoint, so a difference in return between two policies
is a difference between the policies and not between the start states they were dealt.

Imports only numpy: it runs in d3rlpy's venv as well as in rlscale's.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

FIRST_EPISODE_SEED = 1000


def episode_seeds(episodes: int) -> list[int]:
    return [FIRST_EPISODE_SEED + i for i in range(episodes)]


def summarize_returns(returns: Sequence[float]) -> dict:
    """Mean, spread and every episode's return of one evaluation."""
    values = np.asarray(returns, dtype=np.float64)
    return {
        "return_mean": float(values.mean()),
        "return_std": float(values.std()),
        "return_min": float(values.min()),
        "return_max": float(values.max()),
        "returns": [float(value) for value in values],
    }
