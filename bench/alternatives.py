"""Other ways to run NiN's slow layers in XLA:CPU, timed against torch and XLA's own op (forward + backward of
one layer alone, ms, best of 7, compiled with the options nin_flax uses on the CPU): the 5x5 and 3x3 convs as
25 / 9 shifted 1x1 matmuls, as im2col + one matmul, and with the weight gradient alone as one patch matmul
(custom_vjp); the three max-pools in XLA's reduce-window form and as nin_flax.kernels.strided_max_pool (what the
model uses on CPUs).

    python -m bench.alternatives

README's performance section quotes it: the conv rewrites lost and were not kept; the pool's won and was.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F
from flax import nnx

from bench.timing import best_of
from nin_flax.kernels import strided_max_pool
from nin_flax.runtime import compiler_options
from shared.runtime import keep_freed_memory

CONVS = {96: [("5x5", 96, 256, 5, 2, 10, 64), ("3x3", 256, 384, 3, 1, 4, 64)],  # name, C, O, k, pad, side, batch
         67: [("5x5", 96, 256, 5, 2, 7, 128), ("3x3", 256, 384, 3, 1, 3, 128)]}
POOLS = {"pool0": (64, 22, 96), "pool1": (64, 10, 256), "pool2": (64, 4, 384)}  # at 96 px, batch 64: N, side, C


def lax_conv(x, w, p):
    return jax.lax.conv_general_dilated(x, w, (1, 1), [(p, p)] * 2, dimension_numbers=("NHWC", "HWIO", "NHWC"))


def shifted_views(x, k, p):
    side_h, side_w = x.shape[1] + 2 * p - k + 1, x.shape[2] + 2 * p - k + 1
    padded = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    return [padded[:, i:i + side_h, j:j + side_w, :] for i in range(k) for j in range(k)]


def tap_sum(x, w, p):
    k = w.shape[0]
    views = shifted_views(x, k, p)
    return sum(jnp.einsum("nhwc,co->nhwo", v, w[t // k, t % k]) for t, v in enumerate(views))


def im2col(x, w, p):
    cols = jnp.concatenate(shifted_views(x, w.shape[0], p), axis=-1)
    return jnp.einsum("nhwk,ko->nhwo", cols, w.reshape(-1, w.shape[-1]))


def weight_grad_as_matmul(p):
    @jax.custom_vjp
    def conv(x, w):
        return lax_conv(x, w, p)

    def backward(saved, g):
        x, w = saved
        _, input_grad = jax.vjp(lambda x: lax_conv(x, w, p), x)
        cols = jnp.concatenate(shifted_views(x, w.shape[0], p), axis=-1)
        return input_grad(g)[0], jnp.einsum("nhwk,nhwo->ko", cols, g).reshape(w.shape)

    conv.defvjp(lambda x, w: (lax_conv(x, w, p), (x, w)), backward)
    return lambda x, w, _: conv(x, w)


def time_jax(f, *args) -> float:
    loss = lambda *a: jnp.square(f(*a)).sum()  # noqa: E731
    grad = jax.jit(jax.grad(loss, argnums=tuple(range(len(args)))), compiler_options=compiler_options("cpu"))
    return best_of(lambda: jax.block_until_ready(grad(*args)))


def main() -> None:
    keep_freed_memory()  # as the backends do
    rng = np.random.default_rng(0)
    print("convs, forward + both gradients, ms: torch, XLA conv, 1x1-tap sum, im2col, weight grad as matmul")
    for size, layers in CONVS.items():
        for name, c, o, k, p, side, batch in layers:
            x = rng.random((batch, side, side, c), dtype=np.float32)
            w = rng.random((k, k, c, o), dtype=np.float32) * 0.01
            xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).contiguous(memory_format=torch.channels_last)
            xt.requires_grad_()
            wt = torch.from_numpy(w.transpose(3, 2, 0, 1).copy()).requires_grad_()
            row = [best_of(lambda: F.conv2d(xt, wt, padding=p).square().sum().backward())]  # noqa: B023
            xj, wj = jnp.asarray(x), jnp.asarray(w)
            for f in (lax_conv, tap_sum, im2col, weight_grad_as_matmul(p)):
                row.append(time_jax(lambda x, w, f=f: f(x, w, p), xj, wj))  # noqa: B023
            print(f"  {size} px, batch {batch}, {name}: " + "  ".join(f"{t:.1f}" for t in row))
    print("max-pools 3x3/2 at 96 px, batch 64, forward + backward, ms: torch, XLA reduce-window, strided views")
    for name, (n, side, c) in POOLS.items():
        x = rng.random((n, side, side, c), dtype=np.float32)
        xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).contiguous(memory_format=torch.channels_last)
        xt.requires_grad_()
        row = [best_of(lambda: F.max_pool2d(xt, 3, 2).square().sum().backward())]  # noqa: B023
        xj = jnp.asarray(x)
        row.append(time_jax(lambda x: nnx.max_pool(x, (3, 3), strides=(2, 2)), xj))
        row.append(time_jax(lambda x: strided_max_pool(x, 3, 2), xj))
        print(f"  {name} {n}x{side}x{side}x{c}: " + "  ".join(f"{t:.2f}" for t in row))


if __name__ == "__main__":
    main()
