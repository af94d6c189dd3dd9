"""Behavior cloning: RLlib's BC, for discrete and continuous actions.

Maximum likelihood of the logged actions (Pomerleau 1991, "Efficient Training of Artificial
Neural Networks for Autonomous Navigation"):

    min_θ  E_{(s, a) ~ D} [ −log π_θ(a | s) ]

RLlib computes it as MARWIL (Wang et al. 2018, "Exponentially Weighted Imitation Learning for
Batched Historical Data") with β = 0, where the advantage weights exp(β A) are all one. The
module is RLlib's default BC module (an MLP encoder and a linear policy head), whose width
``hidden_sizes`` and ``activation`` set, wrapped in :class:`StandardizedBCModule`
(``standardize``): the network sees observations, and for Box actions predicts actions, in
units of the dataset's mean and standard deviation, and a Box policy's log std is one free
parameter. An expert that holds InvertedPendulum-v5 still acts with a standard deviation of
0.0028 (bounds ±3) on observations that vary by at most 0.007; in the dataset's own units RLlib's
BC module did not fit those actions within 2,000 updates and the pole fell within 50 steps
(docs/benchmarks.md).

A dataset of at most ``in_memory_transitions`` transitions is read whole into memory and each
iteration's minibatches are drawn from it (``InMemoryOfflineData``); a larger one streams
through Ray Data. Either way the Learner's updates take the lean minibatch loop where it applies
(``lean_updates``; RLlib's own loop for Ray Data iterators).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.algorithms.bc import BC as RLlibBC
from ray.rllib.algorithms.bc import BCConfig as RLlibBCConfig
from ray.rllib.algorithms.bc.torch.default_bc_torch_rl_module import DefaultBCTorchRLModule
from ray.rllib.algorithms.marwil.torch.marwil_torch_learner import MARWILTorchLearner
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.utils.annotations import override

from rlscale.algorithms.common.config import RlscaleConfigMixin, _action_space_of
from rlscale.algorithms.common.lean_update import LeanUpdateMixin, LeanUpdatesConfigMixin
from rlscale.algorithms.common.offline import (
    ReleasesDataIterators,
    offline_training_step,
    set_offline_defaults,
)
from rlscale.algorithms.common.offline_data import normalized_action_bounds, use_minari_dataset
from rlscale.datasets.ray_data import read_transitions, to_unit_range
from rlscale.datasets.store import read_metadata
from rlscale.errors import SpecError

STATISTICS_TRANSITIONS = 100_000
"""The dataset's first episodes up to about this many transitions give ``standardize`` its
mean and standard deviation (a larger dataset is not read whole for them)."""
MIN_STD = 1e-6
"""A column that varies less than this is only centred (its scale is left at 1)."""


class BCConfig(RlscaleConfigMixin, LeanUpdatesConfigMixin, RLlibBCConfig):
    """RLlib's BCConfig with rlscale's offline defaults and network width (``hidden_sizes``)."""

    RLSCALE_KEYS: ClassVar[tuple[str, ...]] = ("standardize", "in_memory_transitions")

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or BC)
        set_offline_defaults(self, updates_per_iteration=100)
        self.standardize = True
        """Standardize observations (and Box actions) with the dataset's statistics inside the
        module, and give a Box policy one free log std (``StandardizedBCModule``)."""
        self.dataset_statistics: dict[str, list[float]] | None = None
        """Set from the dataset by ``attach_bc_dataset`` (with ``standardize``)."""
        self.in_memory_transitions = 100_000
        """A dataset of at most this many transitions is read into memory and sampled there;
        a larger one streams through Ray Data (0: always stream)."""
        self.lr = 1e-3
        self.train_batch_size_per_learner = 256
        # RLlib's default BC network: two tanh layers of 256.
        self.hidden_sizes = [256, 256]
        self.activation = "tanh"

    @property
    def _model_config_auto_includes(self) -> dict[str, Any]:
        # RLlib's BC module reads its width under RLlib's names.
        box_actions = isinstance(_action_space_of(self.env, self.env_config), gym.spaces.Box)
        return super()._model_config_auto_includes | {
            "fcnet_hiddens": list(self.hidden_sizes),
            "fcnet_activation": self.activation,
            "standardize": bool(self.standardize),
            "dataset_statistics": self.dataset_statistics if self.standardize else None,
            # Decided by the env alone, so that evaluation (no dataset) builds the same module.
            "free_log_std": bool(self.standardize) and box_actions,
        }

    def get_default_rl_module_spec(self) -> RLModuleSpec:
        return RLModuleSpec(module_class=StandardizedBCModule)

    def get_default_learner_class(self) -> type[BCLearner]:
        return BCLearner

    def validate(self) -> None:
        super().validate()
        if not isinstance(self.standardize, bool):
            self._value_error(f"standardize must be true or false, got {self.standardize!r}")
        problem = in_memory_transitions_problem(self.in_memory_transitions)
        if problem:
            self._value_error(problem)


class BCLearner(LeanUpdateMixin, MARWILTorchLearner):
    """RLlib's BC (MARWIL) Learner with the lean minibatch loop (``lean_updates``)."""


