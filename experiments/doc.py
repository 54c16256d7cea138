"""docs/RESULTS.md from the run directories alone: one section per experiment, torch and flax side by side,
every number linked to the runs (and their command.txt) that produced it; figures in docs/figures/."""

from __future__ import annotations

import math
from pathlib import Path

from experiments import figures
from experiments.grid import (
    DISCUSSION_BEST,
    EXPERIMENTS,
    FRAMEWORKS,
    GOAL_ACC,
    NOISE_FLOOR_FLAGS,
    PROTOCOLS,
    Protocol,
    experiment_cells,
)
from experiments.markdown import NOT_RUN, Doc, fmt_acc, fmt_num
from experiments.questions import write_questions
from experiments.recipe import section_recipe
from experiments.results import (
    STUCK_ACC,
    STUCK_LOSS,
    CellRuns,
    analytic,
    grid_progress,
    grid_wall_minutes,
    load_cell,
    load_extra,
    mean_spread,
    memory_rows,
)
from shared.files import atomic_write
from shared.loop import SYNC_EVERY

DISCUSSION = {
    "num-1x1": "The discussion saw 0.8527 with one 1x1 conv and 0.8700 with two (224 px, 10 epochs, one seed each).",
    "optimizer-resolution": "The discussion reported 0.906 with Adam at 96 px.",
    "best": f"Goal: at least {GOAL_ACC} test accuracy in both frameworks on the full test set; the discussion's "
            f"best was {DISCUSSION_BEST}.",
    "lr": "The discussion reports a fluctuating loss at SGD lr 0.1 and at 0.03.",
    "init": "Claim under test: NiN does not train without explicit initialisation.",
}


SEEDS_NOTE = {"cpu": "init: 5, lr / optimizer-resolution / best: 1", "trained": "the num-1x1 cells: 2",
              "gpu": "init: 5, lr / optimizer-resolution / best: 1"}


def acc_diff(a: CellRuns, b: CellRuns, framework: str) -> float | None:
    x, y = a.mean_acc(framework), b.mean_acc(framework)
    return None if x is None or y is None else x - y


def spread(cells: list[CellRuns]) -> float:
    values = [s[1] for c in cells for fw in FRAMEWORKS if (s := mean_spread(c.accs(fw))) and not math.isnan(s[1])]
    return max(values) if values else math.nan


def compare_sentence(a: CellRuns, b: CellRuns, what: str) -> str:
    """'<a> vs <b>: +x (torch), +y (flax)' with whether that exceeds the spread between seeds."""
    diffs = {fw: acc_diff(a, b, fw) for fw in FRAMEWORKS}
    if any(d is None for d in diffs.values()):
        return f"{what}: {NOT_RUN}."
    noise = spread([a, b])
    both = ", ".join(f"{d:+.3f} ({fw})" for fw, d in diffs.items())
    if math.isnan(noise):
        return f"{what}: {both} test accuracy (one seed: no spread to judge it by)."
    signs = {math.copysign(1, d) for d in diffs.values() if abs(d) > noise}
    verdict = (f"within the spread between seeds (largest std {noise:.3f}): no difference shown"
               if not signs else f"larger than the spread between seeds (largest std {noise:.3f})"
               + ("" if len(signs) == 1 else ", but in opposite directions in the two frameworks"))
    return f"{what}: {both} test accuracy, {verdict}."


def arch_table(doc: Doc, protocol: Protocol, cells: list[CellRuns]) -> None:
    header = ["variant", "params", "FLOPs / image", "torch test acc", "flax test acc", "torch time", "flax time"]
    rows = []
    for c in cells:
        a = analytic(protocol, c.cell)
        rows.append([c.cell.label, f"{a['params']:,}", f"{a['flops'] / 1e6:,.1f} M",
                     *(fmt_acc(c, fw, doc) for fw in FRAMEWORKS),
                     *(fmt_num(c.mean(fw, "seconds"), "{:,.0f} s") for fw in FRAMEWORKS)])
    doc.table(header, rows)


def section_arch(doc: Doc, protocol: Protocol, name: str, cells: list[CellRuns]) -> None:
    arch_table(doc, protocol, cells)
    base = next(c for c in cells if c.cell.name == "base")
    for c in cells:
        if c is not base:
            doc.add(f"- {compare_sentence(c, base, f'{c.cell.label} vs {base.cell.label}')}")
    if name == "num-1x1":
        one = next(c for c in cells if c.cell.name == "n1")
        doc.add(f"- {compare_sentence(base, one, 'Two 1x1 convs vs one (the discussion: +0.017)')}")
    doc.add("")
    if figures.accuracy_bars(doc.docs / "figures" / f"{protocol.name}-{name}.png", cells, f"{name} ({protocol.name})"):
        doc.add(f"![{name}](figures/{protocol.name}-{name}.png)", "")


