"""The top of docs/RESULTS.md: the chapter's exercises and the discussion's questions, each answered first by the
trained protocol (networks trained to the end of their schedule, both frameworks as samples), with a verdict
from the samples' spread and the discussion's figure beside it, then by the cpu protocol as "how fast it
starts". Nothing is said without runs behind it."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from experiments.answers import answers
from experiments.grid import CPU, FRAMEWORKS, INIT_NAMES, TRAINED, experiment_cells
from experiments.markdown import NOT_RUN, Doc
from experiments.results import STUCK_ACC, STUCK_LOSS, CellRuns, Run, analytic, load_cell, memory_rows
from shared.arch import spatial_sizes

QUESTIONS = {  # key: (title, what the discussion reported)
    "tune": ("Exercise 1: tune the hyperparameters to improve the accuracy",
             "the discussion: SGD 0.12 for 15 epochs 0.8856; Adam 1e-3 at 96 px 0.906; the best, 0.909"),
    "num-1x1": ("Exercise 2: why two 1x1 convolutions per block? Remove one and observe",
                "the discussion: one 1x1 conv 0.8527, two 0.8700 (224 px, 10 epochs of SGD, one run each)"),
    "mid-kernel": ("Exercise 2, continued: 3x3 instead of 1x1 'mid' convolutions", ""),
    "resources": ("Exercise 3: the resources: parameters, computation, memory in training and in prediction",
                  "the discussion's hand count: 1,995,284 parameters, 2.469e10 FLOPs"),
    "bottleneck": ("Exercise 4: what goes wrong reducing 384x5x5 to 10x5x5 in one step?",
                   "the discussion: 'too much information lost?'"),
    "head": ("Exercise 4, continued: global average pooling or a fully connected head?", ""),
    "init": ("Does NiN train without explicit initialisation?",
             "the discussion: 'NiN does not train from a random initialisation'; d2l switched to Kaiming"),
    "lr": ("The learning rate, and the loss that fluctuates",
           "the discussion: the loss and the accuracy fluctuate at SGD 0.1 (10 epochs) and 0.03 (25 epochs)"),
    "collapse": ("Why does the training accuracy collapse?", "the discussion: 'why does train acc plunge like this?'"),
    "best": ("The best accuracy", "the discussion's best: 0.909 (test)"),
    "frameworks": ("Do the two frameworks agree?", ""),
}


def pooled(cell: CellRuns) -> list[Run]:
    return [r for fw in FRAMEWORKS for r in cell.runs.get(fw, [])]


def accs(runs: list[Run]) -> list[float]:
    return [r.test_acc for r in runs if r.status == "ok" and r.test_acc is not None]


def stats(values: list[float]) -> str:
    if not values:
        return NOT_RUN
    if len(values) == 1:
        return f"{values[0]:.4f} (1 run)"
    return f"{statistics.fmean(values):.4f} ± {statistics.stdev(values):.4f} ({len(values)} runs)"


def verdict(a: list[float], b: list[float]) -> str:
    """'differs' when the difference of the means exceeds twice its standard error from the samples' spread."""
    if not a or not b:
        return NOT_RUN
    if len(a) < 2 or len(b) < 2:
        return "one run on a side: no spread to judge it by"
    delta = statistics.fmean(a) - statistics.fmean(b)
    se = math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b))
    word = "**differs**" if abs(delta) > 2 * se else "**no difference shown**"
    return f"{delta:+.4f} ± {se:.4f} (standard error): {word}"


def dead_runs(runs: list[Run]) -> str:
    evaluated = [r for r in runs if r.dead_classes is not None]
    if not evaluated:
        return NOT_RUN
    dead = [r for r in evaluated if r.dead_classes]
    return f"{len(dead)} of {len(evaluated)}" + (f" ({', '.join(sorted({c for r in dead for c in r.dead_classes}))})"
                                                   if dead else "")


def alive(runs: list[Run]) -> list[Run]:
    return [r for r in runs if r.dead_classes == []]


def linked(doc: Doc, cell: CellRuns, text: str) -> str:
    return f"[{text}]({doc.link(cell.path)})" if cell.ran else text


def variant_table(doc: Doc, cells: list[CellRuns], base: CellRuns | None = None) -> None:
    rows = []
    for c in cells:
        runs = pooled(c)
        a = analytic(TRAINED, c.cell)
        row = [c.cell.label, f"{a['params']:,}", f"{a['flops'] / 1e6:,.1f} M", linked(doc, c, stats(accs(runs))),
               dead_runs(runs), stats(accs(alive(runs)))]
        if base is not None:
            row += ["—", "—"] if c is base else [verdict(accs(runs), accs(pooled(base))),
                                                 verdict(accs(alive(runs)), accs(alive(pooled(base))))]
        rows.append(row)
    header = ["variant", "params", f"FLOPs @{analytic(TRAINED, cells[0].cell)['image_size']} px",
              "test acc (torch and flax)", "runs with a dead class", "test acc, runs without one"]
    doc.table(header + (["vs the first row", "vs the first row, runs without a dead class"] if base is not None
                        else []), rows)


