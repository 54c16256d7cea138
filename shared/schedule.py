"""The learning-rate schedule, written once over an array module so torch (numpy) and optax (jax.numpy) share it."""

from __future__ import annotations

import math

from shared.config import TrainConfig


def lr_factor(step, cfg: TrainConfig, total_steps: int, xp):
    """Multiplier of cfg.lr at optimizer step `step` (0-based): linear warmup from lr/warmup to lr over
    `warmup_steps`, then constant or a cosine decay to 0 at `total_steps`."""
    step = xp.asarray(step, dtype=xp.float32)
    warmup = cfg.warmup_steps
    warm = xp.minimum((step + 1.0) / warmup, 1.0) if warmup > 0 else xp.asarray(1.0, dtype=xp.float32)
    if cfg.schedule == "constant":
        return warm
    progress = xp.clip((step - warmup) / max(1, total_steps - warmup), 0.0, 1.0)
    cosine = 0.5 * (1.0 + xp.cos(math.pi * progress))
    return xp.where(step < warmup, warm, cosine)
