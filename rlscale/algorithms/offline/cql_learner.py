"""RLlib's CQL Learner with two corrections for training many updates per iteration.

- **Behavior-cloning warm-up counted over the whole run.** RLlib's ``CQLTorchLearner`` clones
  the data's actions while a training-iteration counter in its metrics is below ``bc_iters``,
  and switches the actor to the SAC objective after. That counter is reset whenever the metrics
  are reduced (once per training iteration), so with fewer updates per iteration than
  ``bc_iters`` the actor clones the data for ever and never follows Q. Here the Learner counts
  its own updates and hands RLlib's loss a config that says which phase it is in.
- **Target networks follow every update.** RLlib's ``DQNLearner`` moves the target nets by
  ``tau`` in ``after_gradient_based_update``, which runs once per ``Learner.update`` call: once
  per training iteration of ``dataset_num_iters_per_learner`` gradient updates offline. With
  100 updates an iteration, ``tau = 0.005`` moved the targets as ``tau = 5e-5`` would per
  update, and after thousands of updates the critic still bootstrapped from its random
  initialization (Q far off the scale of the returns). Here the Polyak step follows every
  gradient step, as in SAC and CQL (Kumar et al. 2020).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from ray.rllib.algorithms.cql.torch.cql_torch_learner import CQLTorchLearner
from ray.rllib.algorithms.dqn.dqn_learner import DQNLearner
from ray.rllib.utils.metrics import NUM_TARGET_UPDATES


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

    def apply_gradients(self, gradients_dict) -> None:
        super().apply_gradients(gradients_dict)
        for module_id, module in self.module.items():
            tau = self.config.get_config_for_module(module_id).tau
            for main_net, target_net in module.unwrapped().get_target_network_pairs():
                polyak_step(main_net, target_net, tau)
            self.metrics.log_value((module_id, NUM_TARGET_UPDATES), 1, reduce="lifetime_sum")

    def after_gradient_based_update(self, *, timesteps: dict[str, Any]) -> None:
        # Everything the Learner does after an update call but DQNLearner's once-per-call
        # target step, which apply_gradients has taken over.
        super(DQNLearner, self).after_gradient_based_update(timesteps=timesteps)


@torch.no_grad()
def polyak_step(main_net: torch.nn.Module, target_net: torch.nn.Module, tau: float) -> None:
    """target <- (1 - tau) target + tau main, parameter by parameter.

    RLlib's ``update_target_network`` goes through ``state_dict`` and ``load_state_dict``,
    which cost about 3 ms per update on CQL's four small nets: a tenth of a CPU update. The
    target nets are deep copies of the main nets (no buffers), so their parameters pair up in
    order.
    """
    for target, main in zip(target_net.parameters(), main_net.parameters(), strict=True):
        target.lerp_(main, tau)
