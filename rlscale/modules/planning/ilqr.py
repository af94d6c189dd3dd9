"""iLQR and DDP: trajectory optimization by repeated local quadratic models, batched over starts.

Both methods improve a nominal action sequence ``u_0 .. u_{H-1}`` by a backward pass that builds
a quadratic model of the cost-to-go around the nominal trajectory and a forward pass that rolls
the improved, feedback-corrected actions through the model:

- **DDP** (Mayne 1966, "A second-order gradient method for determining optimal trajectories of
  non-linear discrete-time systems"; Jacobson & Mayne 1970, "Differential Dynamic
  Programming") expands the dynamics to second order, so the backward pass adds the tensor
  contractions ``V_x' . f_xx``, ``V_x' . f_uu`` and ``V_x' . f_ux`` to ``Q_xx``, ``Q_uu`` and
  ``Q_ux``.
- **iLQR** (Li & Todorov 2004, "Iterative Linear Quadratic Regulator Design for Nonlinear
  Biological Movement Systems") linearizes the dynamics and drops those terms (a Gauss-Newton
  approximation): cheaper per iteration, and on a linear-quadratic problem the first iteration
  is the finite-horizon LQR solution.

Robustness follows Tassa, Erez & Todorov 2012 ("Synthesis and stabilization of complex
behaviors through online trajectory optimization", Sec. II-F):

- **Levenberg-Marquardt regularization**: the gains use ``Q_uu + mu I``. ``mu`` rises when the
  backward pass meets a ``Q_uu + mu I`` that is not positive definite, or when no line-search
  step lowers the cost, and falls after each accepted step, with their quadratic schedule
  (``Delta <- max(Delta_0, Delta Delta_0)``, ``mu <- max(mu_min, mu Delta)`` up;
  ``Delta <- min(1 / Delta_0, Delta / Delta_0)``, ``mu <- mu Delta`` or 0 below ``mu_min`` down).
  The value update (their eq. 11) uses the unregularized ``Q`` terms.
- **Backtracking line search** on the total cost: the new actions are
  ``u_t + alpha k_t + K_t (x_new_t - x_t)``; a step size is accepted when the actual reduction is
  positive and its ratio to the expected reduction
  ``-(alpha sum k^T Q_u + alpha^2 / 2 sum k^T Q_uu k)`` exceeds ``min_reduction_ratio``. All step
  sizes are rolled out at once as one batch (the batch is small; rollouts are sequential in time),
  and the largest acceptable one is taken.

**Box-bounded actions** use the *clamp* variant: the feedforward step is clamped so that
``u_t + k_t`` stays in ``[action_low, action_high]``, the feedback gains of the clamped action
dimensions are zeroed, and the gains of the free dimensions are recomputed from the free block
of ``Q_uu`` (``K_f = -Q_ff^-1 Q_fx``, ``k_f = -Q_ff^-1 (Q_f + Q_fc k_c)``), as Tassa, Mansard &
Todorov 2014 ("Control-limited differential dynamic programming") do once their box QP has
found the clamped set. Here the clamped set is that of the clamped unconstrained step: with one
action dimension (Pendulum, CartPole) this is the exact box-QP solution; with several it is a
feasible approximation of it (their projected-Newton box QP is not implemented). The forward
pass clamps every action again, so plans never leave the bounds.

Derivatives come from autograd (``rlscale.modules.planning.derivatives``), so models and
costs need only be differentiable (twice, for DDP) and treat the rows of a batch independently.

Each start state of the batch is its own problem with its own regularization, step size and
stopping test; the batch runs until every problem has stopped or ``max_iterations`` is reached.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from rlscale.modules.dynamics.base import DynamicsModel
from rlscale.modules.planning.base import PlanResult, StageCost, TerminalCost
from rlscale.modules.planning.derivatives import TrajectoryDerivatives, trajectory_derivatives
from rlscale.modules.planning.rollout import Trajectory, costed, model_step, rollout
from rlscale.modules.planning.small_linalg import cholesky, cholesky_solve

Method = Literal["ilqr", "ddp"]
METHODS: tuple[Method, ...] = ("ilqr", "ddp")

# Tassa et al. 2012: converged when the regularization is this small and the step is tiny.
_SMALL_REGULARIZATION = 1e-5


def _default_step_sizes() -> tuple[float, ...]:
    # Tassa et al.'s schedule: 11 step sizes from 1 down to 1e-3, evenly spaced in log scale.
    return tuple(10.0 ** (-3.0 * i / 10) for i in range(11))


@dataclass(frozen=True)
class ILQRSettings:
    """The optimizer's knobs, with their defaults in this one place.

    - ``max_iterations``: backward/forward pass pairs at most;
    - ``regularization_init`` / ``_min`` / ``_max`` / ``_factor``: Levenberg-Marquardt ``mu``
      at the start, its smallest non-zero and largest values (give up above it), and the
      schedule's ``Delta_0``;
    - ``step_sizes``: line-search step sizes ``alpha``, largest first;
    - ``min_reduction_ratio``: accept a step when actual / expected cost reduction exceeds it;
    - ``cost_tolerance``: stop when an accepted step lowers the cost by less than this fraction;
    - ``gradient_tolerance``: stop when the mean over time of ``max_i |k_i| / (|u_i| + 1)``
      is below it (and the regularization is small).
    """

    max_iterations: int = 50
    regularization_init: float = 0.0
    regularization_min: float = 1e-6
    regularization_max: float = 1e10
    regularization_factor: float = 2.0
    step_sizes: tuple[float, ...] = field(default_factory=_default_step_sizes)
    min_reduction_ratio: float = 0.0
    cost_tolerance: float = 1e-7
    gradient_tolerance: float = 1e-4

    def __post_init__(self) -> None:
        if self.max_iterations < 1:
            raise ValueError(f"max_iterations must be at least 1, got {self.max_iterations}")
        if not 0 <= self.regularization_init <= self.regularization_max:
            raise ValueError("regularization_init must lie in [0, regularization_max]")
        if not 0 < self.regularization_min < self.regularization_max:
            raise ValueError("need 0 < regularization_min < regularization_max")
        if self.regularization_factor <= 1:
            raise ValueError("regularization_factor must be greater than 1")
        if not self.step_sizes or any(not 0 < a <= 1 for a in self.step_sizes):
            raise ValueError("step_sizes must be a non-empty sequence of values in (0, 1]")
        if list(self.step_sizes) != sorted(self.step_sizes, reverse=True):
            raise ValueError("step_sizes must be in decreasing order (largest tried first)")


@dataclass(frozen=True)
class Gains:
    """Backward-pass result: feedforward ``k [batch, H, m]``, feedback ``K [batch, H, m, n]``,
    the expected-reduction terms ``sum k^T Q_u`` and ``sum 1/2 k^T Q_uu k`` (``[batch]``), and
    which rows met a ``Q_uu + mu I`` that is not positive definite (``[batch]``)."""

    feedforward: Tensor
    feedback: Tensor
    expected_linear: Tensor
    expected_quadratic: Tensor
    failed: Tensor


def plan(
    state: Tensor,
    dynamics: DynamicsModel,
    cost: StageCost,
    horizon: int,
    *,
    terminal_cost: TerminalCost | None = None,
    initial_actions: Tensor | None = None,
    action_dim: int | None = None,
    action_low: Tensor | float | None = None,
    action_high: Tensor | float | None = None,
    method: Method = "ilqr",
    settings: ILQRSettings | None = None,
) -> PlanResult:
    """Optimize ``horizon`` actions for each start state of ``state [batch, state_dim]``.

    ``initial_actions [batch, horizon, action_dim]`` warm-starts the search (clamped into the
    bounds); without it the search starts from zero actions and ``action_dim`` must be given (or
    follow from tensor bounds). ``action_low`` / ``action_high``: scalars or ``[action_dim]``
    tensors; None leaves that side unbounded. ``method``: ``"ilqr"`` (first-order dynamics) or
    ``"ddp"`` (second-order dynamics terms). Computation runs in ``state``'s dtype and device.

    Returns the optimized actions, the model's trajectory under them, its total cost, the
    iterations run and which starts converged (``PlanResult``). Raises ``ValueError`` for
    inputs of the wrong shape, a horizon that is not a positive integer, or bad bounds.
    """
    settings = settings or ILQRSettings()
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    actions, low, high = _checked_inputs(
        state, horizon, initial_actions, action_dim, action_low, action_high
    )
    with torch.no_grad():
        trajectory = rollout(state, actions, dynamics, cost, terminal_cost)
        return _optimize(
            trajectory, dynamics, cost, terminal_cost, low, high, method == "ddp", settings
        )


@dataclass
class ILQRPlanner:
    """``plan`` with its model, cost, horizon and bounds bound: a ``Planner`` for MPC."""

    dynamics: DynamicsModel
    cost: StageCost
    horizon: int
    action_dim: int
    terminal_cost: TerminalCost | None = None
    action_low: Tensor | float | None = None
    action_high: Tensor | float | None = None
    method: Method = "ilqr"
    settings: ILQRSettings = field(default_factory=ILQRSettings)

    def __call__(self, state: Tensor, initial_actions: Tensor | None = None) -> PlanResult:
        return plan(
            state,
            self.dynamics,
            self.cost,
            self.horizon,
            terminal_cost=self.terminal_cost,
            initial_actions=initial_actions,
            action_dim=self.action_dim,
            action_low=self.action_low,
            action_high=self.action_high,
            method=self.method,
            settings=self.settings,
        )


# ----------------------------------------------------------------------------- input checks


def _checked_inputs(
    state: Tensor,
    horizon: int,
    initial_actions: Tensor | None,
    action_dim: int | None,
    action_low: Tensor | float | None,
    action_high: Tensor | float | None,
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Initial actions ``[batch, H, m]`` (clamped) and bounds as ``[m]`` tensors or None."""
    if state.dim() != 2:
        raise ValueError(
            "state must be [batch, state_dim] (use state[None] for a single start state); "
            f"got shape {tuple(state.shape)}"
        )
    if not state.is_floating_point():
        raise ValueError(f"state must be a floating-point tensor, got {state.dtype}")
    if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
        raise ValueError(f"horizon must be a positive integer, got {horizon!r}")
    batch = state.shape[0]
    dim = _action_dim(initial_actions, action_dim, action_low, action_high)
    if initial_actions is None:
        actions = state.new_zeros(batch, horizon, dim)
    else:
        expected = (batch, horizon, dim)
        if tuple(initial_actions.shape) != expected:
            raise ValueError(
                "initial_actions must be [batch, horizon, action_dim] = "
                f"{list(expected)}; got {list(initial_actions.shape)}"
            )
        actions = initial_actions.to(dtype=state.dtype, device=state.device)
    low = _bound(action_low, dim, state, "action_low")
    high = _bound(action_high, dim, state, "action_high")
    if low is not None and high is not None and bool((low > high).any()):
        raise ValueError(f"action_low must not exceed action_high; got {low} and {high}")
    return _clamp(actions, low, high), low, high


