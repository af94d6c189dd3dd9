"""A probabilistic ensemble dynamics model (PETS' "PE"), and the loop that fits learned models.

Chua, Calandra, McAllister & Levine 2018, "Deep Reinforcement Learning in a Handful of Trials
using Probabilistic Dynamics Models" (PETS), https://arxiv.org/abs/1805.12114, Sec. 4 and
the appendix; the reward head and elites follow Janner, Fu, Zhang & Levine 2019, "When to Trust
Your Model: Model-Based Policy Optimization" (MBPO), https://arxiv.org/abs/1906.08253, Sec. 4.

**Model.** ``members`` networks (one ``EnsembleMLP``) each map the standardized input
``[x, u]`` to a Gaussian over the standardized target ``y = [x' - x (, r)]``: a mean ``mu_b``
and a log-variance ``s_b`` per target dimension. Each member is an independent model; the spread
of their means measures what the data leave unknown (epistemic), their variances the noise of
the system itself (aleatoric).

**Bounded log-variance.** A raw log-variance ``s`` is soft-clamped between learned bounds
``s_min < s_max`` (per member and target dimension), as in PETS' appendix::

    s <- s_max - softplus(s_max - s)
    s <- s_min + softplus(s - s_min)

so that the variance can neither collapse on the training points nor grow without limit away
from them. (The bound above is soft: the second softplus can lift a value at ``s_max`` by
``log(1 + exp(s_min - s_max))``, about 3e-5 at the starting bounds.) The bounds start at
``s_max = 0.5``, ``s_min = -10`` (in standardized units) and are trained with the network;
``0.01 * (sum s_max - sum s_min)`` is added to the loss, which pulls the bounds together so
that they do not drift to whatever the data never reach.

**Loss** (the training objective, ``loss``)::

    L = sum_b mean_{rows, dims} [ 0.5 ((y - mu_b)^2 exp(-s_b) + s_b + log 2 pi) ]
        + 0.01 (sum s_max - sum s_min)

The Gaussian negative log-likelihood is averaged over the rows and target dimensions of each
member and **summed over members**: the objective separates into one term per member, so each
member receives the gradients it would get if trained alone, whatever the ensemble size. Rows
can be shared by all members (``[batch, ...]``) or be each member's own minibatch
(``[members, batch, ...]``, ``member_batches=True``): PETS trains every member on its own
bootstrap resample of the data (``bootstrap_indices``, ``fit_dynamics``).

**Prediction.** ``predict`` combines the members (the elites only, when set) into one Gaussian
per next-state dimension by moment matching: its mean is the mean of the member means, its
variance the mean of the member variances plus the variance of the member means (the law of
total variance, with members weighted equally). That Gaussian's mean is what gradient-based
planners follow; ``predict`` is differentiable in state and action and free of data-dependent
Python control flow, so ``torch.func`` (``jacrev``, ``vmap``) can transform it.
``predict_member`` gives each row the Gaussian of its own member, for PETS' trajectory sampling
(TS-1, TS-inf) and MBPO's rollouts.

**Elites** (MBPO): ``set_elites(indices)`` makes ``predict`` and ``predict_reward`` combine only
those members and ``draw_members`` draw only among them. ``predict_member`` always evaluates the
member it is given (a network index in ``[0, members)``): draw the indices with
``draw_members`` to respect the elites. PETS uses all members (no elites set).

**Fitting** (``fit_dynamics``, for this ensemble and ``MLPDynamicsModel``): hold out a random
fraction of the rows, set the normalization statistics from the rest, give each member its own
bootstrap resample of the training rows, and take Adam steps on minibatches drawn from each
member's resample, with L2 weight decay on the network weights (not the biases nor the
log-variance bounds). It returns the training losses and the held-out errors per member (MBPO
ranks members by held-out error to choose elites: ``FitResult.best_members``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Normal

from rlscale.modules.dynamics.mlp_model import (
    DEFAULT_ACTIVATION,
    DEFAULT_HIDDEN_SIZES,
    HoldoutMetrics,
    MLPDynamicsModel,
    check_network_shape,
    dynamics_network,
)
from rlscale.modules.dynamics.normalizer import TransitionNormalizer

_LOG_TWO_PI = math.log(2 * math.pi)


@dataclass(frozen=True)
class EnsembleSettings:
    """The ensemble's shape and log-variance bounds, with their defaults in this one place.

    - ``members``: networks in the ensemble (5 in PETS; MBPO trains 7 and keeps 5 elites);
    - ``hidden_sizes``, ``activation``: each member's MLP (MBPO's 4 x 200 SiLU by default);
    - ``predict_reward``: also model the reward as a last target column (MBPO);
    - ``initial_max_logvar``, ``initial_min_logvar``: starting values of the learned bounds on
      the standardized log-variance;
    - ``logvar_bound_weight``: weight of ``sum max_logvar - sum min_logvar`` in the loss.
    """

    members: int = 5
    hidden_sizes: tuple[int, ...] = DEFAULT_HIDDEN_SIZES
    activation: str = DEFAULT_ACTIVATION
    predict_reward: bool = False
    initial_max_logvar: float = 0.5
    initial_min_logvar: float = -10.0
    logvar_bound_weight: float = 0.01

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden_sizes", tuple(self.hidden_sizes))
        if self.members < 1:
            raise ValueError(f"an ensemble needs at least one member, got members={self.members}")
        check_network_shape(self.hidden_sizes, self.activation)
        if not self.initial_min_logvar < self.initial_max_logvar:
            raise ValueError(
                "initial_min_logvar must be below initial_max_logvar, got "
                f"{self.initial_min_logvar} and {self.initial_max_logvar}"
            )
        if self.logvar_bound_weight < 0:
            raise ValueError(
                f"logvar_bound_weight must be non-negative, got {self.logvar_bound_weight}"
            )


def bound_logvar(raw_logvar: Tensor, max_logvar: Tensor, min_logvar: Tensor) -> Tensor:
    """PETS' soft clamp of a log-variance into ``(min_logvar, max_logvar)`` (module doc)."""
    logvar = max_logvar - F.softplus(max_logvar - raw_logvar)
    return min_logvar + F.softplus(logvar - min_logvar)


