"""Dropout masks from the shared spec (opt-in: --dropout-masks shared). By default each framework draws its
own masks from its own RNG; with shared masks both draw nothing and multiply by the same numpy mask, made
from (seed, step) alone, so that two runs of the two frameworks see identical dropout (compare.parity)."""

from __future__ import annotations

import numpy as np

from shared.arch import NiNSpec
from shared.config import Config
from shared.summary import layer_table

DROPOUT_STREAM = 0x0D0  # keeps these draws apart from the epoch order's (seed, epoch) stream


def dropout_shape(spec: NiNSpec, image_size: int) -> tuple[int, int, int]:
    """(C, H, W) of the tensor dropout acts on (the last pool's output, the last block's input)."""
    return next(row.shape for row in layer_table(spec, image_size) if row.name == "dropout")


def dropout_mask(seed: int, step: int, batch: int, shape: tuple[int, int, int], rate: float) -> np.ndarray:
    """float32 [batch, C, H, W] (NCHW): keep / (1 - rate), the inverted-dropout scale torch and flax use."""
    keep = np.random.default_rng([seed, step, DROPOUT_STREAM]).random((batch, *shape)) >= rate
    return (keep / (1.0 - rate)).astype(np.float32)


def step_mask(cfg: Config, step: int, batch: int, shape: tuple[int, int, int]) -> np.ndarray | None:
    """The shared mask of one training step, or None when the framework draws its own (the default) or
    dropout is off."""
    if cfg.run.dropout_masks != "shared" or not cfg.model.dropout:
        return None
    return dropout_mask(cfg.train.seed, step, batch, shape, cfg.model.dropout)
