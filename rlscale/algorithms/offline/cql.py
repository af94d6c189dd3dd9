"""Conservative Q-learning for continuous actions: RLlib's CQL (SAC-based), rlscale's defaults.

Kumar, Zhou, Tucker, Levine (2020), "Conservative Q-Learning for Offline Reinforcement
Learning", https://arxiv.org/abs/2006.04779.
"""

from __future__ import annotations

from ray.rllib.algorithms.cql import CQLConfig

from rlscale.algorithms.offline.common import set_offline_defaults


class RlscaleCQLConfig(CQLConfig):
    """CQLConfig whose defaults are rlscale's: short BC warm-up, small batches for a CPU."""

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class)
        set_offline_defaults(self, updates_per_iteration=100)
        self.train_batch_size_per_learner = 256
        self.bc_iters = 200
        self.twin_q = True
        self._model_config = {"fcnet_hiddens": [128, 128]}
