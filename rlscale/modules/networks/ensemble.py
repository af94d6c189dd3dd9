"""An ensemble of equally shaped MLPs evaluated together: one batched matmul per layer.

Twin critics (and, later, dynamics ensembles) are ``members`` MLPs with the same layer sizes.
Running them as separate ``nn.Sequential``s costs a Python call per layer and member; here each
layer holds a ``[members, in, out]`` weight and ``torch.baddbmm`` applies all members at once.
On small CPU critics (CQL's) that saves calls rather than arithmetic, which matters most for
small minibatches.

Members are initialized like ``nn.Linear`` (Kaiming-uniform weights, uniform biases in
±1/sqrt(fan_in)), each independently.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from rlscale.modules.networks.mlp import activation_layer_class


class EnsembleLinear(nn.Module):
    """``members`` linear layers: ``[members, rows, in]`` -> ``[members, rows, out]``."""

    def __init__(self, members: int, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(members, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(members, 1, out_features))
        bound = 1.0 / math.sqrt(in_features)
        for member in range(members):
            # nn.Linear's init on the transposed [out, in] view of each member's weight.
            nn.init.kaiming_uniform_(self.weight.data[member].T, a=math.sqrt(5))
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, inputs: torch.Tensor, detach_weights: bool = False) -> torch.Tensor:
        weight, bias = self.weight, self.bias
        if detach_weights:
            weight, bias = weight.detach(), bias.detach()
        return torch.baddbmm(bias, inputs, weight)


class EnsembleMLP(nn.Module):
    """``members`` MLPs of the same shape, hidden layers with ``activation``, linear output.

    ``forward`` takes ``[rows, in]`` (every member sees the same rows) or ``[members, rows, in]``
    and returns ``[members, rows, output_dim]``. ``detach_weights=True`` evaluates the ensemble
    as a fixed function: gradients reach the inputs but not the ensemble's parameters (SAC's
    actor loss differentiates Q with respect to the action only).
    """

    def __init__(
        self,
        members: int,
        input_dim: int,
        hidden_sizes: Sequence[int],
        output_dim: int,
        activation: str = "relu",
    ):
        super().__init__()
        if members < 1:
            raise ValueError(f"an ensemble needs at least one member, got {members}")
        self.members = members
        widths = [input_dim, *hidden_sizes, output_dim]
        self.layers = nn.ModuleList(
            EnsembleLinear(members, width_in, width_out)
            for width_in, width_out in zip(widths[:-1], widths[1:], strict=True)
        )
        self.activation = activation_layer_class(activation)()

    def forward(self, inputs: torch.Tensor, detach_weights: bool = False) -> torch.Tensor:
        if inputs.dim() == 2:
            inputs = inputs.expand(self.members, *inputs.shape)
        hidden = inputs
        for index, layer in enumerate(self.layers):
            hidden = layer(hidden, detach_weights=detach_weights)
            if index < len(self.layers) - 1:
                hidden = self.activation(hidden)
        return hidden