def _action_dim(
    initial_actions: Tensor | None,
    action_dim: int | None,
    action_low: Tensor | float | None,
    action_high: Tensor | float | None,
) -> int:
    if initial_actions is not None:
        if initial_actions.dim() != 3:
            raise ValueError(
                "initial_actions must be [batch, horizon, action_dim]; "
                f"got shape {tuple(initial_actions.shape)}"
            )
        dim = initial_actions.shape[-1]
        if action_dim is not None and action_dim != dim:
            raise ValueError(f"action_dim={action_dim} but initial_actions have {dim} dims")
        return dim
    if action_dim is not None:
        if action_dim < 1:
            raise ValueError(f"action_dim must be positive, got {action_dim}")
        return action_dim
    for bound in (action_low, action_high):
        if isinstance(bound, Tensor) and bound.dim() == 1:
            return bound.shape[0]
    raise ValueError("give initial_actions, action_dim, or [action_dim] tensor bounds")


def _bound(value: Tensor | float | None, dim: int, like: Tensor, name: str) -> Tensor | None:
    if value is None:
        return None
    bound = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if bound.dim() == 0:
        return bound.expand(dim).clone()
    if tuple(bound.shape) != (dim,):
        raise ValueError(f"{name} must be a scalar or [{dim}] tensor; got {tuple(bound.shape)}")
    return bound