def in_memory_transitions_problem(value: object) -> str | None:
    """Why ``in_memory_transitions`` is malformed, or None."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return None
    return (
        "in_memory_transitions must be a whole number of transitions, 0 or more (0 streams "
        f"every dataset through Ray Data), got {value!r}"
    )


def attach_bc_dataset(config: BCConfig, data_dir: Path) -> None:
    """``bc``'s dataset: in memory up to ``in_memory_transitions``, else streamed, with the
    dataset's statistics (``attach_standardized_dataset``)."""
    problem = in_memory_transitions_problem(config.in_memory_transitions)
    if problem:  # refused here, before it decides how the data is read
        raise SpecError(f"the configuration of 'bc' is not valid: {problem}")
    transitions = int(read_metadata(Path(data_dir))["total_steps"])
    in_memory = transitions <= config.in_memory_transitions
    attach_standardized_dataset(config, data_dir, in_memory=in_memory)


def attach_standardized_dataset(config: Any, data_dir: Path, in_memory: bool = False) -> None:
    """RLlib's offline input (``use_minari_dataset``; streamed through Ray Data unless
    ``in_memory``) and, with ``standardize``, the dataset's statistics in the units the module
    trains in (``bc``, ``diffusion_bc``, ``diffusion_ql``)."""
    use_minari_dataset(config, data_dir, in_memory=in_memory)
    config.dataset_statistics = dataset_statistics(config, data_dir) if config.standardize else None


def dataset_statistics(config: BCConfig, data_dir: Path) -> dict[str, list[float]] | None:
    """Mean and standard deviation of the flat observations and, for a Box action space, of
    the actions as the learner sees them (in [-1, 1] with ``normalize_actions``); None for
    observations that are not a flat vector."""
    metadata = json.loads((Path(data_dir) / "metadata.json").read_text())
    episodes = int(metadata["total_episodes"])
    mean_length = max(1.0, int(metadata["total_steps"]) / max(1, episodes))
    stop = min(episodes, max(1, int(np.ceil(STATISTICS_TRANSITIONS / mean_length))))
    columns = read_transitions(data_dir, 0, stop)
    observations = np.asarray(columns["obs"])
    if observations.ndim != 2:
        return None
    statistics = mean_and_std("obs", observations)
    actions = np.asarray(columns["actions"])
    if np.issubdtype(actions.dtype, np.floating):
        bounds = normalized_action_bounds(config, metadata)
        actions = actions.reshape(len(actions), -1)
        if bounds is not None:
            actions = to_unit_range(actions, *(bound.reshape(-1) for bound in bounds))
        statistics |= mean_and_std("action", actions)
    return statistics


