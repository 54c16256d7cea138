"""One config for both frameworks: typed dataclasses, their choices and help, and overrides from TOML or flags
(applied by shared.cli, checked by shared.validate)."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import tomllib
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from shared.errors import UserError

MAX_SHIFT = 14  # --augment-shift below half the 28 px source: something of the object stays in view


@dataclass
class ModelConfig:
    in_channels: int = 1
    num_classes: int = 10
    widths: tuple[int, ...] = (96, 256, 384)  # the first three NiN blocks
    last_width: int | None = None  # width of the last block's first conv; None: num_classes (d2l)
    num_1x1: int = 2
    mid_kernel: int = 1
    head: str = "gap"
    final_relu: bool = True
    dropout: float = 0.5
    init: str = "xavier_uniform"


@dataclass
class DataConfig:
    data_dir: str | None = None
    image_size: int = 224
    batch_size: int = 128
    train_limit: int | None = None
    test_limit: int | None = None
    normalize: bool = False
    augment_shift: int = 0
    augment_flip: bool = False
    augment_erase: float = 0.0


@dataclass
class TrainConfig:
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    epochs: int = 10
    max_steps: int | None = None
    schedule: str = "constant"
    warmup_steps: int = 0
    clip_grad_norm: float | None = None
    label_smoothing: float = 0.0
    seed: int = 0


@dataclass
class RunConfig:
    precision: str = "fp32"
    device: str = "auto"
    devices: int | None = None
    out: str | None = None
    resume: bool = False
    init_from: str | None = None
    progress: bool = True
    dropout_masks: str = "own"
    coordinator: str | None = None
    num_processes: int | None = None
    process_id: int | None = None


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig, "run": RunConfig}

CHOICES: dict[str, tuple] = {
    "num_1x1": (0, 1, 2, 3),
    "mid_kernel": (1, 3),
    "head": ("gap", "fc"),
    "init": ("torch", "flax", "xavier_uniform", "kaiming_normal"),
    "optimizer": ("sgd", "momentum", "adam", "adamw"),
    "schedule": ("constant", "cosine"),
    "precision": ("fp32", "tf32", "bf16"),
    "device": ("auto", "cpu", "gpu"),
    "dropout_masks": ("own", "shared"),
}

HELP = {
    "num_1x1": "1x1 convs after each block's first conv (d2l: 2)",
    "mid_kernel": "kernel size of those 'mid' convs (1 = NiN; 3 = d2l exercise)",
    "head": "gap: global average pooling (NiN); fc: flatten + fully connected layer",
    "final_relu": "ReLU after the last conv (d2l keeps it; logits are then >= 0)",
    "widths": "channels of the first three blocks, comma-separated",
    "last_width": "channels of the last block's first conv (default: num_classes)",
    "data_dir": "folder with the four Fashion-MNIST IDX files (.gz or not)",
    "train_limit": "use only the first N training examples",
    "test_limit": "evaluate on the first N test examples",
    "normalize": "subtract the Fashion-MNIST mean and divide by its std",
    "augment_shift": "training only: shift each image by up to this many source (28 px) pixels, zero fill",
    "augment_flip": "training only: flip half the images horizontally",
    "augment_erase": "training only: zero a random rectangle (2-25%% of the image) with this probability",
    "momentum": "momentum for --optimizer momentum (sgd has none, as in d2l)",
    "max_steps": "stop after this many optimizer steps in total",
    "clip_grad_norm": "clip gradients to this global L2 norm",
    "devices": "flax: use this many devices (torch: use torchrun)",
    "out": "run directory (default runs/<framework>-<timestamp>)",
    "resume": "continue from the checkpoint in --out",
    "init_from": "start from a portable weights.safetensors (either framework)",
    "progress": "tqdm progress bar (off when output is not a terminal)",
    "precision": "fp32 (TF32 off on GPUs), tf32, or bf16 compute with fp32 params",
    "dropout_masks": "own: each framework's RNG; shared: the same numpy masks in both (from seed and step)",
    "coordinator": "flax multi-process: HOST:PORT of process 0, or 'auto' for the cluster's environment (SLURM, ...); "
                   "torch: use torchrun",
    "num_processes": "flax multi-process: how many processes (with --coordinator HOST:PORT)",
    "process_id": "flax multi-process: this process's index, 0 to N-1 (with --coordinator HOST:PORT)",
}


def field_type(cls: type, name: str) -> tuple[type, bool]:
    """The base type of a dataclass field and whether it may be None."""
    hint = typing.get_type_hints(cls)[name]
    if typing.get_origin(hint) is tuple:
        return tuple, False
    args = typing.get_args(hint)
    optional = type(None) in args
    base = next((a for a in args if a is not type(None)), hint) if args else hint
    return base, optional


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def coerce_value(section: str, name: str, value: Any) -> Any:
    """A value from a flag, a TOML file or a saved config as the field's type, strictly: no bool for a number,
    no float for an int (256.7 is not a width, 4.0 not an epoch count), no number or bool for a text or a path;
    a string from the command line is parsed."""
    base, optional = field_type(SECTIONS[section], name)
    if value is None:
        if optional:
            return None
        raise UserError(f"{section}.{name} may not be empty")
    try:
        if base is tuple:
            items = value.split(",") if isinstance(value, str) else value
            if not isinstance(items, list | tuple) or not all(_is_int(v) or isinstance(v, str) for v in items):
                raise ValueError
            return tuple(int(v) for v in items)
        if base is bool:
            if isinstance(value, bool):
                return value
            raise ValueError
        if base is int:
            if _is_int(value) or isinstance(value, str):
                return int(value)
            raise ValueError
        if base is float:
            if (_is_int(value) or isinstance(value, float)) or isinstance(value, str):
                return float(value)
            raise ValueError
        if not isinstance(value, str):
            raise ValueError
        return base(value)
    except (TypeError, ValueError):
        kind = {tuple: "a valid list of integers", int: "a valid integer", float: "a valid float",
                bool: "true or false", str: "valid text (a quoted string)"}.get(base, f"a valid {base.__name__}")
        raise UserError(f"{section}.{name}: {value!r} is not {kind}") from None


def _unknown_key(where: str, key: str, known: list[str]) -> UserError:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(known)}"
    return UserError(f"unknown key '{key}' in {where}{hint}")


def apply_overrides(cfg: Config, overrides: dict[str, dict[str, Any]], where: str) -> Config:
    """Return cfg with {section: {key: value}} applied; unknown sections or keys are user errors."""
    for section, values in overrides.items():
        if section not in SECTIONS:
            raise _unknown_key(where, section, list(SECTIONS))
        if not isinstance(values, dict):
            raise UserError(f"[{section}] in {where} must be a table of keys")
        known = [f.name for f in fields(SECTIONS[section])]
        sub = getattr(cfg, section)
        for key, value in values.items():
            if key not in known:
                raise _unknown_key(f"[{section}] of {where}", key, known)
            setattr(sub, key, coerce_value(section, key, value))
    return cfg


def load_toml(path: str | Path) -> dict[str, dict[str, Any]]:
    from shared.files import path_kind

    path = Path(path)
    kind = path_kind(path)
    if kind != "file":
        what = "does not exist" if kind == "missing" else f"is {kind}, not a file"
        raise UserError(f"config file {path} {what}; pass an existing .toml file to --config")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is not valid TOML ({e}); fix the file or drop --config") from None


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the error contract: one `error:` line, exit code 2, no usage dump."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"error: {message}; see --help\n")
