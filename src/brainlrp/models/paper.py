"""The paper's 3D CNN (Böhle et al. 2019), shape-aware, plus a tiny variant for tests.

Four blocks of Conv3d(3 x 3 x 3, no padding) -> BatchNorm3d -> ReLU -> MaxPool3d with
8, 16, 32, 64 filters and pool sizes 2, 3, 2, 3; flatten; dropout 0.4; Linear 128;
ReLU; dropout 0.4; Linear 2. At the 193 x 229 x 193 grid the flattened size is 5120
and the network has 728,898 trainable parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from brainlrp.errors import BrainLRPError


def _out_size(n: int, kernel: int, padding: int, pool: int) -> int:
    return (n + 2 * padding - kernel + 1) // pool


def _smallest_input(kernel: int, padding: int, pools: Sequence[int]) -> int:
    n = 1
    for pool in reversed(pools):
        n = n * pool + kernel - 1 - 2 * padding
    return max(n, 1)


class ConvBlockCNN(nn.Module):
    """Blocks of Conv3d -> BatchNorm3d -> ReLU -> MaxPool3d, then a two-layer classifier.

    Parameters
    ----------
    input_shape : tuple of int
        Spatial shape ``(x, y, z)`` of the input volume.
    in_channels : int
    filters : sequence of int
        Filters per block.
    pools : sequence of int
        Max-pooling size (and stride) per block.
    kernel_size, padding : int
        Convolution kernel and zero padding.
    hidden : int
        Units of the hidden dense layer.
    dropout : float
    n_classes : int
    """

    def __init__(self, input_shape: Sequence[int], in_channels: int = 1,
                 filters: Sequence[int] = (8, 16, 32, 64), pools: Sequence[int] = (2, 3, 2, 3),
                 kernel_size: int = 3, padding: int = 0, hidden: int = 128,
                 dropout: float = 0.4, n_classes: int = 2):
        super().__init__()
        if len(filters) != len(pools):
            raise ValueError(f"one pool size per block: {len(filters)} filters, "
                             f"{len(pools)} pools")
        self.input_shape = tuple(int(s) for s in input_shape)
        if len(self.input_shape) != 3:
            raise ValueError(f"input_shape must have 3 sizes, got {self.input_shape}")
        spatial = list(self.input_shape)
        for pool in pools:
            spatial = [_out_size(n, kernel_size, padding, pool) for n in spatial]
        if min(spatial) < 1:
            need = _smallest_input(kernel_size, padding, pools)
            raise BrainLRPError(
                f"the grid {' x '.join(map(str, self.input_shape))} is too small for this "
                f"network: it needs at least {need} x {need} x {need} voxels",
                "use a finer --resolution (e.g. 2) or a smaller architecture")
        layers: list[nn.Module] = []
        channels = in_channels
        for n_filters, pool in zip(filters, pools, strict=True):
            layers += [nn.Conv3d(channels, n_filters, kernel_size, padding=padding),
                       nn.BatchNorm3d(n_filters), nn.ReLU(inplace=False),
                       nn.MaxPool3d(pool)]
            channels = n_filters
        self.features = nn.Sequential(*layers)
        self.n_flat = channels * spatial[0] * spatial[1] * spatial[2]
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(self.n_flat, hidden),
            nn.ReLU(inplace=False), nn.Dropout(dropout), nn.Linear(hidden, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape ``(batch, n_classes)`` for ``x`` of shape ``(batch, 1, x, y, z)``."""
        return self.classifier(self.features(x))


def paper_cnn(input_shape: Sequence[int], **overrides) -> ConvBlockCNN:
    """The paper's network for ``input_shape``."""
    return ConvBlockCNN(input_shape, **overrides)


def tiny_cnn(input_shape: Sequence[int], **overrides) -> ConvBlockCNN:
    """A small padded variant (3 blocks, 4/8/16 filters) for tests and very coarse grids."""
    params = dict(filters=(4, 8, 16), pools=(2, 2, 2), padding=1, hidden=32, dropout=0.2)
    params.update(overrides)
    return ConvBlockCNN(input_shape, **params)
