"""What Q-learning and SARSA share: the config base, the TD Learner and the training step.

Both learn a table Q(s, a) (:class:`rlscale.modules.rl_modules.tabular_q.TabularQModule`) by
the one-step temporal-difference update (Sutton & Barto, "Reinforcement Learning: An
Introduction", 2nd ed. 2018, ch. 6)::

    Q(s, a) ← Q(s, a) + α (r + γ V(s') - Q(s, a))        V(s') = 0 where the episode terminated

and differ only in the bootstrap value V(s') (the config's ``td_target()``; see
:func:`next_state_values`). Acting is ε-greedy, ε falling linearly in the env steps sampled.

The Learner does this update by SGD: the gradient of ``½ (target - Q(s,a))²`` with respect to
the table entry ``Q(s,a)`` is ``-(target - Q(s,a))``, so one SGD step with learning rate α on
the summed loss is the update above for every transition in the batch. Targets are computed
from the table before the step and carry no gradient.

A batch from vectorized envs can hold the same (s, a) pair k times; summing k updates at once
moves ``Q(s,a)`` by ``k·α`` times the mean TD error, which overshoots (and diverges for
``k·α > 2``). With ``sequential_duplicates`` (the default) each of the k transitions is
weighted by ``(1 - (1-α)^k) / (k·α)``, which makes the step exactly that of k sequential updates
towards their mean target. A pair seen once has weight 1: the plain summed loss.

Config: ``lr`` is the step size α (a number, or an RLlib schedule ``[[env_step, α], ...]``,
interpolated linearly); ε falls linearly from ``epsilon_start`` to ``epsilon_end`` over
``epsilon_decay_steps`` env steps; ``initial_q`` fills the table. Each update uses
``num_envs_per_env_runner × rollout_fragment_length`` transitions per EnvRunner; one
``train()`` iteration runs updates until ``min_sample_timesteps_per_iteration`` env steps were
sampled.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.torch.torch_learner import TorchLearner
from ray.rllib.core.rl_module.rl_module import DEFAULT_MODULE_ID, RLModuleSpec
from ray.rllib.policy.sample_batch import MultiAgentBatch, SampleBatch
from ray.rllib.utils.metrics import (
    ENV_RUNNER_RESULTS,
    LEARNER_RESULTS,
    LEARNER_UPDATE_TIMER,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    SYNCH_WORKER_WEIGHTS_TIMER,
    TIMERS,
)

from rlscale.algorithms.common.config import RlscaleConfigMixin
from rlscale.algorithms.common.sampling import sample_env_steps
from rlscale.algorithms.tabular.transitions import (
    HAS_NEXT_ACTION,
    NEXT_ACTIONS,
    TransitionBuilder,
)
from rlscale.modules.rl_modules.tabular_q import (
    NEXT_Q_VALUES,
    Q_VALUES,
    TabularQModule,
    epsilon_greedy_probabilities,
)

MAX_TARGET = "max"
NEXT_ACTION_TARGET = "next_action"
EXPECTED_TARGET = "expected"
TD_TARGETS = (MAX_TARGET, NEXT_ACTION_TARGET, EXPECTED_TARGET)


class TabularConfig(RlscaleConfigMixin, AlgorithmConfig):
    """Shared defaults of the tabular TD algorithms; subclasses choose the TD target."""

    RLSCALE_KEYS: ClassVar[tuple[str, ...]] = (
        "epsilon_start",
        "epsilon_end",
        "epsilon_decay_steps",
        "initial_q",
        "sequential_duplicates",
    )

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class)
        # Sampling: one process stepping a few vectorized envs; small batches keep TD online.
        self.num_env_runners = 0
        self.num_envs_per_env_runner = 16
        self.rollout_fragment_length = 4
        self.min_sample_timesteps_per_iteration = 2_000
        # Discrete actions need no unsquashing or clipping; skipping RLlib's per-env-step pass
        # over the actions (a deep copy and a tree map) saves ~15% of the sampling time.
        self.normalize_actions = False
        self.clip_actions = False
        # TD learning.
        self.gamma = 0.99
        self.lr = 0.1
        self.epsilon_start = 1.0
        self.epsilon_end = 0.05
        self.epsilon_decay_steps = 20_000
        self.initial_q = 0.0
        self.sequential_duplicates = True
        # No gradient clipping: the step must be exactly α times the TD error.
        self.grad_clip = None

    def td_target(self) -> str:
        """Which bootstrap value the learner uses: ``max``, ``next_action`` or ``expected``."""
        raise NotImplementedError

    def get_default_rl_module_spec(self) -> RLModuleSpec:
        return RLModuleSpec(module_class=TabularQModule)

    def get_default_learner_class(self) -> type[TabularTDLearner]:
        return TabularTDLearner

    @property
    def _model_config_auto_includes(self) -> dict[str, Any]:
        return super()._model_config_auto_includes | {
            "epsilon_start": self.epsilon_start,
            "epsilon_end": self.epsilon_end,
            "epsilon_decay_steps": self.epsilon_decay_steps,
            "initial_q": self.initial_q,
        }

    def validate(self) -> None:
        super().validate()
        if not 0.0 <= self.gamma <= 1.0:
            self._value_error(f"gamma must lie in [0, 1], got {self.gamma}")
        for name in ("epsilon_start", "epsilon_end"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                self._value_error(f"{name} must lie in [0, 1], got {value}")
        if self.epsilon_decay_steps < 0:
            self._value_error(f"epsilon_decay_steps must be >= 0, got {self.epsilon_decay_steps}")


class TabularTD(Algorithm):
    """On-policy sampling and one SGD (= tabular TD) step per sampled batch."""

    config: TabularConfig

    def setup(self, config: TabularConfig) -> None:
        super().setup(config)
        self._transitions = TransitionBuilder(
            needs_next_action=config.td_target() == NEXT_ACTION_TARGET
        )

    def training_step(self) -> None:
        episodes = sample_env_steps(self)
        columns = self._transitions(episodes)
        num_transitions = len(columns[Columns.OBS])
        if num_transitions == 0:
            return
        batch = MultiAgentBatch(
            {DEFAULT_MODULE_ID: SampleBatch(columns)}, env_steps=num_transitions
        )
        with self.metrics.log_time((TIMERS, LEARNER_UPDATE_TIMER)):
            env_steps = self.metrics.peek((ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME))
            learner_results = self.learner_group.update(
                batch=batch, timesteps={NUM_ENV_STEPS_SAMPLED_LIFETIME: env_steps}
            )
        self.metrics.aggregate(learner_results, key=LEARNER_RESULTS)
        with self.metrics.log_time((TIMERS, SYNCH_WORKER_WEIGHTS_TIMER)):
            self.env_runner_group.sync_weights(
                from_worker_or_learner_group=self.learner_group, inference_only=True
            )


def next_state_values(
    kind: str,
    next_q: torch.Tensor,
    epsilon: float,
    next_actions: torch.Tensor | None = None,
    has_next_action: torch.Tensor | None = None,
) -> torch.Tensor:
    """The bootstrap value of s' for each TD target kind.

    ``max``: max_a Q(s',a) (Q-learning). ``expected``: Σ_a π_ε(a|s') Q(s',a) (expected SARSA).
    ``next_action``: Q(s',a') with a' the action taken next (SARSA); where no next action
    exists (a truncated episode) the on-policy expectation stands in for it.
    """
    if kind == MAX_TARGET:
        return next_q.amax(dim=-1)
    expected = (epsilon_greedy_probabilities(next_q, epsilon) * next_q).sum(dim=-1)
    if kind == EXPECTED_TARGET:
        return expected
    if kind == NEXT_ACTION_TARGET:
        safe_actions = torch.where(has_next_action, next_actions, torch.zeros_like(next_actions))
        taken = next_q.gather(-1, safe_actions.long().unsqueeze(-1)).squeeze(-1)
        return torch.where(has_next_action, taken, expected)
    raise ValueError(f"unknown TD target {kind!r}; expected one of {TD_TARGETS}")


def sequential_duplicate_weights(
    observations: torch.Tensor, actions: torch.Tensor, n_actions: int, alpha: float
) -> torch.Tensor:
    """Per-transition weights that turn k summed updates of one pair into k sequential ones."""
    pairs = observations.long() * n_actions + actions.long()
    _, inverse, counts = torch.unique(pairs, return_inverse=True, return_counts=True)
    k = counts[inverse].to(torch.float32)
    if alpha <= 0:
        return torch.ones_like(k)
    return (1.0 - (1.0 - alpha) ** k) / (k * alpha)


class TabularTDLearner(TorchLearner):
    """One SGD step per batch on the summed squared TD error; the config picks the target."""

    def build(self) -> None:
        super().build()
        self._env_steps_sampled = 0

    def configure_optimizers_for_module(self, module_id: str, config: Any = None) -> None:
        params = self.get_parameters(self._module[module_id])
        self.register_optimizer(
            module_id=module_id,
            optimizer=torch.optim.SGD(params, lr=0.0),
            params=params,
            lr_or_lr_schedule=config.lr,
        )

    def before_gradient_based_update(self, *, timesteps: dict[str, Any]) -> None:
        super().before_gradient_based_update(timesteps=timesteps)
        self._env_steps_sampled = int(timesteps.get(NUM_ENV_STEPS_SAMPLED_LIFETIME) or 0)

    def alpha(self, module_id: str) -> float:
        """The current step size: the optimizer's learning rate (constant or scheduled)."""
        return float(self.get_optimizer(module_id).param_groups[0]["lr"])

    def compute_loss_for_module(
        self, *, module_id: str, config: Any, batch: dict[str, Any], fwd_out: dict[str, Any]
    ) -> torch.Tensor:
        module = self.module[module_id].unwrapped()
        actions = batch[Columns.ACTIONS].long() - module.action_start
        q_taken = fwd_out[Q_VALUES].gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        targets = self.td_targets(module, config, batch, fwd_out[NEXT_Q_VALUES])
        td_errors = targets - q_taken
        squared = 0.5 * td_errors.pow(2)
        if config.sequential_duplicates:
            observations = batch[Columns.OBS].long() - module.obs_start
            squared = squared * sequential_duplicate_weights(
                observations, actions, int(module.action_space.n), self.alpha(module_id)
            )
        self.metrics.log_value((module_id, "td_error_abs_mean"), td_errors.abs().mean().item())
        return squared.sum()

    def td_targets(
        self, module: Any, config: Any, batch: dict[str, Any], next_q: torch.Tensor
    ) -> torch.Tensor:
        """r + γ V(s'), with V(s') = 0 where the episode terminated (not where it was cut)."""
        next_actions = batch.get(NEXT_ACTIONS)
        if next_actions is not None:
            next_actions = next_actions.long() - module.action_start
        has_next = batch.get(HAS_NEXT_ACTION)
        epsilon = module.epsilon_schedule.value(self._env_steps_sampled)
        values = next_state_values(config.td_target(), next_q, epsilon, next_actions, has_next)
        not_terminated = 1.0 - batch[Columns.TERMINATEDS].float()
        return (batch[Columns.REWARDS].float() + config.gamma * not_terminated * values).detach()
