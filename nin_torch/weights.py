"""torch side of the portable weights format: a NiN's parameters <-> canonical numpy dicts and files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from shared.config import ModelConfig
from shared.weights import State, check_state, load_for, save_portable


def state_of(model: torch.nn.Module, dtype=np.float32) -> State:
    """Canonical state (numpy of `dtype`): torch's own names and layout are the canonical ones."""
    model = getattr(model, "module", model)  # unwrap DDP / torch.compile
    model = getattr(model, "_orig_mod", model)
    return {name: p.detach().cpu().numpy().astype(dtype) for name, p in model.named_parameters()}


def load_state(model: torch.nn.Module, state: State) -> None:
    """Copy a canonical state into the model, checked against its architecture first."""
    check_state(state, model.spec, "the weights")
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, array in state.items():
            params[name].copy_(torch.from_numpy(np.array(array)))


def save(model: torch.nn.Module, path: str | Path, cfg: ModelConfig, image_size: int, normalize: bool = False) -> None:
    save_portable(path, state_of(model), cfg, image_size, normalize, framework="torch")


def load_into(model: torch.nn.Module, path: str | Path, cfg: ModelConfig, image_size: int,
              normalize: bool | None = None) -> None:
    load_state(model, load_for(path, cfg, image_size, normalize))
