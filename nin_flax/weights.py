"""flax side of the portable weights format: a NiN's parameters <-> canonical numpy dicts and files."""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx

from shared.config import ModelConfig
from shared.weights import State, canonical_to_flax, check_state, flax_to_canonical, load_for, save_portable


def state_of(model: nnx.Module, dtype=np.float32) -> State:
    """Canonical state (numpy of `dtype`, PyTorch names and layout) of a flax NiN."""
    flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
    native = {".".join(map(str, path)): np.asarray(v.get_value()).astype(dtype) for path, v in flat}
    return flax_to_canonical(native)


def load_state(model: nnx.Module, state: State) -> None:
    """Copy a canonical state into the model, checked against its architecture first."""
    check_state(state, model.spec, "the weights")
    native = canonical_to_flax(state)
    for path, variable in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        variable.set_value(jnp.asarray(native[".".join(map(str, path))], dtype=variable.get_value().dtype))


def save(model: nnx.Module, path: str | Path, cfg: ModelConfig, image_size: int, normalize: bool = False) -> None:
    save_portable(path, state_of(model), cfg, image_size, normalize, framework="flax")


def load_into(model: nnx.Module, path: str | Path, cfg: ModelConfig, image_size: int,
              normalize: bool | None = None) -> None:
    load_state(model, load_for(path, cfg, image_size, normalize))