def section_resources(doc: Doc, protocol: Protocol, cells: list[CellRuns]) -> None:
    rows = []
    for c in cells:
        a = analytic(protocol, c.cell)
        counted = {fw: c.mean(fw, "param_count") for fw in FRAMEWORKS}
        rows.append([c.cell.label, f"{a['params']:,}", *(fmt_num(counted[fw], "{:,.0f}") for fw in FRAMEWORKS),
                     f"{a['flops'] / 1e6:,.1f} M", f"{a['flops_224'] / 1e9:,.3f} G",
                     *(fmt_num(c.mean(fw, "examples_per_sec"), "{:,.0f}") for fw in FRAMEWORKS)])
    doc.add("Params: analytic (shared/arch.py) and as each trainer counted them (summary.json). FLOPs per image "
            "(2 per multiply-add), at this protocol's size and at 224 px. Training speed: the mean of the cells' runs, "
            "which shared the machine with whatever else was running; `python -m bench.benchmark` measures speed "
            "properly.",
            "")
    doc.table(["variant", "params (analytic)", "torch", "flax", f"FLOPs @{a['image_size']} px", "FLOPs @224 px",
               "torch train ex/s", "flax train ex/s"], rows)
    mem = memory_rows(doc.root, protocol)
    doc.add(f"Peak memory of the real training step and inference step (batch {protocol.memory_batch}, the d2l "
            "network), measured in a fresh process by `python -m bench.memory` (3 steps; on the CPU the growth of "
            "resident memory from just before the first step to its peak, which includes XLA's compilation for "
            "flax) against compare.summary's analytic estimate of the same thing (everything beyond the weights: "
            "activations kept for the backward pass, gradients, optimizer state):", "")
    rows = []
    for m in mem:
        beyond = m["analytic"] - m.get("param_bytes", 0) if "measured" in m else None
        rows.append([f"{m['size']} px", m["framework"], m["kind"],
                     fmt_num(m.get("measured") and m["measured"] / 2**20, "{:,.0f} MiB"),
                     fmt_num(beyond and beyond / 2**20, "{:,.0f} MiB"),
                     fmt_num(m.get("measured") and beyond and m["measured"] / beyond, "{:.1f}x"),
                     fmt_num(m.get("peak_rss") and m["peak_rss"] / 2**20, "{:,.0f} MiB")])
    doc.table(["size", "framework", "step", "measured", "analytic", "measured / analytic", "process peak RSS"], rows)


def section_init(doc: Doc, protocol: Protocol, cells: list[CellRuns]) -> None:
    doc.add(f"A run counts as stuck at chance when its last logged training loss is still >= {STUCK_LOSS} "
            f"(ln 10 = 2.303) and its test accuracy <= {STUCK_ACC}, or it diverged.", "")
    rows = []
    for c in cells:
        row = [c.cell.label]
        for fw in FRAMEWORKS:
            runs = c.runs.get(fw, [])
            row.append(f"[{sum(r.stuck for r in runs)} / {len(runs)}]({doc.link(c.path)})" if runs else NOT_RUN)
        rows.append(row + [fmt_acc(c, fw, doc) for fw in FRAMEWORKS])
    doc.table(["init, final ReLU", "torch stuck", "flax stuck", "torch test acc", "flax test acc"], rows)
    if figures.init_curves(doc.docs / "figures" / f"{protocol.name}-init.png", cells):
        doc.add(f"![init](figures/{protocol.name}-init.png)", "")


def section_lr(doc: Doc, protocol: Protocol, cells: list[CellRuns]) -> None:
    doc.add(f"Spikes: {SYNC_EVERY}-step windows whose mean training loss rose by more than 0.1 over the window before "
            "(a measure of the fluctuation the discussion describes).", "")
    rows = []
    for c in cells:
        spikes = [str(sum(r.spikes for r in c.runs.get(fw, []))) if c.runs.get(fw) else NOT_RUN for fw in FRAMEWORKS]
        rows.append([c.cell.label, *(fmt_acc(c, fw, doc) for fw in FRAMEWORKS), *spikes])
    doc.table(["SGD", "torch test acc", "flax test acc", "torch spikes", "flax spikes"], rows)
    if figures.lr_curves(doc.docs / "figures" / f"{protocol.name}-lr.png", cells):
        doc.add(f"![lr](figures/{protocol.name}-lr.png)", "")


