"""What the sampling planners (CEM, MPPI) share: the action box, candidate rollouts with PETS
particles, and the checks on their settings.

A sampling planner scores ``K`` candidate action sequences per start state. All ``B x K``
candidates (times ``P`` particles) go through the model as one batch, one model call per time
step, so the cost of a plan is ``H`` batched model calls whatever ``K`` is.

**Particles** follow Chua, Calandra, McAllister & Levine 2018, "Deep Reinforcement Learning in
a Handful of Trials using Probabilistic Dynamics Models" (PETS, https://arxiv.org/abs/1805.12114,
Sec. 5, "trajectory sampling"). When the model is an ``EnsembleDynamicsModel``, each candidate
is rolled out by ``P`` particles; particle ``p`` steps with member ``b(p, t)`` of the ensemble and
its next state is a *sample* of that member's predicted distribution. The paper's two schemes:

- ``"ts1"`` (TS1): "particles uniformly re-sampling a bootstrap per time step": a fresh random
  member for every particle at every step;
- ``"tsinf"`` (TS-infinity): "particle bootstraps never changing": each particle draws its
  member once and keeps it over the whole horizon (so the spread between particles separates
  the members' disagreement, the epistemic part, from each member's own noise).

A candidate's cost is the mean of its particles' costs (PETS's expected-cost objective). With
``"expectation"``, or with a model that is not an ensemble, each candidate is rolled out once
through the model's mean prediction (``predicted_next_state``), as the gradient planners do.

**Non-finite costs**: a candidate whose rollout diverges (a NaN or infinite cost, from any of
its particles) counts as infinitely costly: it is never an elite of CEM and gets zero weight in
MPPI. A start state all of whose candidates diverge has no plan; the planner returns cost NaN
for it, which ``MPCController`` answers by falling back to its previous plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from rlscale.modules.dynamics.base import DynamicsModel, EnsembleDynamicsModel
from rlscale.modules.planning.base import PlanResult, StageCost, TerminalCost
from rlscale.modules.planning.rollout import Trajectory, costed, rollout

Propagation = Literal["expectation", "ts1", "tsinf"]
PROPAGATIONS: tuple[Propagation, ...] = ("expectation", "ts1", "tsinf")


# ----------------------------------------------------------------------------- settings checks


def require_positive_int(name: str, value: int) -> None:
    """``ValueError`` unless ``value`` is an int of at least 1 (bools are not counts)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def require_positive(name: str, value: float) -> None:
    """``ValueError`` unless ``value`` is a finite number above 0."""
    if not (isinstance(value, int | float) and 0 < value < float("inf")):
        raise ValueError(f"{name} must be a finite number above 0, got {value!r}")


def require_particles(particles: int, propagation: str) -> None:
    """The particle settings both planners share."""
    require_positive_int("particles", particles)
    if propagation not in PROPAGATIONS:
        raise ValueError(f"propagation must be one of {PROPAGATIONS}, got {propagation!r}")


# ----------------------------------------------------------------------------- the action box


@dataclass(frozen=True)
class ActionBox:
    """The box ``[low, high]`` (``[action_dim]`` each) that sampled actions are clipped into."""

    low: Tensor
    high: Tensor

    @property
    def action_dim(self) -> int:
        return self.low.shape[0]

    @property
    def width(self) -> Tensor:
        return self.high - self.low

    @property
    def center(self) -> Tensor:
        return (self.low + self.high) / 2

    def like(self, tensor: Tensor) -> ActionBox:
        """The box in ``tensor``'s dtype and on its device (cast first: some devices lack
        float64)."""
        return ActionBox(
            self.low.to(dtype=tensor.dtype).to(device=tensor.device),
            self.high.to(dtype=tensor.dtype).to(device=tensor.device),
        )

    def clip(self, actions: Tensor) -> Tensor:
        return torch.clamp(actions, min=self.low, max=self.high)


