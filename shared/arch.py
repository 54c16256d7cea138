"""The NiN architecture as data: the book's network as one literal table, the knobs that transform it, and the
list of layers that both model twins (nin_torch/model.py, nin_flax/model.py) walk in order.

D2L_NIN is d2l's nn.Sequential (1-channel Fashion-MNIST) row for row; docs/ARCHITECTURE.md shows the two side
by side and tests/test_weights.py proves them the same network. A ModelConfig's knobs transform it:

    widths       channels of the first three blocks (96, 256, 384)
    last_width   channels of the last block's first conv (d2l: the 10 classes, the "384 -> 10 at once")
    num_1x1      1x1 convs after each block's first conv (d2l: 2), mid_kernel their kernel (1; 3 = exercise)
    final_relu   the ReLU after the network's last conv (d2l keeps it: logits >= 0)
    head         gap: global average pooling (NiN); fc: flatten + one fully connected layer
    dropout      the rate of the one Dropout
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from shared.config import ModelConfig
from shared.errors import UserError

# ----- the table's rows -----


@dataclass(frozen=True)
class NiNBlock:
    """d2l's nin_block(out_channels, kernel_size, strides, padding): a conv of that size, then 1x1 convs."""

    channels: int
    kernel: int
    stride: int
    padding: int


@dataclass(frozen=True)
class MaxPool:
    kernel: int
    stride: int
    name: str = ""


@dataclass(frozen=True)
class Dropout:
    rate: float
    name: str = "dropout"


@dataclass(frozen=True)
class GlobalAvgPool:
    name: str = "gap"


D2L_NIN = (
    NiNBlock(96, kernel=11, stride=4, padding=0),
    MaxPool(3, stride=2),
    NiNBlock(256, kernel=5, stride=1, padding=2),
    MaxPool(3, stride=2),
    NiNBlock(384, kernel=3, stride=1, padding=1),
    MaxPool(3, stride=2),
    Dropout(0.5),
    NiNBlock(10, kernel=3, stride=1, padding=1),  # 10: the classes
    GlobalAvgPool(),  # and flatten
)

# ----- the layers the models walk: the table with the knobs applied -----


@dataclass(frozen=True)
class Conv:
    block: int  # which NiN block
    index: int  # 0: the block's own conv; 1, 2, ...: its 1x1 ('mid') convs
    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    padding: int
    relu: bool = True

    @property
    def attr(self) -> str:
        """The conv's attribute in its block module."""
        return f"conv{self.index}"

    @property
    def name(self) -> str:
        """The same name in both frameworks, in the taps and in the weights files."""
        return f"blocks.{self.block}.{self.attr}"


@dataclass(frozen=True)
class Block:
    index: int
    convs: tuple[Conv, ...]

    @property
    def name(self) -> str:
        return f"blocks.{self.index}"


@dataclass(frozen=True)
class Linear:
    """The fc head: flatten (in C, H, W order, as torch) and one fully connected layer."""

    in_features: int
    out_features: int
    name: str = "fc"


Layer = Block | MaxPool | Dropout | GlobalAvgPool | Linear


@dataclass(frozen=True)
class NiNSpec:
    layers: tuple[Layer, ...]
    in_channels: int
    num_classes: int

    @property
    def blocks(self) -> tuple[Block, ...]:
        return tuple(layer for layer in self.layers if isinstance(layer, Block))

    @property
    def convs(self) -> tuple[Conv, ...]:
        return tuple(c for block in self.blocks for c in block.convs)

    @property
    def dropout(self) -> float:
        return next((layer.rate for layer in self.layers if isinstance(layer, Dropout)), 0.0)

    @property
    def fc(self) -> Linear | None:
        return next((layer for layer in self.layers if isinstance(layer, Linear)), None)

    @property
    def head(self) -> str:
        return "gap" if self.fc is None else "fc"


def conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def nin_block(index: int, row: NiNBlock, in_channels: int, cfg: ModelConfig) -> Block:
    """d2l's nin_block: the row's own conv, then `num_1x1` 'mid' convs of kernel `mid_kernel` (size-keeping)."""
    pad = (cfg.mid_kernel - 1) // 2
    first = Conv(index, 0, in_channels, row.channels, row.kernel, row.stride, row.padding)
    mids = [Conv(index, m, row.channels, row.channels, cfg.mid_kernel, 1, pad) for m in range(1, cfg.num_1x1 + 1)]
    return Block(index, (first, *mids))


def with_classifier(layers: list[Layer], cfg: ModelConfig, size: int) -> tuple[Layer, ...]:
    """The network's last conv maps to the classes (its ReLU: final_relu); the head pools or flattens them."""
    *front, last, head = layers
    final = replace(last.convs[-1], out_channels=cfg.num_classes, relu=cfg.final_relu)
    last = replace(last, convs=(*last.convs[:-1], final))
    if cfg.head == "fc":
        head = Linear(cfg.num_classes * size * size, cfg.num_classes)
    return (*front, last, head)


def nin_layers(cfg: ModelConfig, image_size: int) -> tuple[Layer, ...]:
    """D2L_NIN with the knobs of `cfg` applied, in forward order, every layer named."""
    widths = iter((*cfg.widths, cfg.last_width or cfg.num_classes))
    layers: list[Layer] = []
    channels, size, blocks, pools = cfg.in_channels, image_size, 0, 0
    for row in D2L_NIN:
        match row:
            case NiNBlock(kernel=kernel, stride=stride, padding=padding):
                row = replace(row, channels=next(widths))
                layers.append(nin_block(blocks, row, channels, cfg))
                channels, size, blocks = row.channels, conv_out(size, kernel, stride, padding), blocks + 1
            case MaxPool(kernel=kernel, stride=stride):
                layers.append(replace(row, name=f"pool{pools}"))
                size, pools = conv_out(size, kernel, stride, 0), pools + 1
            case Dropout():
                layers.append(replace(row, rate=cfg.dropout))
            case GlobalAvgPool():
                layers.append(row)
    return with_classifier(layers, cfg, size)


def spatial_sizes(image_size: int) -> list[int]:
    """Side length after each size-changing layer of the table (the blocks' own convs and the pools); the 1x1
    and 3x3 mid convs keep the size."""
    sizes, size = [], image_size
    for row in D2L_NIN:
        if isinstance(row, NiNBlock | MaxPool):
            size = conv_out(size, row.kernel, row.stride, getattr(row, "padding", 0))
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
    """The layer list for this config; refuses an image below the minimum before anything is built."""
    check_image_size(image_size)
    return NiNSpec(nin_layers(cfg, image_size), cfg.in_channels, cfg.num_classes)


def param_shapes(spec: NiNSpec) -> dict[str, tuple[int, ...]]:
    """Canonical parameter names and shapes (PyTorch layout: conv OIHW, linear (out, in))."""
    shapes: dict[str, tuple[int, ...]] = {}
    for c in spec.convs:
        shapes[f"{c.name}.weight"] = (c.out_channels, c.in_channels, c.kernel, c.kernel)
        shapes[f"{c.name}.bias"] = (c.out_channels,)
    if spec.fc is not None:
        shapes["fc.weight"] = (spec.fc.out_features, spec.fc.in_features)
        shapes["fc.bias"] = (spec.fc.out_features,)
    return shapes


def fan_in_out(shape: tuple[int, ...]) -> tuple[int, int]:
    """PyTorch's fan computation for an OIHW or (out, in) shape."""
    receptive = 1
    for s in shape[2:]:
        receptive *= s
    return shape[1] * receptive, shape[0] * receptive