def mean_and_std(prefix: str, values: np.ndarray) -> dict[str, list[float]]:
    """``<prefix>_mean`` and ``<prefix>_std`` of the rows of ``values``, as
    ``register_statistics`` takes them (a column that barely varies keeps scale 1)."""
    values = values.astype(np.float64)
    std = values.std(axis=0)
    return {
        f"{prefix}_mean": values.mean(axis=0).tolist(),
        f"{prefix}_std": np.where(std < MIN_STD, 1.0, std).tolist(),
    }


def flat_size(space: gym.Space) -> int | None:
    """The width of a flat vector space, None for any other space."""
    return space.shape[0] if len(space.shape or ()) == 1 else None


def register_statistics(module: torch.nn.Module, sizes: dict[str, int | None]) -> None:
    """Buffers ``<prefix>_mean`` and ``<prefix>_std`` on an RLModule built with
    ``standardize``, from its ``dataset_statistics``; None where the size is None or without
    ``standardize``. They hold the identity (0, 1) until the dataset's statistics are given
    (training) or restored with the weights (evaluation builds the module without a dataset)."""
    statistics = module.model_config.get("dataset_statistics") or {}
    standardize = module.model_config.get("standardize", False)
    for prefix, size in sizes.items():
        for suffix, identity in (("mean", 0.0), ("std", 1.0)):
            name = f"{prefix}_{suffix}"
            values = statistics.get(name, [identity] * (size or 0))
            tensor = torch.tensor(values, dtype=torch.float32)
            module.register_buffer(name, tensor if standardize and size else None)


def standardized_observations(module: torch.nn.Module, observations: torch.Tensor) -> torch.Tensor:
    """``observations`` in the dataset's units of a module with ``register_statistics``'s
    ``obs`` buffers (unchanged when it has none)."""
    observations = observations.float()
    if module.obs_mean is None:
        return observations
    return (observations - module.obs_mean) / module.obs_std


class StandardizedBCModule(DefaultBCTorchRLModule):
    """RLlib's BC module between the dataset's units and the env's: observations are
    standardized on the way in; for Box actions the predicted mean and log std are mapped
    back from standardized action units (``mean * std + mean_a``, ``log_std + log std``), so
    the loss, the checkpoint and acting all see the env's (normalized) action units. The
    statistics are buffers, saved with the weights; without them (``standardize: false``)
    the module is RLlib's."""

    def setup(self) -> None:
        super().setup()
        box_actions = isinstance(self.action_space, gym.spaces.Box)
        action_size = int(np.prod(self.action_space.shape)) if box_actions else None
        register_statistics(self, {"obs": flat_size(self.observation_space), "action": action_size})

    def set_statistics(self, statistics: dict[str, list[float]]) -> None:
        """Replace the statistics in place (``mean_and_std``'s keys), for data that grows
        while training, as DAgger's aggregate does; a no-op without ``standardize``."""
        for name, values in statistics.items():
            buffer = getattr(self, name)
            if buffer is not None:
                buffer.copy_(torch.as_tensor(values, dtype=buffer.dtype))

    @override(DefaultBCTorchRLModule)
    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        batch = {**batch, Columns.OBS: standardized_observations(self, batch[Columns.OBS])}
        outputs = super()._forward(batch, **kwargs)
        if self.action_mean is not None:
            mean, log_std = outputs[Columns.ACTION_DIST_INPUTS].chunk(2, dim=-1)
            outputs[Columns.ACTION_DIST_INPUTS] = torch.cat(
                [mean * self.action_std + self.action_mean, log_std + self.action_std.log()],
                dim=-1,
            )
        return outputs


class BC(ReleasesDataIterators, RLlibBC):
    """RLlib's BC, closing its data iterator when it stops, with the offline family's training
    step (RLlib's, counting every transition trained on)."""

    @classmethod
    @override(RLlibBC)
    def get_default_config(cls) -> BCConfig:
        return BCConfig()

    @override(RLlibBC)
    def training_step(self) -> None:
        offline_training_step(self)
