"""`python -m compare.noise_floor`: do torch and flax drift apart faster than one framework drifts from itself?

From one init (torch's draw, ported), four runs train in lockstep on the same batches with the same shared
dropout masks: torch, flax, and each again from the init nudged by one ulp in every weight. Every --every
steps the training losses and the relative weight distances are recorded: torch vs flax (across) against
torch vs torch+1ulp and flax vs flax+1ulp (within); test accuracy is measured --evals times. In fp32, rounding
differences grow through training whatever their source, so "the same network" means: the distance across
frameworks is of the size of the distance a one-ulp nudge makes within one framework.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from compare.backends import make_backend
from shared.cli import add_config_flags, config_from_args
from shared.config import ArgumentParser, Config
from shared.data import epoch_order
from shared.errors import run_cli
from shared.files import atomic_write, check_writable, json_text, save_figure
from shared.loop import evaluate, progress_bar
from shared.weights import State

RUNS = ("torch", "flax", "torch+1ulp", "flax+1ulp")
PAIRS = {"torch vs flax": ("torch", "flax"), "torch vs torch+1ulp": ("torch", "torch+1ulp"),
         "flax vs flax+1ulp": ("flax", "flax+1ulp")}
SAME_ORDER = 2.0  # across / within below this: "no faster than one framework drifts from itself"


def nudged(state: State) -> State:
    """Every float32 weight moved up by one ulp."""
    return {name: np.nextafter(a.astype(np.float32), np.float32(np.inf)) for name, a in state.items()}


def distance(a: State, b: State) -> float:
    """||a - b|| / ||a|| over all parameters together."""
    num = sum(float(np.sum((a[n].astype(np.float64) - b[n]) ** 2)) for n in a)
    den = sum(float(np.sum(a[n].astype(np.float64) ** 2)) for n in a)
    return (num / den) ** 0.5


def verdict(distances: dict[str, list[float]]) -> tuple[float, str]:
    across = distances["torch vs flax"][-1]
    within = max(distances["torch vs torch+1ulp"][-1], distances["flax vs flax+1ulp"][-1])
    ratio = across / max(within, 1e-30)
    if ratio <= SAME_ORDER:
        return ratio, (f"torch and flax drift apart no faster than one framework drifts from itself (final "
                       f"distance across / within = {ratio:.2f})")
    return ratio, f"torch and flax drift apart {ratio:.1f} times faster than one framework drifts from itself"


def run(cfg: Config, every: int, evals: int) -> dict:
    cfg.run.dropout_masks = "shared"
    backends = {name: make_backend(name.split("+")[0], cfg) for name in RUNS}
    init = backends["torch"].get_weights()
    for name, backend in backends.items():
        backend.set_weights(nudged(init) if name.endswith("ulp") else init)
    first = backends["torch"]
    steps, batch = first.total_steps, cfg.data.batch_size
    order = epoch_order(cfg.train.seed, 0, first.n_train)
    eval_at = {round(steps * (i + 1) / evals) for i in range(evals)}
    record = {"steps": [], "loss": {n: [] for n in RUNS}, "distance": {p: [] for p in PAIRS},
              "test_acc": {"steps": [], **{n: [] for n in RUNS}}}
    pending = {n: [] for n in RUNS}
    bar = progress_bar(steps, 0, cfg.run.progress, "noise floor")
    start = time.perf_counter()
    for step in range(1, steps + 1):
        indices = order[(step - 1) * batch % (len(order) - batch + 1):][:batch]
        for name, backend in backends.items():
            pending[name].append(backend.train_step(indices))
        bar.update(1)
        if step % every and step != steps:
            continue
        weights = {name: backend.get_weights() for name, backend in backends.items()}
        record["steps"].append(step)
        for name, backend in backends.items():
            record["loss"][name].append(float(backend.fetch(pending[name])[:, 0].sum() / (len(pending[name]) * batch)))
            pending[name] = []
        for pair, (a, b) in PAIRS.items():
            record["distance"][pair].append(distance(weights[a], weights[b]))
        if any(s in eval_at for s in range(step - every + 1, step + 1)) or step == steps:
            record["test_acc"]["steps"].append(step)
            for name, backend in backends.items():
                record["test_acc"][name].append(float(evaluate(backend, batch)[1]))
    bar.close()
    ratio, text = verdict(record["distance"])
    return {"config": cfg.to_dict(), "every": every, **record, "across_over_within": ratio, "verdict": text,
            "seconds": time.perf_counter() - start}


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"torch": "tab:red", "flax": "tab:blue"}
    fig, (loss_ax, dist_ax, acc_ax) = plt.subplots(1, 3, figsize=(15, 4))
    for name in RUNS:
        style = "--" if name.endswith("ulp") else "-"
        loss_ax.plot(result["steps"], result["loss"][name], style, color=colors[name.split("+")[0]], label=name)
        acc_ax.plot(result["test_acc"]["steps"], result["test_acc"][name], style + "o",
                    color=colors[name.split("+")[0]], label=name)
    for pair, color in zip(PAIRS, ("black", "tab:red", "tab:blue"), strict=True):
        dist_ax.semilogy(result["steps"], result["distance"][pair], color=color, label=pair)
    for ax, title, ylabel in ((loss_ax, "training loss", f"mean over {result['every']} steps"),
                              (dist_ax, "relative weight distance", "||a - b|| / ||a||"),
                              (acc_ax, "test accuracy", "accuracy")):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(result["verdict"], fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


@run_cli
def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m compare.noise_floor", description=__doc__)
    add_config_flags(parser, sections=("model", "data", "train"))
    parser.set_defaults(**{"preset": "cpu", "train.epochs": 1})
    parser.add_argument("--every", type=int, default=20, help="record losses and distances every N steps")
    parser.add_argument("--evals", type=int, default=4, help="test-accuracy measurements over the run")
    parser.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto")
    parser.add_argument("--json", metavar="PATH", help="write the curves and the verdict as JSON")
    parser.add_argument("--plot", metavar="PNG", help="write the figure (default: next to --json)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.every < 1 or args.evals < 1:
        parser.error("--every and --evals must be >= 1")
    cfg = config_from_args(args)
    cfg.run.device, cfg.run.progress = args.device, not args.no_progress
    json_path = Path(args.json) if args.json else None
    plot_path = Path(args.plot) if args.plot else json_path and json_path.with_suffix(".png")
    for path in (json_path, plot_path):
        if path:
            check_writable(path)
    result = run(cfg, args.every, args.evals)
    print(f"after {result['steps'][-1]} steps: distance torch vs flax {result['distance']['torch vs flax'][-1]:.3g}, "
          f"torch vs torch+1ulp {result['distance']['torch vs torch+1ulp'][-1]:.3g}, flax vs flax+1ulp "
          f"{result['distance']['flax vs flax+1ulp'][-1]:.3g}; test acc " +
          ", ".join(f"{n} {result['test_acc'][n][-1]:.4f}" for n in RUNS))
    print(result["verdict"])
    if json_path:
        atomic_write(json_path, json_text(result, indent=2))
    if plot_path:
        plot(result, plot_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
