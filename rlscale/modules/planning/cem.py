"""The cross-entropy method (CEM) as a trajectory planner, batched over start states.

CEM (Rubinstein 1999, "The Cross-Entropy Method for Combinatorial and Continuous
Optimization", Methodology and Computing in Applied Probability 1(2); Botev, Kroese,
Rubinstein & L'Ecuyer 2013, "The Cross-Entropy Method for Optimization") minimizes a cost by
fitting a sampling distribution to the best samples, round after round. For model predictive
control, as in PETS (Chua, Calandra, McAllister & Levine 2018, "Deep Reinforcement Learning in a
Handful of Trials using Probabilistic Dynamics Models", https://arxiv.org/abs/1805.12114,
Sec. 5 and App.), the samples are action sequences and, for each start state, the distribution
is a diagonal Gaussian over the ``[H, m]`` sequence with mean ``mu`` and deviation ``sigma``:

    for each of `iterations` rounds:
        U_k = clip(mu + sigma * eps_k, low, high),   eps_k ~ N(0, I),  k = 1 .. population - 1
        U_0 = mu                                    (the current mean is scored too)
        J_k = cost of U_k, rolled out through the model (mean over particles, see sampling.py)
        E   = the `elites` sequences of lowest J
        mu      <- alpha mu      + (1 - alpha) mean(E)
        sigma^2 <- alpha sigma^2 + (1 - alpha) var(E)

``alpha`` smooths the refit as in PETS. ``mu`` starts at ``initial_actions`` (receding-horizon
control passes the shifted previous plan) or the box's center, and ``sigma`` at
``initial_std`` (default: half the box's width), afresh on every call, as PETS does.

**What is returned**: the lowest-cost sequence scored over all rounds (not the final mean).
Because the mean is one of the candidates, the first round scores the warm start itself, so
with a deterministic model the returned plan is never worse than the shifted previous plan.
``PlanResult.states`` and ``cost`` are that plan rolled out through the model's mean
prediction; ``converged`` is False only for start states that got no plan (every candidate's
cost was non-finite; their cost is NaN). There is no stopping tolerance: each call runs
``iterations`` rounds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rlscale.modules.planning.base import PlanResult
from rlscale.modules.planning.rollout import Trajectory
from rlscale.modules.planning.sampling import (
    ActionBox,
    Propagation,
    SamplingPlanner,
    ScoredCandidates,
    initial_plan,
    require_particles,
    require_positive,
    require_positive_int,
    standard_normal,
)


@dataclass(frozen=True)
class CEMSettings:
    """CEM's knobs, with their defaults in this one place.

    - ``population``: candidate sequences scored per round and start state (the current mean
      and ``population - 1`` samples);
    - ``elites``: how many of the best candidates the Gaussian is refitted to;
    - ``iterations``: rounds per call;
    - ``alpha``: smoothing of the refit, in ``[0, 1)`` (0 keeps none of the old mean/variance);
    - ``initial_std``: the sampling deviation at the start of each call; None for half the
      box's width, ``(action_high - action_low) / 2``;
    - ``particles``, ``propagation``: PETS trajectory sampling through an ensemble
      (``"expectation"``, ``"ts1"`` or ``"tsinf"``; see ``rlscale.modules.planning.sampling``).
      Ignored (one mean rollout per candidate) for models that are not ensembles.
    """

    population: int = 500
    elites: int = 50
    iterations: int = 5
    alpha: float = 0.1
    initial_std: float | None = None
    particles: int = 20
    propagation: Propagation = "tsinf"

    def __post_init__(self) -> None:
        require_positive_int("population", self.population)
        require_positive_int("elites", self.elites)
        if self.elites > self.population:
            raise ValueError(
                f"elites ({self.elites}) must not exceed population ({self.population})"
            )
        require_positive_int("iterations", self.iterations)
        if not 0 <= self.alpha < 1:
            raise ValueError(f"alpha must lie in [0, 1), got {self.alpha!r}")
        if self.initial_std is not None:
            require_positive("initial_std", self.initial_std)
        require_particles(self.particles, self.propagation)


class CEMPlanner(SamplingPlanner):
    """CEM over action sequences, a ``Planner`` for ``MPCController`` (see ``SamplingPlanner``)."""

    settings_class = CEMSettings

    def __call__(self, state: Tensor, initial_actions: Tensor | None = None) -> PlanResult:
        """Plan ``horizon`` actions for each start state of ``state [batch, state_dim]``."""
        with torch.no_grad():
            box = self.box.like(state)
            mean = initial_plan(state, self.horizon, box, initial_actions)
            initial_std = self.settings.initial_std
            std = box.width / 2 if initial_std is None else torch.full_like(box.width, initial_std)
            variance = (std**2).expand_as(mean).clone()
            best = _Best(mean.clone(), torch.full_like(state[:, 0], float("inf")))
            for _ in range(self.settings.iterations):
                candidates = self._candidates(mean, variance, box)
                scored = self.rollout.evaluate(state, candidates)
                best.update(candidates, scored)
                mean, variance = self._refit(mean, variance, candidates, scored.costs)
            no_plan = ~torch.isfinite(best.cost)
            return self.rollout.result(
                state, best.actions, no_plan, self.settings.iterations, best.trajectory()
            )

    def _candidates(self, mean: Tensor, variance: Tensor, box: ActionBox) -> Tensor:
        """``[B, population, H, m]``: the mean, then clipped Gaussian samples around it."""
        batch, horizon, action_dim = mean.shape
        shape = (batch, self.settings.population - 1, horizon, action_dim)
        noise = standard_normal(shape, mean, self.rollout.generator)
        samples = box.clip(mean[:, None] + variance.sqrt()[:, None] * noise)
        return torch.cat([mean[:, None], samples], dim=1)

    def _refit(
        self, mean: Tensor, variance: Tensor, candidates: Tensor, costs: Tensor
    ) -> tuple[Tensor, Tensor]:
        """The smoothed Gaussian fitted to each row's finite-cost elites (rows with none keep
        their distribution)."""
        elite_costs, elite_index = costs.topk(self.settings.elites, dim=1, largest=False)
        rows = torch.arange(costs.shape[0], device=costs.device)[:, None]
        elites = candidates[rows, elite_index]  # [B, elites, H, m]
        # A diverged candidate (cost +inf) is never an elite, even when too few are finite.
        weight = torch.isfinite(elite_costs).to(mean.dtype)
        count = weight.sum(dim=1)
        weight = (weight / count.clamp(min=1)[:, None])[:, :, None, None]
        elite_mean = (weight * elites).sum(dim=1)
        elite_variance = (weight * (elites - elite_mean[:, None]) ** 2).sum(dim=1)
        alpha = self.settings.alpha
        new_mean = alpha * mean + (1 - alpha) * elite_mean
        new_variance = alpha * variance + (1 - alpha) * elite_variance
        refitted = (count > 0)[:, None, None]
        return torch.where(refitted, new_mean, mean), torch.where(refitted, new_variance, variance)


@dataclass
class _Best:
    """The lowest-cost sequence ``[B, H, m]`` seen so far per row, its cost ``[B]`` and, when
    the candidates were rolled out through the model's mean, its states ``[B, H + 1, n]``."""

    actions: Tensor
    cost: Tensor
    states: Tensor | None = None

    def update(self, candidates: Tensor, scored: ScoredCandidates) -> None:
        round_cost, index = scored.costs.min(dim=1)
        rows = torch.arange(round_cost.shape[0], device=round_cost.device)
        better = round_cost < self.cost
        self.actions = torch.where(better[:, None, None], candidates[rows, index], self.actions)
        self.cost = torch.where(better, round_cost, self.cost)
        if scored.mean_states is not None:
            states = scored.mean_states[rows, index]
            self.states = (
                states
                if self.states is None
                else torch.where(better[:, None, None], states, self.states)
            )

    def trajectory(self) -> Trajectory | None:
        """The best plan's trajectory, if its states are known (no particles)."""
        if self.states is None:
            return None
        return Trajectory(self.states, self.actions, self.cost)
