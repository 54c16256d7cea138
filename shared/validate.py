"""A config's values checked against the choices, the ranges, the architecture and the data, before any work."""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any

from shared.arch import check_image_size
from shared.config import CHOICES, MAX_SHIFT, SECTIONS, Config, ModelConfig, RunConfig, apply_overrides
from shared.data import CLASS_NAMES, batches_per_epoch, split_limit
from shared.errors import UserError


def check_processes(run: RunConfig) -> None:
    """--coordinator HOST:PORT needs --num-processes N and --process-id I in [0, N); 'auto' needs neither."""
    explicit = run.coordinator not in (None, "auto")
    if explicit and (run.num_processes is None or run.process_id is None):
        raise UserError("--coordinator HOST:PORT needs --num-processes N and --process-id I (or --coordinator auto "
                        "inside a cluster job)")
    if not explicit and (run.num_processes is not None or run.process_id is not None):
        raise UserError("--num-processes and --process-id go with --coordinator HOST:PORT")
    if explicit and not (run.num_processes >= 1 and 0 <= run.process_id < run.num_processes):
        raise UserError(f"--process-id must be in [0, {run.num_processes}) and --num-processes >= 1 "
                        f"(got {run.process_id} of {run.num_processes})")
    if explicit and ":" not in run.coordinator:
        raise UserError(f"--coordinator {run.coordinator} is not HOST:PORT (or auto)")


MAX_SEED = 2**32 - 1  # what every RNG of both frameworks takes as a seed
FLOAT32_MAX = 3.4028234663852886e38  # the hyperparameters meet fp32 weights: beyond this they overflow


def validate_model(model: ModelConfig, where: str = "") -> None:
    """The architecture's own rules (from the flags, or as a weights file records them)."""
    for name in ("num_1x1", "mid_kernel", "head", "init"):
        value = getattr(model, name)
        if value not in CHOICES[name]:
            allowed = ", ".join(str(c) for c in CHOICES[name])
            raise UserError(f"{where}--{name.replace('_', '-')} {value} is not one of: {allowed}")
    if model.in_channels != 1 or model.num_classes != len(CLASS_NAMES):
        raise UserError(f"{where}Fashion-MNIST is grayscale with {len(CLASS_NAMES)} classes: --in-channels must be "
                        f"1 and --num-classes {len(CLASS_NAMES)} (got {model.in_channels} and {model.num_classes})")
    if len(model.widths) != 3 or min(model.widths) <= 0:
        raise UserError(f"{where}--widths needs three positive channel counts, e.g. 96,256,384 (got {model.widths})")
    last = model.last_width
    if last is not None and last <= 0:
        raise UserError(f"{where}--last-width must be > 0 (got {last})")
    if last is not None and last != model.num_classes and model.num_1x1 == 0:
        raise UserError(f"{where}--last-width differs from --num-classes, so the last block needs a 1x1 conv to "
                        "map it to the classes: use --num-1x1 1 or more")
    if not 0.0 <= model.dropout < 1.0:
        raise UserError(f"{where}--dropout must be in [0, 1) (got {model.dropout})")


def validate(cfg: Config) -> Config:
    """Check values against CHOICES and ranges, and the image size against the architecture's minimum."""
    for section in SECTIONS:
        for f in fields(SECTIONS[section]):
            value = getattr(getattr(cfg, section), f.name)
            if f.name in CHOICES and value not in CHOICES[f.name]:
                allowed = ", ".join(str(c) for c in CHOICES[f.name])
                raise UserError(f"--{f.name.replace('_', '-')} {value} is not one of: {allowed}")
    positive = {
        "lr": cfg.train.lr, "batch_size": cfg.data.batch_size, "epochs": cfg.train.epochs,
        "image_size": cfg.data.image_size, "in_channels": cfg.model.in_channels,
        "num_classes": cfg.model.num_classes,
    }
    optional_positive = {
        "train_limit": cfg.data.train_limit, "test_limit": cfg.data.test_limit,
        "max_steps": cfg.train.max_steps, "clip_grad_norm": cfg.train.clip_grad_norm,
        "devices": cfg.run.devices, "last_width": cfg.model.last_width,
    }
    for name, value in {**positive, **optional_positive}.items():
        if value is not None and value <= 0:
            raise UserError(f"--{name.replace('_', '-')} must be > 0 (got {value})")
    for name, value in {"dropout": cfg.model.dropout, "label_smoothing": cfg.train.label_smoothing}.items():
        if not 0.0 <= value < 1.0:
            raise UserError(f"--{name.replace('_', '-')} must be in [0, 1) (got {value})")
    if not 0.0 <= cfg.data.augment_erase <= 1.0:
        raise UserError(f"--augment-erase must be in [0, 1] (got {cfg.data.augment_erase})")
    if not 0 <= cfg.data.augment_shift < MAX_SHIFT:
        raise UserError(f"--augment-shift must be in [0, {MAX_SHIFT - 1}] source pixels (got {cfg.data.augment_shift})")
    for name, value in {"lr": cfg.train.lr, "weight_decay": cfg.train.weight_decay,
                        "clip_grad_norm": cfg.train.clip_grad_norm, "momentum": cfg.train.momentum}.items():
        if value is not None and not math.isfinite(value):
            raise UserError(f"--{name.replace('_', '-')} must be a finite number (got {value})")
        if value is not None and abs(value) > FLOAT32_MAX:
            raise UserError(f"--{name.replace('_', '-')} {value:g} is beyond float32's range (3.4e38), in which "
                            f"the weights are updated; give a smaller value")
    for name, value in {"weight_decay": cfg.train.weight_decay, "warmup_steps": cfg.train.warmup_steps,
                        "seed": cfg.train.seed}.items():
        if value < 0:
            raise UserError(f"--{name.replace('_', '-')} must be >= 0 (got {value})")
    if not 0.0 <= cfg.train.momentum < 1.0:
        raise UserError(f"--momentum must be in [0, 1) (got {cfg.train.momentum})")
    if cfg.train.seed > MAX_SEED:
        raise UserError(f"--seed must be in [0, {MAX_SEED}] (got {cfg.train.seed})")
    if cfg.data.data_dir is not None and not cfg.data.data_dir.strip():
        raise UserError("--data-dir is empty; give the folder with the Fashion-MNIST files, or leave the flag out "
                        "to use the default folders")
    if cfg.run.out is not None and not cfg.run.out.strip():
        raise UserError("--out is empty; give a folder for the run, or leave the flag out")
    validate_model(cfg.model)
    check_processes(cfg.run)
    check_image_size(cfg.data.image_size)
    n_train = split_limit("train", cfg.data.train_limit)
    if cfg.data.batch_size > n_train:
        raise UserError(f"--batch-size {cfg.data.batch_size} exceeds the {n_train} training examples; lower "
                        f"--batch-size or raise --train-limit")
    steps = batches_per_epoch(n_train, cfg.data.batch_size) * cfg.train.epochs
    steps = min(steps, cfg.train.max_steps or steps)
    if cfg.train.warmup_steps >= steps:
        raise UserError(f"--warmup-steps {cfg.train.warmup_steps} covers the whole run ({steps} steps); lower it")
    return cfg


def config_from_dict(data: dict[str, dict[str, Any]]) -> Config:
    """Rebuild a Config written by Config.to_dict (config.json, weights metadata)."""
    return validate(apply_overrides(Config(), data, "the saved config"))
