"""SARSA (Rummery & Niranjan 1994, "On-line Q-learning using connectionist systems"; Sutton &
Barto 2018, sec. 6.4) and expected SARSA (van Seijen et al. 2009, "A theoretical and empirical
analysis of Expected Sarsa").

On-policy TD control: the bootstrap value is that of the next action a' the ε-greedy policy
actually took; with ``expected`` it is the expectation over that policy instead::

    SARSA:           Q(s, a) ← Q(s, a) + α (r + γ Q(s', a') - Q(s, a))
    expected SARSA:  Q(s, a) ← Q(s, a) + α (r + γ Σ_a' π_ε(a'|s') Q(s', a') - Q(s, a))

Where an episode was truncated right after a transition there is no a'; the expectation stands
in for it. The shared config, Learner and training step are in
:mod:`rlscale.algorithms.tabular.td`.
"""

from __future__ import annotations

from typing import ClassVar

from rlscale.algorithms.tabular.td import (
    EXPECTED_TARGET,
    NEXT_ACTION_TARGET,
    TabularConfig,
    TabularTD,
)


class SarsaConfig(TabularConfig):
    """SARSA: target r + γ Q(s', a') with a' the next action taken; or, with ``expected``,
    expected SARSA: r + γ Σ_a π_ε(a|s') Q(s', a)."""

    RLSCALE_KEYS: ClassVar[tuple[str, ...]] = ("expected",)

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or Sarsa)
        self.expected = False

    def td_target(self) -> str:
        return EXPECTED_TARGET if self.expected else NEXT_ACTION_TARGET


class Sarsa(TabularTD):
    @classmethod
    def get_default_config(cls) -> SarsaConfig:
        return SarsaConfig()