# ----------------------------------------------------------------------------- line search


def _line_search(
    nominal: Trajectory,
    gains: Gains,
    step_sizes: Tensor,
    dynamics: DynamicsModel,
    cost: StageCost,
    terminal_cost: TerminalCost | None,
    low: Tensor | None,
    high: Tensor | None,
) -> Trajectory:
    """Closed-loop rollouts for every step size at once: ``[steps, batch, ...]`` results.

    ``u_t = clamp(u_t_nominal + alpha k_t + K_t (x_t - x_t_nominal))``.
    """
    steps = step_sizes.shape[0]
    batch, horizon, _ = nominal.actions.shape

    def tiled(tensor: Tensor) -> Tensor:  # [batch, ...] -> [steps * batch, ...]
        return tensor.expand(steps, *tensor.shape).reshape(steps * batch, *tensor.shape[1:])

    alpha = step_sizes.repeat_interleave(batch)[:, None]
    nominal_states = tiled(nominal.states)
    steps_of = zip(
        nominal_states[:, :-1].unbind(1),
        tiled(nominal.actions).unbind(1),
        (alpha[:, None] * tiled(gains.feedforward)).unbind(1),
        tiled(gains.feedback).unbind(1),
        strict=True,
    )
    states, actions = [nominal_states[:, 0]], []
    for nominal_state, nominal_action, feedforward, feedback in steps_of:
        deviation = states[-1] - nominal_state
        correction = (feedback @ deviation[..., None])[..., 0]
        action = _clamp(nominal_action + feedforward + correction, low, high)
        actions.append(action)
        states.append(model_step(dynamics, states[-1], action))
    result = costed(torch.stack(states, 1), torch.stack(actions, 1), cost, terminal_cost)
    return Trajectory(
        result.states.reshape(steps, batch, horizon + 1, -1),
        result.actions.reshape(steps, batch, horizon, -1),
        result.cost.reshape(steps, batch),
    )


