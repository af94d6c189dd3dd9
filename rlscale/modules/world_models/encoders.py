"""Observation encoders and decoders of the world model: an MLP for vectors, convolutions for
images.

**Vectors** ``[..., d]``: an MLP to an embedding, and an MLP from the model's features back to
``d`` values. With ``symlog`` the targets (and the encoder's inputs) are
``symlog(x) = sign(x) log(1 + |x|)`` (DreamerV3, Hafner et al. 2023, arXiv 2301.04104, Sec. 2):
large observations are squashed, small ones nearly unchanged, so one learning rate fits every
environment's scale.

**Images** ``[..., H, W, C]`` uint8: scaled to ``[-0.5, 0.5]`` (PlaNet, Hafner et al. 2019,
arXiv 1811.04551, App. A), then ``layers`` convolutions with kernel 4, stride 2, padding 1,
each halving height and width and doubling the channels (``depth, 2 depth, 4 depth, ...``),
flattened into the embedding. The decoder mirrors it: a linear layer to the smallest feature
map, then transposed convolutions doubling the size back to ``H x W x C``; its output is the
mean of the pixels in the same ``[-0.5, 0.5]`` scale.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from rlscale.modules.networks.mlp import activation_layer_class, build_mlp


def symlog(x: Tensor) -> Tensor:
    """``sign(x) log(1 + |x|)``."""
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: Tensor) -> Tensor:
    """The inverse of ``symlog``: ``sign(x) (exp(|x|) - 1)``."""
    return torch.sign(x) * torch.expm1(x.abs())


def is_image(observation_shape: Sequence[int]) -> bool:
    """Whether an observation of this shape is an ``(H, W, C)`` image."""
    return len(observation_shape) == 3


def image_target(observations: Tensor) -> Tensor:
    """uint8 (or 0..255 float) pixels ``[..., H, W, C]`` scaled to ``[-0.5, 0.5]``."""
    return observations.float() / 255.0 - 0.5


class VectorEncoder(nn.Module):
    """``[..., d]`` -> ``[..., hidden]``."""

    def __init__(self, dim: int, hidden_sizes: Sequence[int], activation: str, symlog_inputs: bool):
        super().__init__()
        self.net = build_mlp(dim, list(hidden_sizes), activation)
        self.symlog_inputs = symlog_inputs
        self.output_size = hidden_sizes[-1] if hidden_sizes else dim

    def forward(self, observations: Tensor) -> Tensor:
        x = observations.float()
        return self.net(symlog(x) if self.symlog_inputs else x)


class VectorDecoder(nn.Module):
    """Features ``[..., F]`` -> the predicted observation ``[..., d]`` (symlog space if set)."""

    def __init__(self, feature_size: int, dim: int, hidden_sizes: Sequence[int], activation: str):
        super().__init__()
        self.net = build_mlp(feature_size, list(hidden_sizes), activation, output_dim=dim)

    def forward(self, features: Tensor) -> Tensor:
        return self.net(features)


def conv_layers_for(height: int, width: int, layers: int) -> int:
    """Check that ``layers`` halvings fit the image; raises ValueError naming the sizes."""
    factor = 2**layers
    if height % factor or width % factor:
        raise ValueError(
            f"an image of {height}x{width} cannot be halved {layers} times by the conv "
            f"encoder; use a height and width divisible by {factor} (e.g. 64x64) or fewer "
            f"conv_layers"
        )
    return layers


class ConvEncoder(nn.Module):
    """uint8 ``[..., H, W, C]`` -> ``[..., depth 2^(layers-1) (H / 2^layers) (W / 2^layers)]``."""

    def __init__(self, shape: Sequence[int], depth: int, layers: int, activation: str):
        super().__init__()
        height, width, channels = shape
        conv_layers_for(height, width, layers)
        act = activation_layer_class(activation)
        modules: list[nn.Module] = []
        in_channels = channels
        for i in range(layers):
            out_channels = depth * 2**i
            modules += [nn.Conv2d(in_channels, out_channels, 4, stride=2, padding=1), act()]
            in_channels = out_channels
        self.net = nn.Sequential(*modules, nn.Flatten())
        self.output_size = in_channels * (height >> layers) * (width >> layers)

    def forward(self, observations: Tensor) -> Tensor:
        lead = observations.shape[:-3]
        x = image_target(observations).flatten(0, -4).permute(0, 3, 1, 2)
        return self.net(x).reshape(*lead, self.output_size)


class ConvDecoder(nn.Module):
    """Features ``[..., F]`` -> pixel means ``[..., H, W, C]`` in ``[-0.5, 0.5]`` scale."""

    def __init__(
        self, feature_size: int, shape: Sequence[int], depth: int, layers: int, activation: str
    ):
        super().__init__()
        height, width, channels = shape
        conv_layers_for(height, width, layers)
        act = activation_layer_class(activation)
        self.shape = (height, width, channels)
        self.start = (depth * 2 ** (layers - 1), height >> layers, width >> layers)
        self.linear = nn.Linear(feature_size, self.start[0] * self.start[1] * self.start[2])
        modules: list[nn.Module] = []
        in_channels = self.start[0]
        for i in reversed(range(layers)):
            last = i == 0
            out_channels = channels if last else depth * 2 ** (i - 1)
            modules.append(nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1))
            if not last:
                modules.append(act())
            in_channels = out_channels
        self.net = nn.Sequential(*modules)

    def forward(self, features: Tensor) -> Tensor:
        lead = features.shape[:-1]
        x = self.linear(features.flatten(0, -2)).reshape(-1, *self.start)
        return self.net(x).permute(0, 2, 3, 1).reshape(*lead, *self.shape)
