"""The step budget and the learning-rate schedule, written once: torch (numpy) and optax (jax.numpy) share them."""

from __future__ import annotations

import math

from shared.config import Config, TrainConfig
from shared.data import batches_per_epoch


def total_steps(cfg: Config, n_train: int) -> int:
    """Optimizer steps of the whole run: every full batch of every epoch, capped by --max-steps."""
    steps = batches_per_epoch(n_train, cfg.data.batch_size) * cfg.train.epochs
    return min(steps, cfg.train.max_steps or steps)


def lr_factor(step, cfg: TrainConfig, total_steps: int, xp):
    """Multiplier of cfg.lr at optimizer step `step` (0-based): linear warmup from lr/warmup to lr over
    `warmup_steps`, then constant or a cosine decay to 0 at `total_steps`. Computed in the array module's
    default float (float64 in numpy and in jax with x64), so the float64 parity check sees one schedule."""
    step = xp.asarray(step) + 0.0
    warmup = cfg.warmup_steps
    warm = xp.minimum((step + 1.0) / warmup, 1.0) if warmup > 0 else xp.ones_like(step)
    if cfg.schedule == "constant":
        return warm
    progress = xp.clip((step - warmup) / max(1, total_steps - warmup), 0.0, 1.0)
    cosine = 0.5 * (1.0 + xp.cos(math.pi * progress))
    return xp.where(step < warmup, warm, cosine)
