"""Analytic per-layer figures of a NiN spec: output shape, params, MACs, FLOPs, activation bytes, memory.

FLOPs are 2 per multiply-add and count convolution/linear work only (no bias, ReLU or pooling), which is
how torch.utils.flop_counter counts. `xla_style_flops` reproduces XLA's cost analysis, which counts
differently (see there).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from shared.arch import Block, Dropout, GlobalAvgPool, Linear, MaxPool, NiNSpec, conv_out
from shared.errors import UserError

BYTES_PER_FLOAT = 4


@dataclass(frozen=True)
class LayerRow:
    name: str
    shape: tuple[int, ...]  # (C, H, W), or (N,) after flattening
    params: int
    macs: int
    flops: int
    activation_bytes: int  # per example, fp32

    def to_dict(self) -> dict:
        return {**asdict(self), "shape": list(self.shape)}


def _elements(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _row(name: str, shape: tuple[int, ...], params: int = 0, macs: int = 0) -> LayerRow:
    return LayerRow(name, shape, params, macs, 2 * macs, BYTES_PER_FLOAT * _elements(shape))


def layer_table(spec: NiNSpec, image_size: int) -> list[LayerRow]:
    """One row per layer, named as in both frameworks' taps, in forward order."""
    rows, channels, size = [], spec.in_channels, image_size
    for layer in spec.layers:
        match layer:
            case Block(convs=convs):
                for c in convs:
                    size, channels = conv_out(size, c.kernel, c.stride, c.padding), c.out_channels
                    macs = c.out_channels * size * size * c.in_channels * c.kernel**2
                    rows.append(_row(c.name, (channels, size, size), c.out_channels * (c.in_channels * c.kernel**2 + 1),
                                     macs))
            case MaxPool(kernel=kernel, stride=stride):
                size = conv_out(size, kernel, stride, 0)
                rows.append(_row(layer.name, (channels, size, size)))
            case Dropout():
                rows.append(_row(layer.name, (channels, size, size)))
            case GlobalAvgPool():
                rows.append(_row(layer.name, (channels,)))
            case Linear(in_features=n_in, out_features=n_out):
                rows.append(_row(layer.name, (n_out,), n_in * n_out + n_out, n_in * n_out))
    return rows


def totals(rows: list[LayerRow]) -> dict[str, int]:
    return {"params": sum(r.params for r in rows), "macs": sum(r.macs for r in rows),
            "flops": sum(r.flops for r in rows)}


def _valid_taps(size_in: int, kernel: int, stride: int, padding: int) -> int:
    """Sum over output positions of the kernel taps that fall inside the unpadded input (one axis)."""
    size_out = conv_out(size_in, kernel, stride, padding)
    return sum(sum(1 for k in range(kernel) if 0 <= o * stride - padding + k < size_in) for o in range(size_out))


def xla_style_flops(spec: NiNSpec, image_size: int) -> int:
    """FLOPs as XLA's cost analysis counts them, which explains its lower figure for the same network:
    2 per multiply-add but only for the window taps over real input (taps on the zero padding of the 5x5
    and 3x3 convs are not counted), plus 1 per bias add, 1 per ReLU, 8 compares per 3x3 max-pool output,
    and one add per input element of the mean (global average pooling)."""
    total, channels, size = 0, spec.in_channels, image_size
    for layer in spec.layers:
        match layer:
            case Block(convs=convs):
                for c in convs:
                    taps = _valid_taps(size, c.kernel, c.stride, c.padding)
                    size, channels = conv_out(size, c.kernel, c.stride, c.padding), c.out_channels
                    total += 2 * c.out_channels * c.in_channels * taps * taps
                    total += c.out_channels * size * size * (2 if c.relu else 1)
            case MaxPool(kernel=kernel, stride=stride):
                size = conv_out(size, kernel, stride, 0)
                total += (kernel**2 - 1) * channels * size * size
            case GlobalAvgPool():
                total += channels * size * size
            case Linear(in_features=n_in, out_features=n_out):
                total += 2 * n_in * n_out + n_out
    return total


def memory_estimate(spec: NiNSpec, image_size: int, batch_size: int, optimizer_slots: int = 1) -> dict:
    """Rough fp32 memory for a batch: inference keeps two activations alive, training keeps all of them."""
    rows = layer_table(spec, image_size)
    param_bytes = BYTES_PER_FLOAT * totals(rows)["params"]
    input_bytes = BYTES_PER_FLOAT * spec.in_channels * image_size**2
    acts = [input_bytes] + [r.activation_bytes for r in rows]
    peak_pair = max(a + b for a, b in zip(acts, acts[1:], strict=False))
    return {
        "param_bytes": param_bytes,
        "inference_bytes": param_bytes + batch_size * peak_pair,
        # weights + grads + optimizer slots, plus every layer output saved for the backward pass
        "training_bytes": param_bytes * (2 + optimizer_slots) + batch_size * sum(acts),
    }


def check_fits_memory(spec: NiNSpec, image_size: int, batch_size: int, available_bytes: int | None,
                      where: str, kind: str = "training") -> None:
    """Refuse, before anything is allocated, a step that cannot fit: the analytic estimate (for training: weights,
    gradients, two optimizer slots, every activation kept for the backward pass; for inference: the weights and
    two activations) exceeds what is free. The message names what to lower: the widths when the weights alone
    do not fit, else the image size or the batch."""
    if available_bytes is None:
        return
    estimate = memory_estimate(spec, image_size, batch_size, optimizer_slots=2)
    need = estimate["training_bytes" if kind == "training" else "inference_bytes"]
    if need <= available_bytes:
        return
    weights = estimate["param_bytes"] * (4 if kind == "training" else 1)
    step = f"one {kind} step" if kind == "training" else "inference"
    if weights > available_bytes / 2:
        params = estimate["param_bytes"] // BYTES_PER_FLOAT
        raise UserError(f"a network of {params:,} parameters needs about {need / 2**30:.1f} GiB for {step}, more than "
                        f"the {available_bytes / 2**30:.1f} GiB free on {where}; lower --widths or --last-width")
    raise UserError(f"--image-size {image_size} at batch {batch_size} needs about {need / 2**30:.1f} GiB for {step} "
                    f"(analytic estimate), more than the {available_bytes / 2**30:.1f} GiB free on {where}; lower "
                    f"--image-size or --batch-size")
