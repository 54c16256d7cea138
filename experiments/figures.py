"""The PNG figures of docs/RESULTS.md (matplotlib's Agg backend: no display needed). Each function returns
False, and writes nothing, when its runs are not there."""

from __future__ import annotations

from pathlib import Path

from experiments.grid import FRAMEWORKS, INIT_NAMES
from experiments.results import CHANCE_LOSS, CellRuns, mean_spread
from shared.files import save_figure
from shared.loop import SYNC_EVERY

COLORS = {"torch": "tab:red", "flax": "tab:blue"}
STYLES = ("-", "--", ":", "-.")  # by seed


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> bool:
    fig.tight_layout()
    save_figure(fig, path)
    return True


def _legend(ax, size: int) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=size)


def _steps(run) -> tuple[list[int], list[float]]:
    return [s["step"] for s in run.steps], [s["train_loss"] for s in run.steps]


def accuracy_bars(path: Path, cells: list[CellRuns], title: str) -> bool:
    """Test accuracy per variant, torch and flax side by side, every seed as a dot."""
    if not any(c.ran for c in cells):
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1.6 + 1.5 * len(cells), 3.6))
    width = 0.38
    for k, fw in enumerate(FRAMEWORKS):
        label = fw
        for i, c in enumerate(cells):
            accs = c.accs(fw)
            x = i + (k - 0.5) * width
            if accs:
                ax.bar(x, mean_spread(accs)[0], width, color=COLORS[fw], alpha=0.5, label=label)
                label = None
                ax.plot([x] * len(accs), accs, "o", color=COLORS[fw], ms=4)
    ax.set_xticks(range(len(cells)), [c.cell.label for c in cells], fontsize=8)
    ax.set_ylabel("test accuracy")
    low = min((a for c in cells for fw in FRAMEWORKS for a in c.accs(fw)), default=0.0)
    ax.set_ylim(max(0.0, low - 0.1), 1.0)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    _legend(ax, 8)
    return _save(fig, path)


def _save_loss_grid(fig, axes, path: Path) -> bool:
    """The finish of a 2x2 grid of training-loss panels: the chance line, grid, legends, axis labels."""
    for ax in axes.flat:
        ax.axhline(CHANCE_LOSS, color="gray", ls=":", lw=1)
        ax.grid(alpha=0.3)
        _legend(ax, 7)
    for ax in axes[1]:
        ax.set_xlabel("step")
    for ax in axes[:, 0]:
        ax.set_ylabel(f"training loss ({SYNC_EVERY}-step mean)")
    return _save(fig, path)


def init_curves(path: Path, cells: list[CellRuns]) -> bool:
    """Training loss of every seed: one panel per framework and final-ReLU setting, one colour per init."""
    if not any(c.ran for c in cells):
        return False
    fig, axes = _plt().subplots(2, 2, figsize=(11, 7), sharex=True, sharey=True)
    colors = {}
    for c in cells:
        init = INIT_NAMES[c.cell.init]
        color = colors.setdefault(init, f"C{len(colors)}")
        row = 0 if c.cell.final_relu else 1
        for col, fw in enumerate(FRAMEWORKS):
            ax = axes[row][col]
            for n, run in enumerate(c.runs.get(fw, [])):
                ax.plot(*_steps(run), color=color, alpha=0.7, lw=1, label=init if n == 0 else None)
            ax.set_title(f"{fw}, final ReLU {'on' if row == 0 else 'off'}", fontsize=10)
    return _save_loss_grid(fig, axes, path)


def lr_curves(path: Path, cells: list[CellRuns]) -> bool:
    """Training loss per learning rate: panels constant rate / warmup + cosine x torch / flax."""
    if not any(c.ran for c in cells):
        return False
    fig, axes = _plt().subplots(2, 2, figsize=(11, 7), sharex=True, sharey=True)
    for c in cells:
        row = 0 if "constant" in c.cell.flags else 1
        for col, fw in enumerate(FRAMEWORKS):
            for run in c.runs.get(fw, []):
                axes[row][col].plot(*_steps(run), lw=1.2, label=f"{c.cell.label} seed {run.seed}" + (
                    " (diverged)" if run.status == "diverged" else ""))
            axes[row][col].set_title(f"{fw}, {'constant rate' if row == 0 else 'warmup + cosine'}", fontsize=10)
    return _save_loss_grid(fig, axes, path)


def curves(path: Path, cell: CellRuns, title: str) -> bool:
    """Training loss (every SYNC_EVERY steps) and test accuracy (every epoch) of one cell, both frameworks."""
    if not cell.ran:
        return False
    plt = _plt()
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(11, 3.8))
    for fw in FRAMEWORKS:
        for run in cell.runs.get(fw, []):
            loss_ax.plot(*_steps(run), STYLES[run.seed % 4], color=COLORS[fw], lw=1, label=f"{fw} seed {run.seed}")
            acc_ax.plot([m["step"] for m in run.metrics], [m["test_acc"] for m in run.metrics], "-o",
                        color=COLORS[fw], label=f"{fw} seed {run.seed}")
    loss_ax.set_ylabel(f"training loss ({SYNC_EVERY}-step mean)")
    acc_ax.set_ylabel("test accuracy")
    for ax in (loss_ax, acc_ax):
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        _legend(ax, 8)
    loss_ax.set_title(title)
    return _save(fig, path)


def drift(path: Path, parity: dict | None, same_init: CellRuns) -> bool:
    """Left: |loss_torch - loss_flax| / loss_torch per step of the K-step parity check. Right: the training
    losses of both frameworks started from one init draw."""
    if parity is None and not same_init.ran:
        return False
    plt = _plt()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    if parity is not None:
        train = parity["checks"]["train"]
        for label, run, color in (("float64", train, "black"), ("fp32", train.get("native"), "tab:orange")):
            if run:
                rel = [abs(a - b) / abs(a) for a, b in zip(run["loss_torch"], run["loss_flax"], strict=True)]
                left.semilogy(range(1, len(rel) + 1), [max(r, 1e-17) for r in rel], color=color, label=label)
        left.legend(fontsize=8)
        left.set_title("K-step parity: same init, batches and dropout masks", fontsize=10)
        left.set_xlabel("step")
        left.set_ylabel("relative loss difference, torch vs flax")
        left.grid(alpha=0.3)
    for fw in FRAMEWORKS:
        for run in same_init.runs.get(fw, []):
            right.plot(*_steps(run), STYLES[run.seed % 4], color=COLORS[fw], lw=1, label=f"{fw} seed {run.seed}")
    right.set_title(f"{same_init.cell.label}: same batches, {'no' if '--dropout' in same_init.cell.flags else 'own'} "
                    "dropout masks", fontsize=10)
    right.set_xlabel("step")
    right.set_ylabel(f"training loss ({SYNC_EVERY}-step mean)")
    right.grid(alpha=0.3)
    _legend(right, 8)
    return _save(fig, path)
