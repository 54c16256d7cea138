"""NiN in torch.nn, NCHW, built from the shared spec (shared.arch). Twin of nin_flax/model.py."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from shared.arch import POOL_KERNEL, POOL_STRIDE, ConvSpec, NiNSpec, nin_spec
from shared.config import ModelConfig
from shared.init import TRUNCATED_NORMAL_STD_CORRECTION, Dist, bias_dist, weight_dist

Taps = dict[str, torch.Tensor] | None


def _tap(taps: Taps, name: str, x: torch.Tensor) -> None:
    if taps is not None:
        taps[name] = x


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


def conv(c: ConvSpec, init: str) -> nn.Conv2d:
    layer = nn.Conv2d(c.in_channels, c.out_channels, c.kernel, stride=c.stride, padding=c.padding)
    sample_(layer.weight, weight_dist(init, tuple(layer.weight.shape)))
    sample_(layer.bias, bias_dist(init, tuple(layer.weight.shape)))
    return layer


class NiNBlock(nn.Module):
    """One conv of the block's size, then the 1x1 ('mid') convs, each followed by a ReLU."""

    def __init__(self, convs: tuple[ConvSpec, ...], init: str):
        super().__init__()
        self.specs = convs
        for c in convs:
            self.add_module(c.name.rsplit(".", 1)[1], conv(c, init))

    def forward(self, x: torch.Tensor, taps: Taps = None) -> torch.Tensor:
        for c in self.specs:
            x = getattr(self, c.name.rsplit(".", 1)[1])(x)
            if c.relu:
                x = F.relu(x)
            _tap(taps, c.name, x)
        return x


class NiN(nn.Module):
    def __init__(self, spec: NiNSpec, init: str = "xavier_uniform"):
        super().__init__()
        self.spec = spec
        self.blocks = nn.ModuleList([NiNBlock(block, init) for block in spec.blocks])
        self.dropout = nn.Dropout(spec.dropout)
        self.fc = None
        if spec.head == "fc":
            self.fc = nn.Linear(spec.fc_in, spec.num_classes)
            sample_(self.fc.weight, weight_dist(init, tuple(self.fc.weight.shape)))
            sample_(self.fc.bias, bias_dist(init, tuple(self.fc.weight.shape)))

    def forward(self, x: torch.Tensor, taps: Taps = None, dropout_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: [N, C, H, W] -> logits [N, num_classes]; `taps` collects every layer's output by name;
        `dropout_mask` (training only): a given inverted-dropout mask instead of torch's own draw."""
        for b, block in enumerate(self.blocks):
            if b > 0:
                x = F.max_pool2d(x, POOL_KERNEL, POOL_STRIDE)
                _tap(taps, f"pool{b - 1}", x)
            if b == len(self.blocks) - 1:
                x = x * dropout_mask if dropout_mask is not None and self.training else self.dropout(x)
            x = block(x, taps)
        if self.fc is None:
            x = x.mean(dim=(2, 3))
            _tap(taps, "gap", x)
        else:
            x = self.fc(x.flatten(1))
            _tap(taps, "fc", x)
        return x


def build_model(cfg: ModelConfig, image_size: int, seed: int = 0) -> NiN:
    """The NiN for this config, initialised from `seed` (refuses images below the minimum size)."""
    spec = nin_spec(cfg, image_size)
    torch.manual_seed(seed)
    return NiN(spec, cfg.init)
