"""Training curves as a PNG (matplotlib's Agg backend: no display needed, so it works on a headless machine).

Each run is drawn at the step level: its training loss and accuracy every SYNC_EVERY steps (steps.jsonl), with
the per-epoch test figures (metrics.jsonl) over them as markers at the step where each epoch ended.
"""

from __future__ import annotations

import io
from typing import Any

Rows = list[dict[str, Any]]


def curves_png(runs: list[tuple[str, Rows, Rows]], table: list[list[str]] | None = None) -> bytes:
    """PNG bytes: loss (left) and accuracy (right) against the optimizer step, one colour per run, each run's
    label given once; (label, metrics.jsonl rows, steps.jsonl rows) per run; a table of figures below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = 2 if table else 1
    fig = plt.figure(figsize=(11, 4.2 * rows if not table else 7.5))
    loss_ax, acc_ax = fig.add_subplot(rows, 2, 1), fig.add_subplot(rows, 2, 2)
    for label, metrics, steps in runs:
        color = None
        for ax, train_key, test_key in ((loss_ax, "train_loss", "test_loss"), (acc_ax, "train_acc", "test_acc")):
            if steps:
                line = ax.plot([s["step"] for s in steps], [s[train_key] for s in steps], lw=1.0, alpha=0.8,
                               color=color, label=f"{label}: train, every {_sync_every(steps)} steps")[0]
                color = line.get_color()
            if metrics:
                line = ax.plot([m["step"] for m in metrics], [m[test_key] for m in metrics], "--o", ms=5, color=color,
                               label=f"{label}: test, per epoch")[0]
                color = line.get_color()
    epoch_ends = sorted({m["step"] for _, metrics, _ in runs for m in metrics})
    for ax, name in ((loss_ax, "loss"), (acc_ax, "accuracy")):
        for step in epoch_ends:
            ax.axvline(step, color="0.85", lw=0.8, zorder=0)
        ax.set_xlabel("optimizer step (grey lines: epoch ends)")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if table:
        table_ax = fig.add_subplot(rows, 1, 2)
        table_ax.axis("off")
        t = table_ax.table(cellText=table[1:], colLabels=table[0], loc="center", cellLoc="left")
        t.auto_set_font_size(False)
        t.set_fontsize(9)
        t.scale(1, 1.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def _sync_every(steps: Rows) -> int:
    return steps[1]["step"] - steps[0]["step"] if len(steps) > 1 else steps[0]["step"]
