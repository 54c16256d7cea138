"""Where the training step's time goes, layer by layer, in both frameworks on this machine.

    python -m bench.profile_layers [--image-size 96] [--batch-size 64]

For each conv of the d2l NiN it times forward + backward (weight and input gradients) of that layer alone,
at the shapes the network gives it, in torch (oneDNN on the CPU) and in XLA (jit), and prints milliseconds.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F

from shared.arch import POOL_KERNEL, POOL_STRIDE, ConvSpec, conv_out, nin_spec
from shared.config import ModelConfig


def best_of(fn, reps: int = 5) -> float:
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) * 1000


def time_layer(c: ConvSpec, in_size: int, batch: int, rng: np.random.Generator) -> tuple[float, float, float | None]:
    """(torch, XLA conv, XLA matmul or None) milliseconds for forward + backward of one conv."""
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
    timings = []
    for layer in (conv, matmul) if c.kernel == 1 else (conv,):
        grad = jax.jit(jax.grad(lambda w, x, layer=layer: jnp.square(layer(x, w)).sum(), argnums=(0, 1)))
        timings.append(best_of(lambda grad=grad: jax.block_until_ready(grad(wj, xj))))
    return best_of(torch_step), timings[0], timings[1] if len(timings) > 1 else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    spec = nin_spec(ModelConfig(), args.image_size)
    rng = np.random.default_rng(0)
    print(f"forward + backward of each conv alone, batch {args.batch_size}, ms (best of 5)")
    print(f"{'layer':<16}{'in':>14}{'torch':>9}{'xla conv':>10}{'xla matmul':>12}")
    total_torch = total_xla = 0.0
    in_size = args.image_size
    for b, block in enumerate(spec.blocks):
        if b > 0:
            in_size = conv_out(in_size, POOL_KERNEL, POOL_STRIDE, 0)
        for c in block:
            t_torch, t_conv, t_matmul = time_layer(c, in_size, args.batch_size, rng)
            total_torch += t_torch
            total_xla += min(t_conv, t_matmul or t_conv)
            shape = f"{c.in_channels}x{in_size}x{in_size}"
            matmul = f"{t_matmul:.1f}" if t_matmul is not None else ""
            print(f"{c.name:<16}{shape:>14}{t_torch:>9.1f}{t_conv:>10.1f}{matmul:>12}")
            in_size = conv_out(in_size, c.kernel, c.stride, c.padding)
    print(f"{'sum':<30}{total_torch:>9.1f}{'':>10}{total_xla:>12.1f}  (xla: the faster of conv/matmul)")


if __name__ == "__main__":
    main()
