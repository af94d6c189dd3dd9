"""RLlib's ``MeanStdFilter`` applied to a whole vector step at once, with the same running
statistics (state, buffer and deltas) as the connector itself."""

from __future__ import annotations

import numpy as np
from ray.rllib.connectors.env_to_module import MeanStdFilter
from ray.rllib.utils.filter import SMALL_NUMBER, RunningStat


def push_rows(stat: RunningStat, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Push ``rows`` ([N, ...]) into ``stat`` as N successive ``RunningStat.push`` calls would
    (state and deltas); returns the count, mean and sum of squared deviations after each push.

    Centered at the old mean c: after j more rows, with S1 = Σ(x - c) and S2 = Σ(x - c)², the
    mean is c + S1 / n_j and the sum of squares M2_0 + S2 - S1² / n_j (Chan et al.'s pairwise
    update), so no per-row Python loop is needed.
    """
    rows = rows.astype(np.float64, copy=False)
    count = len(rows)
    counts = stat.num_pushes + np.arange(1, count + 1, dtype=np.float64)
    counts = counts.reshape((count,) + (1,) * (rows.ndim - 1))
    center = stat.mean_array.copy()
    deviations = rows - center
    s1 = np.cumsum(deviations, axis=0)
    s2 = np.cumsum(deviations * deviations, axis=0)
    means = center + s1 / counts
    sums_sq = stat.sum_sq_diff_array + s2 - s1 * s1 / counts
    if stat.num_pushes == 0:  # Welford's first push sets the mean to the row itself.
        means[0] = rows[0]
        sums_sq[0] = stat.sum_sq_diff_array
    stat.mean_delta_array += means[-1] - stat.mean_array
    stat.sum_sq_diff_delta_array += sums_sq[-1] - stat.sum_sq_diff_array
    stat.mean_array[...] = means[-1]
    stat.sum_sq_diff_array[...] = sums_sq[-1]
    stat.num_pushes += count
    stat.num_pushes_delta += count
    return counts, means, sums_sq


class VectorFilter:
    """A ``MeanStdFilter`` connector's filtering, applied to a whole vector step at once."""

    def __init__(self, connector: MeanStdFilter):
        self.connector = connector
        self.observation_space = connector.observation_space

    def __call__(self, observations: np.ndarray) -> np.ndarray:
        connector = self.connector
        if connector._filters is None:
            connector._init_new_filters()
        flt = connector._filters[None]
        if flt.shape is None:  # Discrete observations are left as they are.
            return observations
        stats = flt.running_stats
        if connector._update_stats:
            counts, means, sums_sq = push_rows(stats, observations)
            push_rows(flt.buffer, observations)
        else:
            counts = np.full((len(observations),) + (1,) * (observations.ndim - 1), stats.n)
            means = np.broadcast_to(stats.mean_array, observations.shape)
            sums_sq = np.broadcast_to(stats.sum_sq_diff_array, observations.shape)
        result = observations.astype(np.float64)
        if flt.demean:
            result = result - means
        if flt.destd:
            # RunningStat.var: the unbiased variance in float32, 0 until two pushes.
            with np.errstate(divide="ignore", invalid="ignore"):
                variance = np.where(counts > 1, sums_sq / (counts - 1), 0.0).astype(np.float32)
            result = result / (np.sqrt(np.maximum(0, variance)) + SMALL_NUMBER)
        if flt.clip:
            result = np.clip(result, -flt.clip, flt.clip)
        return result.astype(observations.dtype)
