"""The portable weights format and the layout conversions, as pure functions over dicts of numpy arrays.

A weights.safetensors file holds canonical tensors (PyTorch names and layout: `blocks.0.conv0.weight` OIHW,
`fc.weight` (out, in)) and, in its metadata, the model config, the image size and the framework it came
from. The flax layout differs in names (`kernel`) and axes (HWIO, (in, out)).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from shared.arch import NiNSpec, check_image_size, nin_spec, param_shapes
from shared.config import Config, ModelConfig, apply_overrides
from shared.errors import UserError, first_line
from shared.files import atomic_write, path_kind
from shared.runtime import host_available_memory
from shared.summary import memory_estimate
from shared.validate import validate_model

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


def check_values(state: State, where: str) -> None:
    """Weights are floating point and finite: an int8 tensor is not ours to cast, a NaN or inf would only show
    up later as a NaN prediction, a 10% test accuracy or a 'diverged' run."""
    for name, array in state.items():
        if not np.issubdtype(array.dtype, np.floating):
            raise UserError(f"{where}: {name} is {array.dtype}, not floating point; weights are float16, float32 "
                            f"or float64 (a quantised or damaged file is not read)")
        bad = array.size - int(np.isfinite(array).sum())
        if bad:
            raise UserError(f"{where}: {name} holds {bad:,} NaN or infinite value(s); the file is damaged or comes "
                            f"from a run that diverged; use weights from a run that ended 'ok'")


def load_portable(path: str | Path) -> tuple[State, dict[str, str]]:
    """(canonical state, metadata) of a weights file, its values checked; an unreadable file is a user error."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    kind = path_kind(path)
    if kind != "file":
        what = "does not exist" if kind == "missing" else f"is {kind}, not a file"
        raise UserError(f"weights file {path} {what}; give a weights.safetensors written by a run")
    try:
        with safe_open(str(path), framework="numpy") as f:
            state, metadata = {name: f.get_tensor(name) for name in f.keys()}, f.metadata() or {}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError, TypeError) as e:
        raise UserError(f"{path} is not a readable safetensors file ({first_line(e)})") from None
    check_values(state, str(path))
    return state, metadata


def saved_model_config(metadata: dict[str, str]) -> tuple[ModelConfig, int] | None:
    """The (model config, image size) recorded in a weights file, if it is one of ours; every field parsed and
    checked (an image size too small or too large for memory, a config of no valid NiN, is a damaged file)."""
    if metadata.get("format") != FORMAT:
        return None
    try:
        recorded = json.loads(metadata["model_config"])
        if not isinstance(recorded, dict):
            raise ValueError("model_config is not a JSON object")
        cfg = apply_overrides(Config(), {"model": recorded}, "the weights metadata")
        size = metadata["image_size"]
        if not size.isdigit():
            raise ValueError(f"image_size {size!r} is not a whole number")
        validate_model(cfg.model, "")
        check_image_size(int(size))
    except (KeyError, ValueError, TypeError, UserError) as e:
        raise UserError(f"the weights metadata is damaged ({first_line(e)}); re-export the weights") from None
    check_inference_fits(cfg.model, int(size), 1, "the weights file's")
    return cfg.model, int(size)


def check_inference_fits(cfg: ModelConfig, image_size: int, batch: int, whose: str,
                         fix: str = "it cannot run on this machine") -> None:
    """Refuse an architecture or image size recorded in a file that would not fit in memory, before anything is
    allocated (a file may claim any size)."""
    need, available = memory_estimate(nin_spec(cfg, image_size), image_size, batch)["inference_bytes"], \
        host_available_memory()
    if available is not None and need > available:
        raise UserError(f"{whose} network at {image_size} px needs about {need / 2**30:.1f} GiB to classify a batch "
                        f"of {batch}, more than the {available / 2**30:.1f} GiB free here; {fix}")


def saved_normalize(metadata: dict[str, str]) -> bool | None:
    """The normalisation recorded in a weights file (None: not recorded, as in files before it was)."""
    if "normalize" not in metadata:
        return None
    try:
        value = json.loads(metadata["normalize"])
    except ValueError:
        value = metadata["normalize"]
    if not isinstance(value, bool):
        raise UserError(f"the weights metadata is damaged (normalize is {metadata['normalize']!r}, not true or "
                        f"false); re-export the weights")
    return value


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
