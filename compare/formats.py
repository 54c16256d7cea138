"""The book's two NiNs as weight layouts, as pure functions over dicts of numpy arrays, with loud shape checks.

d2l writes NiN as an nn.Sequential (PyTorch) and as a flax.linen nn.Sequential (JAX), the same list as
shared.arch.D2L_NIN: nin_block, max-pool, nin_block, max-pool, nin_block, max-pool, dropout, nin_block, global
average pool (flatten). Their parameters are named by position:

    PyTorch  `7.2.weight`                         block at index 7, its conv at index 2 (ReLUs in between); OIHW
    JAX      `params/net/layers_7/layers_2/kernel` the same positions; HWIO, as flax.nnx (and bias as is)

A NiN of this project fits them when its head is global average pooling and its last block maps to the
classes from its first conv (the book's `nin_block(num_classes, ...)`); other widths, other numbers of 1x1 convs
and 3x3 mid convs are the discussion's variants of the same code.
"""

from __future__ import annotations

import re

import numpy as np

from shared.arch import D2L_NIN, NiNBlock, min_image_size, nin_spec, spatial_sizes
from shared.config import ModelConfig
from shared.errors import UserError
from shared.weights import State, check_state, check_values

BOOK_BLOCKS = tuple(i for i, row in enumerate(D2L_NIN) if isinstance(row, NiNBlock))  # (0, 2, 4, 7)
TORCH_KEY = re.compile(r"^(\d+)\.(\d+)\.(weight|bias)$")
CANONICAL_KEY = re.compile(r"^blocks\.(\d+)\.conv(\d+)\.(weight|bias)$")
Blocks = dict[int, dict[int, dict[str, np.ndarray]]]  # position -> conv position -> {"weight" OIHW, "bias"}


def book_pooling_note(image_size: int) -> str | None:
    """The book's JAX NiN pools with nn.avg_pool(x, (5, 5)): global only where the last feature map is 5x5."""
    side = spatial_sizes(image_size)[-1]
    if side == 5:
        return None
    sizes = [s for s in range(min_image_size(), 400) if spatial_sizes(s)[-1] == 5]
    return (f"note: the book's JAX NiN ends in nn.avg_pool(x, (5, 5)), global average pooling only at "
            f"{sizes[0]}-{sizes[-1]} px (a 5x5 last feature map); at {image_size} px the map is {side}x{side}, so "
            f"build it with nn.avg_pool(x, ({side}, {side})) or feed it {sizes[0]}-{sizes[-1]} px images")


def fits_the_book(cfg: ModelConfig, target: str) -> list[str]:
    """Refuse what the book's code cannot build; return the notes on what it builds differently."""
    if cfg.head != "gap":
        raise UserError(f"the book's NiN has no fully connected head; these weights (--head fc) convert to "
                        f".safetensors or .onnx, not to {target}")
    if cfg.last_width not in (None, cfg.num_classes):
        raise UserError(f"the book's last block, nin_block({cfg.num_classes}, ...), maps its input to the classes in "
                        f"its first conv; these weights have a {cfg.last_width}-wide last block (--last-width "
                        f"{cfg.last_width}), which it cannot build: convert to .safetensors or .onnx instead")
    notes = []
    if not cfg.final_relu:
        notes.append("note: these weights were trained without the final ReLU; the book's nin_block ends in one, "
                     "so its logits are these clipped at 0 (predictions differ only where every logit is negative)")
    return notes


def _blocks_to_canonical(blocks: Blocks, image_size: int, what: str) -> tuple[State, ModelConfig]:
    """Blocks and convs in position order -> (canonical state, the ModelConfig their shapes imply)."""
    if len(blocks) != len(BOOK_BLOCKS):
        raise UserError(f"{what} has {len(blocks)} blocks of convs; the book's NiN has {len(BOOK_BLOCKS)} "
                        f"(nin_blocks at positions {', '.join(map(str, BOOK_BLOCKS))})")
    canonical: State = {}
    counts = set()
    for b, top in enumerate(sorted(blocks)):
        convs = blocks[top]
        counts.add(len(convs))
        for c, inner in enumerate(sorted(convs)):
            missing = {"weight", "bias"} - set(convs[inner])
            if missing:
                raise UserError(f"{what}: block {top}, conv {inner} has no {' or '.join(sorted(missing))}")
            for kind, array in convs[inner].items():
                canonical[f"blocks.{b}.conv{c}.{kind}"] = array
    if len(counts) != 1:
        raise UserError(f"{what}: its nin_blocks have different numbers of convs; this NiN needs the same in each")
    num_1x1 = counts.pop() - 1
    for name, array in canonical.items():
        if array.ndim != (4 if name.endswith("weight") else 1):
            raise UserError(f"{what}: {name} has shape {list(array.shape)}, not a conv's")
    first = [canonical[f"blocks.{b}.conv0.weight"] for b in range(4)]
    cfg = ModelConfig(in_channels=int(first[0].shape[1]), num_classes=int(canonical[f"blocks.3.conv{num_1x1}.weight"]
                      .shape[0]), widths=tuple(int(w.shape[0]) for w in first[:3]), num_1x1=num_1x1,
                      mid_kernel=int(canonical["blocks.0.conv1.weight"].shape[-1]) if num_1x1 else 1)
    cfg.last_width = None if int(first[3].shape[0]) == cfg.num_classes else int(first[3].shape[0])
    if cfg.in_channels != 1 or cfg.num_classes != 10:
        raise UserError(f"{what} is a NiN for {cfg.in_channels}-channel images and {cfg.num_classes} classes; "
                        f"Fashion-MNIST needs 1 channel and 10 classes (nn.LazyConv2d learns its input channels "
                        f"from the first batch: train it on grayscale images)")
    check_state(canonical, nin_spec(cfg, image_size), what)
    return canonical, cfg


