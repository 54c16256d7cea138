"""The training and evaluation steps for torch: preprocessing on the device, loss, update. Twin of
nin_flax/steps.py. A step returns one device vector: no host sync per step. Training steps return
(summed loss, correct count, collapsed) where collapsed is 1 when the batch's predictions are all one class
or its logits all zero; evaluation steps return (summed loss, correct count)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

from nin_torch.data import augment, preprocess
from nin_torch.optim import clip_gradients, loss_fn
from shared.config import Config

Step = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def collapsed(logits: torch.Tensor) -> torch.Tensor:
    pred = logits.argmax(1)
    return ((pred == pred[0]).all() | (logits == 0).all()).float()


def autocast(cfg: Config, device: torch.device):
    if cfg.run.precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def make_train_step(model: torch.nn.Module, optimizer, scheduler, cfg: Config, device: torch.device,
                    dtype: torch.dtype = torch.float32) -> Step:
    """`dtype`: of the preprocessed input (the parameters' dtype: float64 for the parity check)."""
    size, normalize, smoothing = cfg.data.image_size, cfg.data.normalize, cfg.train.label_smoothing

    def train_step(images: torch.Tensor, labels: torch.Tensor, dropout_mask: torch.Tensor | None = None,
                   augment_params: torch.Tensor | None = None) -> torch.Tensor:
        model.train()
        if augment_params is not None:
            images = augment(images, augment_params)
        x = preprocess(images, size, normalize, dtype)
        with autocast(cfg, device):
            logits = model(x, dropout_mask=dropout_mask)
        loss = loss_fn(logits, labels, smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip_gradients(model, cfg.train.clip_grad_norm)
        optimizer.step()
        scheduler.step()
        logits = logits.detach()
        correct = (logits.argmax(1) == labels).sum().float()
        return torch.stack([loss.detach() * len(labels), correct.to(loss.dtype), collapsed(logits).to(loss.dtype)])

    return train_step


def make_eval_step(model: torch.nn.Module, cfg: Config, device: torch.device,
                   dtype: torch.dtype = torch.float32) -> Step:
    size, normalize = cfg.data.image_size, cfg.data.normalize

    @torch.no_grad()
    def eval_step(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        model.eval()
        x = preprocess(images, size, normalize, dtype)
        with autocast(cfg, device):
            logits = model(x)
        loss = loss_fn(logits, labels, 0.0)
        return torch.stack([loss * len(labels), (logits.argmax(1) == labels).sum().to(loss.dtype)])

    return eval_step
