"""The command line of every tool: one flag per config field (generated from the dataclasses), applied over a
preset and a --config TOML, then validated. The trainers' own line is identical for both frameworks; with
--resume the run's config.json rules and flags may only extend the run."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

from shared.config import (
    CHOICES,
    HELP,
    SECTIONS,
    ArgumentParser,
    Config,
    apply_overrides,
    coerce_value,
    field_type,
    load_toml,
)
from shared.errors import UserError
from shared.presets import PRESETS, preset_config
from shared.validate import config_from_dict, validate


def add_config_flags(parser: argparse.ArgumentParser, sections: tuple[str, ...] = tuple(SECTIONS)) -> None:
    """Add --preset, --config and one flag per config field; every default is None (= not given)."""
    parser.add_argument("--preset", help=f"starting point: {', '.join(PRESETS)} (default d2l)")
    parser.add_argument("--config", metavar="FILE.toml", help="TOML with [model] [data] [train] [run] tables")
    for section in sections:
        group = parser.add_argument_group(section)
        defaults = SECTIONS[section]()
        for f in fields(SECTIONS[section]):
            flag = "--" + f.name.replace("_", "-")
            base, _ = field_type(SECTIONS[section], f.name)
            help_text = HELP.get(f.name, "")
            default = getattr(defaults, f.name)
            shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
            help_text = f"{help_text} (d2l default: {shown})".strip()
            kwargs: dict[str, Any] = {"default": None, "dest": f"{section}.{f.name}", "help": help_text}
            if base is bool:
                kwargs["action"] = argparse.BooleanOptionalAction
            else:
                kwargs["metavar"] = f.name.upper()
                kwargs["type"] = str if base is tuple else base
                if f.name in CHOICES:
                    kwargs["choices"] = CHOICES[f.name]
                    kwargs["metavar"] = "{" + "|".join(map(str, CHOICES[f.name])) + "}"
            group.add_argument(flag, **kwargs)


def given_flags(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """{section: {field: value}} of the config flags given on the command line."""
    flags: dict[str, dict[str, Any]] = {}
    for dest, value in vars(args).items():
        if "." in dest and value is not None:
            section, name = dest.split(".", 1)
            flags.setdefault(section, {})[name] = value
    return flags


def config_from_args(args: argparse.Namespace) -> Config:
    """Preset, then the TOML file, then the flags; validated."""
    cfg = preset_config(args.preset or "d2l")
    if args.config:
        apply_overrides(cfg, load_toml(args.config), args.config)
    apply_overrides(cfg, given_flags(args), "the command line")
    return validate(cfg)


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
