"""compare.parity's training check: the trainers' own backends (nin_torch/backend.py, nin_flax/backend.py),
with the configured optimizer, schedule, weight decay, clipping and label smoothing, take K steps from one
ported init on the same batches.

The check runs in float64, where the two frameworks agree to rounding (about 1e-15), so a tight tolerance
separates a real difference from fp32 noise; the drift at the configured precision is reported beside it.
When the check fails, the pieces of the update are switched on one at a time (a ladder) and the first one
that breaks the agreement is named.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np

from compare.backends import FRAMEWORKS, make_backend
from shared.config import Config
from shared.data import epoch_order
from shared.weights import State

TOL_LOSS = 1e-9  # max relative difference of the per-step losses, float64
TOL_WEIGHTS = 1e-7  # max relative L2 difference of any parameter tensor after the K steps, float64


@dataclass(frozen=True)
class Piece:
    """One part of the update that the config may switch on, and the values that switch it off."""

    name: str
    off: dict[str, Any]  # "section.field": value

    def present(self, cfg: Config) -> bool:
        return any(_get(cfg, key) != value for key, value in self.off.items())


def _get(cfg: Config, key: str) -> Any:
    section, name = key.split(".")
    return getattr(getattr(cfg, section), name)


# In the order the ladder switches them on: each rung adds one to those before it.
PIECES = (
    Piece("augmentation", {"data.augment_shift": 0, "data.augment_flip": False, "data.augment_erase": 0.0}),
    Piece("dropout (shared masks)", {"model.dropout": 0.0}),
    Piece("label smoothing", {"train.label_smoothing": 0.0}),
    Piece("schedule (warmup / cosine)", {"train.schedule": "constant", "train.warmup_steps": 0}),
    Piece("optimizer", {"train.optimizer": "sgd"}),
    Piece("weight decay", {"train.weight_decay": 0.0}),
    Piece("gradient clipping", {"train.clip_grad_norm": None}),
)


def checked_config(cfg: Config, steps: int, batch: int) -> Config:
    """The trainer config as checked: dropout with the shared masks (the same in both frameworks), batch
    `batch`, and the schedule compressed into the K steps (total K, warmup at most K / 2) so that all of
    it is checked."""
    cfg = copy.deepcopy(cfg)
    cfg.run.dropout_masks = "shared"
    cfg.data.batch_size, cfg.data.train_limit = batch, None
    cfg.train.max_steps, cfg.train.epochs = steps, 1
    cfg.train.warmup_steps = min(cfg.train.warmup_steps, steps // 2)
    cfg.run.init_from, cfg.run.devices = None, None
    return cfg


def run_both(cfg: Config, init: State, steps: int, float64: bool) -> dict[str, tuple[list[float], State]]:
    """Each framework's backend from `init`: per-step losses and the final weights (float64 numpy)."""
    batch = cfg.data.batch_size
    runs = {}
    for framework in FRAMEWORKS:
        backend = make_backend(framework, cfg, float64)
        backend.set_weights(init)
        order = epoch_order(cfg.train.seed, 0, backend.n_train)
        losses = []
        for k in range(steps):
            start = (k * batch) % (len(order) - batch + 1)
            losses.append(float(backend.fetch([backend.train_step(order[start:start + batch])])[0, 0]) / batch)
        runs[framework] = (losses, backend.get_weights(np.float64))
    return runs


def differences(runs: dict[str, tuple[list[float], State]]) -> dict[str, Any]:
    (loss_t, w_t), (loss_f, w_f) = runs["torch"], runs["flax"]
    loss_rel = max(abs(a - b) / max(abs(a), 1e-30) for a, b in zip(loss_t, loss_f, strict=True))
    weights_rel = {name: float(np.linalg.norm(w_t[name] - w_f[name]) / max(np.linalg.norm(w_t[name]), 1e-30))
                   for name in w_t}
    worst = max(weights_rel, key=weights_rel.get)
    return {"loss_torch": loss_t, "loss_flax": loss_f, "max_rel_diff": float(loss_rel),
            "weights_max_rel_diff": weights_rel[worst], "worst_tensor": worst}


def agrees(d: dict[str, Any]) -> bool:
    return d["max_rel_diff"] <= TOL_LOSS and d["weights_max_rel_diff"] <= TOL_WEIGHTS


def with_pieces(cfg: Config, pieces: list[Piece]) -> Config:
    """cfg with every piece not in `pieces` switched off."""
    cfg = copy.deepcopy(cfg)
    for piece in PIECES:
        if piece not in pieces:
            for key, value in piece.off.items():
                section, name = key.split(".")
                setattr(getattr(cfg, section), name, value)
    return cfg


def locate(cfg: Config, init: State, steps: int) -> str:
    """The first piece whose switching on breaks the float64 agreement (the full config is known to)."""
    present = [p for p in PIECES if p.present(cfg)]
    for i in range(len(present)):
        if not agrees(differences(run_both(with_pieces(cfg, present[:i]), init, steps, float64=True))):
            return "the step itself (model, loss or plain SGD)" if i == 0 else _label(present[i - 1], cfg)
    return _label(present[-1], cfg) if present else "the step itself (model, loss or plain SGD)"


def _label(piece: Piece, cfg: Config) -> str:
    return f"optimizer ({cfg.train.optimizer})" if piece.name == "optimizer" else piece.name


def train_check(cfg: Config, init: State, steps: int, native: bool = True) -> dict[str, Any]:
    """K steps in float64 (the check) and, if `native`, at cfg.run.precision (information), from `init`."""
    exact = differences(run_both(cfg, init, steps, float64=True))
    ok = agrees(exact)
    report = {"ok": ok, "steps": steps, "precision": "float64", **exact,
            "tolerance": {"loss": TOL_LOSS, "weights": TOL_WEIGHTS},
            "pieces": [_label(p, cfg) for p in PIECES if p.present(cfg)],
            "culprit": None if ok else locate(cfg, init, steps)}
    if native:
        drift = differences(run_both(cfg, init, steps, float64=False))
        report["native"] = {"precision": cfg.run.precision, **{k: drift[k] for k in (
            "max_rel_diff", "weights_max_rel_diff", "loss_torch", "loss_flax")}}
    return report