def _clamp(actions: Tensor, low: Tensor | None, high: Tensor | None) -> Tensor:
    if low is None and high is None:
        return actions
    return torch.clamp(actions, min=low, max=high)


# ----------------------------------------------------------------------------- backward pass


def backward_pass(
    derivatives: TrajectoryDerivatives,
    actions: Tensor,
    regularization: Tensor,
    low: Tensor | None,
    high: Tensor | None,
) -> Gains:
    """Gains from the quadratic cost-to-go model, from ``t = H - 1`` down to 0.

    ``regularization [batch]`` is each row's Levenberg-Marquardt ``mu``. The DDP terms are used
    when ``derivatives`` carries the second-order dynamics (``f_zz`` not None).

    With ``z = [x, u]`` and ``F = f_z``, each step computes

        Q_z = l_z + F^T V_x',   Q_zz = l_zz + F^T V_xx' F  (+ sum_i V_x'[i] f_zz[i] for DDP),

    the gains ``[k | K] = -Q_uu^-1 [Q_u | Q_ux]`` (regularized and bounded, ``_bounded_gains``),
    and the value (Tassa et al. 2012, eq. 11, with the unregularized ``Q``; it holds for any
    ``k, K``, so also for clamped gains)

        [V_x | V_xx] = [Q_x | Q_xx] + K^T (Q_uu [k | K] + [Q_u | Q_ux]) + Q_xu [k | K].

    To keep the number of (tiny, overhead-bound) tensor operations per step low, gradient and
    Hessian travel together as one matrix ``[V_x | V_xx]`` (and ``[Q_z | Q_zz]``): then
    ``[Q_z | Q_zz] = [l_z | l_zz] + F^T [V_x | V_xx] diag(1, F)`` is two products.
    """
    d = derivatives
    batch, horizon, action_dim = actions.shape
    n = d.state_dim
    joint_dim = n + action_dim
    cost_terms = torch.cat([d.l_z[..., None], d.l_zz], dim=-1)  # [batch, H, d, 1 + d]
    lifted_jacobian = _lifted(d.f_z)  # diag(1, F): [batch, H, 1 + n, 1 + d]
    curvatures = None if d.f_zz is None else d.f_zz.reshape(batch, horizon, n, joint_dim**2)
    damping = regularization[:, None, None] * torch.eye(
        action_dim, dtype=actions.dtype, device=actions.device
    )
    value = torch.cat([d.terminal_x[..., None], d.terminal_xx], dim=-1)  # [V_x | V_xx]
    gains, q_u_terms, q_uu_terms = [], [], []
    failed = torch.zeros(batch, dtype=torch.bool, device=actions.device)
    steps = zip(
        d.f_z.unbind(1),
        lifted_jacobian.unbind(1),
        cost_terms.unbind(1),
        actions.unbind(1),
        [None] * horizon if curvatures is None else curvatures.unbind(1),
        strict=True,
    )
    for f_z, lifted, cost_term, action, curvature in reversed(list(steps)):
        q = cost_term + f_z.mT @ value @ lifted  # [Q_z | Q_zz]
        if curvature is not None:
            # DDP: the dynamics' curvature weighted by the next value gradient (Mayne 1966).
            second_order = (value[:, None, :, 0] @ curvature).reshape(batch, joint_dim, joint_dim)
            q = torch.cat([q[..., :1], q[..., 1:] + second_order], dim=-1)
        q_x_row, q_u_row = q[:, :n], q[:, n:]  # [Q_x | Q_xx | Q_xu], [Q_u | Q_ux | Q_uu]
        linear_terms, q_uu = q_u_row[..., : 1 + n], q_u_row[..., 1 + n :]
        step_gains, step_failed = _bounded_gains(q_uu + damping, linear_terms, action, low, high)
        failed |= step_failed
        gains.append(step_gains)
        q_u_terms.append(linear_terms[..., 0])
        q_uu_terms.append(q_uu)
        feedback = step_gains[..., 1:]
        value = (
            q_x_row[..., : 1 + n]
            + feedback.mT @ (q_uu @ step_gains + linear_terms)
            + q_x_row[..., 1 + n :] @ step_gains
        )
        value_xx = value[..., 1:]
        value = torch.cat([value[..., :1], 0.5 * (value_xx + value_xx.mT)], dim=-1)
    all_gains = torch.stack(gains[::-1], dim=1)
    k = all_gains[..., 0]
    q_u, q_uu = torch.stack(q_u_terms[::-1], dim=1), torch.stack(q_uu_terms[::-1], dim=1)
    return Gains(
        feedforward=k,
        feedback=all_gains[..., 1:],
        expected_linear=(k * q_u).sum(dim=(1, 2)),
        expected_quadratic=0.5 * ((q_uu @ k[..., None])[..., 0] * k).sum(dim=(1, 2)),
        failed=failed,
    )


