"""RLlib's CQL Learner with its behavior-cloning warm-up counted over the whole run.

RLlib's ``CQLTorchLearner`` clones the data's actions while a training-iteration counter in its
metrics is below ``bc_iters``, and switches the actor to the SAC objective after. That counter
is reset whenever the metrics are reduced (once per training iteration), so with fewer updates
per iteration than ``bc_iters`` the actor clones the data for ever and never follows Q. Here the
Learner counts its own updates and hands RLlib's loss a config that says which phase it is in.
"""

from __future__ import annotations

import math
from typing import Any

from ray.rllib.algorithms.cql.torch.cql_torch_learner import CQLTorchLearner


class RlscaleCQLLearner(CQLTorchLearner):
    def build(self) -> None:
        super().build()
        self.updates_done: dict[str, int] = {}
        self._phase_configs: dict[bool, Any] = {}

    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out):
        self.updates_done[module_id] = self.updates_done.get(module_id, 0) + 1
        cloning = self.updates_done[module_id] <= config.bc_iters
        return super().compute_loss_for_module(
            module_id=module_id,
            config=self.phase_config(config, cloning=cloning),
            batch=batch,
            fwd_out=fwd_out,
        )

    def phase_config(self, config, cloning: bool):
        """``config`` with ``bc_iters`` set so that RLlib's check picks the given phase.

        Copied once per phase: the Learner's config does not change while it runs.
        """
        if cloning not in self._phase_configs:
            phase = config.copy(copy_frozen=False)
            phase.bc_iters = math.inf if cloning else 0
            self._phase_configs[cloning] = phase
        return self._phase_configs[cloning]
