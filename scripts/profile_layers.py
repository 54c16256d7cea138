"""Where the training step's time goes, layer by layer, in both frameworks on this machine.

    python scripts/profile_layers.py [--image-size 96] [--batch-size 64]

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

from shared.arch import nin_spec
from shared.config import ModelConfig
from shared.summary import conv_specs, layer_table


def best_of(fn, reps: int = 5) -> float:
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    size, batch = args.image_size, args.batch_size
    spec = nin_spec(ModelConfig(), size)
    sizes = {r.name: r.shape for r in layer_table(spec, size)}
    rng = np.random.default_rng(0)
    in_size = size
    print(f"forward + backward of each conv alone, batch {batch}, ms (best of 5)")
    print(f"{'layer':<16}{'in':>14}{'torch':>9}{'xla conv':>10}{'xla matmul':>12}")
    total = {"torch": 0.0, "xla": 0.0}
    for c in conv_specs(spec):
        x = rng.random((batch, c.in_channels, in_size, in_size), dtype=np.float32)
        w = rng.random((c.out_channels, c.in_channels, c.kernel, c.kernel), dtype=np.float32) * 0.01
        xt, wt = torch.from_numpy(x).requires_grad_(), torch.from_numpy(w).requires_grad_()

        def torch_step():
            F.conv2d(xt, wt, stride=c.stride, padding=c.padding).square().sum().backward()

        xj, wj = jnp.asarray(x.transpose(0, 2, 3, 1)), jnp.asarray(w.transpose(2, 3, 1, 0))
        conv = lambda x, w: jax.lax.conv_general_dilated(  # noqa: E731
            x, w, (c.stride,) * 2, [(c.padding, c.padding)] * 2, dimension_numbers=("NHWC", "HWIO", "NHWC"))
        matmul = lambda x, w: jnp.einsum("nhwc,co->nhwo", x, w[0, 0])  # noqa: E731
        grad_conv = jax.jit(jax.grad(lambda w, x: jnp.square(conv(x, w)).sum(), argnums=(0, 1)))
        t_torch = best_of(torch_step)
        t_conv = best_of(lambda: jax.block_until_ready(grad_conv(wj, xj)))
        t_matmul = ""
        if c.kernel == 1:
            grad_mm = jax.jit(jax.grad(lambda w, x: jnp.square(matmul(x, w)).sum(), argnums=(0, 1)))
            t_matmul = f"{best_of(lambda: jax.block_until_ready(grad_mm(wj, xj))):.1f}"
        total["torch"] += t_torch
        total["xla"] += min(t_conv, float(t_matmul) if t_matmul else t_conv)
        shape = f"{c.in_channels}x{in_size}x{in_size}"
        print(f"{c.name:<16}{shape:>14}{t_torch:>9.1f}{t_conv:>10.1f}{t_matmul:>12}")
        in_size = sizes[c.name][1]
        if c.name.endswith(f"conv{len(spec.blocks[0]) - 1}") and not c.name.startswith("blocks.3"):
            in_size = (in_size - 3) // 2 + 1
    print(f"{'sum':<30}{total['torch']:>9.1f}{'':>10}{total['xla']:>12.1f}  (xla: the faster of conv/matmul)")


if __name__ == "__main__":
    main()
