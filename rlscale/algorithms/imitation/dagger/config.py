"""DAgger's config: the beta schedule, the aggregate's size and where it is written, and the
cloning network."""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.core.rl_module.rl_module import RLModuleSpec

from rlscale.algorithms.common.config import RlscaleConfigMixin, _action_space_of
from rlscale.algorithms.imitation.cloning import ClonesLabelledStates
from rlscale.algorithms.imitation.dagger.module import DAggerModule
from rlscale.datasets.store import check_dataset_id, datasets_root
from rlscale.errors import DatasetError

BETA_SCHEDULES = ("linear", "exponential")


class DAggerConfig(RlscaleConfigMixin, ClonesLabelledStates, AlgorithmConfig):
    """DAgger's defaults: one linear beta decay over 10 rounds, 1,000 BC minibatches a round."""

    RLSCALE_KEYS: ClassVar[tuple[str, ...]] = (
        "expert",
        "beta_schedule",
        "beta_decay_iterations",
        "beta_base",
        "updates_per_iteration",
        "aggregate_capacity",
        "aggregate_dataset",
        "standardize",
    )

    def __init__(self, algo_class=None):
        from rlscale.algorithms.imitation.dagger.algorithm import DAgger

        super().__init__(algo_class=algo_class or DAgger)
        self.expert: str | None = None
        """The expert: a scripted policy's name or a checkpoint folder (set by ``expert:`` in the
        spec, which the platform checks against the env first)."""
        self.beta_schedule = "linear"
        self.beta_decay_iterations = 10
        """``linear``: beta falls from 1 in the first round to 0 in round ``1 + this``."""
        self.beta_base = 0.5
        """``exponential``: beta of round ``i`` (from 1) is ``beta_base ** (i - 1)``."""
        self.updates_per_iteration = 1_000
        self.aggregate_capacity: int | None = None
        """At most this many labelled states (the oldest dropped first); None keeps all."""
        self.aggregate_dataset: str | None = None
        """A Minari dataset id (``NAMESPACE/NAME-vN``): when the run stops, the aggregate is
        written there, under ``MINARI_DATASETS_PATH`` (:meth:`DAgger.write_aggregate`)."""
        self.standardize = True
        """Standardize observations (and Box actions) with the aggregate's mean and std inside
        the module, recomputed every round, and give a Box policy one free log std, as ``bc``
        does with its dataset's (``StandardizedBCModule``). A balancing expert's states and
        actions vary by a fraction of their range; in raw units the network barely tells them
        apart."""
        self.train_batch_size_per_learner = 1_000
        """Env steps rolled out (and labelled) per round."""
        self.minibatch_size = 256
        """The BC minibatch size."""
        self.lr = 1e-3
        # Wide ReLU layers and many updates: a scripted expert switches sharply (Pendulum's
        # energy pump), and [64, 64] tanh layers with 200 updates a round did not learn its
        # swing-up from 2,000 labels.
        self.hidden_sizes = [256, 256]
        self.activation = "relu"
        # Rollouts run in the driver unless the user asks for EnvRunner actors; episodes run on
        # across rounds (RLlib's "complete_episodes" reseeds the env on every call).
        self.num_env_runners = 0
        # The module acts in the env's units, as the expert does: its labels need no rescaling.
        self.normalize_actions = False
        self.clip_actions = True

    @property
    def _model_config_auto_includes(self) -> dict[str, Any]:
        box_actions = isinstance(_action_space_of(self.env, self.env_config), gym.spaces.Box)
        return super()._model_config_auto_includes | {
            "expert": self.expert,
            "mixing_seed": self.seed,
            "standardize": bool(self.standardize),
            # The aggregate's statistics are set on the module every round (identity until then).
            "dataset_statistics": None,
            "free_log_std": bool(self.standardize) and box_actions,
        }

    def get_default_rl_module_spec(self) -> RLModuleSpec:
        return RLModuleSpec(module_class=DAggerModule)

    def validate(self) -> None:
        super().validate()
        if not self.expert:
            self._value_error(
                "dagger needs an expert to label the states it visits: set `expert:` in the "
                "spec (or --expert) to a scripted policy's name or a checkpoint folder"
            )
        if not isinstance(self.standardize, bool):
            self._value_error(f"standardize must be true or false, got {self.standardize!r}")
        if self.beta_schedule not in BETA_SCHEDULES:
            self._value_error(
                f"beta_schedule must be one of {', '.join(BETA_SCHEDULES)}, "
                f"got {self.beta_schedule!r}"
            )
        for key in ("beta_decay_iterations", "updates_per_iteration", "minibatch_size"):
            value = getattr(self, key)
            if not isinstance(value, int) or value < 1:
                self._value_error(f"{key} must be a positive integer, got {value!r}")
        if not 0 <= self.beta_base <= 1:
            self._value_error(f"beta_base must lie in [0, 1], got {self.beta_base!r}")
        self._check_aggregate_dataset()
        capacity = self.aggregate_capacity
        if capacity is not None and (not isinstance(capacity, int) or capacity < 1):
            self._value_error(
                f"aggregate_capacity must be a positive integer or None, got {capacity!r}"
            )

    def _check_aggregate_dataset(self) -> None:
        """Refuse a bad or taken dataset id now rather than when the run has finished."""
        name = self.aggregate_dataset
        if name is None:
            return
        try:
            check_dataset_id(str(name))
        except DatasetError as error:
            self._value_error(f"aggregate_dataset: {error}")
        if (datasets_root() / str(name)).exists():
            self._value_error(
                f"aggregate_dataset: a dataset {name} already exists under {datasets_root()}; "
                "choose another name or version (…-v1), or delete the old one first"
            )

    def beta(self, iteration: int) -> float:
        """The expert's share of the actions in round ``iteration`` (counted from 0)."""
        if self.beta_schedule == "exponential":
            return float(self.beta_base**iteration)
        return max(0.0, 1.0 - iteration / self.beta_decay_iterations)