def _lifted(jacobian: Tensor) -> Tensor:
    """``diag(1, F)``: ``[..., n, d]`` -> ``[..., 1 + n, 1 + d]``."""
    lifted = jacobian.new_zeros(
        *jacobian.shape[:-2], 1 + jacobian.shape[-2], 1 + jacobian.shape[-1]
    )
    lifted[..., 0, 0] = 1.0
    lifted[..., 1:, 1:] = jacobian
    return lifted


def _bounded_gains(
    q_uu: Tensor,
    linear_terms: Tensor,
    action: Tensor,
    low: Tensor | None,
    high: Tensor | None,
) -> tuple[Tensor, Tensor]:
    """Gains ``[k | K]`` (``[batch, m, 1 + n]``) minimizing the local model
    ``1/2 du^T Q_uu du + du^T (Q_u + Q_ux dx)`` given ``linear_terms = [Q_u | Q_ux]``, and the
    rows whose (regularized) ``q_uu`` is not positive definite. Clamp variant for bounds."""
    if q_uu.shape[-1] == 1:
        # A scalar Q_uu (one action dim, the common case) needs a division, not a factor.
        positive = q_uu > 0
        failed = ~positive[:, 0, 0]
        gains = -linear_terms / torch.where(positive, q_uu, 1.0)
    else:
        factor, failed = cholesky(q_uu)
        gains = -cholesky_solve(linear_terms, factor)
    if low is None and high is None:
        return gains, failed
    target = action + gains[..., 0]
    clamped_target = _clamp(target, low, high)
    clamped = clamped_target != target
    if not bool(clamped.any()):
        return gains, failed
    clamped_step = clamped_target - action
    if q_uu.shape[-1] == 1:
        # One dim: clamped means no free dims, so no feedback.
        feedback = gains[..., 1:] * (~clamped)[..., None]
        return torch.cat([clamped_step[..., None], feedback], dim=-1), failed
    k, feedback = _free_block_gains(q_uu, linear_terms, clamped, clamped_step)
    k = _clamp(action + k, low, high) - action
    return torch.cat([k[..., None], feedback], dim=-1), failed


