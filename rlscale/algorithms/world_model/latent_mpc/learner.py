"""The Learner of ``latent_mpc``: fits the module's world model on batches of sequences."""

from __future__ import annotations

import torch
from ray.rllib.core.learner.torch.torch_learner import TorchLearner

from rlscale.algorithms.world_model.sequences import SEQUENCE_KEYS


class LatentMPCLearner(TorchLearner):
    """Fits the module's world model on batches of sequences (``WorldModel.loss``)."""

    def configure_optimizers_for_module(self, module_id, config=None) -> None:
        model = self.module[module_id].world_model
        self.register_optimizer(
            module_id=module_id,
            # PlaNet's Adam epsilon.
            optimizer=torch.optim.Adam(model.parameters(), lr=config.lr, eps=1e-4),
            params=list(model.parameters()),
            lr_or_lr_schedule=config.lr,
        )

    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out):
        model = self.module[module_id].world_model
        result = model.loss(*(batch[key] for key in SEQUENCE_KEYS))
        for name, value in result.metrics.items():
            self.metrics.log_value((module_id, f"model_{name}"), value, window=1)
        return result.total
