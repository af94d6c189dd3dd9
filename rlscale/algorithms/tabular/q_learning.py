"""Q-learning (Watkins & Dayan 1992, "Q-learning", Machine Learning 8).

Off-policy TD control: the bootstrap value is that of the greedy action, whatever the
ε-greedy behaviour does next::

    Q(s, a) ← Q(s, a) + α (r + γ max_a' Q(s', a') - Q(s, a))

The shared config, Learner and training step are in :mod:`rlscale.algorithms.tabular.td`.
"""

from __future__ import annotations

from rlscale.algorithms.tabular.td import MAX_TARGET, TabularConfig, TabularTD


class QLearningConfig(TabularConfig):
    """Q-learning: target r + γ max_a Q(s', a)."""

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or QLearning)

    def td_target(self) -> str:
        return MAX_TARGET


class QLearning(TabularTD):
    @classmethod
    def get_default_config(cls) -> QLearningConfig:
        return QLearningConfig()