def _free_block_gains(
    q_uu: Tensor, linear_terms: Tensor, clamped: Tensor, clamped_step: Tensor
) -> tuple[Tensor, Tensor]:
    """``k [batch, m]`` and ``K [batch, m, n]`` with the clamped action dims held at
    ``clamped_step`` and no feedback on them.

    Solves with ``M = P Q_uu P + (I - P)``, ``P`` the free dims' projector: ``M``'s inverse is
    ``Q_ff^-1`` on the free block and the identity on the clamped block, so right-hand sides
    that vanish on the clamped dims give ``K_c = 0``, ``K_f = -Q_ff^-1 Q_fx``, and
    ``k_f = -Q_ff^-1 (Q_f + Q_fc k_c)``. ``M`` is positive definite whenever ``q_uu`` is.
    """
    free = (~clamped).to(q_uu.dtype)
    system = free[..., :, None] * q_uu * free[..., None, :] + torch.diag_embed(1.0 - free)
    factor, _ = cholesky(system)
    fixed_step = clamped_step * (1.0 - free)
    rhs = linear_terms.clone()
    rhs[..., 0] += (q_uu @ fixed_step[..., None])[..., 0]
    gains = -cholesky_solve(free[..., None] * rhs, factor)
    return torch.where(clamped, clamped_step, gains[..., 0]), gains[..., 1:]


# ----------------------------------------------------------------------------- main loop


@dataclass
class _Regularization:
    """Per-row Levenberg-Marquardt ``mu`` and its schedule's ``Delta`` (Tassa et al. 2012)."""

    mu: Tensor
    delta: Tensor
    settings: ILQRSettings

    def increase(self, rows: Tensor) -> None:
        factor = self.settings.regularization_factor
        delta = torch.clamp(self.delta * factor, min=factor)
        mu = torch.clamp(self.mu * delta, min=self.settings.regularization_min)
        self.delta = torch.where(rows, delta, self.delta)
        self.mu = torch.where(rows, mu, self.mu)

    def decrease(self, rows: Tensor) -> None:
        factor = self.settings.regularization_factor
        delta = torch.clamp(self.delta / factor, max=1.0 / factor)
        mu = self.mu * delta
        mu = torch.where(mu > self.settings.regularization_min, mu, torch.zeros_like(mu))
        self.delta = torch.where(rows, delta, self.delta)
        self.mu = torch.where(rows, mu, self.mu)

    def exhausted(self) -> Tensor:
        return self.mu > self.settings.regularization_max