def section_plain(doc: Doc, protocol: Protocol, name: str, cells: list[CellRuns]) -> None:
    rows = [[c.cell.label, *(fmt_acc(c, fw, doc) for fw in FRAMEWORKS),
             *(fmt_num(c.mean(fw, "seconds"), "{:,.0f} s") for fw in FRAMEWORKS)] for c in cells]
    doc.table(["run", "torch test acc", "flax test acc", "torch time", "flax time"], rows)
    if name == "best" and cells[0].ran:
        goal = {fw: cells[0].mean_acc(fw) or 0.0 for fw in FRAMEWORKS}
        reached = [fw for fw, acc in goal.items() if acc >= GOAL_ACC]
        doc.add(f"Goal {GOAL_ACC} reached by: {', '.join(reached) or 'neither framework'} on this protocol.", "")
        section_classes(doc, protocol, cells)
        if figures.curves(doc.docs / "figures" / f"{protocol.name}-best.png", cells[0], "best"):
            doc.add(f"![best](figures/{protocol.name}-best.png)", "")


def section_classes(doc: Doc, protocol: Protocol, cells: list[CellRuns]) -> None:
    """Per-class accuracy of the runs that kept their weights (`python -m compare.evaluate`, in torch)."""
    found = [(c, fw, x["torch"]) for c in cells for fw in FRAMEWORKS
             if (x := load_extra(doc.root, protocol, f"classes-{c.cell.name}-{fw}.json"))]
    if not found:
        return
    doc.add("Per-class test accuracy of these runs (`python -m compare.evaluate WEIGHTS --framework torch`). A "
            "class is dead when its logit is exactly 0 for every test image: with the final ReLU before global "
            "pooling, a class channel that turns negative for every input gets no gradient again and is never "
            "predicted.", "")
    names = list(found[0][2]["per_class"])
    rows = [[f"{c.cell.label}, {fw}", *(f"{x['per_class'][name]:.2f}" for name in names),
             ", ".join(x["dead_classes"]) or "none"] for c, fw, x in found]
    doc.table(["run", *names, "dead classes"], rows)


def section_frameworks(doc: Doc, protocol: Protocol, cells: list[CellRuns]) -> None:
    rows = []
    for c in cells:
        seeds = sorted({r.seed for fw in FRAMEWORKS for r in c.runs.get(fw, [])})
        for seed in seeds:
            acc = {fw: next((r.test_acc for r in c.runs[fw] if r.seed == seed), None) for fw in FRAMEWORKS}
            diff = acc["torch"] - acc["flax"] if None not in acc.values() else None
            rows.append([c.cell.label, str(seed), *(fmt_num(acc[fw], "{:.4f}") for fw in FRAMEWORKS),
                         f"[{fmt_num(diff, '{:+.4f}')}]({doc.link(c.path)})"])
        if not seeds:
            rows.append([c.cell.label, "-", NOT_RUN, NOT_RUN, NOT_RUN])
    doc.table(["start", "seed", "torch test acc", "flax test acc", "torch - flax"], rows)
    drift = load_extra(doc.root, protocol, "parity-drift.json")
    if drift and "native" in drift["checks"]["train"]:
        train = drift["checks"]["train"]
        doc.add(f"K-step parity (`python -m compare.parity --preset cpu {' '.join(protocol.parity_flags)}`): the "
                f"trainers' own steps with the cpu preset's Adam, warmup + cosine and dropout (shared masks), from "
                f"one init on the same batches, {train['steps']} steps. In float64 the two frameworks agree to "
                f"rounding: largest relative loss difference {train['max_rel_diff']:.1e}, weights "
                f"{train['weights_max_rel_diff']:.1e}. The same steps in fp32 differ by up to "
                f"{train['native']['max_rel_diff']:.1e} in the loss (left): rounding, amplified by training. The "
                "runs in the table train with each framework's own dropout masks; the last cell's training losses "
                "are on the right.", "")
    if figures.drift(doc.docs / "figures" / f"{protocol.name}-frameworks.png", drift, cells[-1]):
        doc.add(f"![frameworks](figures/{protocol.name}-frameworks.png)", "")
    floor = load_extra(doc.root, protocol, "noise-floor.json")
    if floor:
        from compare.noise_floor import PAIRS, RUNS, plot

        c = floor["config"]
        doc.add(f"**The noise floor** (`python -m compare.noise_floor {' '.join(NOISE_FLOOR_FLAGS)}`, "
                f"{floor['steps'][-1]} steps = "
                f"{c['train']['epochs']} epoch at {c['data']['image_size']} px, batch {c['data']['batch_size']}, "
                f"{floor['seconds'] / 60:.0f} min): from one init and with the same shared dropout masks, torch and "
                "flax train side by side with a copy of each started from the init nudged by one ulp. Verdict: "
                f"**{floor['verdict']}**.", "")
        doc.table(["after the epoch", *PAIRS, *(f"{n} test acc" for n in RUNS)],
                  [["relative weight distance / test acc", *(f"{floor['distance'][p][-1]:.3g}" for p in PAIRS),
                    *(f"{floor['test_acc'][n][-1]:.4f}" for n in RUNS)]])
        plot(floor, doc.docs / "figures" / f"{protocol.name}-noise-floor.png")
        doc.add(f"![noise floor](figures/{protocol.name}-noise-floor.png)", "")


