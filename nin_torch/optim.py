"""Optimisers, schedule and loss through torch.optim, with the semantics of nin_flax/optim.py (its twin):
sgd (no momentum), momentum (heavy ball), adam (coupled L2), adamw (decoupled), clipping by global norm."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from shared.config import TrainConfig
from shared.schedule import lr_factor


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, total_steps: int):
    """(optimizer, scheduler): the scheduler is stepped once per optimizer step."""
    params = model.parameters()
    if cfg.optimizer in ("sgd", "momentum"):
        momentum = cfg.momentum if cfg.optimizer == "momentum" else 0.0
        optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=momentum, weight_decay=cfg.weight_decay)
    elif cfg.optimizer == "adam":
        optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: float(lr_factor(step, cfg, total_steps, np)))
    return optimizer, scheduler


def loss_fn(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """Mean cross-entropy with label smoothing ((1 - e) one-hot + e / K), in fp32 or wider."""
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return F.cross_entropy(logits, labels, label_smoothing=label_smoothing)


def clip_gradients(model: torch.nn.Module, max_norm: float | None) -> None:
    if max_norm is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
