"""Multi-layer perceptrons: the trunk under every vector-observation head."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "silu": nn.SiLU,  # "swish", the activation of PETS's and MBPO's dynamics models
    "mish": nn.Mish,  # Diffusion-QL's noise-prediction network
}


def activation_layer_class(name: str) -> type[nn.Module]:
    """The activation module called ``name``; an unknown name lists the known ones."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def build_mlp(
    input_dim: int,
    hidden_sizes: Sequence[int],
    activation: str = "relu",
    output_dim: int | None = None,
    orthogonal_gain: float | None = None,
) -> nn.Sequential:
    """Linear layers of ``hidden_sizes`` with ``activation`` after each; optional linear output.

    With no hidden sizes and no output the MLP is the identity (a head straight on the input).
    ``orthogonal_gain`` switches the hidden layers from PyTorch's default init to orthogonal
    weights of that gain and zero biases (the usual choice for policy-gradient networks).
    """
    activation_class = activation_layer_class(activation)
    layers: list[nn.Module] = []
    width = input_dim
    for size in hidden_sizes:
        linear = nn.Linear(width, size)
        if orthogonal_gain is not None:
            orthogonal_init(linear, orthogonal_gain)
        layers += [linear, activation_class()]
        width = size
    if output_dim is not None:
        layers.append(nn.Linear(width, output_dim))
    return nn.Sequential(*layers)


def output_width(input_dim: int, hidden_sizes: Sequence[int]) -> int:
    """The feature size an MLP of ``hidden_sizes`` hands to the layer above it."""
    return hidden_sizes[-1] if hidden_sizes else input_dim


def orthogonal_init(layer: nn.Linear, gain: float) -> nn.Linear:
    """Orthogonal weights of ``gain``, zero bias; returns the layer."""
    nn.init.orthogonal_(layer.weight, gain=gain)
    nn.init.zeros_(layer.bias)
    return layer
