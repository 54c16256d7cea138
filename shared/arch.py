"""The NiN architecture as data: one spec that both frameworks build from, and its analytic figures.

Reads like the paper's table (d2l's version, 1-channel Fashion-MNIST):

    block  first conv              then            out
    0      96  11x11 stride 4 pad 0  num_1x1 x 1x1   maxpool 3/2
    1      256  5x5  stride 1 pad 2  num_1x1 x 1x1   maxpool 3/2
    2      384  3x3  stride 1 pad 1  num_1x1 x 1x1   maxpool 3/2, dropout
    3      10   3x3  stride 1 pad 1  num_1x1 x 1x1   global average pool, flatten
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.config import ModelConfig
from shared.errors import UserError

POOL_KERNEL, POOL_STRIDE = 3, 2
FIRST_CONVS = ((11, 4, 0), (5, 1, 2), (3, 1, 1), (3, 1, 1))  # (kernel, stride, padding) of each block


@dataclass(frozen=True)
class ConvSpec:
    name: str  # e.g. "blocks.0.conv1": the same name in both frameworks and in the weights file
    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    padding: int
    relu: bool


@dataclass(frozen=True)
class NiNSpec:
    blocks: tuple[tuple[ConvSpec, ...], ...]
    dropout: float
    head: str  # "gap" or "fc"
    fc_in: int  # flattened features into the fc head (0 for gap)
    num_classes: int


def conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def spatial_sizes(image_size: int) -> list[int]:
    """Side length after each size-changing layer (block i's first conv, then pool i), by the floor formula."""
    sizes, size = [], image_size
    for i, (kernel, stride, padding) in enumerate(FIRST_CONVS):
        if i > 0:
            size = conv_out(size, POOL_KERNEL, POOL_STRIDE, 0)
            sizes.append(size)
        size = conv_out(size, kernel, stride, padding)
        sizes.append(size)
    return sizes


def min_image_size() -> int:
    """The smallest square input for which every layer's output is at least 1x1 (67 px for NiN)."""
    size = 1
    while min(spatial_sizes(size)) < 1:
        size += 1
    return size


def check_image_size(image_size: int) -> None:
    smallest = min_image_size()
    if image_size < smallest:
        raise UserError(f"--image-size {image_size} is too small: the smallest input this network accepts "
                        f"is {smallest} px; use --image-size {smallest} or more")


def nin_spec(cfg: ModelConfig, image_size: int) -> NiNSpec:
    """The layer table for this config; refuses an image below the minimum before anything is built."""
    check_image_size(image_size)
    last_width = cfg.last_width or cfg.num_classes
    widths = (*cfg.widths, last_width)
    mid_padding = (cfg.mid_kernel - 1) // 2
    blocks, in_ch = [], cfg.in_channels
    for b, ((kernel, stride, padding), width) in enumerate(zip(FIRST_CONVS, widths, strict=True)):
        convs = [ConvSpec(f"blocks.{b}.conv0", in_ch, width, kernel, stride, padding, True)]
        for m in range(1, cfg.num_1x1 + 1):
            last_conv = b == len(FIRST_CONVS) - 1 and m == cfg.num_1x1
            out = cfg.num_classes if last_conv else width
            convs.append(ConvSpec(f"blocks.{b}.conv{m}", width, out, cfg.mid_kernel, 1, mid_padding, True))
        blocks.append(convs)
        in_ch = convs[-1].out_channels
    if not cfg.final_relu:
        last = blocks[-1][-1]
        blocks[-1][-1] = ConvSpec(last.name, last.in_channels, last.out_channels, last.kernel, last.stride,
                                  last.padding, relu=False)
    final = spatial_sizes(image_size)[-1]
    fc_in = in_ch * final * final if cfg.head == "fc" else 0
    return NiNSpec(tuple(tuple(c) for c in blocks), cfg.dropout, cfg.head, fc_in, cfg.num_classes)


def param_shapes(spec: NiNSpec) -> dict[str, tuple[int, ...]]:
    """Canonical parameter names and shapes (PyTorch layout: conv OIHW, linear (out, in))."""
    shapes: dict[str, tuple[int, ...]] = {}
    for block in spec.blocks:
        for c in block:
            shapes[f"{c.name}.weight"] = (c.out_channels, c.in_channels, c.kernel, c.kernel)
            shapes[f"{c.name}.bias"] = (c.out_channels,)
    if spec.head == "fc":
        shapes["fc.weight"] = (spec.num_classes, spec.fc_in)
        shapes["fc.bias"] = (spec.num_classes,)
    return shapes


def fan_in_out(shape: tuple[int, ...]) -> tuple[int, int]:
    """PyTorch's fan computation for an OIHW or (out, in) shape."""
    receptive = 1
    for s in shape[2:]:
        receptive *= s
    return shape[1] * receptive, shape[0] * receptive
