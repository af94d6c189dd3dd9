"""Whole-episode returns and lengths, as the driver's "mean return over the last 100 episodes".

RLlib 2.60 cuts episodes at batch boundaries into chunks that share an id, and its own
``episode_return_mean`` averages only the episodes that ended in the latest iteration. rlscale
reports the mean over the last ``RETURN_WINDOW`` whole episodes (the definition SB3 uses too),
so each EnvRunner adds up the chunks of every episode and ships the totals when it ends.
"""

from __future__ import annotations

from collections import defaultdict, deque
from typing import Any

import numpy as np
from ray.rllib.callbacks.callbacks import RLlibCallback

RETURN_WINDOW = 100
EPISODE_RETURNS_KEY = "rlscale_episode_returns"
EPISODE_LENGTHS_KEY = "rlscale_episode_lengths"


class EpisodeTotals(RLlibCallback):
    """Per EnvRunner: sums chunk returns and lengths by episode id; logs each finished total."""

    def __init__(self):
        super().__init__()
        self._returns: defaultdict[str, float] = defaultdict(float)
        self._lengths: defaultdict[str, int] = defaultdict(int)

    def on_sample_end(self, *, metrics_logger=None, samples=(), **kwargs) -> None:
        for chunk in samples:
            self._returns[chunk.id_] += float(chunk.get_return())
            self._lengths[chunk.id_] += len(chunk)
            if chunk.is_done and metrics_logger is not None:
                metrics_logger.log_value(
                    EPISODE_RETURNS_KEY, self._returns.pop(chunk.id_), reduce="item_series"
                )
                metrics_logger.log_value(
                    EPISODE_LENGTHS_KEY, self._lengths.pop(chunk.id_), reduce="item_series"
                )


class EpisodeWindow:
    """The driver's view: the last ``RETURN_WINDOW`` finished episodes across all EnvRunners."""

    def __init__(self, size: int = RETURN_WINDOW):
        self.returns: deque[float] = deque(maxlen=size)
        self.lengths: deque[int] = deque(maxlen=size)

    def add_from(self, result: dict[str, Any]) -> None:
        runners = result.get("env_runners", {})
        # RLlib hands a one-item series over as a bare value.
        self.returns.extend(np.atleast_1d(runners.get(EPISODE_RETURNS_KEY, [])).astype(float))
        self.lengths.extend(np.atleast_1d(runners.get(EPISODE_LENGTHS_KEY, [])).astype(int))
