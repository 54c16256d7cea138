"""Platform-specific layers, apart from the model (as timm keeps its special layers in layers/): the max-pool
that nin_flax/model.py runs, chosen by the backend from the platform of the device it builds for.

On XLA:CPU the max-pool's reduce-window backward (select-and-scatter) is about 9x slower than torch's at NiN's
first pool (python -m bench.alternatives). The CPU form below is the max of the kernel^2 strided views, with
a backward that gives each window's gradient to its first maximum in scan order, as XLA's and torch's pools
do (tests/test_model.py: the same values bit for bit, the same elements taking the gradient, ties included).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

Pool = Callable[[jax.Array, int, int], jax.Array]  # (x NHWC, kernel, stride) -> x


def xla_max_pool(x: jax.Array, kernel: int, stride: int) -> jax.Array:
    """XLA's own pool (reduce-window): what GPUs run, and what ONNX exporters trace."""
    return nnx.max_pool(x, window_shape=(kernel, kernel), strides=(stride, stride))  # keywords: jax2onnx patches it


def _pool_spans(height: int, width: int, kernel: int, stride: int) -> list[tuple[slice, slice]]:
    """The (row, col) slices of the kernel^2 strided views whose elementwise max is the pool."""
    ho, wo = (height - kernel) // stride + 1, (width - kernel) // stride + 1
    return [(slice(i, i + stride * (ho - 1) + 1, stride), slice(j, j + stride * (wo - 1) + 1, stride))
            for i in range(kernel) for j in range(kernel)]


def _pool_views(x: jax.Array, kernel: int, stride: int) -> list[jax.Array]:
    return [x[:, rows, cols, :] for rows, cols in _pool_spans(x.shape[1], x.shape[2], kernel, stride)]


def _pool_max(views: list[jax.Array]) -> jax.Array:
    out = views[0]
    for view in views[1:]:
        out = jnp.maximum(out, view)
    return out


def strided_max_pool(x: jax.Array, kernel: int, stride: int) -> jax.Array:
    """The max-pool as the max of strided views, with the first-maximum backward of _pool_backward."""
    return _strided_max_pool(x, (x.shape[1], x.shape[2], kernel, stride))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _strided_max_pool(x: jax.Array, geometry: tuple[int, int, int, int]) -> jax.Array:
    return _pool_max(_pool_views(x, *geometry[2:]))


def _pool_forward(x: jax.Array, geometry: tuple[int, int, int, int]):
    views = _pool_views(x, *geometry[2:])
    out = _pool_max(views)
    first = jnp.full(out.shape, len(views) - 1, jnp.int8)  # which view holds each window's first maximum
    for t in reversed(range(len(views) - 1)):
        first = jnp.where(views[t] == out, jnp.int8(t), first)
    return out, first  # like torch's pool indices: the backward needs neither x nor out


def _pool_backward(geometry: tuple[int, int, int, int], first: jax.Array, g: jax.Array):
    height, width, kernel, stride = geometry
    zero = jnp.zeros((), g.dtype)
    dx = jnp.zeros((g.shape[0], height, width, g.shape[3]), g.dtype)
    for t, (rows, cols) in enumerate(_pool_spans(height, width, kernel, stride)):
        # the view's gradient back in place by an interior pad (stride - 1 zeros between elements), not a
        # scatter: XLA fuses the kernel^2 pads into one pass over dx
        spread = [(0, 0, 0), (rows.start, height - rows.stop, stride - 1), (cols.start, width - cols.stop, stride - 1),
                  (0, 0, 0)]
        dx = dx + jax.lax.pad(jnp.where(first == t, g, zero), zero, spread)
    return (dx,)


_strided_max_pool.defvjp(_pool_forward, _pool_backward)


def max_pool_for(platform: str) -> Pool:
    """The one place that chooses the pool by platform: the strided form on CPUs, XLA's own elsewhere."""
    return strided_max_pool if platform == "cpu" else xla_max_pool
