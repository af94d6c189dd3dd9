"""Behavior cloning: RLlib's BC (MARWIL with β = 0), for discrete and continuous actions."""

from __future__ import annotations

from ray.rllib.algorithms.bc import BC, BCConfig
from ray.rllib.utils.annotations import override

from rlscale.algorithms.offline.common import ReleasesDataIterators, set_offline_defaults


class RlscaleBCConfig(BCConfig):
    """BCConfig whose defaults are rlscale's."""

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or RlscaleBC)
        set_offline_defaults(self, updates_per_iteration=100)
        self.lr = 1e-3
        self.train_batch_size_per_learner = 256


class RlscaleBC(ReleasesDataIterators, BC):
    """RLlib's BC, closing its data iterator when it stops."""

    @classmethod
    @override(BC)
    def get_default_config(cls) -> RlscaleBCConfig:
        return RlscaleBCConfig()
