"""The tabular TD Learner: plain SGD with learning rate α on ``Σ ½ (target - Q(s,a))²``.

The gradient of ``½ (target - Q(s,a))²`` with respect to the table entry ``Q(s,a)`` is
``-(target - Q(s,a))``, so one SGD step with learning rate α is the textbook tabular update
``Q(s,a) += α (target - Q(s,a))`` for every transition in the batch. Targets are computed from
the table before the step and carry no gradient.

A batch from vectorized envs can hold the same (s, a) pair k times; summing k updates at once
moves ``Q(s,a)`` by ``k·α`` times the mean TD error, which overshoots (and diverges for
``k·α > 2``). With ``sequential_duplicates`` (the default) each of the k transitions is
weighted by ``(1 - (1-α)^k) / (k·α)``, which makes the step exactly that of k sequential updates
towards their mean target. A pair seen once has weight 1: the plain summed loss.
"""

from __future__ import annotations

from typing import Any

import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.torch.torch_learner import TorchLearner
from ray.rllib.utils.metrics import NUM_ENV_STEPS_SAMPLED_LIFETIME

from rlscale.algorithms.tabular.module import (
    NEXT_Q_VALUES,
    Q_VALUES,
    epsilon_greedy_probabilities,
)

NEXT_ACTIONS = "next_actions"
"""The action actually taken in the next state (SARSA); only meaningful where HAS_NEXT_ACTION."""
HAS_NEXT_ACTION = "has_next_action"
"""False where the episode was truncated right after the transition (no next action exists)."""

MAX_TARGET = "max"
NEXT_ACTION_TARGET = "next_action"
EXPECTED_TARGET = "expected"
TD_TARGETS = (MAX_TARGET, NEXT_ACTION_TARGET, EXPECTED_TARGET)


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
