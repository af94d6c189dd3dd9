"""Standardization of a learned dynamics model's inputs and targets, stored in the model.

Learned models (Chua et al. 2018, "Deep Reinforcement Learning in a Handful of Trials using
Probabilistic Dynamics Models", https://arxiv.org/abs/1805.12114, appendix; Janner et al. 2019,
"When to Trust Your Model: Model-Based Policy Optimization", https://arxiv.org/abs/1906.08253)
train on standardized data: each input dimension ``[state, action]`` and each target dimension
``[next_state - state, reward]`` is shifted by its mean and divided by its standard deviation,
both measured on the training data. Without it a state dimension measured in large units (a
velocity) would dominate the loss, and the network's initial outputs would be on the wrong scale.

The statistics are buffers, so they follow the model through ``.to(device)`` and are saved in
its ``state_dict``. They are *set* from a data set (``fit``), not averaged over a stream: model-
based learners refit them on the whole replay buffer before each round of model training, as
PETS and MBPO do. Before the first ``fit`` they are the identity (mean 0, std 1).

A dimension whose standard deviation is below ``min_std`` (a constant input, such as an action
that never changed, or a reward that is always 0) gets std 1 instead of a tiny number, so that
normalizing it cannot blow up: it is merely shifted to 0.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

DEFAULT_MIN_STD = 1e-6


class Normalizer(nn.Module):
    """Per-dimension ``(x - mean) / std`` over the last dimension of ``[..., dim]`` tensors."""

    mean: Tensor
    std: Tensor

    def __init__(self, dim: int, min_std: float = DEFAULT_MIN_STD):
        super().__init__()
        if dim < 1:
            raise ValueError(f"a normalizer needs at least one dimension, got dim={dim}")
        if min_std <= 0:
            raise ValueError(f"min_std must be positive, got {min_std}")
        self.dim = dim
        self.min_std = min_std
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def fit(self, data: Tensor) -> None:
        """Set the statistics from ``data [..., dim]`` (every leading dimension is a sample)."""
        if data.shape[-1] != self.dim:
            raise ValueError(
                f"the normalizer has {self.dim} dimensions but the data's last dimension is "
                f"{data.shape[-1]} (shape {tuple(data.shape)})"
            )
        rows = data.detach().reshape(-1, self.dim).to(self.mean)
        if rows.shape[0] < 2:
            raise ValueError(
                f"need at least 2 rows to measure a standard deviation, got {rows.shape[0]}"
            )
        mean = rows.mean(dim=0)
        std = rows.std(dim=0, unbiased=False)
        # Constant dimensions: divide by 1, not by ~0 (module docstring).
        std = torch.where(std < self.min_std, torch.ones_like(std), std)
        self.mean.copy_(mean)
        self.std.copy_(std)

    def normalize(self, data: Tensor) -> Tensor:
        return (data - self.mean) / self.std

    def denormalize(self, data: Tensor) -> Tensor:
        return data * self.std + self.mean

    def extra_repr(self) -> str:
        return f"dim={self.dim}, min_std={self.min_std}"


class TransitionNormalizer(nn.Module):
    """The two normalizers of a dynamics model: inputs ``[state, action]``, targets.

    The target is ``[next_state - state]``, plus ``[reward]`` as its last column when
    ``with_reward``. ``inputs`` / ``targets`` build the normalized tensors from raw transitions
    of any leading shape (``[batch, ...]`` or ``[members, batch, ...]``); rewards have that
    leading shape and no feature dimension.
    """

    def __init__(
        self, state_dim: int, action_dim: int, with_reward: bool, min_std: float = DEFAULT_MIN_STD
    ):
        super().__init__()
        self.state_dim = state_dim
        self.action_dim = action_dim
        self.with_reward = with_reward
        self.input = Normalizer(state_dim + action_dim, min_std)
        self.target = Normalizer(state_dim + int(with_reward), min_std)

    def check(self, states: Tensor, actions: Tensor, next_states: Tensor | None = None) -> None:
        """Raise ``ValueError`` unless the shapes are ``[..., state_dim]``, ``[..., action_dim]``
        with the same leading shape (and ``next_states`` shaped like ``states``)."""
        if states.shape[-1:] != (self.state_dim,) or actions.shape[-1:] != (self.action_dim,):
            raise ValueError(
                f"expected states [..., {self.state_dim}] and actions [..., {self.action_dim}], "
                f"got {tuple(states.shape)} and {tuple(actions.shape)}"
            )
        if states.shape[:-1] != actions.shape[:-1]:
            raise ValueError(
                "states and actions need the same leading shape (one action per state), got "
                f"{tuple(states.shape)} and {tuple(actions.shape)}"
            )
        if next_states is not None and next_states.shape != states.shape:
            raise ValueError(
                f"next_states must have the states' shape {tuple(states.shape)}, "
                f"got {tuple(next_states.shape)}"
            )

    def fit(
        self, states: Tensor, actions: Tensor, next_states: Tensor, rewards: Tensor | None = None
    ) -> None:
        """Set both normalizers' statistics from the given transitions."""
        self.check(states, actions, next_states)
        self.input.fit(torch.cat([states, actions], dim=-1))
        self.target.fit(self.raw_targets(states, next_states, rewards))

    def inputs(self, states: Tensor, actions: Tensor) -> Tensor:
        """Normalized ``[state, action]``."""
        return self.input.normalize(torch.cat([states, actions], dim=-1))

    def targets(self, states: Tensor, next_states: Tensor, rewards: Tensor | None = None) -> Tensor:
        """Normalized ``[next_state - state, reward]``."""
        return self.target.normalize(self.raw_targets(states, next_states, rewards))

    def raw_targets(
        self, states: Tensor, next_states: Tensor, rewards: Tensor | None = None
    ) -> Tensor:
        """``[next_state - state]`` with ``rewards`` appended as a last column when modelled."""
        delta = next_states - states
        if not self.with_reward:
            if rewards is not None:
                raise ValueError(
                    "rewards were given but this model was built without a reward head; "
                    "build it with predict_reward=True, or pass rewards=None"
                )
            return delta
        if rewards is None:
            raise ValueError(
                "this model predicts rewards (predict_reward=True), so it needs rewards; "
                "pass rewards with the transitions' leading shape "
                f"{tuple(states.shape[:-1])}"
            )
        if rewards.shape != states.shape[:-1]:
            raise ValueError(
                f"rewards must have the transitions' leading shape {tuple(states.shape[:-1])} "
                f"(one reward per row, no feature dimension), got {tuple(rewards.shape)}"
            )
        return torch.cat([delta, rewards.unsqueeze(-1)], dim=-1)
