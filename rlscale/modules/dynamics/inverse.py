"""An inverse dynamics model: which action took the system from ``s`` to ``s'``.

Behavioural cloning from observation (Torabi, Warnell & Stone 2018, "Behavioral Cloning from
Observation", IJCAI, https://arxiv.org/abs/1805.01954) learns ``p(a | s, s')`` from the agent's
own transitions and uses it to label a demonstrator's state pairs with actions. The model here
is an MLP on ``[s, s' - s]`` (standardized with statistics measured on the fitted data and
stored in the module, ``Normalizer``):

- Discrete actions: logits over the actions, fitted by cross-entropy; ``predict`` returns the
  most likely action;
- Box actions: the action's mean, fitted by squared error; ``predict`` returns it clipped to the
  bounds.

``fit`` takes Adam steps on minibatches of the transitions given (all of the agent's so far) and
reports the fit on a held-out fraction: accuracy (Discrete) or mean squared error (Box).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from rlscale.modules.dynamics.normalizer import Normalizer
from rlscale.modules.networks.mlp import build_mlp


@dataclass(frozen=True)
class InverseFit:
    """``loss``: the last training minibatch's; ``holdout``: accuracy (Discrete) or mean squared
    error (Box) on the held-out rows (None without any)."""

    loss: float
    holdout: float | None


class InverseDynamicsModel(nn.Module):
    def __init__(
        self,
        observation_dim: int,
        action_space: gym.Space,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "relu",
    ):
        super().__init__()
        if isinstance(action_space, gym.spaces.Discrete):
            self.discrete, outputs = True, int(action_space.n)
            self.low = self.high = None
        elif isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
            self.discrete, outputs = False, int(action_space.shape[0])
            self.low = torch.as_tensor(action_space.low, dtype=torch.float32)
            self.high = torch.as_tensor(action_space.high, dtype=torch.float32)
        else:
            raise ValueError(
                f"an inverse dynamics model predicts a Discrete or flat Box action, not "
                f"{action_space}"
            )
        self.normalizer = Normalizer(2 * observation_dim)
        self.network = build_mlp(2 * observation_dim, hidden_sizes, activation, outputs)

    def _inputs(self, states: Tensor, next_states: Tensor) -> Tensor:
        return self.normalizer.normalize(torch.cat([states, next_states - states], dim=-1))

    def forward(self, states: Tensor, next_states: Tensor) -> Tensor:
        """Logits ``[batch, n]`` (Discrete) or action means ``[batch, dim]`` (Box)."""
        return self.network(self._inputs(states, next_states))

    @torch.no_grad()
    def predict(self, states: Tensor, next_states: Tensor) -> Tensor:
        """The action that most likely led from each ``s`` to ``s'``: ``[batch]`` integers
        (Discrete) or ``[batch, dim]`` within the bounds (Box)."""
        output = self(states, next_states)
        if self.discrete:
            return output.argmax(dim=-1)
        return torch.clamp(output, self.low, self.high)

    def loss(self, states: Tensor, next_states: Tensor, actions: Tensor) -> Tensor:
        output = self(states, next_states)
        if self.discrete:
            return nn.functional.cross_entropy(output, actions.long().reshape(-1))
        return nn.functional.mse_loss(output, actions.float().reshape(output.shape))

    def fit(
        self,
        states: np.ndarray,
        actions: np.ndarray,
        next_states: np.ndarray,
        *,
        updates: int,
        batch_size: int,
        optimizer: torch.optim.Optimizer,
        rng: np.random.Generator,
        holdout_fraction: float = 0.1,
    ) -> InverseFit:
        """Refit the normalization on all rows, then ``updates`` Adam steps on minibatches of
        the training rows; report the held-out fit."""
        s, a, s_next = (torch.as_tensor(x) for x in (states, actions, next_states))
        s, s_next = s.float(), s_next.float()
        self.normalizer.fit(torch.cat([s, s_next - s], dim=-1))
        order = rng.permutation(len(s))
        held = order[: int(holdout_fraction * len(s))]
        train = order[len(held) :]
        loss = torch.zeros(())
        for _ in range(updates):
            rows = torch.as_tensor(rng.choice(train, size=min(batch_size, len(train))))
            loss = self.loss(s[rows], s_next[rows], a[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return InverseFit(loss=float(loss.detach()), holdout=self._holdout(s, a, s_next, held))

    def _holdout(self, s: Tensor, a: Tensor, s_next: Tensor, rows: np.ndarray) -> float | None:
        if len(rows) == 0:
            return None
        rows_t = torch.as_tensor(rows)
        predicted = self.predict(s[rows_t], s_next[rows_t])
        if self.discrete:
            return float((predicted == a[rows_t].long().reshape(-1)).float().mean())
        return float(((predicted - a[rows_t].float().reshape(predicted.shape)) ** 2).mean())
