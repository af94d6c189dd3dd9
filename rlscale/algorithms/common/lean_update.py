"""Lean minibatch updates for the Learners that are handed their train batch (PPO and A2C on
sampled episodes; BC, DAgger and BCO on labelled states): same losses, same numbers.

RLlib's ``Learner.update`` builds the train batch once (the learner connector: GAE, value
targets, tensors on the Learner's device; or a batch it is given, as tensors) and then, for
every minibatch, goes through
``MiniBatchCyclicIterator``: it slices a ``SampleBatch`` (a tree map over its columns, plus
``concat_samples`` and a new ``MultiAgentBatch``), checks the batch's module ids, toggles
``_set_slicing_by_batch_id``, logs about ten step counters (``_log_steps_trained_metrics``,
``_log_metrics``), and ``TorchLearner._uncompiled_update`` switches the module to train mode
(``TorchRLModule.forward_train`` calls ``nn.Module.train()`` on every minibatch).

The lean path keeps the batch RLlib's connector built, holds its columns as a flat dict of
tensors, and walks the same minibatch schedule as ``MiniBatchCyclicIterator`` over them:

- the same minibatches in the same order for the same NumPy seed: epoch 1 in the batch's own
  order, then at each pass over the end of the batch one ``np.random.permutation`` of the rows
  (as ``SampleBatch.shuffle`` draws it), applied with one ``index_select`` per column; a
  minibatch is a view ``[start:end]`` of each column, or two pieces joined where it runs over
  the end of the batch (as RLlib's cyclic iterator joins them);
- the same number of minibatches (every row seen ``num_epochs`` times, or
  ``num_total_minibatches``), one whole-batch step when there is neither a ``minibatch_size``
  nor more than one epoch;
- the same step per minibatch: ``_compute_off_policyness``, the module's ``_forward_train``,
  ``compute_losses``, ``compute_gradients``, ``postprocess_gradients``, ``apply_gradients``; the
  module is put in train mode once per update instead of once per minibatch;
- PPO's ``target_kl`` stop: once a minibatch stops the epochs, the remaining ones are skipped
  without building them, but their shuffles are still drawn, so NumPy's global random state
  after the update is the one RLlib's path leaves;
- the same metrics, keys and reductions: the summed step counters are logged once per update
  with their totals (equal sums after ``reduce()``), the per-minibatch mean and the
  per-minibatch update timer (Ray's Prometheus histogram) once per minibatch, the total loss of
  the last minibatch.

Where the lean path does not apply (decided once, when the Learner is built) the update is
RLlib's own: ``lean_updates`` off, several modules (multi-agent), a stateful (recurrent) module
with its sequence batches, a compiled update (``torch_compile_learner``), several Learners
(DDP's gradient all-reduce hooks the wrapped module's forward), an inference-only module; and,
per call, training from Ray Data iterators.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import torch
from ray.rllib.core import ALL_MODULES
from ray.rllib.core.learner.torch.torch_learner import TorchLearner
from ray.rllib.core.learner.training_data import TrainingData
from ray.rllib.utils.metrics import (
    MODULE_TRAIN_BATCH_SIZE_MEAN,
    NUM_ENV_STEPS_TRAINED,
    NUM_ENV_STEPS_TRAINED_LIFETIME,
    NUM_MODULE_STEPS_TRAINED,
    NUM_MODULE_STEPS_TRAINED_LIFETIME,
    WEIGHTS_SEQ_NO,
)
from ray.rllib.utils.metrics.ray_metrics import TimerAndPrometheusLogger
from torch.nn.utils import get_total_norm

Segment = tuple[int, int]
"""Rows ``[start, end)`` of the batch in its current (shuffled) order."""


class LeanUpdatesConfigMixin:
    """Put before the RLlib config class among a config's bases: the ``lean_updates`` key."""

    RLSCALE_KEYS: ClassVar[tuple[str, ...]] = ("lean_updates",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The lean minibatch loop wherever it applies; False runs RLlib's own update loop.
        self.lean_updates = True

    def validate(self) -> None:
        super().validate()
        if not isinstance(self.lean_updates, bool):
            self._value_error(
                f"lean_updates must be true or false (false runs RLlib's own minibatch loop), "
                f"got {self.lean_updates!r}"
            )


def lean_update_problem(learner: Any) -> str | None:
    """Why this Learner updates through RLlib's loop instead of the lean one, or None."""
    config = learner.config
    if not getattr(config, "lean_updates", False):
        return "lean_updates is off"
    if len(learner.module) != 1:
        return f"the Learner holds {len(learner.module)} modules (multi-agent)"
    module = next(iter(learner.module.values()))
    if module.is_stateful():
        return "the module is stateful (recurrent), its batches are sequences"
    if getattr(module, "inference_only", False):
        return "the module is inference-only"
    if config.torch_compile_learner:
        return "the update is compiled (torch_compile_learner)"
    if config.num_learners > 1:
        return "several Learners: DDP's gradient all-reduce runs through the wrapped module"
    return None


def minibatch_schedule(
    num_rows: int,
    *,
    minibatch_size: int,
    num_epochs: int,
    shuffle: bool,
    num_total_minibatches: int = 0,
) -> Iterator[tuple[list[Segment], list[np.ndarray]]]:
    """RLlib's ``MiniBatchCyclicIterator`` schedule for one module, as row ranges.

    Yields, per minibatch, ``(segments, permutations)``: ``(start, end)`` segments are rows of
    the batch in its current order, taken one after the other; a ``(-1, k)`` segment marks where
    ``permutations[k]`` (drawn as ``SampleBatch.shuffle`` draws it, at the pass over the batch's
    end) reorders the rows, so that the segments after it read the new order.
    """
    if num_rows == 0:
        raise ValueError("the train batch is empty: there is nothing to update on")
    start, covered, count = 0, 0, 0
    while (num_total_minibatches == 0 and covered < num_epochs) or (
        num_total_minibatches > 0 and count < num_total_minibatches
    ):
        steps, segments, permutations = minibatch_size, [], []
        # RLlib's condition (>=): a minibatch ending exactly at the batch's end also shuffles.
        while start + steps >= num_rows:
            segments.append((start, num_rows))
            steps -= num_rows - start
            start = 0
            covered += 1
            if shuffle:
                segments.append((-1, len(permutations)))
                permutations.append(np.random.permutation(num_rows))
        end = start + steps
        if end > start:
            segments.append((start, end))
        start = end
        yield segments, permutations
        count += 1


class LeanUpdateMixin:
    """Put before the RLlib Learner class among a Learner's bases: the lean ``update``."""

    def build(self) -> None:
        super().build()
        self.lean_problem: str | None = lean_update_problem(self)
        """None when updates take the lean path; else why they take RLlib's (decided once)."""
        self.plain_gradient_step = (
            type(self).apply_gradients is TorchLearner.apply_gradients
            and self._grad_scalers is None
            and self._lr_scheduler_classes is None
        )
        """Whether ``_apply_gradients`` may check finiteness once (see there; decided once)."""

    def add_module(self, *args: Any, **kwargs: Any):
        spec = super().add_module(*args, **kwargs)
        self.lean_problem = lean_update_problem(self)  # a second module: RLlib's loop again
        return spec

    def remove_module(self, *args: Any, **kwargs: Any):
        spec = super().remove_module(*args, **kwargs)
        self.lean_problem = lean_update_problem(self)
        return spec

    def updates_stopped(self) -> bool:
        """True once the current update should take no more steps (PPO's KL stop)."""
        return False

    def update(
        self,
        batch=None,
        batches=None,
        batch_refs=None,
        episodes=None,
        episodes_refs=None,
        data_iterators=None,
        training_data: TrainingData | None = None,
        *,
        timesteps: dict[str, Any] | None = None,
        num_total_minibatches: int = 0,
        num_epochs: int = 1,
        minibatch_size: int | None = None,
        shuffle_batch_per_epoch: bool = False,
        _no_metrics_reduce: bool = False,
        **kwargs,
    ):
        data = {
            "batch": batch,
            "batches": batches,
            "batch_refs": batch_refs,
            "episodes": episodes,
            "episodes_refs": episodes_refs,
            "data_iterators": data_iterators,
        }
        from_iterators = data_iterators or (training_data and training_data.data_iterators)
        if self.lean_problem is not None or from_iterators:
            return super().update(
                **data,
                training_data=training_data,
                timesteps=timesteps,
                num_total_minibatches=num_total_minibatches,
                num_epochs=num_epochs,
                minibatch_size=minibatch_size,
                shuffle_batch_per_epoch=shuffle_batch_per_epoch,
                _no_metrics_reduce=_no_metrics_reduce,
                **kwargs,
            )
        # Like RLlib's loop away from Ray Data, the lean one reads no other keyword (the
        # LearnerGroup's return_state, for one, is not used by Learner.update).
        self._check_is_built()
        # The same order of hooks and counters as RLlib's Learner.update.
        self.before_gradient_based_update(timesteps=timesteps or {})
        if training_data is None:
            training_data = TrainingData(**data)
        training_data.validate()
        training_data.solve_refs()
        self._weights_seq_no += 1

        multi_agent_batch = self._make_batch_if_necessary(training_data=training_data)
        module_batches = multi_agent_batch.policy_batches
        for mid in list(module_batches):
            if not self.should_module_be_updated(mid, multi_agent_batch):
                del module_batches[mid]
        unknown = set(module_batches) - set(self.module.keys())
        if unknown:
            raise ValueError(
                f"Batch contains one or more ModuleIDs ({unknown}) that are not in this Learner!"
            )
        for module_id, module_batch in module_batches.items():  # one module (lean_problem)
            loss_per_module = self._lean_epochs(
                module_id,
                self._columns(module_batch),
                env_steps=multi_agent_batch.env_steps(),
                num_epochs=num_epochs,
                minibatch_size=minibatch_size,
                shuffle=shuffle_batch_per_epoch and num_epochs > 1,
                num_total_minibatches=num_total_minibatches,
            )
            for mid, loss in loss_per_module.items():
                self.metrics.log_value(key=(mid, self.TOTAL_LOSS_KEY), value=loss, window=1)
        self.after_gradient_based_update(timesteps=timesteps or {})
        if not _no_metrics_reduce:
            return self.metrics.reduce()
        return None

    def _columns(self, module_batch: Any) -> dict[str, Any]:
        """The module batch's columns as tensors on the Learner's device (converted once)."""
        columns = {}
        for key, value in module_batch.items():
            if isinstance(value, np.ndarray) and value.dtype != object:
                value = torch.from_numpy(value)
            if isinstance(value, torch.Tensor) and value.device != self._device:
                value = value.to(self._device)
            columns[key] = value
        return columns

    def _lean_epochs(
        self,
        module_id: str,
        columns: dict[str, Any],
        *,
        env_steps: int,
        num_epochs: int,
        minibatch_size: int | None,
        shuffle: bool,
        num_total_minibatches: int,
    ) -> dict[str, Any]:
        """Every minibatch step of one update; returns the last step's losses per module."""
        num_rows = _num_rows(columns)
        if not minibatch_size and num_epochs <= 1:
            schedule = iter([([(0, num_rows)], [])])  # RLlib's MiniBatchDummyIterator
        else:
            schedule = minibatch_schedule(
                num_rows,
                minibatch_size=minibatch_size or num_rows,
                num_epochs=num_epochs,
                shuffle=shuffle,
                num_total_minibatches=num_total_minibatches,
            )
        module = self.module[module_id]
        module.train()  # once per update; RLlib's forward_train does it per minibatch
        loss_per_module: dict[str, Any] = {}
        steps = rows = 0
        for segments, permutations in schedule:
            size = sum(end - start for start, end in segments if start >= 0)
            if self.updates_stopped():
                # RLlib still yields (and counts) this minibatch and _update returns no loss;
                # its shuffles were drawn by the schedule, and the columns are not read again.
                loss_per_module = {}
            else:
                minibatch, columns = _take(columns, segments, permutations, self._device)
                with TimerAndPrometheusLogger(self._metrics_learner_inner_update):
                    loss_per_module = self._lean_step(module, module_id, minibatch)
            steps += 1
            rows += size
            self.metrics.log_value(
                key=(module_id, MODULE_TRAIN_BATCH_SIZE_MEAN), value=size, reduce="mean"
            )
        self._log_lean_step_counts(module_id, steps=steps, rows=rows, env_steps=env_steps)
        return loss_per_module

    def _lean_step(self, module: Any, module_id: str, minibatch: dict[str, Any]) -> dict:
        """TorchLearner._uncompiled_update on one module's minibatch, minus the mode switch;
        returns the losses per module."""
        batch = {module_id: minibatch}
        self._compute_off_policyness(batch)
        fwd_out = {module_id: module._forward_train(minibatch)}
        loss_per_module = self.compute_losses(fwd_out=fwd_out, batch=batch)
        gradients = self.compute_gradients(loss_per_module)
        self._apply_gradients(self.postprocess_gradients(gradients))
        return loss_per_module

    def _apply_gradients(self, gradients: dict[Any, torch.Tensor]) -> None:
        """RLlib's ``apply_gradients``, with its finiteness checks made once.

        RLlib checks every gradient with ``torch.isfinite(...).all()`` twice (two small kernels
        per parameter tensor, a sizeable share of a small network's update). The total norm,
        one fused reduction, is finite whenever every gradient is; then RLlib would set the
        gradients and step every optimizer, which is what this does. A non-finite norm (a
        non-finite gradient, or finite ones whose squares overflow) goes to RLlib's own checks,
        as do grad scalers, LR schedulers and a Learner's own ``apply_gradients``.
        """
        values = list(gradients.values())
        if (
            not self.plain_gradient_step
            or not values
            or any(value is None for value in values)
            or not torch.isfinite(get_total_norm(values))
        ):
            self.apply_gradients(gradients)
            return
        for pid, gradient in gradients.items():
            self._params[pid].grad = gradient
        for module_id, optimizer_names in self._module_optimizers.items():
            for optimizer_name in optimizer_names:
                self.get_optimizer(module_id, optimizer_name).step()

    def _log_lean_step_counts(self, module_id: str, *, steps: int, rows: int, env_steps: int):
        """RLlib's per-minibatch step counters, logged once with their totals."""
        self.metrics.log_value((module_id, WEIGHTS_SEQ_NO), self._weights_seq_no, window=1)
        for key, reduce in (
            ((module_id, NUM_MODULE_STEPS_TRAINED), "sum"),
            ((module_id, NUM_MODULE_STEPS_TRAINED_LIFETIME), "lifetime_sum"),
            ((ALL_MODULES, NUM_MODULE_STEPS_TRAINED), "sum"),
            ((ALL_MODULES, NUM_MODULE_STEPS_TRAINED_LIFETIME), "lifetime_sum"),
        ):
            throughput = key != (module_id, NUM_MODULE_STEPS_TRAINED)
            self.metrics.log_value(key, rows, reduce=reduce, with_throughput=throughput)
        # RLlib counts the whole batch's env steps once per minibatch.
        for key, reduce in (
            ((ALL_MODULES, NUM_ENV_STEPS_TRAINED), "sum"),
            ((ALL_MODULES, NUM_ENV_STEPS_TRAINED_LIFETIME), "lifetime_sum"),
        ):
            self.metrics.log_value(key, env_steps * steps, reduce=reduce, with_throughput=True)
        if env_steps > 0:
            self._metrics_all_modules_num_env_steps_trained.inc(value=env_steps * steps)
            self._metrics_all_modules_num_module_steps_trained.inc(value=rows)


def _num_rows(columns: dict[str, Any]) -> int:
    first = next(iter(columns.values()))
    return _num_rows(first) if isinstance(first, dict) else len(first)


def _slice(value: Any, start: int, end: int) -> Any:
    """Rows ``[start, end)`` of a column (a view for a tensor)."""
    if isinstance(value, dict):
        return {key: _slice(inner, start, end) for key, inner in value.items()}
    return value[start:end]


def _take(
    columns: dict[str, Any],
    segments: list[Segment],
    permutations: list[np.ndarray],
    device: Any,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the minibatch, the columns in their order after it): slices, shuffles where marked."""
    pieces: list[dict[str, Any]] = []
    for start, end in segments:
        if start < 0:
            index = torch.from_numpy(permutations[end]).to(device)
            columns = {key: _reorder(value, index) for key, value in columns.items()}
        else:
            pieces.append({key: _slice(value, start, end) for key, value in columns.items()})
    if len(pieces) == 1:
        return pieces[0], columns
    return {key: _join([piece[key] for piece in pieces]) for key in columns}, columns


def _reorder(value: Any, index: torch.Tensor) -> Any:
    """``value`` with its rows in ``index``'s order (one gather for a tensor)."""
    if isinstance(value, torch.Tensor):
        return value.index_select(0, index)
    if isinstance(value, dict):  # nested columns: the only place a tree is walked
        return {key: _reorder(inner, index) for key, inner in value.items()}
    if isinstance(value, np.ndarray):
        return value[index.cpu().numpy()]
    return [value[i] for i in index.tolist()]


def _join(parts: list[Any]) -> Any:
    """Rows of ``parts`` one after the other (a minibatch that runs over the batch's end)."""
    first = parts[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(parts)
    if isinstance(first, dict):
        return {key: _join([part[key] for part in parts]) for key in first}
    if isinstance(first, np.ndarray):
        return np.concatenate(parts)
    return [item for part in parts for item in part]
