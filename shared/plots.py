"""Training curves as a PNG (matplotlib's Agg backend: no display needed, so it works on a headless machine)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shared.files import save_figure


def plot_runs(runs: list[tuple[str, list[dict[str, Any]]]], path: Path, table: list[list[str]] | None = None) -> None:
    """Loss and accuracy per epoch of one or more runs (Agg backend: no display, no svg/inline backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    rows = 2 if table else 1
    fig = plt.figure(figsize=(11, 4.2 * rows if not table else 7.5))
    loss_ax = fig.add_subplot(rows, 2, 1)
    acc_ax = fig.add_subplot(rows, 2, 2)
    for label, metrics in runs:
        epochs = [m["epoch"] for m in metrics]
        line = loss_ax.plot(epochs, [m["train_loss"] for m in metrics], "-o", label=f"{label} train")[0]
        loss_ax.plot(epochs, [m["test_loss"] for m in metrics], "--s", color=line.get_color(), label=f"{label} test")
        acc_ax.plot(epochs, [m["train_acc"] for m in metrics], "-o", color=line.get_color(), label=f"{label} train")
        acc_ax.plot(epochs, [m["test_acc"] for m in metrics], "--s", color=line.get_color(), label=f"{label} test")
    for ax, name in ((loss_ax, "loss"), (acc_ax, "accuracy")):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
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
    save_figure(fig, path, dpi=100)
