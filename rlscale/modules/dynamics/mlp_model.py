"""A deterministic learned dynamics model: one MLP predicting the normalized state change.

``x' = x + denormalize(f([x, u] normalized))``: the network predicts the standardized change of
state ``x' - x`` (and, optionally, the reward), and is trained with the mean squared error in
standardized units, every dimension weighing the same. Predicting the change rather than the
next state itself follows Nagabandi et al. 2018 ("Neural Network Dynamics for Model-Based Deep
Reinforcement Learning with Model-Free Fine-Tuning", https://arxiv.org/abs/1708.02596, Sec. IV-A)
and PETS (Chua et al. 2018, https://arxiv.org/abs/1805.12114): with a small time step the next
state is close to the current one, and the change is what carries the dynamics.

This is the "D" (deterministic) model of PETS' comparison, a baseline for the probabilistic
ensemble in ``rlscale.modules.dynamics.ensemble``; both share the normalization
(``rlscale.modules.dynamics.normalizer``) and the network builder ``dynamics_network`` here.
``predict`` returns the next-state tensor (a point mass, see ``DynamicsModel``), differentiable
in state and action, with no data-dependent control flow, so iLQR can take its Jacobians.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rlscale.modules.dynamics.normalizer import TransitionNormalizer
from rlscale.modules.networks.ensemble import EnsembleMLP
from rlscale.modules.networks.mlp import ACTIVATIONS

# MBPO (Janner et al. 2019, appendix hyperparameters): four hidden layers of 200, swish (SiLU).
DEFAULT_HIDDEN_SIZES: tuple[int, ...] = (200, 200, 200, 200)
DEFAULT_ACTIVATION = "silu"


def check_network_shape(hidden_sizes: Sequence[int], activation: str) -> None:
    """Raise ``ValueError`` for non-positive hidden sizes or an unknown activation name."""
    if any(size < 1 for size in hidden_sizes):
        raise ValueError(f"hidden_sizes must be positive integers, got {tuple(hidden_sizes)}")
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}"
        )


def dynamics_network(
    members: int, input_dim: int, hidden_sizes: Sequence[int], output_dim: int, activation: str
) -> EnsembleMLP:
    """An ``EnsembleMLP`` of ``members`` networks, its arguments checked first."""
    check_network_shape(hidden_sizes, activation)
    return EnsembleMLP(members, input_dim, list(hidden_sizes), output_dim, activation=activation)


@dataclass(frozen=True)
class HoldoutMetrics:
    """A model's errors on held-out transitions, per member (``[members]``; 1 for one MLP).

    Both are in standardized target units (``rlscale.modules.dynamics.normalizer``), so every
    dimension counts equally: ``mse`` is the mean squared error of the predicted mean, ``nll``
    the Gaussian negative log-likelihood (None for a deterministic model). MBPO ranks members by
    holdout error to choose its elites.
    """

    mse: Tensor
    nll: Tensor | None = None


@dataclass(frozen=True)
class MLPModelSettings:
    """The deterministic model's shape, with its defaults in this one place.

    - ``hidden_sizes``: widths of the hidden layers;
    - ``activation``: one of ``ACTIVATIONS`` (SiLU by default, as in MBPO);
    - ``predict_reward``: also predict the reward, as an extra output column.
    """

    hidden_sizes: tuple[int, ...] = DEFAULT_HIDDEN_SIZES
    activation: str = DEFAULT_ACTIVATION
    predict_reward: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden_sizes", tuple(self.hidden_sizes))
        check_network_shape(self.hidden_sizes, self.activation)


class MLPDynamicsModel(nn.Module):
    """Deterministic MLP dynamics: ``predict(state [..., n], action [..., m]) -> [..., n]``.

    Call ``update_normalization`` on the training data before training (``fit_dynamics`` in
    ``rlscale.modules.dynamics.ensemble`` does both).
    """

    def __init__(self, state_dim: int, action_dim: int, settings: MLPModelSettings | None = None):
        super().__init__()
        if state_dim < 1 or action_dim < 1:
            raise ValueError(
                f"state_dim and action_dim must be positive, got {state_dim} and {action_dim}"
            )
        self.settings = settings or MLPModelSettings()
        self.state_dim = state_dim
        self.action_dim = action_dim
        self.has_reward_head = self.settings.predict_reward
        self.normalizer = TransitionNormalizer(state_dim, action_dim, self.has_reward_head)
        self.network = dynamics_network(
            members=1,
            input_dim=state_dim + action_dim,
            hidden_sizes=self.settings.hidden_sizes,
            output_dim=state_dim + int(self.has_reward_head),
            activation=self.settings.activation,
        )

    def update_normalization(
        self, states: Tensor, actions: Tensor, next_states: Tensor, rewards: Tensor | None = None
    ) -> None:
        """Set the input and target statistics from these transitions (``Normalizer.fit``)."""
        self.normalizer.fit(states, actions, next_states, rewards)

    def normalized_outputs(self, states: Tensor, actions: Tensor) -> Tensor:
        """The network's standardized target prediction, ``[..., n (+1)]``."""
        self.normalizer.check(states, actions)
        inputs = self.normalizer.inputs(states, actions)
        outputs = self.network(inputs.reshape(-1, inputs.shape[-1]))[0]
        return outputs.reshape(*states.shape[:-1], outputs.shape[-1])

    def loss(
        self, states: Tensor, actions: Tensor, next_states: Tensor, rewards: Tensor | None = None
    ) -> Tensor:
        """Mean squared error over rows and target dimensions, in standardized units."""
        self.normalizer.check(states, actions, next_states)
        targets = self.normalizer.targets(states, next_states, rewards)
        return (self.normalized_outputs(states, actions) - targets).square().mean()

    @torch.no_grad()
    def holdout_metrics(
        self, states: Tensor, actions: Tensor, next_states: Tensor, rewards: Tensor | None = None
    ) -> HoldoutMetrics:
        """``HoldoutMetrics`` with ``mse`` of shape ``[1]`` and no ``nll``."""
        return HoldoutMetrics(mse=self.loss(states, actions, next_states, rewards).reshape(1))

    def _raw_outputs(self, state: Tensor, action: Tensor) -> Tensor:
        return self.normalizer.target.denormalize(self.normalized_outputs(state, action))

    def predict(self, state: Tensor, action: Tensor) -> Tensor:
        """The predicted next state ``state + change``, ``[..., n]``."""
        return state + self._raw_outputs(state, action)[..., : self.state_dim]

    def predict_reward(self, state: Tensor, action: Tensor) -> Tensor:
        """The predicted reward of each row, ``[...]``; needs ``predict_reward=True``."""
        if not self.has_reward_head:
            raise ValueError(
                "this model has no reward head; build it with "
                "MLPModelSettings(predict_reward=True) and train it with rewards"
            )
        return self._raw_outputs(state, action)[..., self.state_dim]

    def forward(self, state: Tensor, action: Tensor) -> Tensor:
        return self.predict(state, action)