def gaussian_nll(mean: Tensor, logvar: Tensor, target: Tensor) -> Tensor:
    """Per-member Gaussian negative log-likelihood, ``[members, ...]`` -> ``[members]``.

    The mean over every dimension but the first of
    ``0.5 ((target - mean)^2 exp(-logvar) + logvar + log 2 pi)``, which is
    ``-Normal(mean, exp(logvar / 2)).log_prob(target)``.
    """
    per_entry = 0.5 * ((target - mean).square() * torch.exp(-logvar) + logvar + _LOG_TWO_PI)
    return per_entry.reshape(per_entry.shape[0], -1).mean(dim=1)


def bootstrap_indices(
    num_rows: int,
    members: int,
    batch_size: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Row indices ``[members, batch_size]``, drawn uniformly with replacement per member.

    With ``batch_size == num_rows`` each member's row is a bootstrap resample of the data set
    (PETS); with a small ``batch_size`` it is a minibatch. Indices are drawn on the generator's
    device (CPU by default) and moved to ``device``.
    """
    if num_rows < 1 or members < 1 or batch_size < 1:
        raise ValueError(
            "num_rows, members and batch_size must be positive, got "
            f"{num_rows}, {members} and {batch_size}"
        )
    draw_device = generator.device if generator is not None else None
    indices = torch.randint(
        num_rows, (members, batch_size), generator=generator, device=draw_device
    )
    return indices.to(device) if device is not None else indices


class ProbabilisticEnsemble(nn.Module):
    """PETS' probabilistic ensemble over ``[..., state_dim]`` states and ``[..., action_dim]``
    actions (module docstring). Follows ``EnsembleDynamicsModel``.

    Call ``update_normalization`` on the training data before training (``fit_dynamics`` does).
    """

    elite_mask: Tensor

    def __init__(self, state_dim: int, action_dim: int, settings: EnsembleSettings | None = None):
        super().__init__()
        if state_dim < 1 or action_dim < 1:
            raise ValueError(
                f"state_dim and action_dim must be positive, got {state_dim} and {action_dim}"
            )
        self.settings = settings or EnsembleSettings()
        self.members = self.settings.members
        self.state_dim = state_dim
        self.action_dim = action_dim
        self.has_reward_head = self.settings.predict_reward
        self.target_dim = state_dim + int(self.has_reward_head)
        self.normalizer = TransitionNormalizer(state_dim, action_dim, self.has_reward_head)
        self.network = dynamics_network(
            members=self.members,
            input_dim=state_dim + action_dim,
            hidden_sizes=self.settings.hidden_sizes,
            output_dim=2 * self.target_dim,
            activation=self.settings.activation,
        )
        bound_shape = (self.members, self.target_dim)
        self.max_logvar = nn.Parameter(torch.full(bound_shape, self.settings.initial_max_logvar))
        self.min_logvar = nn.Parameter(torch.full(bound_shape, self.settings.initial_min_logvar))
        self.register_buffer("elite_mask", torch.ones(self.members, dtype=torch.bool))

    # ----------------------------------------------------------------- normalization, training

    def update_normalization(
        self, states: Tensor, actions: Tensor, next_states: Tensor, rewards: Tensor | None = None
    ) -> None:
        """Set the input and target statistics from these transitions (``Normalizer.fit``)."""
        self.normalizer.fit(states, actions, next_states, rewards)

    def normalized_outputs(
        self, states: Tensor, actions: Tensor, member_batches: bool = False
    ) -> tuple[Tensor, Tensor]:
        """Every member's standardized mean and bounded log-variance, ``[members, ..., t]``.

        ``states [..., n]`` are seen by every member; with ``member_batches`` they are
        ``[members, batch, n]``, row block ``b`` for member ``b``.
        """
        self.normalizer.check(states, actions)
        inputs = self.normalizer.inputs(states, actions)
        if member_batches:
            self._check_member_batches(states)
            leading = states.shape[1:-1]
        else:
            leading = states.shape[:-1]
            inputs = inputs.reshape(-1, inputs.shape[-1])
        outputs = self.network(inputs).reshape(self.members, *leading, 2 * self.target_dim)
        mean, raw_logvar = outputs.split(self.target_dim, dim=-1)
        bound_shape = (self.members, *(1,) * len(leading), self.target_dim)
        logvar = bound_logvar(
            raw_logvar, self.max_logvar.reshape(bound_shape), self.min_logvar.reshape(bound_shape)
        )
        return mean, logvar

    def loss(
        self,
        states: Tensor,
        actions: Tensor,
        next_states: Tensor,
        rewards: Tensor | None = None,
        *,
        member_batches: bool = False,
    ) -> Tensor:
        """The training objective: NLL summed over members plus the bound term (module doc).

        Transitions are ``[batch, ...]`` (every member sees every row) or, with
        ``member_batches``, ``[members, batch, ...]`` (each member its own rows); rewards have
        the transitions' leading shape.
        """
        self.normalizer.check(states, actions, next_states)
        nll = self._member_nll(states, actions, next_states, rewards, member_batches)
        bounds = self.max_logvar.sum() - self.min_logvar.sum()
        return nll.sum() + self.settings.logvar_bound_weight * bounds

    @torch.no_grad()
    def holdout_metrics(
        self, states: Tensor, actions: Tensor, next_states: Tensor, rewards: Tensor | None = None
    ) -> HoldoutMetrics:
        """Per-member ``mse`` and ``nll`` (``[members]``, standardized units) on these rows."""
        self.normalizer.check(states, actions, next_states)
        mean, logvar = self.normalized_outputs(states, actions)
        targets = self.normalizer.targets(states, next_states, rewards)
        squared_error = (mean - targets).square().reshape(self.members, -1)
        return HoldoutMetrics(
            mse=squared_error.mean(dim=1), nll=gaussian_nll(mean, logvar, targets)
        )

    def _member_nll(
        self,
        states: Tensor,
        actions: Tensor,
        next_states: Tensor,
        rewards: Tensor | None,
        member_batches: bool,
    ) -> Tensor:
        mean, logvar = self.normalized_outputs(states, actions, member_batches)
        targets = self.normalizer.targets(states, next_states, rewards)
        if not member_batches:
            targets = targets.unsqueeze(0)
        return gaussian_nll(mean, logvar, targets)

    def _check_member_batches(self, states: Tensor) -> None:
        if states.dim() != 3 or states.shape[0] != self.members:
            raise ValueError(
                f"member_batches=True needs transitions shaped [members={self.members}, batch, "
                f"...], got states of shape {tuple(states.shape)}; pass member_batches=False "
                "for rows every member shares"
            )

    # ------------------------------------------------------------------------------- prediction

    def member_moments(self, state: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        """Every member's mean and variance of the raw target ``[x' - x (, r)]``,
        ``[members, ..., t]`` each."""
        mean, logvar = self.normalized_outputs(state, action)
        target_std = self.normalizer.target.std
        return self.normalizer.target.denormalize(mean), torch.exp(logvar) * target_std.square()

    def predict(self, state: Tensor, action: Tensor) -> Normal:
        """The members' (or elites') moment-matched Gaussian over the next state, ``[..., n]``."""
        mean, variance = self._combined_moments(state, action)
        return _normal(state + mean[..., : self.state_dim], variance[..., : self.state_dim])

    def predict_reward(self, state: Tensor, action: Tensor) -> Tensor:
        """The members' (or elites') mean predicted reward of each row, ``[...]``."""
        self._require_reward_head()
        mean, _ = self._combined_moments(state, action)
        return mean[..., self.state_dim]

    def predict_member(self, state: Tensor, action: Tensor, member: Tensor) -> Normal:
        """Row ``i``'s next-state Gaussian under member ``member[i]`` (a network index)."""
        mean, variance = self._member_rows(state, action, member)
        return _normal(state + mean[..., : self.state_dim], variance[..., : self.state_dim])

    def predict_member_with_reward(
        self, state: Tensor, action: Tensor, member: Tensor
    ) -> tuple[Normal, Normal]:
        """``predict_member``'s next-state Gaussian and the same member's reward Gaussian
        (``[...]``), for MBPO-style rollouts that sample both from one member."""
        self._require_reward_head()
        mean, variance = self._member_rows(state, action, member)
        next_state = _normal(state + mean[..., : self.state_dim], variance[..., : self.state_dim])
        return next_state, _normal(mean[..., self.state_dim], variance[..., self.state_dim])

    def forward(self, state: Tensor, action: Tensor) -> Normal:
        return self.predict(state, action)

    def _combined_moments(self, state: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        member_mean, member_variance = self.member_moments(state, action)
        weights = self.elite_mask.to(member_mean.dtype)
        weights = (weights / weights.sum()).reshape(-1, *(1,) * (member_mean.dim() - 1))
        mean = (weights * member_mean).sum(dim=0)
        spread = (member_mean - mean).square()
        return mean, (weights * (member_variance + spread)).sum(dim=0)

    def _member_rows(self, state: Tensor, action: Tensor, member: Tensor) -> tuple[Tensor, Tensor]:
        """Each row's raw-target mean and variance under its own member, ``[..., t]``.

        Rows are grouped by member and each member runs on its group alone (one batched
        ``[members, largest group, ...]`` pass, the smaller groups padded), so a particle
        rollout costs one member's network per row rather than the whole ensemble's.
        """
        if member.shape != state.shape[:-1]:
            raise ValueError(
                f"member must hold one index per row, shape {tuple(state.shape[:-1])}, "
                f"got {tuple(member.shape)}"
            )
        flat_state = state.reshape(-1, state.shape[-1])
        flat_action = action.reshape(-1, action.shape[-1])
        slots, member_of_row, position = _member_slots(member.reshape(-1).long(), self.members)
        mean, logvar = self.normalized_outputs(
            flat_state[slots], flat_action[slots], member_batches=True
        )
        mean, logvar = mean[member_of_row, position], logvar[member_of_row, position]
        target = self.normalizer.target
        mean, variance = target.denormalize(mean), torch.exp(logvar) * target.std.square()
        leading = state.shape[:-1]
        return mean.reshape(*leading, -1), variance.reshape(*leading, -1)

    def _require_reward_head(self) -> None:
        if not self.has_reward_head:
            raise ValueError(
                "this ensemble has no reward head; build it with "
                "EnsembleSettings(predict_reward=True) and train it with rewards"
            )

    # ----------------------------------------------------------------------------------- elites

    def set_elites(self, indices: Tensor | list[int] | None) -> None:
        """Combine (``predict``) and draw (``draw_members``) only these members; None: all."""
        if indices is None:
            self.elite_mask.fill_(True)
            return
        chosen = torch.as_tensor(indices, dtype=torch.long).flatten().tolist()
        if not chosen or len(set(chosen)) != len(chosen):
            raise ValueError(f"elites must be distinct member indices, at least one; got {chosen}")
        if any(not 0 <= index < self.members for index in chosen):
            raise ValueError(f"elite indices must lie in [0, {self.members}), got {chosen}")
        mask = torch.zeros_like(self.elite_mask)
        mask[chosen] = True
        self.elite_mask.copy_(mask)

    @property
    def elites(self) -> Tensor:
        """Indices of the members ``predict`` combines (all of them unless elites are set)."""
        return self.elite_mask.nonzero().flatten()

    def draw_members(self, count: int, generator: torch.Generator | None = None) -> Tensor:
        """``count`` member indices drawn uniformly among the elites, on the model's device."""
        draw_device = generator.device if generator is not None else self.elite_mask.device
        weights = self.elite_mask.to(device=draw_device, dtype=torch.float)
        drawn = torch.multinomial(weights, count, replacement=True, generator=generator)
        return drawn.to(self.elite_mask.device)


def _member_slots(member: Tensor, members: int) -> tuple[Tensor, Tensor, Tensor]:
    """Rows grouped by member: ``slots [members, largest group]`` (row indices, padded with
    row 0), and each row's ``member`` and ``position`` in that grid."""
    counts = torch.bincount(member, minlength=members)
    group_start = torch.cumsum(counts, dim=0) - counts
    order = torch.argsort(member, stable=True)
    position = torch.empty_like(member)
    position[order] = (
        torch.arange(member.numel(), device=member.device) - group_start[member[order]]
    )
    slots = torch.zeros(members, max(int(counts.max()), 1), dtype=torch.long, device=member.device)
    slots[member, position] = torch.arange(member.numel(), device=member.device)
    return slots, member, position


def _normal(mean: Tensor, variance: Tensor) -> Normal:
    # No argument validation: it would be data-dependent control flow, which torch.func rejects.
    return Normal(mean, variance.sqrt(), validate_args=False)


# -------------------------------------------------------------------------------------- fitting


@dataclass(frozen=True)
class FitSettings:
    """``fit_dynamics``'s knobs, with their defaults in this one place.

    - ``steps``: Adam steps;
    - ``batch_size``: rows per step (per member, for an ensemble);
    - ``learning_rate``; ``weight_decay``: L2 coefficient on the network weights only (PETS and
      MBPO regularize their models with L2 weight penalties);
    - ``holdout_fraction``: share of the rows kept out of training to measure the model on;
    - ``bootstrap``: give each ensemble member its own bootstrap resample of the training rows
      (PETS); otherwise each member draws its minibatches from all training rows;
    - ``fit_normalization``: set the normalization statistics from the training rows first
      (turn off to keep statistics set earlier, e.g. when continuing training).
    """

    steps: int = 1000
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 5e-5
    holdout_fraction: float = 0.1
    bootstrap: bool = True
    fit_normalization: bool = True

    def __post_init__(self) -> None:
        check_fit_settings(self)


def check_fit_settings(settings: Any) -> None:
    """The checks every model-fitting loop's settings share (``FitSettings``, the flows'
    ``FlowFitSettings``): ``steps``, ``batch_size``, ``learning_rate``, ``weight_decay`` and
    ``holdout_fraction`` in range, else a ``ValueError`` naming the value."""
    if settings.steps < 0:
        raise ValueError(f"steps must be non-negative, got {settings.steps}")
    if settings.batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {settings.batch_size}")
    if settings.learning_rate <= 0:
        raise ValueError(f"learning_rate must be positive, got {settings.learning_rate}")
    if settings.weight_decay < 0:
        raise ValueError(f"weight_decay must be non-negative, got {settings.weight_decay}")
    if not 0 <= settings.holdout_fraction < 1:
        raise ValueError(f"holdout_fraction must lie in [0, 1), got {settings.holdout_fraction}")


@dataclass(frozen=True)
class FitResult:
    """``train_losses [steps]`` (CPU; each step's training objective) and the held-out
    errors per member (None when nothing was held out)."""

    train_losses: Tensor
    holdout: HoldoutMetrics | None
    train_rows: int
    holdout_rows: int

    def best_members(self, count: int) -> Tensor:
        """The ``count`` members with the lowest held-out MSE (MBPO's elites), best first."""
        if self.holdout is None:
            raise ValueError("no rows were held out; fit with holdout_fraction > 0 to rank members")
        members = self.holdout.mse.numel()
        if not 1 <= count <= members:
            raise ValueError(f"count must lie in [1, {members}], got {count}")
        return self.holdout.mse.argsort()[:count]


def dynamics_optimizer(
    model: ProbabilisticEnsemble | MLPDynamicsModel, learning_rate: float, weight_decay: float
) -> torch.optim.Adam:
    """Adam with L2 weight decay on the network's weight matrices only.

    Biases and the log-variance bounds are left undecayed: decay would pull the bounds toward
    0 rather than toward the data. Learners that train a model round after round can keep this
    optimizer (and its moment estimates) and pass it to ``fit_dynamics``.
    """
    decayed = [p for name, p in model.network.named_parameters() if name.endswith("weight")]
    decayed_ids = {id(p) for p in decayed}
    others = [p for p in model.parameters() if id(p) not in decayed_ids]
    groups = [
        {"params": decayed, "weight_decay": weight_decay},
        {"params": others, "weight_decay": 0.0},
    ]
    return torch.optim.Adam(groups, lr=learning_rate)


def fit_dynamics(
    model: ProbabilisticEnsemble | MLPDynamicsModel,
    states: Tensor,
    actions: Tensor,
    next_states: Tensor,
    rewards: Tensor | None = None,
    *,
    settings: FitSettings | None = None,
    generator: torch.Generator | None = None,
    optimizer: torch.optim.Optimizer | None = None,
) -> FitResult:
    """Fit ``model`` to transitions ``[rows, ...]`` (module docstring, "Fitting").

    The data are moved to the model's device and dtype. ``generator`` drives the split, the
    bootstrap and the minibatches (its device draws the indices). Without ``optimizer`` a new
    ``dynamics_optimizer`` with the settings' learning rate and weight decay is made; with one,
    those two settings are unused.
    """
    settings = settings or FitSettings()
    reference = next(model.parameters())
    data = [
        None if t is None else t.to(device=reference.device, dtype=reference.dtype)
        for t in (states, actions, next_states, rewards)
    ]
    model.normalizer.check(data[0], data[1], data[2])
    rows = data[0].shape[0]
    train_rows, holdout_rows = split_rows(rows, settings.holdout_fraction, generator)
    train = [None if t is None else t[train_rows.to(t.device)] for t in data]
    if settings.fit_normalization:
        model.update_normalization(*train)
    optimizer = optimizer or dynamics_optimizer(
        model, settings.learning_rate, settings.weight_decay
    )
    losses = _train(model, train, settings, generator, optimizer)
    holdout = None
    if holdout_rows.numel() > 0:
        held_out = [None if t is None else t[holdout_rows.to(t.device)] for t in data]
        holdout = model.holdout_metrics(*held_out)
    return FitResult(
        train_losses=losses,
        holdout=holdout,
        train_rows=train_rows.numel(),
        holdout_rows=holdout_rows.numel(),
    )


def split_rows(
    rows: int, holdout_fraction: float, generator: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    """A random split of ``rows`` row indices into (training, held-out) for model fitting."""
    draw_device = generator.device if generator is not None else None
    order = torch.randperm(rows, generator=generator, device=draw_device)
    holdout = int(round(holdout_fraction * rows))
    if rows - holdout < 2:
        raise ValueError(
            f"{rows} rows leave {rows - holdout} to train on after holding out "
            f"{holdout_fraction:.0%}; give at least 2 training rows"
        )
    return order[holdout:], order[:holdout]


def _train(
    model: ProbabilisticEnsemble | MLPDynamicsModel,
    train: list[Tensor | None],
    settings: FitSettings,
    generator: torch.Generator | None,
    optimizer: torch.optim.Optimizer,
) -> Tensor:
    rows = train[0].shape[0]
    ensemble = isinstance(model, ProbabilisticEnsemble)
    members = model.members if ensemble else 1
    device = train[0].device
    # Row r of member b's resample is training row resample[b, r] (PETS' bootstrap).
    resample = (
        bootstrap_indices(rows, members, rows, generator, device)
        if ensemble and settings.bootstrap
        else None
    )
    losses = []
    for _ in range(settings.steps):
        batch = bootstrap_indices(rows, members, settings.batch_size, generator, device)
        if resample is not None:
            batch = resample.gather(1, batch)
        if ensemble:
            minibatch = [None if t is None else t[batch] for t in train]
            loss = model.loss(*minibatch, member_batches=True)
        else:
            minibatch = [None if t is None else t[batch[0]] for t in train]
            loss = model.loss(*minibatch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
    return torch.stack(losses).cpu() if losses else torch.empty(0)
