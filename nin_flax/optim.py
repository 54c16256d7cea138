"""Optimisers, schedule and loss through optax, with the semantics of nin_torch/optim.py (its twin):
sgd (no momentum), momentum (heavy ball), adam (coupled L2), adamw (decoupled), clipping by global norm."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from shared.config import TrainConfig
from shared.schedule import lr_factor


def make_optimizer(cfg: TrainConfig, total_steps: int) -> optax.GradientTransformation:
    """The optax chain: clip (as torch clips before the step), coupled L2 (as torch's weight_decay for
    sgd and adam), then the update with the shared schedule."""
    schedule = lambda step: cfg.lr * lr_factor(step, cfg, total_steps, jnp)  # noqa: E731
    parts = []
    if cfg.clip_grad_norm is not None:
        parts.append(optax.clip_by_global_norm(cfg.clip_grad_norm))
    if cfg.optimizer == "adamw":
        parts.append(optax.adamw(schedule, weight_decay=cfg.weight_decay))
        return optax.chain(*parts)
    if cfg.weight_decay:
        parts.append(optax.add_decayed_weights(cfg.weight_decay))
    if cfg.optimizer == "adam":
        parts.append(optax.adam(schedule))
    else:
        momentum = cfg.momentum if cfg.optimizer == "momentum" else None
        parts.append(optax.sgd(schedule, momentum=momentum))
    return optax.chain(*parts)


def loss_fn(logits: jax.Array, labels: jax.Array, label_smoothing: float) -> jax.Array:
    targets = jax.nn.one_hot(labels, logits.shape[-1])
    if label_smoothing:
        targets = optax.smooth_labels(targets, label_smoothing)
    return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets).mean()
