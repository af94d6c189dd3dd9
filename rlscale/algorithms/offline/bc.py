"""Behavior cloning: RLlib's BC, for discrete and continuous actions.

Maximum likelihood of the logged actions (Pomerleau 1991, "Efficient Training of Artificial
Neural Networks for Autonomous Navigation"):

    min_θ  E_{(s, a) ~ D} [ −log π_θ(a | s) ]

RLlib computes it as MARWIL (Wang et al. 2018, "Exponentially Weighted Imitation Learning for
Batched Historical Data") with β = 0, where the advantage weights exp(β A) are all one. The
module is RLlib's default BC module (an MLP encoder and a linear policy head), whose width
``hidden_sizes`` and ``activation`` set.
"""

from __future__ import annotations

from typing import Any

from ray.rllib.algorithms.bc import BC as RLlibBC
from ray.rllib.algorithms.bc import BCConfig as RLlibBCConfig
from ray.rllib.utils.annotations import override

from rlscale.algorithms.common.config import RlscaleConfigMixin
from rlscale.algorithms.common.offline import ReleasesDataIterators, set_offline_defaults


class BCConfig(RlscaleConfigMixin, RLlibBCConfig):
    """RLlib's BCConfig with rlscale's offline defaults and network width (``hidden_sizes``)."""

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or BC)
        set_offline_defaults(self, updates_per_iteration=100)
        self.lr = 1e-3
        self.train_batch_size_per_learner = 256
        # RLlib's default BC network: two tanh layers of 256.
        self.hidden_sizes = [256, 256]
        self.activation = "tanh"

    @property
    def _model_config_auto_includes(self) -> dict[str, Any]:
        # RLlib's BC module reads its width under RLlib's names.
        return super()._model_config_auto_includes | {
            "fcnet_hiddens": list(self.hidden_sizes),
            "fcnet_activation": self.activation,
        }


class BC(ReleasesDataIterators, RLlibBC):
    """RLlib's BC, closing its data iterator when it stops."""

    @classmethod
    @override(RLlibBC)
    def get_default_config(cls) -> BCConfig:
        return BCConfig()
