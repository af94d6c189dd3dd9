"""Conditional normalizing flows: exact densities ``p(x | c)`` over raw (unscaled) vectors.

A normalizing flow models a density through an invertible map ``f(.; c)`` from the data ``x`` to
a base variable ``z`` with a standard normal density, so that by the change of variables

    log p(x | c) = log N(f(x; c); 0, I) + log |det df(x; c)/dx|

and a sample is ``x = f^{-1}(z; c)`` with ``z ~ N(0, I)``. State-only imitation learning
(Boborzi et al. 2022, "Imitation Learning by State-Only Distribution Matching", SOIL-TDM,
https://arxiv.org/abs/2202.04332) uses such conditional flows for the expert's and the policy's
state-transition densities ``p(s' | s)``; this module is the one flow every algorithm shares.

**Transforms.** The flows themselves come from zuko (https://github.com/probabilists/zuko, pure
torch), not hand-written layers; ``FlowSettings.kind`` picks one of two:

- ``"realnvp"``: affine coupling layers (Dinh, Sohl-Dickstein & Bengio 2017, "Density
  estimation using Real NVP", https://arxiv.org/abs/1605.08803) -- ``zuko.flows.RealNVP``.
  Each layer keeps half of the features and scales and shifts the other half by amounts an MLP
  computes from the kept half and the context; the halves alternate between layers.
- ``"spline"``: rational-quadratic spline coupling layers (Durkan, Bekasov, Murray & Papamakarios
  2019, "Neural Spline Flows", https://arxiv.org/abs/1906.04032, RQ-NSF (C)) --
  ``zuko.flows.NSF`` with two passes, i.e. coupling rather than autoregressive, so that
  sampling costs one network evaluation per layer like density evaluation does. The splines
  act on ``[-5, 5]`` and are the identity outside it, which the normalization below makes the
  bulk of the data fall into.

With a single feature there is nothing to couple: zuko then uses element-wise transforms whose
parameters depend on the context only (for ``"realnvp"`` an affine map, i.e. a Gaussian whose
mean and scale depend on the context).

**Normalization.** ``x`` and ``c`` are standardized per dimension with statistics stored as
buffers (``rlscale.modules.dynamics.normalizer.Normalizer``), set from data by
``update_normalization`` (``fit_flow`` does it on the training rows). The flow proper sees
``x~ = (x - mu) / sigma``; the map from raw ``x`` to ``z`` is the composition, so its log-Jacobian
gains ``-sum_i log sigma_i`` and ``log_prob`` stays the exact density in raw units:

    log p(x | c) = log p~(x~ | c~) - sum_i log sigma_i

The context's scaling is not part of the map from ``x`` to ``z`` and adds no term. ``to_base``
and ``from_base`` include the normalization, so ``log_prob(x, c)`` equals the base
log-density of ``to_base(x, c)`` plus the log-determinant of ``to_base``'s Jacobian in ``x``.

**Fitting** (``fit_flow``): maximum likelihood -- Adam on the mean negative log-likelihood of
minibatches of training rows, with a held-out fraction of rows to measure the fitted density on.

Shapes are ``x [B, features]`` and ``context [B, context_features]``; a flow built with
``context_features=0`` is unconditional and takes no context. The module follows ``.to()``:
inputs must be on its device and dtype; ``fit_flow`` moves its data there.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import zuko
from torch import Tensor, nn

from rlscale.modules.dynamics.ensemble import check_fit_settings, split_rows
from rlscale.modules.dynamics.normalizer import Normalizer

FLOW_KINDS = ("realnvp", "spline")
SPLINE_COUPLING_PASSES = 2
"""zuko's NSF is autoregressive unless told to invert in two passes, which is coupling."""


@dataclass(frozen=True)
class FlowSettings:
    """The flow's architecture, with its defaults in this one place.

    - ``kind``: ``"realnvp"`` (affine coupling) or ``"spline"`` (rational-quadratic spline
      coupling), module docstring;
    - ``transforms``: number of coupling layers;
    - ``hidden_sizes``: hidden widths of each layer's MLP (ReLU, zuko's default);
    - ``spline_bins``: bins of each spline (``"spline"`` only).
    """

    kind: str = "realnvp"
    transforms: int = 4
    hidden_sizes: tuple[int, ...] = (64, 64)
    spline_bins: int = 8

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden_sizes", tuple(self.hidden_sizes))
        if self.kind not in FLOW_KINDS:
            raise ValueError(f"unknown flow kind {self.kind!r}; choose one of {FLOW_KINDS}")
        if self.transforms < 1:
            raise ValueError(
                f"a flow needs at least one transform, got transforms={self.transforms}"
            )
        if any(not isinstance(size, int) or size < 1 for size in self.hidden_sizes):
            raise ValueError(f"hidden_sizes must be positive integers, got {self.hidden_sizes}")
        if self.spline_bins < 2:
            raise ValueError(f"spline_bins must be at least 2, got {self.spline_bins}")


