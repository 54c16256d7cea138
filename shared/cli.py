"""The trainers' command line, identical for both frameworks: preset, --config TOML, flags; and --resume, where
the run's own config.json rules and flags may only extend the run."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

from shared.config import (
    SECTIONS,
    ArgumentParser,
    Config,
    add_config_flags,
    coerce_value,
    config_from_args,
    config_from_dict,
    given_flags,
    validate,
)
from shared.errors import UserError


def parse_train_args(argv: list[str] | None, framework: str) -> Config:
    """The trainers' command line, identical for both frameworks."""
    parser = ArgumentParser(prog=f"python -m nin_{framework}.train",
                            description=f"Train NiN on Fashion-MNIST with {framework}; the flags are the same for "
                                        "both frameworks. Preset, then --config TOML, then flags.")
    add_config_flags(parser)
    args = parser.parse_args(argv)
    if getattr(args, "run.resume"):
        return resume_config(args, framework)
    cfg = config_from_args(args)
    cfg.run.out = cfg.run.out or f"runs/{framework}-{time.strftime('%Y%m%d-%H%M%S')}"
    return cfg


# With --resume the run's own config.json rules: flags may extend the run or change how it is watched, never
# what it computes.
RESUME_EXTENDS = {("train", "epochs"), ("train", "max_steps")}
RESUME_FREE = {("run", "progress"), ("run", "device"), ("run", "devices"), ("run", "out"), ("run", "resume")}
# How this launch is laid out over processes: from this command line alone, never from the saved run
LAUNCH = {("run", "devices"), ("run", "coordinator"), ("run", "num_processes"), ("run", "process_id")}


def resume_config(args: argparse.Namespace, framework: str) -> Config:
    """The config of the run in --out (its config.json), with the given flags that may change on resume."""
    out = getattr(args, "run.out")
    if not out:
        raise UserError("--resume needs --out: the run directory to continue")
    path = Path(out) / "config.json"
    if not path.is_file():
        raise UserError(f"--resume: {out} holds no run to continue (no config.json); start without --resume")
    try:
        saved = json.loads(path.read_text())
        saved_framework = saved.pop("framework")
        cfg = config_from_dict(saved)
    except (OSError, ValueError, KeyError, AttributeError, UserError) as e:
        raise UserError(f"--resume: {path} is damaged ({e}); start a new --out") from None
    if saved_framework != framework:
        raise UserError(f"--resume: {out} holds a {saved_framework} run; continue it with "
                        f"python -m nin_{saved_framework}.train --resume --out {out}")
    wanted = config_from_args(args) if (args.preset or args.config) else None
    given = given_flags(args)
    for section, name in LAUNCH:
        setattr(getattr(cfg, section), name, None)
    changed = []
    for section, values in given.items():
        for name, value in values.items():
            if (section, name) in RESUME_FREE | RESUME_EXTENDS | LAUNCH:
                setattr(getattr(cfg, section), name, coerce_value(section, name, value))
    for section in SECTIONS:
        for f in fields(SECTIONS[section]):
            if (section, f.name) in RESUME_FREE | RESUME_EXTENDS | LAUNCH:
                continue
            run_value = getattr(getattr(cfg, section), f.name)
            asked = given.get(section, {}).get(f.name)
            asked = coerce_value(section, f.name, asked) if asked is not None else (
                getattr(getattr(wanted, section), f.name) if wanted else run_value)
            if asked != run_value:
                changed.append(f"--{f.name.replace('_', '-')} {_shown(asked)} (the run's: {_shown(run_value)})")
    if changed:
        raise UserError(f"--resume continues {out} as its config.json says; these would change the run: "
                        f"{'; '.join(changed)}. Drop them (--epochs and --max-steps may grow), or start a new --out")
    cfg.run.resume, cfg.run.out = True, out
    return validate(cfg)


def _shown(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
