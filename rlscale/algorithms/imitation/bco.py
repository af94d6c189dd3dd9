"""BCO: behavioural cloning from observation (Torabi, Warnell & Stone 2018, "Behavioral Cloning
from Observation", IJCAI, https://arxiv.org/abs/1805.01954; BCO(alpha), their Algorithm 1).

The demonstrations hold the expert's states only (their actions, if the dataset has any, are
never read). BCO learns what the expert did from what the agent itself can do:

1. **Pre-demonstration**: the agent acts at random for ``pre_demonstration_steps`` env steps and
   keeps its transitions ``(s, a, s')``;
2. **Inverse dynamics**: a model ``p(a | s, s')`` is fitted on all of the agent's transitions
   (``InverseDynamicsModel``);
3. **Label**: the model infers the action of every demonstrated state pair ``(s_E, s'_E)``;
4. **Clone**: the policy is trained by behaviour cloning on ``(s_E, inferred a)``;
5. **Post-demonstration** (BCO(alpha)): every later iteration the current policy acts for
   ``post_demonstration_steps`` (the paper's ``alpha |I_pre|``), its transitions join the
   agent's, and steps 2-4 run again; the policy's own transitions come from the states near the
   expert's, where the inverse model matters.

The inverse model is plain torch, fitted in the driver (it is small); the policy is RLlib's BC
network, trained by the Learner (``CloningLearner``) and synced to the EnvRunners. Every
iteration reports the inverse model's held-out accuracy (Discrete) or squared error (Box) on
the agent's transitions, ``inverse_model_holdout``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.algorithms.bc.torch.default_bc_torch_rl_module import DefaultBCTorchRLModule
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.policy.sample_batch import SampleBatch

from rlscale.algorithms.common.config import RlscaleConfigMixin, hidden_sizes_problem
from rlscale.algorithms.common.sampling import sample_env_steps, update_and_sync
from rlscale.algorithms.imitation.cloning import ClonesLabelledStates
from rlscale.algorithms.imitation.demonstrations import (
    DEMONSTRATION_TRANSITIONS,
    demonstrations_of,
    required,
    settings_problem,
)
from rlscale.envs import make_env
from rlscale.envs.rllib import env_name_of
from rlscale.modules.dynamics.inverse import InverseDynamicsModel

AGENT_TRANSITIONS = "agent_transitions"
INVERSE_MODEL_LOSS = "inverse_model_loss"
INVERSE_MODEL_HOLDOUT = "inverse_model_holdout"


class BCOConfig(RlscaleConfigMixin, ClonesLabelledStates, AlgorithmConfig):
    """BCO's defaults: 2,000 random steps first, then 1,000 policy steps per iteration."""

    RLSCALE_KEYS: ClassVar[tuple[str, ...]] = (
        "num_demos",
        "subsample_every",
        "dataset_dir",
        "pre_demonstration_steps",
        "post_demonstration_steps",
        "inverse_model_hidden_sizes",
        "inverse_model_updates",
        "inverse_model_lr",
        "updates_per_iteration",
    )

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or BCO)
        self.num_demos: int | None = None
        """Demonstration budget: the dataset's first ``num_demos`` episodes (None: all)."""
        self.subsample_every = 1
        self.dataset_dir: str | None = None
        """The demonstrations' Minari ``data`` folder (set by ``--dataset``, checked first)."""
        self.pre_demonstration_steps = 2_000
        """Random-action env steps of the first iteration (the paper's ``|I_pre|``)."""
        self.post_demonstration_steps = 1_000
        """Env steps of the current policy in each later iteration (``alpha |I_pre|``)."""
        self.inverse_model_hidden_sizes = [64, 64]
        self.inverse_model_updates = 1_000
        self.inverse_model_lr = 1e-3
        self.updates_per_iteration = 500
        """Behaviour-cloning minibatches per iteration."""
        self.minibatch_size = 256
        self.lr = 1e-3
        self.hidden_sizes = [64, 64]
        self.activation = "relu"
        # Rollouts run in the driver unless the user asks for EnvRunner actors; episodes run
        # on across iterations.
        self.num_env_runners = 0
        # Actions in the env's own units, as the first iteration's random ones are recorded:
        # the inverse model learns from both and labels in those units.
        self.normalize_actions = False
        self.clip_actions = True

    def get_default_rl_module_spec(self) -> RLModuleSpec:
        return RLModuleSpec(module_class=DefaultBCTorchRLModule)

    def validate(self) -> None:
        super().validate()
        problem = settings_problem(self)
        if problem:
            self._value_error(problem)
        problem = hidden_sizes_problem(self.inverse_model_hidden_sizes)
        if problem:
            self._value_error(f"inverse_model_{problem}")
        for key in (
            "pre_demonstration_steps",
            "post_demonstration_steps",
            "inverse_model_updates",
            "updates_per_iteration",
            "minibatch_size",
        ):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                self._value_error(f"{key} must be a positive integer, got {value!r}")
        if not isinstance(self.inverse_model_lr, int | float) or not self.inverse_model_lr > 0:
            self._value_error(f"inverse_model_lr must be positive, got {self.inverse_model_lr!r}")


