"""NiN in flax.nnx, NHWC, built from the shared spec (shared.arch). Twin of nin_torch/model.py."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from shared.arch import POOL_KERNEL, POOL_STRIDE, ConvSpec, NiNSpec, nin_spec
from shared.config import ModelConfig
from shared.init import TRUNCATED_NORMAL_STD_CORRECTION, Dist, bias_dist, weight_dist

Taps = dict[str, jax.Array] | None


def _tap(taps: Taps, name: str, x: jax.Array) -> None:
    if taps is not None:
        taps[name] = x


def sampler(dist: Dist) -> jax.nn.initializers.Initializer:
    """A flax initializer drawing from a shared.init distribution."""
    if dist.kind == "zeros":
        return jax.nn.initializers.zeros

    def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        if dist.kind == "uniform":
            return jax.random.uniform(key, shape, dtype, -dist.scale, dist.scale)
        if dist.kind == "normal":
            return dist.scale * jax.random.normal(key, shape, dtype)
        if dist.kind == "truncated_normal":
            std = dist.scale / TRUNCATED_NORMAL_STD_CORRECTION
            return std * jax.random.truncated_normal(key, -2.0, 2.0, shape, dtype)
        raise ValueError(dist.kind)

    return init


def conv(c: ConvSpec, init: str, dtype, rngs: nnx.Rngs) -> nnx.Conv:
    canonical = (c.out_channels, c.in_channels, c.kernel, c.kernel)  # OIHW, as the init laws are written
    p = c.padding
    return nnx.Conv(c.in_channels, c.out_channels, (c.kernel, c.kernel), (c.stride, c.stride),
                    padding=((p, p), (p, p)),  # explicit and symmetric: 'SAME' would give 56, not 54
                    kernel_init=sampler(weight_dist(init, canonical)),
                    bias_init=sampler(bias_dist(init, canonical)), dtype=dtype, rngs=rngs)


def _pool_spans(height: int, width: int) -> list[tuple[slice, slice]]:
    """The (row, col) slices of the POOL_KERNEL^2 strided views whose elementwise max is the pool."""
    k, s = POOL_KERNEL, POOL_STRIDE
    ho, wo = (height - k) // s + 1, (width - k) // s + 1
    return [(slice(i, i + s * (ho - 1) + 1, s), slice(j, j + s * (wo - 1) + 1, s)) for i in range(k) for j in range(k)]


def _pool_views(x: jax.Array) -> list[jax.Array]:
    return [x[:, rows, cols, :] for rows, cols in _pool_spans(x.shape[1], x.shape[2])]


def _pool_max(views: list[jax.Array]) -> jax.Array:
    out = views[0]
    for view in views[1:]:
        out = jnp.maximum(out, view)
    return out


def strided_max_pool(x: jax.Array) -> jax.Array:
    """NiN's 3x3 / 2 max-pool as the max of 9 strided views, with a backward that gives each window's gradient
    to its first maximum in scan order (as XLA's and torch's pools do; where windows overlap, the sums run in
    another order). On XLA:CPU the pool's reduce-window backward (select-and-scatter) is about 9x slower than
    this at NiN's first pool."""
    return _strided_max_pool(x, x.shape[1:3])


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _strided_max_pool(x: jax.Array, size: tuple[int, int]) -> jax.Array:
    return _pool_max(_pool_views(x))


def _pool_forward(x: jax.Array, size: tuple[int, int]):
    views = _pool_views(x)
    out = _pool_max(views)
    first = jnp.full(out.shape, len(views) - 1, jnp.int8)  # which view holds each window's first maximum
    for t in reversed(range(len(views) - 1)):
        first = jnp.where(views[t] == out, jnp.int8(t), first)
    return out, first  # like torch's pool indices: the backward needs neither x nor out


