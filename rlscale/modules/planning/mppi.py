"""Model predictive path integral control (MPPI) as a trajectory planner, batched over starts.

MPPI (Williams, Aldrich & Theodorou 2016, "Aggressive Driving with Model Predictive Path
Integral Control", ICRA, https://doi.org/10.1109/ICRA.2016.7487277; Williams, Wagener, Goldfain,
Drews, Rehg, Boots & Theodorou 2017, "Information Theoretic MPC for Model-Based Reinforcement
Learning", ICRA, https://doi.org/10.1109/ICRA.2017.7989202, Algorithm 2) improves a nominal
action sequence ``u [H, m]`` by an exponentially weighted average of random perturbations:

    eps_k ~ N(0, Sigma),  Sigma = noise_std^2 I,                          k = 1 .. samples
    v_k = clip(u + eps_k, low, high),   eps_k <- v_k - u   (the perturbation actually applied)
    S_k = cost of v_k rolled out through the model (mean over particles, see sampling.py)
          + gamma sum_t u_t^T Sigma^-1 eps_k,t                     (gamma = control_cost_weight)
    w_k = exp(-(S_k - min_j S_j) / lambda) / sum_j exp(-(S_j - min_j S_j) / lambda)
    u  <- u + sum_k w_k eps_k

``lambda`` is the temperature: small values follow the best samples, large ones average more
widely. Subtracting ``min S`` before exponentiating changes nothing but the numerics. Since the
applied perturbations are those after clipping, the update is the convex combination
``sum_k w_k v_k`` of in-box sequences, so the plan stays in the box.

The paper's cost has the term ``gamma u^T Sigma^-1 eps`` (with ``gamma = lambda``), which comes
from the quadratic control cost ``lambda / 2 v^T Sigma^-1 v`` its derivation assumes. The stage
costs here already charge the actions, so the default ``control_cost_weight`` is 0 (the given
cost alone); set it to ``temperature`` for the paper's objective. The paper's Savitzky-Golay
smoothing of ``u`` is not applied.

Receding-horizon control runs one iteration per step (the paper's setting), warm-started by the
shifted previous plan; ``MPCController(cold_start_rounds=...)`` adds rounds on the first step.
Without ``initial_actions`` the nominal starts at the box's center.

``PlanResult.states`` and ``cost`` are the updated nominal rolled out through the model's mean
prediction; ``converged`` is False only for start states that got no plan (every candidate's
cost was non-finite in every iteration; their cost is NaN and their nominal is unchanged).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rlscale.modules.planning.base import PlanResult
from rlscale.modules.planning.sampling import (
    ActionBox,
    Propagation,
    SamplingPlanner,
    initial_plan,
    require_particles,
    require_positive,
    require_positive_int,
    standard_normal,
)


@dataclass(frozen=True)
class MPPISettings:
    """MPPI's knobs, with their defaults in this one place.

    - ``samples``: perturbed sequences per iteration and start state;
    - ``iterations``: updates of the nominal per call (one per control step in the papers);
    - ``temperature``: ``lambda`` of the weights, in the cost's units;
    - ``noise_std``: deviation of the perturbations, the same in every action dimension;
    - ``control_cost_weight``: ``gamma`` of the information-theoretic control cost term
      (0: none; ``temperature``: Williams et al. 2017's Algorithm 2);
    - ``particles``, ``propagation``: PETS trajectory sampling through an ensemble
      (``"expectation"``, ``"ts1"`` or ``"tsinf"``; see ``rlscale.modules.planning.sampling``).
      Ignored (one mean rollout per candidate) for models that are not ensembles.
    """

    samples: int = 500
    iterations: int = 1
    temperature: float = 1.0
    noise_std: float = 1.0
    control_cost_weight: float = 0.0
    particles: int = 20
    propagation: Propagation = "tsinf"

    def __post_init__(self) -> None:
        require_positive_int("samples", self.samples)
        require_positive_int("iterations", self.iterations)
        require_positive("temperature", self.temperature)
        require_positive("noise_std", self.noise_std)
        if not (
            isinstance(self.control_cost_weight, int | float) and self.control_cost_weight >= 0
        ):
            raise ValueError(
                f"control_cost_weight must be a number >= 0, got {self.control_cost_weight!r}"
            )
        require_particles(self.particles, self.propagation)


class MPPIPlanner(SamplingPlanner):
    """MPPI over action sequences, a ``Planner`` for ``MPCController`` (see ``SamplingPlanner``)."""

    settings_class = MPPISettings

    def __call__(self, state: Tensor, initial_actions: Tensor | None = None) -> PlanResult:
        """Plan ``horizon`` actions for each start state of ``state [batch, state_dim]``."""
        with torch.no_grad():
            box = self.box.like(state)
            nominal = initial_plan(state, self.horizon, box, initial_actions)
            planned = torch.zeros_like(state[:, 0], dtype=torch.bool)
            for _ in range(self.settings.iterations):
                nominal, updated = self._update(state, nominal, box)
                planned |= updated
            return self.rollout.result(state, nominal, ~planned, self.settings.iterations)

    def _update(self, state: Tensor, nominal: Tensor, box: ActionBox) -> tuple[Tensor, Tensor]:
        """One MPPI step: the new nominal ``[B, H, m]``, and which rows had a finite candidate
        (the others keep their nominal)."""
        batch, horizon, action_dim = nominal.shape
        shape = (batch, self.settings.samples, horizon, action_dim)
        noise = self.settings.noise_std * standard_normal(shape, nominal, self.rollout.generator)
        candidates = box.clip(nominal[:, None] + noise)
        noise = candidates - nominal[:, None]
        costs = self.rollout.evaluate(state, candidates).costs  # [B, K], +inf where diverged
        if self.settings.control_cost_weight > 0:
            inverse_variance = 1.0 / self.settings.noise_std**2
            control_term = (nominal[:, None] * noise).sum(dim=(2, 3)) * inverse_variance
            costs = costs + self.settings.control_cost_weight * control_term
        weights, finite = _weights(costs, self.settings.temperature)
        step = (weights[:, :, None, None] * noise).sum(dim=1)
        return box.clip(nominal + step), finite


def _weights(costs: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
    """Normalized ``exp(-(S - min S) / lambda)`` per row ``[B, K]`` (zero for infinite costs;
    all zero in rows without a finite cost), and which rows have one ``[B]``."""
    finite = torch.isfinite(costs).any(dim=1)
    lowest = costs.min(dim=1, keepdim=True).values
    shifted = torch.where(finite[:, None], costs - lowest, torch.full_like(costs, float("inf")))
    weights = torch.exp(-shifted / temperature)
    return weights / weights.sum(dim=1, keepdim=True).clamp(min=1.0), finite
