"""A recurrent state-space model (RSSM): the latent world model of PlaNet and Dreamer.

PlaNet (Hafner et al. 2019, "Learning Latent Dynamics for Planning from Pixels", ICML,
https://arxiv.org/abs/1811.04551, Sec. 3) models a sequence of observations ``o_t``, actions
``a_t`` and rewards ``r_t`` through a state made of a deterministic part ``h_t`` (a GRU's state)
and a stochastic part ``z_t``:

    h_t = GRU(h_{t-1}, [z_{t-1}, a_t])                  deterministic recurrence
    z_t ~ p(z_t | h_t)                                  prior (dynamics; what imagination uses)
    z_t ~ q(z_t | h_t, e_t),  e_t = encoder(o_t)        posterior (filtering real data)
    o_t ~ N(decoder(h_t, z_t), I),  r_t ~ N(reward(h_t, z_t), 1)
    c_t ~ Bernoulli(continue(h_t, z_t))                 not terminated (Dreamer)

Here ``a_t`` is the action taken *before* ``o_t`` (zeros at an episode's start), so
``r_t`` / ``c_t`` are what arriving at ``o_t`` brought. ``features = [h_t, z_t]`` is what the
heads, a planner's reward sum and an actor see.

**Latents.** ``"gaussian"``: ``z ~ N(mu, sigma^2)`` with ``sigma = softplus(.) + min_std``,
sampled by reparameterization (PlaNet, DreamerV1: Hafner et al. 2020, "Dream to Control",
ICLR, https://arxiv.org/abs/1912.01603). ``"categorical"``: ``z`` is ``groups`` one-hot vectors
of ``classes`` each (DreamerV2: Hafner et al. 2021, "Mastering Atari with Discrete World
Models", ICLR, https://arxiv.org/abs/2010.02193, Sec. 2), sampled with straight-through
gradients ``z = onehot + p - sg(p)``; the probabilities mix in ``unimix`` of the uniform
distribution (DreamerV3, Hafner et al. 2023, https://arxiv.org/abs/2301.04104) so no class
gets probability zero and the KL stays finite.

**Loss** (``loss``), averaged over the batch and time steps, each term in nats:

    L = recon_scale  * 0.5 ||target(o_t) - decoder(f_t)||^2        (summed over o's elements)
      + reward_scale * 0.5 (r_t - reward(f_t))^2                    (not at an episode's first step)
      + continue_scale * BCE(c_t, continue(f_t))                    (not at an episode's first step)
      + kl_scale * [ alpha       max(free, KL(sg(q_t) || p_t))
                   + (1 - alpha) max(free, KL(q_t || sg(p_t))) ]

``target`` is the pixels scaled to ``[-0.5, 0.5]`` for images and ``symlog(o)`` (or ``o``) for
vectors. KL balancing (DreamerV2, Sec. 2, Algorithm 2) with ``alpha = kl_balance`` trains the
prior toward the posterior faster than it regularizes the posterior toward the prior. Free nats
(PlaNet, App. A; DreamerV3's free bits) clamp each step's summed KL from below at ``free``: a
step whose KL is already below it adds a constant and no gradient, so the model is not pushed
to encode less than ``free`` nats. The reward and continue of a first step were received before
the episode began (they are placeholders), so they are masked out.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rlscale.modules.networks.mlp import ACTIVATIONS, build_mlp
from rlscale.modules.world_models.encoders import (
    ConvDecoder,
    ConvEncoder,
    VectorDecoder,
    VectorEncoder,
    image_target,
    is_image,
    symlog,
)

LATENT_KINDS = ("gaussian", "categorical")


@dataclass(frozen=True)
class WorldModelSpec:
    """The world model's sizes and loss weights; every default is defined here once.

    Defaults are sized for a CPU (PlaNet's 200-unit GRU and 30 Gaussian latents; DreamerV2's
    32 x 32 categoricals shrunk to 16 x 16). ``observation_shape`` is ``(d,)`` for vectors or
    ``(H, W, C)`` for uint8 images; ``action_dim`` is the flat action size (the caller one-hot
    encodes discrete actions). ``hidden_size`` is the width of the recurrent core (the GRU's
    input layer, the prior and posterior nets) and, with ``mlp_layers``, of the vector
    encoder, the decoder and the reward and continue heads, unless ``mlp_hidden_sizes`` gives
    those MLPs' layer widths itself (an algorithm's ``hidden_sizes``); ``conv_depth`` and
    ``conv_layers`` size the
    image encoder and decoder. ``min_std`` bounds the Gaussian latents' deviation from below;
    ``unimix`` is the uniform share mixed into categorical probabilities. ``symlog_observations``
    encodes and reconstructs ``symlog(o)`` for vectors.
    """

    observation_shape: tuple[int, ...]
    action_dim: int
    deterministic_size: int = 200
    latent: Literal["gaussian", "categorical"] = "gaussian"
    stochastic_size: int = 30
    categorical_groups: int = 16
    categorical_classes: int = 16
    hidden_size: int = 200
    mlp_layers: int = 2
    mlp_hidden_sizes: tuple[int, ...] | None = None
    activation: str = "elu"
    conv_depth: int = 32
    conv_layers: int = 4
    min_std: float = 0.1
    unimix: float = 0.01
    symlog_observations: bool = True
    free_nats: float = 1.0
    kl_balance: float = 0.8
    kl_scale: float = 1.0
    recon_scale: float = 1.0
    reward_scale: float = 1.0
    continue_scale: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "observation_shape", tuple(int(n) for n in self.observation_shape))
        if len(self.observation_shape) not in (1, 3) or min(self.observation_shape) < 1:
            raise ValueError(
                f"observation_shape must be (d,) for vectors or (H, W, C) for images, "
                f"got {self.observation_shape}"
            )
        if self.latent not in LATENT_KINDS:
            raise ValueError(f"latent must be one of {LATENT_KINDS}, got {self.latent!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; one of {tuple(ACTIVATIONS)}")
        for name in ("action_dim", "deterministic_size", "stochastic_size", "hidden_size"):
            _require(name, getattr(self, name), lambda v: isinstance(v, int) and v >= 1, ">= 1")
        for name in ("categorical_groups", "categorical_classes", "conv_depth", "conv_layers"):
            _require(name, getattr(self, name), lambda v: isinstance(v, int) and v >= 1, ">= 1")
        _require("mlp_layers", self.mlp_layers, lambda v: isinstance(v, int) and v >= 0, ">= 0")
        if self.mlp_hidden_sizes is not None:
            object.__setattr__(self, "mlp_hidden_sizes", tuple(self.mlp_hidden_sizes))
            if not all(isinstance(v, int) and v >= 1 for v in self.mlp_hidden_sizes):
                raise ValueError(
                    f"mlp_hidden_sizes must be positive layer widths, got {self.mlp_hidden_sizes}"
                )
        _require("kl_balance", self.kl_balance, lambda v: 0 <= v <= 1, "in [0, 1]")
        _require("unimix", self.unimix, lambda v: 0 <= v < 1, "in [0, 1)")
        for name in ("min_std", "free_nats", "kl_scale", "recon_scale", "reward_scale"):
            _require(name, getattr(self, name), lambda v: math.isfinite(v) and v >= 0, ">= 0")
        _require("continue_scale", self.continue_scale, lambda v: v >= 0, ">= 0")

    @property
    def head_hidden_sizes(self) -> tuple[int, ...]:
        """Layer widths of the vector encoder, the decoder and the reward and continue heads."""
        if self.mlp_hidden_sizes is not None:
            return self.mlp_hidden_sizes
        return (self.hidden_size,) * self.mlp_layers

    @property
    def stochastic_flat_size(self) -> int:
        """Width of ``z``: ``stochastic_size`` or ``groups * classes`` one-hots."""
        if self.latent == "gaussian":
            return self.stochastic_size
        return self.categorical_groups * self.categorical_classes

    @property
    def feature_size(self) -> int:
        """Width of ``features = [h, z]``."""
        return self.deterministic_size + self.stochastic_flat_size


def _require(name: str, value, ok: Callable, what: str) -> None:
    if not ok(value):
        raise ValueError(f"{name} must be {what}, got {name}={value!r}")


@dataclass
class LatentState:
    """A batch of model states of any leading shape (``[N]``, ``[B, T]``, ``[H + 1, N]``).

    ``deterministic`` is ``h``, ``stochastic`` is ``z`` (a Gaussian sample or flat one-hots);
    ``mean``/``std`` (Gaussian) or ``logits`` (categorical, ``[..., groups, classes]``) are the
    parameters of the distribution ``z`` was drawn from, which the KL needs.
    """

    deterministic: Tensor
    stochastic: Tensor
    mean: Tensor | None = None
    std: Tensor | None = None
    logits: Tensor | None = None

    def features(self) -> Tensor:
        """``cat(h, z)``: what the heads, planners and actors see."""
        return torch.cat([self.deterministic, self.stochastic], dim=-1)

    def map(self, fn: Callable[[Tensor], Tensor]) -> LatentState:
        """The state with ``fn`` applied to each tensor (e.g. indexing, ``detach``)."""
        return LatentState(**{f.name: _apply(fn, getattr(self, f.name)) for f in fields(self)})

    def detach(self) -> LatentState:
        return self.map(Tensor.detach)

    def flatten(self) -> LatentState:
        """Leading ``[B, T]`` (or any two) dimensions merged into one: ``[B * T]``."""
        return self.map(lambda t: t.flatten(0, 1))

    @staticmethod
    def stack(states: list[LatentState], dim: int = 0) -> LatentState:
        """Stack states along a new leading dimension ``dim``."""
        first = states[0]
        return LatentState(
            **{
                f.name: None
                if getattr(first, f.name) is None
                else torch.stack([getattr(s, f.name) for s in states], dim=dim)
                for f in fields(first)
            }
        )


def _apply(fn: Callable[[Tensor], Tensor], value: Tensor | None) -> Tensor | None:
    return None if value is None else fn(value)


@dataclass
class ImaginedRollout:
    """An imagined trajectory: ``features [H + 1, N, F]`` (index 0 the start),
    ``actions [H, N, A]``, and the prior states ``[H + 1, N]`` they came from."""

    features: Tensor
    actions: Tensor
    states: LatentState


@dataclass
class WorldModelLoss:
    """One training step's loss: ``total`` (scalar, differentiable), float ``metrics``
    (recon, reward, continue, kl: the raw mean KL before free nats, total) and the detached
    ``posteriors [B, T]`` (start states for imagination)."""

    total: Tensor
    metrics: dict[str, float]
    posteriors: LatentState = field(repr=False)


class WorldModel(nn.Module):
    """The RSSM with its encoder, decoder, reward and continue heads (module docstring)."""

    def __init__(self, spec: WorldModelSpec):
        super().__init__()
        self.spec = spec
        hidden, widths, act = spec.hidden_size, list(spec.head_hidden_sizes), spec.activation
        if is_image(spec.observation_shape):
            self.encoder = ConvEncoder(
                spec.observation_shape, spec.conv_depth, spec.conv_layers, act
            )
            self.decoder = ConvDecoder(
                spec.feature_size, spec.observation_shape, spec.conv_depth, spec.conv_layers, act
            )
        else:
            dim = spec.observation_shape[0]
            self.encoder = VectorEncoder(dim, widths, act, spec.symlog_observations)
            self.decoder = VectorDecoder(spec.feature_size, dim, widths, act)
        stoch, deter = spec.stochastic_flat_size, spec.deterministic_size
        self.input_layer = nn.Sequential(nn.Linear(stoch + spec.action_dim, hidden), _act(act))
        self.gru = nn.GRUCell(hidden, deter)
        params = 2 * stoch if spec.latent == "gaussian" else stoch
        self.prior_net = build_mlp(deter, [hidden], act, output_dim=params)
        self.posterior_net = build_mlp(
            deter + self.encoder.output_size, [hidden], act, output_dim=params
        )
        self.reward_head = build_mlp(spec.feature_size, widths, act, output_dim=1)
        self.continue_head = build_mlp(spec.feature_size, widths, act, output_dim=1)

    # -- state transitions -------------------------------------------------------------------

    def initial_state(self, batch_size: int) -> LatentState:
        """The all-zeros state ``[batch_size]`` every episode starts from."""
        device = next(self.parameters()).device
        zeros = torch.zeros(batch_size, self.spec.deterministic_size, device=device)
        stochastic = torch.zeros(batch_size, self.spec.stochastic_flat_size, device=device)
        return LatentState(zeros, stochastic, **self._zero_params(stochastic))

    def _zero_params(self, stochastic: Tensor) -> dict[str, Tensor]:
        if self.spec.latent == "gaussian":
            return {"mean": torch.zeros_like(stochastic), "std": torch.ones_like(stochastic)}
        shape = (
            *stochastic.shape[:-1],
            self.spec.categorical_groups,
            self.spec.categorical_classes,
        )
        return {"logits": torch.zeros(shape, device=stochastic.device)}

    def _latent(self, deterministic: Tensor, raw: Tensor, sample: bool) -> LatentState:
        """The state with ``h = deterministic`` and ``z`` drawn from the distribution ``raw``
        parameterizes (its mode when ``sample`` is False)."""
        spec = self.spec
        if spec.latent == "gaussian":
            mean, std_raw = raw.chunk(2, dim=-1)
            std = F.softplus(std_raw) + spec.min_std
            z = mean + std * torch.randn_like(std) if sample else mean
            return LatentState(deterministic, z, mean=mean, std=std)
        logits = raw.unflatten(-1, (spec.categorical_groups, spec.categorical_classes))
        probs = logits.softmax(-1)
        if spec.unimix > 0:
            probs = (1 - spec.unimix) * probs + spec.unimix / spec.categorical_classes
            logits = probs.log()
        if sample:
            index = torch.multinomial(probs.flatten(0, -2).detach(), 1).reshape(probs.shape[:-1])
        else:
            index = probs.argmax(-1)
        onehot = F.one_hot(index, spec.categorical_classes).to(probs.dtype)
        z = (onehot + probs - probs.detach()).flatten(-2)  # straight-through gradients
        return LatentState(deterministic, z, logits=logits)

    def img_step(self, state: LatentState, action: Tensor, sample: bool = True) -> LatentState:
        """The prior ``p(z_t | h_t)`` after taking ``action [N, A]`` in ``state [N]``."""
        x = self.input_layer(torch.cat([state.stochastic, action], dim=-1))
        deterministic = self.gru(x, state.deterministic)
        return self._latent(deterministic, self.prior_net(deterministic), sample)

    def observe_step(
        self,
        state: LatentState,
        action: Tensor,
        embedding: Tensor,
        is_first: Tensor,
        sample: bool = True,
    ) -> tuple[LatentState, LatentState]:
        """One filtering step on ``[N]`` rows: ``(posterior, prior)`` after ``action`` led to
        the observation embedded as ``embedding`` (``self.encoder(o)``); rows where
        ``is_first`` start from the initial state with a zero action."""
        keep = (~is_first.bool()).to(action.dtype)[:, None]
        # Only h and z carry over (the distribution parameters are not inputs of a step), so
        # zeroing them is the reset to initial_state.
        state = LatentState(state.deterministic * keep, state.stochastic * keep)
        prior = self.img_step(state, action * keep, sample)
        raw = self.posterior_net(torch.cat([prior.deterministic, embedding], dim=-1))
        return self._latent(prior.deterministic, raw, sample), prior

    # -- public API --------------------------------------------------------------------------

    def observe(
        self, observations: Tensor, actions: Tensor, is_first: Tensor, sample: bool = True
    ) -> tuple[LatentState, LatentState]:
        """Filter sequences: ``observations [B, T, *obs]``, ``actions [B, T, A]`` (the action
        taken before each observation), ``is_first [B, T]``. Returns ``(posteriors, priors)``,
        each ``[B, T]``."""
        batch, steps = actions.shape[:2]
        embeddings = self.encoder(observations)
        state = self.initial_state(batch)
        posteriors, priors = [], []
        for t in range(steps):
            state, prior = self.observe_step(
                state, actions[:, t], embeddings[:, t], is_first[:, t], sample
            )
            posteriors.append(state)
            priors.append(prior)
        return LatentState.stack(posteriors, 1), LatentState.stack(priors, 1)

    def imagine(
        self,
        start: LatentState,
        policy: Callable[[Tensor], Tensor],
        horizon: int,
        sample: bool = True,
    ) -> ImaginedRollout:
        """Roll ``policy(features [N, F]) -> actions [N, A]`` out for ``horizon`` steps of the
        prior from ``start [N]``."""
        states, actions = [start], []
        for _ in range(horizon):
            action = policy(states[-1].features())
            actions.append(action)
            states.append(self.img_step(states[-1], action, sample))
        return self._rollout(states, actions, start)

    def imagine_actions(
        self, start: LatentState, actions: Tensor, sample: bool = True
    ) -> ImaginedRollout:
        """Open loop from ``start [N]`` under ``actions [H, N, A]``."""
        states = [start]
        for action in actions:
            states.append(self.img_step(states[-1], action, sample))
        return self._rollout(states, list(actions), start)

    def _rollout(self, states: list[LatentState], actions: list[Tensor], start) -> ImaginedRollout:
        stacked = LatentState.stack(states)
        if actions:
            action_tensor = torch.stack(actions)
        else:
            action_tensor = start.stochastic.new_zeros(
                0, start.stochastic.shape[0], self.spec.action_dim
            )
        return ImaginedRollout(stacked.features(), action_tensor, stacked)

    def predict_reward(self, features: Tensor) -> Tensor:
        """Mean reward ``[...]`` for features ``[..., F]``."""
        return self.reward_head(features).squeeze(-1)

    def continue_logits(self, features: Tensor) -> Tensor:
        return self.continue_head(features).squeeze(-1)

    def predict_continue(self, features: Tensor) -> Tensor:
        """Probability ``[...]`` that the episode goes on after arriving at these features."""
        return torch.sigmoid(self.continue_logits(features))

    def decode(self, features: Tensor) -> Tensor:
        """The decoder's mean in target space (``[-0.5, 0.5]`` pixels, or symlog vectors)."""
        return self.decoder(features)

    def observation_target(self, observations: Tensor) -> Tensor:
        """What the decoder is trained to output for ``observations``."""
        if is_image(self.spec.observation_shape):
            return image_target(observations)
        x = observations.float()
        return symlog(x) if self.spec.symlog_observations else x

    def kl(self, lhs: LatentState, rhs: LatentState) -> Tensor:
        """``KL(lhs || rhs)`` summed over the latent, per row ``[...]``."""
        if self.spec.latent == "gaussian":
            var_ratio = (lhs.std / rhs.std) ** 2
            diff = ((lhs.mean - rhs.mean) / rhs.std) ** 2
            return 0.5 * (var_ratio + diff - 1 - var_ratio.log()).sum(-1)
        lhs_log = lhs.logits.log_softmax(-1)
        rhs_log = rhs.logits.log_softmax(-1)
        return (lhs_log.exp() * (lhs_log - rhs_log)).sum((-2, -1))

    def kl_loss(self, posteriors: LatentState, priors: LatentState) -> tuple[Tensor, Tensor]:
        """``(balanced KL with free nats [...], raw KL [...])`` (module docstring)."""
        spec = self.spec
        dynamics = self.kl(posteriors.detach(), priors)  # trains the prior
        representation = self.kl(posteriors, priors.detach())  # regularizes the posterior
        balanced = spec.kl_balance * dynamics.clamp(min=spec.free_nats) + (
            1 - spec.kl_balance
        ) * representation.clamp(min=spec.free_nats)
        return spec.kl_scale * balanced, dynamics.detach()

    def loss(
        self,
        observations: Tensor,
        actions: Tensor,
        rewards: Tensor,
        continues: Tensor,
        is_first: Tensor,
    ) -> WorldModelLoss:
        """The loss of the module docstring on sequences ``[B, T]``."""
        spec = self.spec
        posteriors, priors = self.observe(observations, actions, is_first)
        features = posteriors.features()
        error = (self.decode(features) - self.observation_target(observations)) ** 2
        recon = 0.5 * error.flatten(2).sum(-1).mean()
        counted = (~is_first.bool()).float()
        denominator = counted.sum().clamp(min=1)
        reward = (0.5 * (self.predict_reward(features) - rewards.float()) ** 2 * counted).sum()
        cont = F.binary_cross_entropy_with_logits(
            self.continue_logits(features), continues.float(), reduction="none"
        )
        cont = (cont * counted).sum() / denominator
        reward = reward / denominator
        kl, raw_kl = self.kl_loss(posteriors, priors)
        kl = kl.mean()
        total = (
            spec.recon_scale * recon + spec.reward_scale * reward + spec.continue_scale * cont + kl
        )
        metrics = {
            "recon": recon.item(),
            "reward": reward.item(),
            "continue": cont.item(),
            "kl": raw_kl.mean().item(),
            "total": total.item(),
        }
        return WorldModelLoss(total, metrics, posteriors.detach())


def _act(name: str) -> nn.Module:
    return ACTIVATIONS[name]()


__all__ = [
    "LATENT_KINDS",
    "ImaginedRollout",
    "LatentState",
    "WorldModel",
    "WorldModelLoss",
    "WorldModelSpec",
]
