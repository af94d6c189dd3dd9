"""Multi-layer perceptrons: the trunk under every vector-observation head."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU}


def build_mlp(
    input_dim: int,
    hidden_sizes: Sequence[int],
    activation: str = "relu",
    output_dim: int | None = None,
) -> nn.Sequential:
    """Linear layers of ``hidden_sizes`` with ``activation`` after each; optional linear output.

    With no hidden sizes and no output the MLP is the identity (a head straight on the input).
    """
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}"
        )
    layers: list[nn.Module] = []
    width = input_dim
    for size in hidden_sizes:
        layers += [nn.Linear(width, size), ACTIVATIONS[activation]()]
        width = size
    if output_dim is not None:
        layers.append(nn.Linear(width, output_dim))
    return nn.Sequential(*layers)


def output_width(input_dim: int, hidden_sizes: Sequence[int]) -> int:
    """The feature size an MLP of ``hidden_sizes`` hands to the layer above it."""
    return hidden_sizes[-1] if hidden_sizes else input_dim