def book_torch_to_canonical(state: dict[str, np.ndarray], image_size: int) -> tuple[State, ModelConfig]:
    """The book's PyTorch state_dict (`0.0.weight`, `0.2.weight`, ..., `7.4.bias`) -> canonical + config."""
    blocks: Blocks = {}
    for key, array in state.items():
        match = TORCH_KEY.match(key)
        if not match:
            raise UserError(f"'{key}' is not a parameter of the book's NiN (its state_dict has keys like 0.0.weight, "
                            f"7.4.bias)")
        blocks.setdefault(int(match[1]), {}).setdefault(int(match[2]), {})[match[3]] = array
    check_values(state, "the state_dict")
    return _blocks_to_canonical(blocks, image_size, "the state_dict")


def canonical_to_book_torch(state: State) -> dict[str, np.ndarray]:
    """Canonical (`blocks.3.conv1.weight`) -> the keys of the book's nn.Sequential (`7.2.weight`); the layout,
    OIHW, is torch's in both."""
    keyed = {}
    for name, array in state.items():
        match = CANONICAL_KEY.match(name)
        if not match or int(match[1]) >= len(BOOK_BLOCKS):
            raise UserError(f"'{name}' has no place in the book's NiN (its convs only: blocks.<0-3>.conv<k>)")
        keyed[(BOOK_BLOCKS[int(match[1])], 2 * int(match[2]), match[3] == "bias")] = array
    return {f"{top}.{inner}.{'bias' if bias else 'weight'}": keyed[top, inner, bias]
            for top, inner, bias in sorted(keyed)}  # in the order torch's state_dict() lists them


def _tree_paths(tree: dict, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], np.ndarray]:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_tree_paths(value, (*prefix, str(key))))
        else:
            out[(*prefix, str(key))] = np.asarray(value)
    return out


def book_jax_to_canonical(tree: dict, image_size: int) -> tuple[State, ModelConfig]:
    """The book's flax.linen parameters ({'params': {'net': {'layers_0': {'layers_0': {'kernel', 'bias'}}}}}, with
    or without the top 'params') -> canonical + config."""
    leaves = _tree_paths(tree)
    blocks: Blocks = {}
    for path, array in leaves.items():
        rest = path[1:] if path[:1] == ("params",) else path
        if len(rest) != 4 or rest[0] != "net" or not all(re.fullmatch(r"layers_\d+", p) for p in rest[1:3]) \
                or rest[3] not in ("kernel", "bias"):
            raise UserError(f"'{'/'.join(path)}' is not a parameter of the book's JAX NiN (expected like "
                            f"params/net/layers_0/layers_0/kernel)")
        if not np.issubdtype(array.dtype, np.floating):
            raise UserError(f"{'/'.join(path)} is {array.dtype}, not floating point")
        top, inner = int(rest[1].removeprefix("layers_")), int(rest[2].removeprefix("layers_"))
        kind = "weight" if rest[3] == "kernel" else "bias"
        if kind == "weight" and array.ndim == 4:
            array = array.transpose(3, 2, 0, 1)  # HWIO -> OIHW
        blocks.setdefault(top, {}).setdefault(inner, {})[kind] = np.ascontiguousarray(array)
    if not blocks:
        raise UserError("the tree holds no parameters of the book's JAX NiN (expected params/net/layers_0/...)")
    check_values({"/".join(p): v for p, v in leaves.items()}, "the parameters")
    return _blocks_to_canonical(blocks, image_size, "the JAX parameters")


def canonical_to_book_jax(state: State, cfg: ModelConfig) -> dict:
    """Canonical -> the book's flax.linen variables {'params': {'net': ...}} (HWIO kernels), as `model.init`
    returns them and `model.apply` and flax.serialization.from_bytes take them."""
    net: dict = {}
    for b, top in enumerate(BOOK_BLOCKS):
        block = net.setdefault(f"layers_{top}", {})
        for c in range(cfg.num_1x1 + 1):
            weight = state[f"blocks.{b}.conv{c}.weight"]
            block[f"layers_{2 * c}"] = {"kernel": np.ascontiguousarray(weight.transpose(2, 3, 1, 0)),
                                        "bias": np.ascontiguousarray(state[f"blocks.{b}.conv{c}.bias"])}
    return {"params": {"net": net}}


def flat_paths(tree: dict) -> dict[str, np.ndarray]:
    """A nested tree as a flat dict keyed by '/'-joined paths (the .npz layout)."""
    return {"/".join(path): array for path, array in _tree_paths(tree).items()}


def nested(flat: dict[str, np.ndarray]) -> dict:
    tree: dict = {}
    for key, array in flat.items():
        *parents, leaf = key.split("/")
        node = tree
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = array
    return tree
