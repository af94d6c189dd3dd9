"""The densities of state-only IL and the imitation reward they give (see the package docstring).

All three models are conditional normalizing flows (``rlscale.modules.generative.flows``) over
the state change ``d = s' - s``, the pair being given by ``s`` and ``d`` as well as by ``s`` and
``s'``: the shift has Jacobian 1, so ``log p(s' | .) = log p(d | .)`` exactly, and a flow
fits the small change far more easily than the next state itself.

- ``expert``: ``p_E(d | s)``, fitted once on the demonstrations' ``(s, s')`` pairs;
- ``forward``: the dynamics ``p(d | s, a)``, refitted on all of the agent's transitions;
- ``inverse``: the inverse-action policy ``pi'(a | s, d)``, refitted on the agent's latest
  transitions (it is the posterior of the current policy's actions). A flow over ``a`` (in
  the policy's own units, [-1, 1]) for Box actions; for Discrete actions a flow has no
  density to model, and ``pi'`` is a categorical classifier (an MLP's softmax) instead.

**Smoothing** (``density_noise``): on deterministic dynamics (CartPole) every ``p(d | .)`` is a
point mass; a flow then grows as sharp as its training lets it, and the log-ratio of two such
flows measures their training more than the transitions. Each flow over ``d`` is therefore
fitted to ``d`` plus Gaussian noise of ``density_noise`` times the demonstrations' per-feature
spread of ``d``, and given ``s`` with noise of as much of its spread (fresh draws in each of
``NOISE_COPIES`` copies of the rows): every density is then one of the same width, varying
smoothly between the states it was fitted on, and the ratio ``p_E(d|s) / p(d|s, a)`` is near
the expert's probability of the action that makes ``d``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rlscale.modules.generative.flows import (
    ConditionalFlow,
    FlowFitSettings,
    FlowSettings,
    fit_flow,
)
from rlscale.modules.networks.mlp import build_mlp

NOISE_COPIES = 4
"""Noisy copies of each row a smoothed flow is fitted on."""


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread: these models are small, and on 2 cores a second thread makes
    each of their steps several times slower (measured: 100 flow steps 2.3 s vs 0.34 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@dataclass(frozen=True)
class RewardParts:
    """``[rows]`` each: ``log p_E(s'|s)``, ``log p(s'|s, a)``, ``log pi'(a|s, s')``."""

    expert: Tensor
    forward: Tensor
    inverse: Tensor

    def reward(self, clip: float) -> Tensor:
        """``log p_E(s'|s) - log p(s'|s, a) + log pi'(a|s, s')`` clipped to ``[-clip, clip]``."""
        return (self.expert - self.forward + self.inverse).clamp(-clip, clip)


def with_absorbing_terminals(
    reward: Tensor, terminated: Tensor, gamma: float, clip: float
) -> Tensor:
    """``reward`` with each terminal transition followed by an absorbing state the expert never
    reaches: the reward's floor ``-clip`` there forever, ``sum_k>=1 gamma^k (-clip)``, added to
    the last step's reward (the TD target then stops there as usual)."""
    return reward + terminated.float() * gamma * (-clip) / (1.0 - gamma)


class CategoricalInverse(nn.Module):
    """``pi'(a | s, d)`` over Discrete actions: an MLP's softmax, fitted by cross-entropy."""

    def __init__(self, context_features: int, n_actions: int, hidden_sizes: tuple[int, ...]):
        super().__init__()
        self.net = build_mlp(context_features, hidden_sizes, "relu", n_actions)
        self.register_buffer("mean", torch.zeros(context_features))
        self.register_buffer("std", torch.ones(context_features))

    def log_prob(self, actions: Tensor, context: Tensor) -> Tensor:
        logits = self.net((context - self.mean) / self.std)
        return torch.log_softmax(logits, -1).gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)

    def fit(self, actions: Tensor, context: Tensor, settings: FlowFitSettings, optimizer) -> float:
        """Adam steps of cross-entropy on minibatches; returns the last steps' mean loss."""
        self.mean.copy_(context.mean(0))
        self.std.copy_(context.std(0).clamp_min(1e-6))
        losses = []
        for _ in range(settings.steps):
            rows = torch.randint(len(actions), (settings.batch_size,))
            loss = -self.log_prob(actions[rows], context[rows]).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        return float(np.mean(losses[-20:])) if losses else float("nan")