def cells_of(doc: Doc, name: str) -> list[CellRuns]:
    return [load_cell(doc.root, TRAINED, c) for c in experiment_cells(TRAINED)[name]]


def answer_variants(doc: Doc, name: str) -> None:
    cells = cells_of(doc, name)
    if name == "num-1x1":  # the book's 2 first, as the baseline
        cells = [cells[2], cells[1], cells[0], cells[3]]
    variant_table(doc, cells, cells[0])
    if name in ("bottleneck", "head"):
        side = spatial_sizes(128)[-1]
        doc.add(f"Measured at 128 px, where the last feature map is {side}x{side} (at 67 px it is 1x1: a fully "
                "connected head there is global pooling with weights, and there is no spatial map to squeeze); "
                "the book's 5x5 needs 195-226 px. A shorter budget than the other questions': one epoch, "
                "because an epoch at 128 px costs 3.7x one at 67 px.", "")


def answer_init(doc: Doc) -> None:
    rows = []
    for c in cells_of(doc, "init"):
        runs = pooled(c)
        stuck = sum(r.stuck for r in runs)
        rows.append([INIT_NAMES[c.cell.init], linked(doc, c, f"{stuck} of {len(runs)}" if runs else NOT_RUN),
                     stats(accs(runs)), dead_runs(runs)])
    doc.add(f"Plain SGD 0.1 (the book's optimizer, as the readers ran it: constant rate, no momentum) for "
            f"{TRAINED.init_budget.split(' of ')[0]}, final ReLU on. A run is stuck at chance when its last "
            f"logged training loss is still >= {STUCK_LOSS} and its test accuracy <= {STUCK_ACC}.", "")
    doc.table(["init", "runs stuck at chance", "test acc", "runs with a dead class"], rows)


def answer_lr(doc: Doc) -> None:
    rows = []
    for c in cells_of(doc, "lr"):
        for r in pooled(c):
            rises = r.rises
            rows.append([c.cell.label, f"{r.framework} seed {r.seed}", linked(doc, c, f"{r.test_acc:.4f}")
                         if r.test_acc is not None else r.status, str(len(rises)),
                         f"{max(rises):.2f}" if rises else "—", str(len(r.steps))])
    doc.add("Rises: 20-step windows whose mean training loss is more than 0.1 above the window before "
            "(steps.jsonl); the loss the discussion saw fluctuate.", "")
    doc.table(["run", "framework", "test acc", "rises", "largest rise", "windows"], rows)


def answer_collapse(doc: Doc) -> None:
    rows = []
    for c in cells_of(doc, "final-relu"):
        for r in pooled(c):
            rows.append([c.cell.label, f"{r.framework} seed {r.seed}", linked(doc, c, f"{r.test_acc:.4f}")
                         if r.test_acc is not None else r.status, ", ".join(r.dead_classes or []) or "none",
                         str(r.collapses)])
    doc.add("With the final ReLU (the book's net), a class whose last channel turns negative for every image gets "
            "logit 0 and no gradient again: it is dead for good, and the training accuracy stalls or falls. "
            "Dead: logit exactly 0 on at least 99% of the test images, or never predicted (`python -m "
            "compare.evaluate`); collapses: windows whose training accuracy fell below half its best so far.", "")
    doc.table(["run", "framework", "test acc", "dead classes", "collapsed windows"], rows)


def answer_resources(doc: Doc) -> None:
    rows = []
    for c in cells_of(doc, "resources"):
        a = analytic(TRAINED, c.cell)
        speeds = [f"{statistics.fmean(v):,.0f}" if (v := [r.summary["examples_per_sec"] for r in c.runs.get(fw, [])
                                                      if r.summary.get("examples_per_sec")]) else NOT_RUN
                  for fw in FRAMEWORKS]
        rows.append([c.cell.label, f"{a['params']:,}", f"{a['flops'] / 1e6:,.1f} M", f"{a['flops_224'] / 1e9:.3f} G",
                     *speeds])
    doc.table(["variant", "params", "FLOPs @67 px", "FLOPs @224 px", "torch train ex/s", "flax train ex/s"], rows)
    mem = [m for m in memory_rows(doc.root, CPU) if "measured" in m and m["size"] == 224]
    if mem:
        doc.add("Memory at 224 px, batch 32 (`python -m bench.memory`, the growth of resident memory over one step; "
                "analytic: `compare.summary`'s estimate of everything beyond the weights): "
                + "; ".join(f"{m['framework']} {m['kind']} {m['measured'] / 2**20:,.0f} MiB (analytic "
                            f"{(m['analytic'] - m['param_bytes']) / 2**20:,.0f} MiB)" for m in mem)
                + ". Speeds are the trained runs' own (the machine was shared with other work); "
                  "[PERFORMANCE.md](PERFORMANCE.md) measures speed properly.", "")


