"""RLlib's CQL RLModule with a greedy action inside the action bounds.

RLlib's ``TorchSquashedGaussian.to_deterministic()`` returns the Gaussian's mean *before* the
tanh squashing, so a greedy (``explore=False``) SAC or CQL policy acts with atanh-space values
that RLlib's action unsquashing then clips to the bounds: a bang-bang controller, whatever the
policy learned. Here the greedy action is the squashed mean, the mode the policy was trained
to put its mass around.
"""

from __future__ import annotations

from ray.rllib.algorithms.cql.torch.default_cql_torch_rl_module import DefaultCQLTorchRLModule
from ray.rllib.core.distribution.torch.torch_distribution import (
    TorchDeterministic,
    TorchSquashedGaussian,
)


class SquashedGaussian(TorchSquashedGaussian):
    """Tanh-squashed Gaussian whose deterministic action is tanh(mean), scaled to the bounds."""

    def to_deterministic(self) -> TorchDeterministic:
        return TorchDeterministic(loc=self._squash(self.loc))


class RlscaleCQLModule(DefaultCQLTorchRLModule):
    """RLlib's CQL module (twin Q, target nets, sampled-action Q values) with that greedy action."""

    def get_inference_action_dist_cls(self) -> type[SquashedGaussian]:
        return SquashedGaussian

    def get_exploration_action_dist_cls(self) -> type[SquashedGaussian]:
        return SquashedGaussian

    def get_train_action_dist_cls(self) -> type[SquashedGaussian]:
        return SquashedGaussian