def action_box(
    action_low: Tensor | float | None,
    action_high: Tensor | float | None,
    action_dim: int | None,
    planner: str,
) -> ActionBox:
    """Checked bounds as ``[action_dim]`` tensors: both given, shaped alike, ``low < high``."""
    if action_low is None or action_high is None:
        raise ValueError(
            f"{planner} needs both action_low and action_high (it samples actions inside the "
            f"box); got action_low={action_low!r}, action_high={action_high!r}"
        )
    # Kept in float64 and cast to the states' dtype when planning, so that a bound given as a
    # Python float is exactly the bound a float64 state sees.
    low = torch.as_tensor(action_low, dtype=torch.float64)
    high = torch.as_tensor(action_high, dtype=torch.float64)
    dim = _action_dim(low, high, action_dim)
    low, high = low.expand(dim).clone(), high.expand(dim).clone()
    if not bool((torch.isfinite(low) & torch.isfinite(high)).all()):
        raise ValueError(
            f"{planner} needs finite action bounds (it samples around the box's center with a "
            f"spread set by its width); got action_low={low.tolist()}, "
            f"action_high={high.tolist()}"
        )
    if not bool((low < high).all()):
        raise ValueError(
            f"{planner} needs action_low < action_high in every dimension; got "
            f"action_low={low.tolist()}, action_high={high.tolist()}"
        )
    return ActionBox(low, high)


def _action_dim(low: Tensor, high: Tensor, action_dim: int | None) -> int:
    for bound, name in ((low, "action_low"), (high, "action_high")):
        if bound.dim() > 1:
            raise ValueError(
                f"{name} must be a number or [action_dim] tensor, got shape {tuple(bound.shape)}"
            )
    vector_dims = {bound.shape[0] for bound in (low, high) if bound.dim() == 1}
    if action_dim is not None:
        require_positive_int("action_dim", action_dim)
        vector_dims.add(action_dim)
    if len(vector_dims) > 1:
        raise ValueError(
            f"action_low, action_high and action_dim disagree on the action size: {vector_dims}"
        )
    if not vector_dims:
        raise ValueError("give action_dim, or the bounds as [action_dim] tensors")
    return vector_dims.pop()


def initial_plan(
    state: Tensor, horizon: int, box: ActionBox, initial_actions: Tensor | None
) -> Tensor:
    """The starting sequences ``[B, H, m]``: ``initial_actions`` clipped into the box, or the box's
    center. Also checks ``state``."""
    if state.dim() != 2 or not state.is_floating_point():
        raise ValueError(
            "state must be a floating-point [batch, state_dim] tensor (use state[None] for one "
            f"start state); got shape {tuple(state.shape)}, dtype {state.dtype}"
        )
    expected = (state.shape[0], horizon, box.action_dim)
    if initial_actions is None:
        return box.center.expand(expected).clone()
    if tuple(initial_actions.shape) != expected:
        raise ValueError(
            f"initial_actions must be [batch, horizon, action_dim] = {list(expected)}; "
            f"got {list(initial_actions.shape)}"
        )
    return box.clip(initial_actions.to(dtype=state.dtype, device=state.device))


def standard_normal(shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None):
    """``N(0, 1)`` noise in ``like``'s dtype and device, drawn from ``generator`` if given."""
    return torch.randn(shape, generator=generator, dtype=like.dtype, device=like.device)


# ----------------------------------------------------------------------------- candidate costs


