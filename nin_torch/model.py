"""NiN in torch.nn, NCHW: the layer list of shared.arch, walked in order. Twin of nin_flax/model.py.

The book's own nn.Sequential is the same network (docs/ARCHITECTURE.md shows both; tests/test_weights.py ports
the book's weights in and checks the logits).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from shared.arch import Block, Conv, Dropout, GlobalAvgPool, Linear, MaxPool, NiNSpec, nin_spec
from shared.config import ModelConfig
from shared.init import TRUNCATED_NORMAL_STD_CORRECTION, Dist, bias_dist, weight_dist

Taps = dict[str, torch.Tensor] | None
Pool = Callable[[torch.Tensor, int, int], torch.Tensor]  # (x, kernel, stride) -> x


def _tap(taps: Taps, name: str, x: torch.Tensor) -> torch.Tensor:
    if taps is not None:
        taps[name] = x
    return x


def sample_(tensor: torch.Tensor, dist: Dist) -> None:
    """Fill `tensor` in place from a shared.init distribution."""
    with torch.no_grad():
        if dist.kind == "zeros":
            nn.init.zeros_(tensor)
        elif dist.kind == "uniform":
            nn.init.uniform_(tensor, -dist.scale, dist.scale)
        elif dist.kind == "normal":
            nn.init.normal_(tensor, 0.0, dist.scale)
        elif dist.kind == "truncated_normal":  # as flax: truncate at +-2 of the uncorrected std
            std = dist.scale / TRUNCATED_NORMAL_STD_CORRECTION
            nn.init.trunc_normal_(tensor, 0.0, std, -2 * std, 2 * std)
        else:
            raise ValueError(dist.kind)


def initialised(layer: nn.Conv2d | nn.Linear, init: str) -> nn.Module:
    sample_(layer.weight, weight_dist(init, tuple(layer.weight.shape)))
    sample_(layer.bias, bias_dist(init, tuple(layer.weight.shape)))
    return layer


def conv(c: Conv, init: str) -> nn.Conv2d:
    return initialised(nn.Conv2d(c.in_channels, c.out_channels, c.kernel, stride=c.stride, padding=c.padding), init)


def linear(fc: Linear, init: str) -> nn.Linear:
    return initialised(nn.Linear(fc.in_features, fc.out_features), init)


def max_pool(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    return F.max_pool2d(x, kernel, stride)


class NiNBlock(nn.Module):
    """d2l's nin_block: the block's own conv, then its 1x1 ('mid') convs, each followed by a ReLU."""

    def __init__(self, block: Block, init: str):
        super().__init__()
        self.spec = block
        for c in block.convs:
            self.add_module(c.attr, conv(c, init))

    def forward(self, x: torch.Tensor, taps: Taps = None) -> torch.Tensor:
        for c in self.spec.convs:
            x = getattr(self, c.attr)(x)
            x = _tap(taps, c.name, F.relu(x) if c.relu else x)
        return x


class NiN(nn.Module):
    def __init__(self, spec: NiNSpec, init: str = "xavier_uniform", pool: Pool = max_pool):
        super().__init__()
        self.spec, self.pool = spec, pool
        self.blocks = nn.ModuleList([NiNBlock(block, init) for block in spec.blocks])
        self.dropout = nn.Dropout(spec.dropout)
        self.fc = None if spec.fc is None else linear(spec.fc, init)

    def forward(self, x: torch.Tensor, taps: Taps = None, dropout_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: [N, C, H, W] -> logits [N, num_classes]; `taps` collects every layer's output by name;
        `dropout_mask` (training only): a given inverted-dropout mask instead of torch's own draw."""
        for layer in self.spec.layers:
            match layer:
                case Block(index=b):
                    x = self.blocks[b](x, taps)
                case MaxPool(kernel=kernel, stride=stride):
                    x = _tap(taps, layer.name, self.pool(x, kernel, stride))
                case Dropout():
                    use_mask = dropout_mask is not None and self.training
                    x = _tap(taps, layer.name, x * dropout_mask if use_mask else self.dropout(x))
                case GlobalAvgPool():
                    x = _tap(taps, layer.name, x.mean(dim=(2, 3)))
                case Linear():
                    x = _tap(taps, layer.name, self.fc(x.flatten(1)))
        return x


def build_model(cfg: ModelConfig, image_size: int, seed: int = 0, pool: Pool = max_pool) -> NiN:
    """The NiN for this config, initialised from `seed` (refuses images below the minimum size)."""
    spec = nin_spec(cfg, image_size)
    torch.manual_seed(seed)
    return NiN(spec, cfg.init, pool)
