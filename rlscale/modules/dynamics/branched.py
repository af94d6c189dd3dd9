"""MBPO's branched rollouts: short model rollouts of the current policy from real states.

Janner, Fu, Zhang & Levine 2019, "When to Trust Your Model: Model-Based Policy Optimization",
https://arxiv.org/abs/1906.08253, Algorithm 2 and Sec. 4: from states drawn from the real data,
roll the policy out for ``horizon`` steps through the learned ensemble; at each step every row
takes its next state and reward from one member drawn uniformly among the elites (a new draw
every step), sampled from that member's Gaussian. A row whose predicted next observation ends
the episode (the env's known termination rule) stops there; the others go on. Short branches
keep the model's compounding error small while still covering the states the policy reaches.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from rlscale.modules.dynamics.ensemble import ProbabilisticEnsemble
from rlscale.modules.dynamics.terminations import TerminationRule

Policy = Callable[[Tensor], Tensor]
"""observations ``[rows, obs_dim]`` -> actions ``[rows, action_dim]`` (sampled, as it explores)."""

ROLLOUT_COLUMNS = ("obs", "actions", "rewards", "next_obs", "terminateds")


@torch.no_grad()
def branched_rollouts(
    ensemble: ProbabilisticEnsemble,
    policy: Policy,
    start_states: Tensor,
    horizon: int,
    terminated: TerminationRule,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """Every model transition of ``horizon``-step rollouts from ``start_states [rows, n]``.

    Returns the columns of :data:`ROLLOUT_COLUMNS`, each ``[transitions, ...]`` with the
    transitions of step 0 first: ``rewards`` ``[transitions]``, ``terminateds`` bool. The
    ensemble must have a reward head; the elites set on it are the members drawn from.
    """
    if horizon < 1:
        raise ValueError(f"a rollout needs a horizon of at least 1 step, got {horizon}")
    if start_states.shape[0] == 0:
        raise ValueError("branched rollouts need at least one start state")
    if not ensemble.has_reward_head:
        raise ValueError("branched rollouts need an ensemble with a reward head (predict_reward)")
    steps: dict[str, list[Tensor]] = {column: [] for column in ROLLOUT_COLUMNS}
    state = start_states
    for _ in range(horizon):
        if state.shape[0] == 0:
            break
        action = policy(state)
        member = ensemble.draw_members(state.shape[0], generator)
        next_state_dist, reward_dist = ensemble.predict_member_with_reward(state, action, member)
        next_state = _sample(next_state_dist, generator)
        reward = _sample(reward_dist, generator)
        done = terminated(next_state)
        for column, value in zip(
            ROLLOUT_COLUMNS, (state, action, reward, next_state, done), strict=True
        ):
            steps[column].append(value)
        state = next_state[~done]
    return {column: torch.cat(values) for column, values in steps.items()}


def _sample(distribution: torch.distributions.Normal, generator: torch.Generator | None) -> Tensor:
    """One draw from a Gaussian, through ``generator`` (``Normal.sample`` takes none)."""
    noise = torch.randn(
        distribution.mean.shape,
        generator=generator,
        dtype=distribution.mean.dtype,
        device=generator.device if generator is not None else distribution.mean.device,
    ).to(distribution.mean.device)
    return distribution.mean + distribution.stddev * noise