def _zuko_flow(features: int, context_features: int, settings: FlowSettings) -> zuko.flows.Flow:
    common = {
        "features": features,
        "context": context_features,
        "transforms": settings.transforms,
        "hidden_features": settings.hidden_sizes,
    }
    if settings.kind == "realnvp":
        return zuko.flows.RealNVP(**common)
    return zuko.flows.NSF(**common, bins=settings.spline_bins, passes=SPLINE_COUPLING_PASSES)


class ConditionalFlow(nn.Module):
    """A normalizing flow over ``x [B, features]`` given ``context [B, context_features]``
    (module docstring), taking and returning raw, unnormalized values.

    Call ``update_normalization`` on the training data before training (``fit_flow`` does).
    The network weights are initialized from torch's global random state.
    """

    def __init__(
        self, features: int, context_features: int = 0, settings: FlowSettings | None = None
    ):
        super().__init__()
        if features < 1:
            raise ValueError(f"a flow needs at least one feature, got features={features}")
        if context_features < 0:
            raise ValueError(
                f"context_features must be 0 (unconditional) or positive, got {context_features}"
            )
        self.settings = settings or FlowSettings()
        self.features = features
        self.context_features = context_features
        self.normalizer = Normalizer(features)
        self.context_normalizer = Normalizer(context_features) if context_features else None
        # zuko's RealNVP and NSF have a fixed standard normal base (buffers loc 0, scale 1):
        # ``rsample`` draws that noise itself, so that a generator can drive it.
        self.flow = _zuko_flow(features, context_features, self.settings)

    # ---------------------------------------------------------------------------- normalization

    def update_normalization(self, x: Tensor, context: Tensor | None = None) -> None:
        """Set the statistics of ``x`` (and of the context) from these rows."""
        self.check(x, context)
        self.normalizer.fit(x)
        if self.context_normalizer is not None:
            self.context_normalizer.fit(context)

    def log_scale(self) -> Tensor:
        """``sum_i log sigma_i``: what the normalization takes off every raw log-density."""
        return self.normalizer.std.log().sum()

    # --------------------------------------------------------------------------------- density

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """``log p(x | context)`` in raw units, ``[B]``."""
        self.check(x, context)
        distribution = self.flow(self._normalized_context(context))
        return distribution.log_prob(self.normalizer.normalize(x)) - self.log_scale()

    def to_base(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """The base variable ``z [B, features]`` of raw ``x`` (normalization included)."""
        self.check(x, context)
        transform = self.flow.transform(self._normalized_context(context))
        return transform(self.normalizer.normalize(x))

    def from_base(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        """Raw ``x [B, features]`` of the base variable ``z``: the inverse of ``to_base``."""
        self.check(z, context, name="z")
        transform = self.flow.transform(self._normalized_context(context))
        return self.normalizer.denormalize(transform.inv(z))

    # -------------------------------------------------------------------------------- sampling

    def rsample(
        self,
        context: Tensor | None = None,
        num_samples: int | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Samples differentiable in the flow's parameters and the context (reparameterized).

        Conditional flow: ``context [B, c]`` gives one sample per row, ``[B, features]``, or
        with ``num_samples=S`` that many per row, ``[S, B, features]``. Unconditional flow: no
        context, ``num_samples`` required, ``[S, features]``. ``generator`` drives the base
        noise (drawn on its device, then moved to the flow's).
        """
        rows, leading = self._sample_shape(context, num_samples)
        reference = self.normalizer.mean
        draw_device = generator.device if generator is not None else reference.device
        z = torch.randn(
            rows, self.features, generator=generator, device=draw_device, dtype=reference.dtype
        ).to(reference.device)
        if context is not None and num_samples is not None:
            context = context.repeat(num_samples, 1)
        return self.from_base(z, context).reshape(*leading, self.features)

    @torch.no_grad()
    def sample(
        self,
        context: Tensor | None = None,
        num_samples: int | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """``rsample`` without gradients."""
        return self.rsample(context, num_samples, generator=generator)

    # ------------------------------------------------------------------------------- checks

    def _normalized_context(self, context: Tensor | None) -> Tensor | None:
        if self.context_normalizer is None:
            return None
        return self.context_normalizer.normalize(context)

    def _sample_shape(
        self, context: Tensor | None, num_samples: int | None
    ) -> tuple[int, tuple[int, ...]]:
        if num_samples is not None and num_samples < 1:
            raise ValueError(f"num_samples must be positive, got {num_samples}")
        self._check_context(context, rows=None)
        if self.context_features == 0:
            if num_samples is None:
                raise ValueError(
                    "this flow is unconditional: pass num_samples to say how many samples to draw"
                )
            return num_samples, (num_samples,)
        rows = context.shape[0]
        if num_samples is None:
            return rows, (rows,)
        return num_samples * rows, (num_samples, rows)

    def check(self, x: Tensor, context: Tensor | None, name: str = "x") -> None:
        """Raise ``ValueError`` unless ``x`` is ``[B, features]`` and the context fits it."""
        if x.dim() != 2 or x.shape[1] != self.features:
            raise ValueError(
                f"expected {name} of shape [batch, {self.features}], got {tuple(x.shape)}"
            )
        self._check_context(context, rows=x.shape[0])

    def _check_context(self, context: Tensor | None, rows: int | None) -> None:
        if self.context_features == 0:
            if context is not None:
                raise ValueError(
                    "this flow is unconditional (context_features=0) but a context of shape "
                    f"{tuple(context.shape)} was given; pass context=None, or build the flow "
                    "with context_features set"
                )
            return
        if context is None:
            raise ValueError(
                f"this flow is conditional: pass a context of shape [batch, "
                f"{self.context_features}]"
            )
        if context.dim() != 2 or context.shape[1] != self.context_features:
            raise ValueError(
                f"expected context of shape [batch, {self.context_features}], "
                f"got {tuple(context.shape)}"
            )
        if rows is not None and context.shape[0] != rows:
            raise ValueError(
                f"context has {context.shape[0]} rows but the input has {rows}; "
                "give one context row per input row"
            )

    def extra_repr(self) -> str:
        return (
            f"features={self.features}, context_features={self.context_features}, "
            f"kind={self.settings.kind!r}"
        )


# -------------------------------------------------------------------------------------- fitting


@dataclass(frozen=True)
class FlowFitSettings:
    """``fit_flow``'s knobs, with their defaults in this one place.

    - ``steps``: Adam steps; ``batch_size``: rows per step (drawn with replacement);
    - ``learning_rate``; ``weight_decay``: Adam's L2 coefficient on every parameter;
    - ``cosine_decay``: anneal the learning rate from ``learning_rate`` to 0 along a half
      cosine over the steps (Loshchilov & Hutter 2017, "SGDR", https://arxiv.org/abs/1608.03983),
      as Durkan et al. 2019 train their flows: the last steps then average out minibatch noise
      instead of leaving the density wherever the last minibatches pushed it;
    - ``holdout_fraction``: share of the rows kept out of training to measure the flow on;
    - ``fit_normalization``: set the normalization statistics from the training rows first
      (turn off to keep statistics set earlier, e.g. when continuing training).
    """

    steps: int = 1000
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    cosine_decay: bool = True
    holdout_fraction: float = 0.1
    fit_normalization: bool = True

    def __post_init__(self) -> None:
        check_fit_settings(self)


@dataclass(frozen=True)
class FlowFitResult:
    """``train_losses [steps]`` (CPU; each step's mean negative log-likelihood, raw units) and
    the mean negative log-likelihood of the held-out rows (None when nothing was held out)."""

    train_losses: Tensor
    holdout_nll: float | None
    train_rows: int
    holdout_rows: int


def fit_flow(
    flow: ConditionalFlow,
    x: Tensor,
    context: Tensor | None = None,
    *,
    settings: FlowFitSettings | None = None,
    generator: torch.Generator | None = None,
    optimizer: torch.optim.Optimizer | None = None,
) -> FlowFitResult:
    """Fit ``flow`` to rows ``x [N, features]`` (given ``context [N, c]``) by max likelihood.

    The data are moved to the flow's device and dtype. ``generator`` drives the split and the
    minibatches (its device draws the indices). Without ``optimizer`` a new Adam with the
    settings' learning rate and weight decay is made; pass one to keep its moment estimates
    across calls (those two settings are then unused).
    """
    settings = settings or FlowFitSettings()
    reference = flow.normalizer.mean
    x = x.to(device=reference.device, dtype=reference.dtype)
    if context is not None:
        context = context.to(device=reference.device, dtype=reference.dtype)
    flow.check(x, context)
    train_rows, holdout_rows = split_rows(x.shape[0], settings.holdout_fraction, generator)
    train = _rows(x, context, train_rows)
    if settings.fit_normalization:
        flow.update_normalization(*train)
    optimizer = optimizer or torch.optim.Adam(
        flow.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    losses = _train(flow, train, settings, generator, optimizer)
    holdout_nll = None
    if holdout_rows.numel() > 0:
        with torch.no_grad():
            holdout_nll = -flow.log_prob(*_rows(x, context, holdout_rows)).mean().item()
    return FlowFitResult(
        train_losses=losses,
        holdout_nll=holdout_nll,
        train_rows=train_rows.numel(),
        holdout_rows=holdout_rows.numel(),
    )


def _rows(x: Tensor, context: Tensor | None, indices: Tensor) -> tuple[Tensor, Tensor | None]:
    indices = indices.to(x.device)
    return x[indices], None if context is None else context[indices]


def _train(
    flow: ConditionalFlow,
    train: tuple[Tensor, Tensor | None],
    settings: FlowFitSettings,
    generator: torch.Generator | None,
    optimizer: torch.optim.Optimizer,
) -> Tensor:
    x, context = train
    draw_device = generator.device if generator is not None else None
    schedule = (
        torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=settings.steps)
        if settings.cosine_decay and settings.steps > 0
        else None
    )
    losses = []
    for _ in range(settings.steps):
        batch = torch.randint(
            x.shape[0], (settings.batch_size,), generator=generator, device=draw_device
        )
        loss = -flow.log_prob(*_rows(x, context, batch)).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if schedule is not None:
            schedule.step()
        losses.append(loss.detach())
    return torch.stack(losses).cpu() if losses else torch.empty(0)