class AgentTransitions:
    """The agent's own ``(s, a, s')``, grown in place (BCO keeps all of them)."""

    def __init__(self) -> None:
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def __len__(self) -> int:
        return sum(len(part[0]) for part in self.parts)

    def add_episodes(self, episodes) -> None:
        for episode in episodes:
            steps = len(episode)
            if steps == 0:
                continue
            observations = np.asarray(episode.get_observations(), dtype=np.float32)
            observations = observations.reshape(steps + 1, -1)
            actions = np.asarray(episode.get_actions())
            self.parts.append((observations[:-1], actions, observations[1:]))

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return tuple(np.concatenate([part[i] for part in self.parts]) for i in range(3))


class BCO(Algorithm):
    """Act (at random first), fit the inverse model, label the demonstrations, clone them."""

    @classmethod
    def get_default_config(cls) -> BCOConfig:
        return BCOConfig()

    def setup(self, config) -> None:
        super().setup(config)
        self._rng = np.random.default_rng(self.config.seed)
        self.transitions = AgentTransitions()
        self.demonstrations = demonstrations_of(self.config)
        env = make_env(env_name_of(self.config.env), dict(self.config.env_config or {}))
        observation_dim = int(np.prod(env.observation_space.shape))
        action_space = env.action_space
        env.close()
        torch.manual_seed(self.config.seed or 0)
        self.inverse_model = InverseDynamicsModel(
            observation_dim, action_space, self.config.inverse_model_hidden_sizes
        )
        self._inverse_optimizer = torch.optim.Adam(
            self.inverse_model.parameters(), lr=self.config.inverse_model_lr
        )

    def training_step(self) -> None:
        demonstrations = required(self.demonstrations, "bco")
        first = len(self.transitions) == 0
        steps = (
            self.config.pre_demonstration_steps if first else self.config.post_demonstration_steps
        )
        self.transitions.add_episodes(sample_env_steps(self, steps, random_actions=first))
        self._fit_inverse_model()
        self._clone(self._inferred_actions())
        self.metrics.log_value(AGENT_TRANSITIONS, len(self.transitions), window=1)
        self.metrics.log_value(DEMONSTRATION_TRANSITIONS, len(demonstrations), window=1)

    def _fit_inverse_model(self) -> None:
        states, actions, next_states = self.transitions.arrays()
        fit = self.inverse_model.fit(
            states,
            actions,
            next_states,
            updates=self.config.inverse_model_updates,
            batch_size=self.config.minibatch_size,
            optimizer=self._inverse_optimizer,
            rng=self._rng,
        )
        self.metrics.log_value(INVERSE_MODEL_LOSS, fit.loss, window=1)
        if fit.holdout is not None:
            self.metrics.log_value(INVERSE_MODEL_HOLDOUT, fit.holdout, window=1)

    def _inferred_actions(self) -> np.ndarray:
        demonstrations = self.demonstrations
        actions = self.inverse_model.predict(
            torch.as_tensor(demonstrations.observations),
            torch.as_tensor(demonstrations.next_observations),
        )
        return actions.numpy()

    def _clone(self, inferred_actions: np.ndarray) -> None:
        batch_size = self.config.minibatch_size
        rows = self._rng.integers(
            len(inferred_actions), size=self.config.updates_per_iteration * batch_size
        )
        batch = SampleBatch(
            {
                Columns.OBS: self.demonstrations.observations[rows],
                Columns.ACTIONS: inferred_actions[rows],
            }
        )
        update_and_sync(self, batch, batch_size)

    def get_state(self, components=None, *, not_components=None, **kwargs) -> dict[str, Any]:
        state = super().get_state(components, not_components=not_components, **kwargs)
        if self._check_component("bco", components, not_components):
            state["bco"] = {
                "inverse_model": self.inverse_model.state_dict(),
                "transitions": self.transitions.parts,
            }
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        saved = state.get("bco")
        if saved is not None:
            self.inverse_model.load_state_dict(saved["inverse_model"])
            self.transitions.parts = saved["transitions"]
