"""Where the training step's time goes, layer by layer, in both frameworks on the machine it runs on.

    python -m bench.profile_layers [--image-size 96] [--batch-size 64]

For each conv of the d2l NiN it times forward + backward (weight and input gradients) of that layer alone,
at the shapes the network gives it, in torch (oneDNN on the CPU) and in XLA (jit), and prints milliseconds.
XLA runs each layer twice: with its default options (which hand convolutions and matmuls to YNNPACK) and with
the options nin_flax compiles its CPU steps with (nin_flax.runtime.compiler_options: XLA's own kernels); a 1x1
conv also as the same product written as a matmul over channels (which nin_flax once used instead of the conv:
with the tuned options the two cost the same).
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F

from bench.timing import best_of
from nin_flax.runtime import compiler_options
from shared.arch import Conv, nin_spec
from shared.config import ModelConfig
from shared.runtime import keep_freed_memory
from shared.summary import layer_table


def time_layer(c: Conv, in_size: int, batch: int, rng: np.random.Generator) -> dict[str, float]:
    """Milliseconds for forward + backward of one conv: torch, and XLA's conv (and matmul, for a 1x1 conv) with
    XLA's default options ("default") and with nin_flax's CPU options ("tuned")."""
    x = rng.random((batch, c.in_channels, in_size, in_size), dtype=np.float32)
    w = rng.random((c.out_channels, c.in_channels, c.kernel, c.kernel), dtype=np.float32) * 0.01
    xt, wt = torch.from_numpy(x).requires_grad_(), torch.from_numpy(w).requires_grad_()

    def torch_step() -> None:
        F.conv2d(xt, wt, stride=c.stride, padding=c.padding).square().sum().backward()

    def conv(x, w):
        return jax.lax.conv_general_dilated(x, w, (c.stride,) * 2, [(c.padding, c.padding)] * 2,
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))

    def matmul(x, w):
        return jnp.einsum("nhwc,co->nhwo", x, w[0, 0])

    xj, wj = jnp.asarray(x.transpose(0, 2, 3, 1)), jnp.asarray(w.transpose(2, 3, 1, 0))
    timings = {"torch": best_of(torch_step, reps=5, warmup=1)}
    for name, layer in (("conv", conv), ("matmul", matmul)) if c.kernel == 1 else (("conv", conv),):
        for options_name, options in (("default", None), ("tuned", compiler_options("cpu"))):
            loss = lambda w, x, layer=layer: jnp.square(layer(x, w)).sum()  # noqa: E731
            grad = jax.jit(jax.grad(loss, argnums=(0, 1)), compiler_options=options)
            timings[f"{name} {options_name}"] = best_of(lambda grad=grad: jax.block_until_ready(grad(wj, xj)),
                                                            reps=5, warmup=1)
    return timings


COLUMNS = ("torch", "conv default", "conv tuned", "matmul default", "matmul tuned")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    keep_freed_memory()  # as the backends do: otherwise each call maps its scratch buffers afresh
    spec = nin_spec(ModelConfig(), args.image_size)
    rng = np.random.default_rng(0)
    print(f"forward + backward of each conv alone, batch {args.batch_size}, ms (best of 5); XLA with its default "
          f"options and with nin_flax's CPU options (tuned)")
    print(f"{'layer':<16}{'in':>14}" + "".join(f"{'xla ' + c if c != 'torch' else c:>20}" for c in COLUMNS))
    total_torch = total_default = total_tuned = 0.0
    in_size, convs = args.image_size, {c.name: c for c in spec.convs}
    for row in layer_table(spec, args.image_size):  # each layer's output is the next one's input
        if row.name in convs:
            c = convs[row.name]
            t = time_layer(c, in_size, args.batch_size, rng)
            total_torch += t["torch"]
            total_default += t["conv default"]  # nin_flax runs every conv, 1x1 included, as XLA's convolution
            total_tuned += t["conv tuned"]
            cells = "".join(f"{t[col]:>20.1f}" if col in t else f"{'':>20}" for col in COLUMNS)
            print(f"{c.name:<16}{f'{c.in_channels}x{in_size}x{in_size}':>14}{cells}")
        in_size = row.shape[1] if len(row.shape) == 3 else in_size
    print(f"{'sum of the convs':<30}{total_torch:>20.1f}{total_default:>20.1f}{total_tuned:>20.1f}"
          f"   (torch, xla default, xla tuned)")

if __name__ == "__main__":
    main()
