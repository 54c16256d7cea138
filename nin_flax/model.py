"""NiN in flax.nnx, NHWC: the layer list of shared.arch, walked in order. Twin of nin_torch/model.py.

The max-pool is a parameter: nin_flax/kernels.py holds the platform's choice, which the backend passes in.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from nin_flax.kernels import Pool, xla_max_pool
from shared.arch import Block, Conv, Dropout, GlobalAvgPool, Linear, MaxPool, NiNSpec, nin_spec
from shared.config import ModelConfig
from shared.init import TRUNCATED_NORMAL_STD_CORRECTION, Dist, bias_dist, weight_dist

Taps = dict[str, jax.Array] | None


def _tap(taps: Taps, name: str, x: jax.Array) -> jax.Array:
    if taps is not None:
        taps[name] = x
    return x


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


def initialisers(init: str, canonical: tuple[int, ...]) -> dict:
    """kernel_init and bias_init from the laws, which are written for the canonical (OIHW, (out, in)) shape."""
    return {"kernel_init": sampler(weight_dist(init, canonical)), "bias_init": sampler(bias_dist(init, canonical))}


def conv(c: Conv, init: str, dtype, rngs: nnx.Rngs) -> nnx.Conv:
    p, canonical = c.padding, (c.out_channels, c.in_channels, c.kernel, c.kernel)
    return nnx.Conv(c.in_channels, c.out_channels, (c.kernel, c.kernel), (c.stride, c.stride),
                    padding=((p, p), (p, p)),  # explicit and symmetric: 'SAME' would give 56, not 54
                    **initialisers(init, canonical), dtype=dtype, rngs=rngs)


def linear(fc: Linear, init: str, dtype, rngs: nnx.Rngs) -> nnx.Linear:
    canonical = (fc.out_features, fc.in_features)
    return nnx.Linear(fc.in_features, fc.out_features, **initialisers(init, canonical), dtype=dtype, rngs=rngs)


class NiNBlock(nnx.Module):
    """d2l's nin_block: the block's own conv, then its 1x1 ('mid') convs, each followed by a ReLU."""

    def __init__(self, block: Block, init: str, dtype, rngs: nnx.Rngs):
        self.spec = block
        for c in block.convs:
            setattr(self, c.attr, conv(c, init, dtype, rngs))

    def __call__(self, x: jax.Array, taps: Taps = None) -> jax.Array:
        for c in self.spec.convs:
            x = getattr(self, c.attr)(x)
            x = _tap(taps, c.name, nnx.relu(x) if c.relu else x)
        return x


class NiN(nnx.Module):
    def __init__(self, spec: NiNSpec, init: str = "xavier_uniform", dtype=None, pool: Pool = xla_max_pool, *,
                 rngs: nnx.Rngs):
        self.spec, self.pool = spec, pool
        self.blocks = nnx.List([NiNBlock(block, init, dtype, rngs) for block in spec.blocks])
        self.dropout = nnx.Dropout(spec.dropout, rngs=rngs)
        self.fc = nnx.data(None if spec.fc is None else linear(spec.fc, init, dtype, rngs))  # a Module or None

    def __call__(self, x: jax.Array, taps: Taps = None, dropout_mask: jax.Array | None = None) -> jax.Array:
        """x: [N, H, W, C] -> logits [N, num_classes]; `taps` collects every layer's output by name;
        `dropout_mask` (training only): a given inverted-dropout mask instead of flax's own draw."""
        for layer in self.spec.layers:
            match layer:
                case Block(index=b):
                    x = self.blocks[b](x, taps)
                case MaxPool(kernel=kernel, stride=stride):
                    x = _tap(taps, layer.name, self.pool(x, kernel, stride))
                case Dropout():
                    use_mask = dropout_mask is not None and not self.dropout.deterministic
                    x = _tap(taps, layer.name, x * dropout_mask.astype(x.dtype) if use_mask else self.dropout(x))
                case GlobalAvgPool():
                    x = _tap(taps, layer.name, x.mean(axis=(1, 2)))
                case Linear():
                    x = _tap(taps, layer.name, self.fc(x.transpose(0, 3, 1, 2).reshape(x.shape[0], -1)))  # C, H, W
        return x.astype(jnp.promote_types(x.dtype, jnp.float32))  # bf16 compute -> fp32 logits


def build_model(cfg: ModelConfig, image_size: int, seed: int = 0, dtype=None, pool: Pool = xla_max_pool) -> NiN:
    """The NiN for this config, initialised from `seed` (refuses images below the minimum size)."""
    spec = nin_spec(cfg, image_size)
    return NiN(spec, cfg.init, dtype, pool, rngs=nnx.Rngs(seed))