def answer_best(doc: Doc) -> None:
    folder = doc.root / "recipe"
    found = {fw: json.loads(p.read_text()) for fw in FRAMEWORKS if (p := folder / fw / "summary.json").exists()}
    if found:
        doc.add("The `best` recipe, trained for 30 epochs from one init draw in both frameworks: "
                + ", ".join(f"[{fw} {s['test_acc']:.4f}]({doc.link(folder / fw)})" for fw, s in found.items())
                + " (the best section below; README for its deviations from the book).", "")
    best = max((r for name in ("num-1x1", "final-relu", "lr") for c in cells_of(doc, name) for r in pooled(c)
                if r.test_acc is not None), key=lambda r: r.test_acc, default=None)
    if best:
        doc.add(f"Best single run of the trained protocol ({TRAINED.budget}): {best.test_acc:.4f} "
                f"({best.framework}, {Path(best.path).parent.name}).", "")


def answer_frameworks(doc: Doc) -> None:
    across, within = [], []
    cells = {c.cell.name: c for name in ("num-1x1", "final-relu", "lr", "init", "mid-kernel", "head", "bottleneck")
             for c in cells_of(doc, name)}
    for c in cells.values():
        by = {(r.framework, r.seed): r.test_acc for r in pooled(c) if r.test_acc is not None}
        across += [abs(by["torch", s] - by["flax", s]) for s in range(2) if ("torch", s) in by and ("flax", s) in by]
        within += [abs(by[fw, 0] - by[fw, 1]) for fw in FRAMEWORKS if (fw, 0) in by and (fw, 1) in by]
    if across:
        doc.add(f"Mean |torch - flax| test accuracy for the same cell and seed: {statistics.fmean(across):.4f} over "
                f"{len(across)} pairs (some pairs include dead classes, which either framework may hit)"
                + (f"; mean |seed 0 - seed 1| within one framework: {statistics.fmean(within):.4f} over "
                   f"{len(within)} pairs" if within else "")
                + ". In float64 the trainers' steps agree to rounding, and in fp32 they drift apart no faster than "
                  "two runs of one framework do (the frameworks section below; [PARITY.md](PARITY.md)).", "")


def answer_tune(doc: Doc) -> None:
    sgd_01, sgd_003, adam = cells_of(doc, "lr")
    variant_table(doc, [adam, sgd_01, sgd_003], adam)
    doc.add(f"The same network, data and budget ({TRAINED.budget}); Adam 1e-3 with warmup and cosine decay against "
            "plain SGD at a constant rate, as the book and its readers ran it. The best recipe, trained longer, is "
            "the last question's answer.", "")


ANSWERS = {"num-1x1": lambda d: answer_variants(d, "num-1x1"), "mid-kernel": lambda d: answer_variants(d, "mid-kernel"),
           "bottleneck": lambda d: answer_variants(d, "bottleneck"), "head": lambda d: answer_variants(d, "head"),
           "init": answer_init, "lr": answer_lr, "collapse": answer_collapse, "resources": answer_resources,
           "best": answer_best, "frameworks": answer_frameworks, "tune": answer_tune}


def write_questions(doc: Doc) -> None:
    starts = answers(doc.root, CPU) if any((doc.root / CPU.name).glob("*/*/summary.json")) else {}
    doc.add("## The questions, answered", "",
            f"Each answer leads with the **trained** protocol ({TRAINED.description}); the two frameworks count as "
            "two samples, and a verdict says whether a difference exceeds twice its standard error. Below it, "
            "**how fast it starts**: the cpu protocol's 300-step cells.", "")
    for key, (title, discussion) in QUESTIONS.items():
        doc.add(f"### {title}", "")
        if discussion:
            doc.add(f"*{discussion[0].upper()}{discussion[1:]}.*", "")
        ANSWERS[key](doc)
        if key in starts:
            doc.add(f"How fast it starts (cpu protocol, {CPU.budget.removeprefix('here each cell trains ')}): "
                    f"{starts[key]}", "")