class TransitionDensities(nn.Module):
    """``p_E(d|s)``, ``p(d|s, a)`` and ``pi'(a|s, d)`` for one env's spaces, plain torch (fitted
    in the driver), and the imitation reward of a batch of transitions."""

    def __init__(
        self,
        observation_dim: int,
        action_space: gym.Space,
        flow: FlowSettings,
        noise: float,
    ):
        super().__init__()
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        self.action_features = (
            int(action_space.n) if self.discrete else int(np.prod(action_space.shape))
        )
        self.noise = noise
        self.expert = ConditionalFlow(observation_dim, observation_dim, flow)
        self.forward_model = ConditionalFlow(
            observation_dim, observation_dim + self.action_features, flow
        )
        if self.discrete:
            self.inverse = CategoricalInverse(
                2 * observation_dim, self.action_features, flow.hidden_sizes
            )
        else:
            self.inverse = ConditionalFlow(self.action_features, 2 * observation_dim, flow)
        # The demonstrations' per-feature spread of d: the smoothing noise's scale.
        self.register_buffer("change_scale", torch.ones(observation_dim))
        self.register_buffer("state_scale", torch.ones(observation_dim))
        self._optimizers: dict[str, torch.optim.Optimizer] = {}

    # ------------------------------------------------------------------------------- inputs

    def _encoded_actions(self, actions: Tensor) -> Tensor:
        if self.discrete:
            return F.one_hot(actions.long().reshape(-1), self.action_features).float()
        return actions.reshape(actions.shape[0], -1).float()

    def _smoothed(self, change: Tensor, states: Tensor) -> tuple[Tensor, Tensor]:
        """``NOISE_COPIES`` copies of the rows, ``d`` and ``s`` with fresh noise in each
        (module doc): the noise on ``s`` makes each density vary smoothly between the
        states it was fitted on, so that its log-density stays informative off them."""
        if self.noise == 0:
            return change, states
        change = change.repeat(NOISE_COPIES, 1)
        states = states.repeat(NOISE_COPIES, 1)
        noisy_change = change + torch.randn_like(change) * self.noise * self.change_scale
        noisy_states = states + torch.randn_like(states) * self.noise * self.state_scale
        return noisy_change, noisy_states

    # ------------------------------------------------------------------------------- fitting

    def _optimizer(self, name: str, module: nn.Module, settings: FlowFitSettings):
        """One Adam per model, kept across refits with its moment estimates."""
        if name not in self._optimizers:
            self._optimizers[name] = torch.optim.Adam(
                module.parameters(), lr=settings.learning_rate
            )
        return self._optimizers[name]

    def fit_expert(self, states: Tensor, next_states: Tensor, settings: FlowFitSettings) -> float:
        """Fit ``p_E(d|s)`` on the demonstrations; returns its held-out NLL."""
        change = next_states - states
        self.change_scale.copy_(change.std(0).clamp_min(1e-6))
        self.state_scale.copy_(states.std(0).clamp_min(1e-6))
        x, context = self._smoothed(change, states)
        result = fit_flow(self.expert, x, context, settings=settings)
        return _nll(result)

    def fit_agent_models(
        self,
        transitions: tuple[Tensor, Tensor, Tensor],
        latest: tuple[Tensor, Tensor, Tensor],
        settings: FlowFitSettings,
    ) -> dict[str, float]:
        """Refit ``p(d|s, a)`` on all of the agent's ``(s, a, s')`` and ``pi'(a|s, d)`` on the
        ``latest``; returns their held-out NLLs (``pi'``: its training cross-entropy)."""
        states, actions, next_states = transitions
        x, noisy_states = self._smoothed(next_states - states, states)
        copies = len(noisy_states) // len(states)
        encoded = self._encoded_actions(actions).repeat(copies, 1)
        context = torch.cat([noisy_states, encoded], -1)
        forward = fit_flow(
            self.forward_model,
            x,
            context,
            settings=settings,
            optimizer=self._optimizer("forward", self.forward_model, settings),
        )
        states, actions, next_states = latest
        context = torch.cat([states, next_states - states], -1)
        optimizer = self._optimizer("inverse", self.inverse, settings)
        if self.discrete:
            inverse_nll = self.inverse.fit(actions, context, settings, optimizer)
        else:
            inverse = fit_flow(
                self.inverse,
                self._encoded_actions(actions),
                context,
                settings=settings,
                optimizer=optimizer,
            )
            inverse_nll = _nll(inverse)
        return {"forward_model_nll": _nll(forward), "inverse_model_nll": inverse_nll}

    # ------------------------------------------------------------------------------- reward

    @torch.no_grad()
    def reward_parts(self, states: Tensor, actions: Tensor, next_states: Tensor) -> RewardParts:
        """The three log-densities of each transition ``(s, a, s')``."""
        change = next_states - states
        encoded = self._encoded_actions(actions)
        forward_context = torch.cat([states, encoded], -1)
        inverse_context = torch.cat([states, change], -1)
        inverse_input = actions if self.discrete else encoded
        return RewardParts(
            expert=self.expert.log_prob(change, states),
            forward=self.forward_model.log_prob(change, forward_context),
            inverse=self.inverse.log_prob(inverse_input, inverse_context),
        )


def _nll(result) -> float:
    if result.holdout_nll is not None:
        return float(result.holdout_nll)
    return float(result.train_losses[-20:].mean())