def write_protocol(doc: Doc, protocol: Protocol, name: str) -> None:
    cells = [load_cell(doc.root, protocol, c) for c in experiment_cells(protocol)[name]]
    if not cells:  # this protocol does not ask this question
        return
    measured_memory = (doc.root / protocol.name / "extras").glob("memory-*.json")
    if not any(c.ran for c in cells) and not (name == "resources" and any(measured_memory)):
        doc.add(f"**{protocol.name} protocol: {NOT_RUN}** (`python -m experiments.run --protocol {protocol.name} "
                f"--only {name}` runs it).", "")
        return
    doc.add(f"**{protocol.name} protocol**", "")
    if name in ("num-1x1", "mid-kernel", "final-relu", "head", "bottleneck"):
        section_arch(doc, protocol, name, cells)
    else:
        {"resources": section_resources, "init": section_init, "lr": section_lr, "frameworks": section_frameworks,
         }.get(name, lambda d, p, c: section_plain(d, p, name, c))(doc, protocol, cells)


def write_results(root: Path, docs: Path) -> Path:
    doc = Doc(root, docs)
    doc.add("# NiN, measured: the chapter's exercises and the discussion's questions, answered in both frameworks", "",
            "Generated by `python -m experiments.run` from the run directories under "
            f"[{root.as_posix()}/]({doc.link(root)}) alone (`--report-only` rebuilds it). Every accuracy links to its "
            "runs; each run folder holds `command.txt` (the exact trainer command), `config.json`, `metrics.jsonl`, "
            f"`steps.jsonl` (training loss every {SYNC_EVERY} steps), `summary.json` and `train.log`. Accuracies are "
            "means ± standard deviation over seeds (no ± where there is one seed).", "", "## Protocols", "")
    for protocol in PROTOCOLS.values():
        wall = grid_wall_minutes(root, protocol)
        done, total, seconds = grid_progress(root, protocol)
        if done < total and any((root / protocol.name).glob("*/*/summary.json")):
            state = (f"partly run: {done} of {total} runs finished, their own times adding up to "
                     f"{seconds / 3600:.1f} h; `python -m experiments.run --protocol {protocol.name}` runs the rest")
        else:
            state = (f"run; wall time of the grid {wall:.0f} min" if wall else "run") if done else NOT_RUN
        doc.add(f"- **{protocol.name}** ({state}): {protocol.description}. Base trainer flags: "
                f"`{' '.join(protocol.base)}`; {protocol.seeds} seed(s) per cell unless a table says otherwise "
                f"({SEEDS_NOTE[protocol.name]}). {protocol.caveat}")
    doc.add("")
    write_questions(doc)
    doc.add("## The experiments, protocol by protocol", "", "Every cell of every protocol, torch and flax side by "
            "side (the trained protocol first, then the cpu protocol's first 300 steps).", "")
    for name in EXPERIMENTS:
        doc.add(f"### {name}", "")
        if name in DISCUSSION:
            doc.add(DISCUSSION[name], "")
        if name == "best":
            section_recipe(doc)
        for protocol in (PROTOCOLS["trained"], PROTOCOLS["cpu"], PROTOCOLS["gpu"]):
            write_protocol(doc, protocol, name)
    path = docs / "RESULTS.md"
    atomic_write(path, "\n".join(doc.lines).rstrip() + "\n")
    return path