def _pool_backward(size: tuple[int, int], first: jax.Array, g: jax.Array):
    zero = jnp.zeros((), g.dtype)
    dx = jnp.zeros((g.shape[0], *size, g.shape[3]), g.dtype)
    for t, (rows, cols) in enumerate(_pool_spans(*size)):
        # the view's gradient back in place by an interior pad (stride - 1 zeros between elements), not a
        # scatter: XLA fuses the nine into one pass over dx
        spread = [(0, 0, 0), (rows.start, size[0] - rows.stop, POOL_STRIDE - 1),
                  (cols.start, size[1] - cols.stop, POOL_STRIDE - 1), (0, 0, 0)]
        dx = dx + jax.lax.pad(jnp.where(first == t, g, zero), zero, spread)
    return (dx,)


_strided_max_pool.defvjp(_pool_forward, _pool_backward)


def max_pool(x: jax.Array) -> jax.Array:
    """The one place that chooses how the pool runs, by platform: the strided form on CPUs, XLA's elsewhere."""
    if jax.default_backend() == "cpu":
        return strided_max_pool(x)
    return nnx.max_pool(x, (POOL_KERNEL, POOL_KERNEL), strides=(POOL_STRIDE, POOL_STRIDE))


class NiNBlock(nnx.Module):
    """One conv of the block's size, then the 1x1 ('mid') convs, each followed by a ReLU."""

    def __init__(self, convs: tuple[ConvSpec, ...], init: str, dtype, rngs: nnx.Rngs):
        self.specs = convs
        for c in convs:
            setattr(self, c.name.rsplit(".", 1)[1], conv(c, init, dtype, rngs))

    def __call__(self, x: jax.Array, taps: Taps = None) -> jax.Array:
        for c in self.specs:
            x = getattr(self, c.name.rsplit(".", 1)[1])(x)
            if c.relu:
                x = nnx.relu(x)
            _tap(taps, c.name, x)
        return x


class NiN(nnx.Module):
    def __init__(self, spec: NiNSpec, init: str = "xavier_uniform", dtype=None, *, rngs: nnx.Rngs):
        self.spec = spec
        self.blocks = nnx.List([NiNBlock(block, init, dtype, rngs) for block in spec.blocks])
        self.dropout = nnx.Dropout(spec.dropout, rngs=rngs)
        self.fc = nnx.data(None)  # a Module or None: declared as data so either may sit here
        if spec.head == "fc":
            canonical = (spec.num_classes, spec.fc_in)
            self.fc = nnx.Linear(spec.fc_in, spec.num_classes, kernel_init=sampler(weight_dist(init, canonical)),
                                 bias_init=sampler(bias_dist(init, canonical)), dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array, taps: Taps = None, dropout_mask: jax.Array | None = None) -> jax.Array:
        """x: [N, H, W, C] -> logits [N, num_classes]; `taps` collects every layer's output by name;
        `dropout_mask` (training only): a given inverted-dropout mask instead of flax's own draw."""
        for b, block in enumerate(self.blocks):
            if b > 0:
                x = max_pool(x)
                _tap(taps, f"pool{b - 1}", x)
            if b == len(self.blocks) - 1:
                use_mask = dropout_mask is not None and not self.dropout.deterministic
                x = x * dropout_mask.astype(x.dtype) if use_mask else self.dropout(x)
            x = block(x, taps)
        if self.fc is None:
            x = x.mean(axis=(1, 2))
            _tap(taps, "gap", x)
        else:
            x = self.fc(x.transpose(0, 3, 1, 2).reshape(x.shape[0], -1))  # flatten in C, H, W order, as torch
            _tap(taps, "fc", x)
        return x.astype(jnp.promote_types(x.dtype, jnp.float32))  # bf16 compute -> fp32 logits


def build_model(cfg: ModelConfig, image_size: int, seed: int = 0, dtype=None) -> NiN:
    """The NiN for this config, initialised from `seed` (refuses images below the minimum size)."""
    spec = nin_spec(cfg, image_size)
    return NiN(spec, cfg.init, dtype, rngs=nnx.Rngs(seed))
