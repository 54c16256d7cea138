"""Optimisers, schedule and loss through optax, with the semantics of nin_torch/optim.py (its twin):
sgd (no momentum), momentum (heavy ball), adam (coupled L2), adamw (decoupled), clipping by global norm.
Each piece is its own function so that compare.parity can name the one that differs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from shared.config import TrainConfig
from shared.schedule import lr_factor

CLIP_EPS = 1e-6  # torch.nn.utils.clip_grad_norm_ divides by (norm + 1e-6); optax's own clip does not


def schedule(cfg: TrainConfig, total_steps: int) -> optax.Schedule:
    return lambda step: cfg.lr * lr_factor(step, cfg, total_steps, jnp)


def clip_by_global_norm(max_norm: float) -> optax.GradientTransformation:
    """torch's clip_grad_norm_: scale by min(1, max_norm / (norm + 1e-6))."""

    def update(updates, state, params=None):
        scale = jnp.minimum(max_norm / (optax.tree.norm(updates) + CLIP_EPS), 1.0)
        return jax.tree.map(lambda g: g * scale.astype(g.dtype), updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def clipping(cfg: TrainConfig) -> list[optax.GradientTransformation]:
    return [] if cfg.clip_grad_norm is None else [clip_by_global_norm(cfg.clip_grad_norm)]


def coupled_weight_decay(cfg: TrainConfig) -> list[optax.GradientTransformation]:
    """torch's weight_decay for sgd and adam: wd * param added to the gradient (adamw decays in its rule)."""
    return [optax.add_decayed_weights(cfg.weight_decay)] if cfg.weight_decay and cfg.optimizer != "adamw" else []


def update_rule(cfg: TrainConfig, lr: optax.Schedule) -> optax.GradientTransformation:
    """The optimizer proper, after clipping and coupled weight decay (torch.optim's defaults)."""
    if cfg.optimizer == "adamw":
        return optax.adamw(lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return optax.adam(lr, b1=0.9, b2=0.999, eps=1e-8)
    return optax.sgd(lr, momentum=cfg.momentum if cfg.optimizer == "momentum" else None)


def make_optimizer(cfg: TrainConfig, total_steps: int) -> optax.GradientTransformation:
    """The optax chain: clip (torch clips before the step), coupled L2 (torch's weight_decay for sgd and
    adam; adamw decays inside its own rule), then the update with the shared schedule."""
    return optax.chain(*clipping(cfg), *coupled_weight_decay(cfg), update_rule(cfg, schedule(cfg, total_steps)))


def loss_fn(logits: jax.Array, labels: jax.Array, label_smoothing: float) -> jax.Array:
    """Mean cross-entropy (with torch's label smoothing: (1 - e) one-hot + e / K), in fp32 or wider."""
    logits = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
    targets = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
    if label_smoothing:
        targets = optax.smooth_labels(targets, label_smoothing)
    return optax.softmax_cross_entropy(logits, targets).mean()