def _optimize(
    trajectory: Trajectory,
    dynamics: DynamicsModel,
    cost: StageCost,
    terminal_cost: TerminalCost | None,
    low: Tensor | None,
    high: Tensor | None,
    second_order: bool,
    settings: ILQRSettings,
) -> PlanResult:
    like = trajectory.cost
    regularization = _Regularization(
        mu=torch.full_like(like, settings.regularization_init),
        delta=torch.ones_like(like),
        settings=settings,
    )
    step_sizes = torch.tensor(settings.step_sizes, dtype=like.dtype, device=like.device)
    # A start whose initial rollout already diverges (non-finite cost) has no cost to lower;
    # it is returned as it is, and the caller sees the non-finite cost.
    active = torch.isfinite(like)
    converged = torch.zeros_like(active)
    iterations = 0
    while iterations < settings.max_iterations and bool(active.any()):
        iterations += 1
        derivatives = trajectory_derivatives(
            trajectory, dynamics, cost, terminal_cost, second_order
        )
        gains = _regularized_backward_pass(
            derivatives, trajectory.actions, regularization, active, low, high
        )
        active &= ~regularization.exhausted()
        small_step = _small_step(gains, trajectory.actions, regularization.mu, settings)
        converged |= active & small_step
        active &= ~small_step
        if not bool(active.any()):
            break
        candidates = _line_search(
            trajectory, gains, step_sizes, dynamics, cost, terminal_cost, low, high
        )
        trajectory, accepted, reduction = _accept(
            trajectory, candidates, gains, step_sizes, active, settings
        )
        regularization.decrease(accepted)
        regularization.increase(active & ~accepted)
        active &= ~regularization.exhausted()
        scale = trajectory.cost.abs().clamp(min=1e-12)
        tiny = accepted & (reduction < settings.cost_tolerance * scale)
        converged |= tiny
        active &= ~tiny
    return PlanResult(
        actions=trajectory.actions,
        states=trajectory.states,
        cost=trajectory.cost,
        iterations=iterations,
        converged=converged,
    )


def _regularized_backward_pass(
    derivatives: TrajectoryDerivatives,
    actions: Tensor,
    regularization: _Regularization,
    active: Tensor,
    low: Tensor | None,
    high: Tensor | None,
) -> Gains:
    """Backward passes, raising ``mu`` of the active rows that fail, until none fails or
    their ``mu`` passes the maximum (the caller then stops those rows)."""
    while True:
        gains = backward_pass(derivatives, actions, regularization.mu, low, high)
        failing = gains.failed & active & ~regularization.exhausted()
        if not bool(failing.any()):
            return gains
        regularization.increase(failing)


def _small_step(gains: Gains, actions: Tensor, mu: Tensor, settings: ILQRSettings) -> Tensor:
    """Tassa et al.'s gradient test: feedforward steps tiny relative to the actions."""
    relative = gains.feedforward.abs() / (actions.abs() + 1.0)
    size = relative.amax(dim=-1).mean(dim=-1)
    return (size < settings.gradient_tolerance) & (mu < _SMALL_REGULARIZATION) & ~gains.failed


def _accept(
    nominal: Trajectory,
    candidates: Trajectory,
    gains: Gains,
    step_sizes: Tensor,
    active: Tensor,
    settings: ILQRSettings,
) -> tuple[Trajectory, Tensor, Tensor]:
    """The largest acceptable step size of each active row: new trajectory, which rows took a
    step, and by how much their cost fell (``[batch]``)."""
    alpha = step_sizes[:, None]
    actual = nominal.cost[None] - candidates.cost
    expected = -(alpha * gains.expected_linear + alpha**2 * gains.expected_quadratic)
    # With no expected reduction (possible with clamped steps), any real reduction will do.
    safe_expected = torch.where(expected > 0, expected, torch.ones_like(expected))
    ratio = torch.where(expected > 0, actual / safe_expected, torch.sign(actual))
    acceptable = (
        torch.isfinite(candidates.cost) & (actual > 0) & (ratio > settings.min_reduction_ratio)
    )
    accepted = acceptable.any(dim=0) & active & ~gains.failed
    # argmax returns the first maximum: the largest acceptable step size.
    chosen = acceptable.to(torch.int8).argmax(dim=0)
    rows = torch.arange(chosen.shape[0], device=chosen.device)
    pick = accepted[:, None, None]
    trajectory = Trajectory(
        states=torch.where(pick, candidates.states[chosen, rows], nominal.states),
        actions=torch.where(pick, candidates.actions[chosen, rows], nominal.actions),
        cost=torch.where(accepted, candidates.cost[chosen, rows], nominal.cost),
    )
    reduction = torch.where(accepted, actual[chosen, rows], torch.zeros_like(nominal.cost))
    return trajectory, accepted, reduction
