"""Lean replay updates: a block of prioritized-replay updates in one Learner call, with the
priorities written back after every update, for off-policy Learners in the driver (DQN).

Each update of RLlib's path is its own ``LearnerGroup.update`` call: the driver draws a
minibatch from the replay, wraps it in a ``MultiAgentBatch``, and the Learner converts it to
tensors (a tree map), walks a one-minibatch ``MiniBatchCyclicIterator``, logs its step counters,
switches the module to train mode, updates, reduces all its metrics (``metrics.reduce()``, the
largest share of the overhead) and returns them; the driver aggregates them and writes the TD
errors back into the priorities before the next draw.

``replay_updates`` runs the same sequence of draws and steps inside one call of the local
Learner: per update, ``before_gradient_based_update``, one draw from the replay (its generator
advances exactly as before), the same tensor conversion, RLlib's update step
(``_lean_step``: forward, losses, gradients, their postprocessing and the optimizer step), the
update's TD errors into the priorities, ``after_gradient_based_update`` (where DQN refreshes its
target network). The module is put in train mode and the metrics are reduced once per block;
the numbers (losses, gradients, parameters, priorities) are those of one RLlib call per update.

It applies where :func:`~rlscale.algorithms.common.lean_update.lean_update_problem` finds
nothing in the way and the Learner lives in the driver (``num_learners: 0``); the algorithm
falls back to one ``LearnerGroup.update`` per update otherwise.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
from ray.rllib.utils.metrics import MODULE_TRAIN_BATCH_SIZE_MEAN, TD_ERROR_KEY
from ray.rllib.utils.metrics.ray_metrics import TimerAndPrometheusLogger
from ray.rllib.utils.torch_utils import convert_to_torch_tensor

from rlscale.algorithms.common.lean_update import LeanUpdateMixin


class PrioritizedReplay(Protocol):
    """What ``replay_updates`` needs of a replay (as :class:`FlatReplay` has it)."""

    def sample(self, rows: int, beta: float) -> tuple[dict[str, np.ndarray], np.ndarray]: ...

    def update_priorities(self, indices: np.ndarray, td_errors: np.ndarray) -> None: ...


class LeanReplayUpdateMixin(LeanUpdateMixin):
    """Put before the RLlib Learner class among a Learner's bases: ``replay_updates``, and the
    lean ``update`` for the batches it is still handed."""

    def replay_updates(
        self,
        replay: PrioritizedReplay,
        *,
        updates: int,
        rows: int,
        beta: float,
        timesteps: dict[str, Any],
    ) -> dict[str, Any]:
        """``updates`` updates on minibatches of ``rows`` drawn from ``replay`` one after the
        other, each update's TD errors written back before the next draw; returns the reduced
        metrics of the block."""
        if self.lean_problem is not None:
            raise RuntimeError(f"replay_updates needs the lean path, but {self.lean_problem}")
        ((module_id, module),) = self.module.items()
        module.train()  # once per block; RLlib's forward_train does it per update
        losses: dict[str, Any] = {}
        for _ in range(updates):
            self.before_gradient_based_update(timesteps=timesteps)
            sample, indices = replay.sample(rows, beta=beta)
            minibatch = convert_to_torch_tensor(sample, device=self._device)
            self._weights_seq_no += 1
            with TimerAndPrometheusLogger(self._metrics_learner_inner_update):
                losses = self._lean_step(module, module_id, minibatch)
            self.metrics.log_value(
                key=(module_id, MODULE_TRAIN_BATCH_SIZE_MEAN), value=rows, reduce="mean"
            )
            replay.update_priorities(indices, self.pop_td_errors(module_id))
            self.after_gradient_based_update(timesteps=timesteps)
        self._log_lean_step_counts(module_id, steps=updates, rows=updates * rows, env_steps=rows)
        for mid, loss in losses.items():
            self.metrics.log_value(key=(mid, self.TOTAL_LOSS_KEY), value=loss, window=1)
        return self.metrics.reduce()

    def pop_td_errors(self, module_id: str) -> np.ndarray:
        """The last update's per-row TD errors, taken out of the metrics (where the loss logged
        them, one per row, for the caller's priorities)."""
        (td_errors,) = self.metrics.peek((module_id, TD_ERROR_KEY))  # one update: a list
        self.metrics.delete(module_id, TD_ERROR_KEY)
        return np.asarray(td_errors)