@dataclass(frozen=True)
class CandidateRollout:
    """How candidates are rolled out: the model, costs, and the PETS particle scheme."""

    dynamics: DynamicsModel
    cost: StageCost
    terminal_cost: TerminalCost | None
    propagation: Propagation
    particles: int
    generator: torch.Generator | None

    @property
    def uses_particles(self) -> bool:
        return self.propagation != "expectation" and isinstance(
            self.dynamics, EnsembleDynamicsModel
        )

    def evaluate(self, state: Tensor, candidates: Tensor) -> ScoredCandidates:
        """Score candidates ``[B, K, H, m]`` from ``state [B, n]``, all in one batched rollout."""
        batch, count = candidates.shape[:2]
        per_candidate = self.particles if self.uses_particles else 1
        starts = state.repeat_interleave(count * per_candidate, dim=0)
        actions = candidates.flatten(0, 1)  # rows ordered start, candidate, particle
        if per_candidate > 1:
            actions = actions.repeat_interleave(per_candidate, dim=0)
        if self.uses_particles:
            states = particle_states(
                starts, actions, self.dynamics, self.propagation, self.generator
            )
            total = costed(states, actions, self.cost, self.terminal_cost).cost
            mean_states = None  # the particles' states are samples, not the mean trajectory
        else:
            trajectory = rollout(starts, actions, self.dynamics, self.cost, self.terminal_cost)
            total = trajectory.cost
            mean_states = trajectory.states.reshape(batch, count, *trajectory.states.shape[1:])
        total = torch.where(torch.isfinite(total), total, torch.full_like(total, float("inf")))
        # Any diverging particle makes the mean, and so the candidate, infinitely costly.
        costs = total.reshape(batch, count, -1).mean(dim=-1)
        return ScoredCandidates(costs, mean_states)

    def result(
        self,
        state: Tensor,
        actions: Tensor,
        no_plan: Tensor,
        iterations: int,
        known: Trajectory | None = None,
    ) -> PlanResult:
        """The plan ``actions`` with its trajectory through the model's mean prediction (``known``
        when the candidate rollout already computed it, else rolled out here); cost NaN for the
        rows in ``no_plan`` (every candidate diverged)."""
        trajectory = known
        if trajectory is None:
            trajectory = rollout(state, actions, self.dynamics, self.cost, self.terminal_cost)
        nan = torch.full_like(trajectory.cost, float("nan"))
        return PlanResult(
            actions=actions,
            states=trajectory.states,
            cost=torch.where(no_plan, nan, trajectory.cost),
            iterations=iterations,
            converged=~no_plan,
        )


@dataclass(frozen=True)
class ScoredCandidates:
    """Candidates' costs ``[B, K]`` (``+inf`` where they diverged) and, when they were rolled out
    through the model's mean prediction, their states ``[B, K, H + 1, n]`` (else None)."""

    costs: Tensor
    mean_states: Tensor | None


def particle_states(
    state: Tensor,
    actions: Tensor,
    dynamics: EnsembleDynamicsModel,
    propagation: Propagation,
    generator: torch.Generator | None,
) -> Tensor:
    """PETS trajectory sampling: one particle per row of ``state [R, n]`` under ``actions
    [R, H, m]``; returns the sampled states ``[R, H + 1, n]``.

    ``"tsinf"`` draws each particle's ensemble member once, ``"ts1"`` at every step. A next
    state is ``mean + stddev * noise`` of the member's predicted distribution, with the noise
    drawn from ``generator`` (so a seeded generator reproduces the rollout).
    """
    rows, horizon = actions.shape[:2]

    def draw_members() -> Tensor:
        return torch.randint(dynamics.members, (rows,), generator=generator, device=state.device)

    member = draw_members()
    states = [state]
    for t in range(horizon):
        if propagation == "ts1" and t > 0:
            member = draw_members()
        prediction = dynamics.predict_member(states[-1], actions[:, t], member)
        mean, stddev = prediction.mean, prediction.stddev
        if mean.shape != state.shape:
            raise ValueError(
                "dynamics.predict_member must predict next states shaped like the states "
                f"{tuple(state.shape)}; got {tuple(mean.shape)}"
            )
        states.append(mean + stddev * standard_normal(tuple(mean.shape), mean, generator))
    return torch.stack(states, dim=1)


class SamplingPlanner:
    """What CEM and MPPI share: the model, cost and horizon, the action box, the settings and
    the candidate rollouts. ``action_low`` / ``action_high`` are required (numbers or
    ``[action_dim]`` tensors, low < high); give ``action_dim`` when both are numbers.
    ``generator`` (on the states' device) makes the sampling reproducible."""

    settings_class: ClassVar[type]
    """The subclass's settings dataclass (``CEMSettings``, ``MPPISettings``)."""

    def __init__(
        self,
        dynamics: DynamicsModel,
        cost: StageCost,
        horizon: int,
        *,
        terminal_cost: TerminalCost | None = None,
        action_low: Tensor | float | None = None,
        action_high: Tensor | float | None = None,
        action_dim: int | None = None,
        settings: Any = None,
        generator: torch.Generator | None = None,
    ):
        require_positive_int("horizon", horizon)
        self.horizon = horizon
        self.box = action_box(action_low, action_high, action_dim, type(self).__name__)
        self.settings = settings or self.settings_class()
        self.rollout = CandidateRollout(
            dynamics,
            cost,
            terminal_cost,
            self.settings.propagation,
            self.settings.particles,
            generator,
        )
