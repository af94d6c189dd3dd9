"""Behaviour cloning on RLlib's BC network, shared by the imitation algorithms that clone
labelled states (DAgger on its expert's labels, BCO on the labels its inverse dynamics model
infers): the Learner's loss and the config methods that wire the network and Learner in. Its
updates take the lean minibatch loop (``lean_updates``, ``common/lean_update.py``)."""

from __future__ import annotations

from typing import Any

from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.torch.torch_learner import TorchLearner

from rlscale.algorithms.common.lean_update import LeanUpdateMixin, LeanUpdatesConfigMixin

BC_LOSS = "bc_loss"


class CloningLearner(LeanUpdateMixin, TorchLearner):
    """Minus the log-likelihood of the labelled actions under the policy's distribution
    (categorical for Discrete actions, diagonal Gaussian for Box)."""

    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out):
        module = self.module[module_id]
        distribution = module.get_train_action_dist_cls().from_logits(
            fwd_out[Columns.ACTION_DIST_INPUTS]
        )
        loss = -distribution.logp(batch[Columns.ACTIONS]).mean()
        self.metrics.log_value((module_id, BC_LOSS), loss.item(), window=1)
        return loss


class ClonesLabelledStates(LeanUpdatesConfigMixin):
    """Config mixin (after ``RlscaleConfigMixin``, before ``AlgorithmConfig``): RLlib's BC
    network sized by ``hidden_sizes`` / ``activation``, trained by ``CloningLearner`` (with
    the ``lean_updates`` key)."""

    @property
    def _model_config_auto_includes(self) -> dict[str, Any]:
        # RLlib's BC module reads its width under RLlib's names.
        return super()._model_config_auto_includes | {
            "fcnet_hiddens": list(self.hidden_sizes),
            "fcnet_activation": self.activation,
        }

    def get_default_learner_class(self) -> type[TorchLearner]:
        return CloningLearner
