"""The portable weights format and the layout conversions, as pure functions over dicts of numpy arrays.

A weights.safetensors file holds canonical tensors (PyTorch names and layout: `blocks.0.conv0.weight` OIHW,
`fc.weight` (out, in)) and, in its metadata, the model config, the image size and the framework it came
from. The flax layout differs in names (`kernel`) and axes (HWIO, (in, out)).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from shared.arch import NiNSpec, nin_spec, param_shapes
from shared.config import Config, ModelConfig, apply_overrides
from shared.errors import UserError
from shared.files import atomic_write

FORMAT = "nin-two-ways/1"
State = dict[str, np.ndarray]


def check_state(state: State, spec: NiNSpec, where: str) -> None:
    """Loud errors naming every missing, unexpected and mis-shaped tensor."""
    expected = param_shapes(spec)
    problems = [f"missing {name} {list(shape)}" for name, shape in expected.items() if name not in state]
    problems += [f"unexpected {name}" for name in state if name not in expected]
    problems += [f"{name} has shape {list(state[name].shape)}, expected {list(shape)}"
                 for name, shape in expected.items() if name in state and tuple(state[name].shape) != shape]
    if problems:
        raise UserError(f"{where} does not fit this architecture: {'; '.join(problems)}")


def _transpose_flax(name: str, array: np.ndarray, to_flax: bool) -> tuple[str, np.ndarray]:
    layer, kind = name.rsplit(".", 1)
    if kind in ("bias",):
        return name, array
    if to_flax:
        axes = (2, 3, 1, 0) if array.ndim == 4 else (1, 0)  # OIHW -> HWIO; (out, in) -> (in, out)
        return f"{layer}.kernel", np.ascontiguousarray(array.transpose(axes))
    axes = (3, 2, 0, 1) if array.ndim == 4 else (1, 0)  # HWIO -> OIHW
    return f"{layer}.weight", np.ascontiguousarray(array.transpose(axes))


def canonical_to_flax(state: State) -> State:
    """Canonical (PyTorch) names and layout -> flax.nnx names (`kernel`) and layout (HWIO, (in, out))."""
    return dict(_transpose_flax(name, array, to_flax=True) for name, array in state.items())


def flax_to_canonical(state: State) -> State:
    """flax.nnx names and layout -> canonical (PyTorch) names and layout."""
    return dict(_transpose_flax(name, array, to_flax=False) for name, array in state.items())


def save_portable(path: str | Path, state: State, cfg: ModelConfig, image_size: int, normalize: bool,
                  framework: str) -> None:
    """Write canonical `state` (checked against the architecture) atomically, with its spec as metadata:
    the model config and the preprocessing (image size, normalisation) it was trained with."""
    from safetensors.numpy import save

    check_state(state, nin_spec(cfg, image_size), "the weights to save")
    metadata = {"format": FORMAT, "framework": framework, "image_size": str(image_size),
                "normalize": json.dumps(bool(normalize)),
                "model_config": json.dumps(Config(model=cfg).to_dict()["model"], sort_keys=True)}
    tensors = {name: np.ascontiguousarray(a, dtype=np.float32) for name, a in state.items()}
    atomic_write(Path(path), save(tensors, metadata=metadata))


def load_portable(path: str | Path) -> tuple[State, dict[str, str]]:
    """(canonical state, metadata) of a weights file; a missing or unreadable file is a user error."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise UserError(f"weights file {path} does not exist; give a weights.safetensors written by a run")
    try:
        with safe_open(str(path), framework="numpy") as f:
            return {name: f.get_tensor(name) for name in f.keys()}, f.metadata() or {}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"{path} is not a readable safetensors file ({e})") from None


def saved_model_config(metadata: dict[str, str]) -> tuple[ModelConfig, int] | None:
    """The (model config, image size) recorded in a weights file, if it is one of ours."""
    if metadata.get("format") != FORMAT:
        return None
    try:
        cfg = apply_overrides(Config(), {"model": json.loads(metadata["model_config"])}, "the weights metadata")
        return cfg.model, int(metadata["image_size"])
    except (KeyError, ValueError, TypeError, UserError) as e:
        raise UserError(f"the weights metadata is damaged ({e}); re-export the weights") from None


def saved_normalize(metadata: dict[str, str]) -> bool | None:
    """The normalisation recorded in a weights file (None: not recorded, as in files before it was)."""
    return json.loads(metadata["normalize"]) if "normalize" in metadata else None


def recorded_model(path: str | Path) -> tuple[ModelConfig, int, bool]:
    """(model config, image size, normalize) that a trainer's weights file records; refused if it records none."""
    metadata = load_portable(path)[1]
    saved = saved_model_config(metadata)
    if saved is None:
        raise UserError(f"{path} records no model config; give a weights.safetensors written by a trainer")
    return *saved, bool(saved_normalize(metadata))


def apply_saved_config(cfg: Config, metadata: dict[str, str]) -> Config:
    """cfg with the architecture and preprocessing recorded in a weights file (unchanged if none is)."""
    saved = saved_model_config(metadata)
    if saved is not None:
        cfg.model, cfg.data.image_size = saved
        normalize = saved_normalize(metadata)
        cfg.data.normalize = cfg.data.normalize if normalize is None else normalize
    return cfg


def load_for(path: str | Path, cfg: ModelConfig, image_size: int, normalize: bool | None = None) -> State:
    """Canonical weights from `path`, refused (naming each difference) unless they fit this architecture
    and, where the file records it, this preprocessing."""
    state, metadata = load_portable(path)
    check_state(state, nin_spec(cfg, image_size), str(path))
    saved = saved_normalize(metadata)
    if normalize is not None and saved is not None and saved != normalize:
        flag = "--normalize" if saved else "--no-normalize"
        raise UserError(f"{path} was trained with{'' if saved else 'out'} input normalisation; pass {flag}")
    return state
