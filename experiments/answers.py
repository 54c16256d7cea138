"""The cpu protocol's short answers ("how fast it starts"): one line per question, keyed as
experiments/questions.py asks them, each computed from the runs (absent where its runs are missing, so nothing
is said without a measurement)."""

from __future__ import annotations

from pathlib import Path

from experiments.grid import FRAMEWORKS, INIT_NAMES, Protocol, experiment_cells
from experiments.results import CellRuns, analytic, load_cell, load_extra, memory_rows


def _both(cell: CellRuns) -> str | None:
    accs = [cell.mean_acc(fw) for fw in FRAMEWORKS]
    return None if None in accs else f"{accs[0]:.3f} / {accs[1]:.3f}"


def _delta(a: CellRuns, b: CellRuns) -> str | None:
    d = [(x - y) if None not in (x := a.mean_acc(fw), y := b.mean_acc(fw)) else None for fw in FRAMEWORKS]
    return None if None in d else f"{d[0]:+.3f} / {d[1]:+.3f}"


def _vs_base(protocol: Protocol, cells: dict[str, CellRuns], name: str, what: str) -> str | None:
    cell, base = cells[name], cells["base"]
    delta, a, b = _delta(cell, base), analytic(protocol, cell.cell), analytic(protocol, base.cell)
    if delta is None:
        return None
    return (f"{what}: {a['params'] / b['params']:.2f}x the params, {a['flops'] / b['flops']:.2f}x the FLOPs, "
            f"test accuracy {delta} (torch / flax) vs the d2l net.")


def answers(root: Path, protocol: Protocol) -> dict[str, str]:
    grid = experiment_cells(protocol)
    cells = {c.name: load_cell(root, protocol, c) for cs in grid.values() for c in cs}
    out: dict[str, str] = {}
    counts = [(n, _both(cells[c])) for n, c in (("0", "n0"), ("1", "n1"), ("2", "base"), ("3", "n3"))]
    if all(acc for _, acc in counts):
        extra = analytic(protocol, cells["n3"].cell)["params"] - analytic(protocol, cells["base"].cell)["params"]
        out["num-1x1"] = ("Test accuracy (torch / flax) with " +
                   "; ".join(f"{n}: {acc}" for n, acc in counts) +
                   f" 1x1 convs per block; one more 1x1 conv in every block costs {extra:,} params. Two minus one: "
                   f"{_delta(cells['base'], cells['n1'])} (the discussion: +0.017 after 10 epochs at 224 px, one "
                   f"seed; {protocol.budget}).")
    for key, name, what in (("mid-kernel", "k3", "3x3 instead of 1x1 mid convs"),
                            ("head", "fc", "A fully connected head instead of global average pooling"),
                            ("bottleneck", "lw96", "A gentler last block (384 -> 96 -> 10)")):
        line = _vs_base(protocol, cells, name, what)
        if line:
            out[key] = line + (" At 67 px the last feature map is 1x1, so this is not the book's question." if
                               key in ("head", "bottleneck") else "")
    base = analytic(protocol, cells["base"].cell)
    mem = [m for m in memory_rows(root, protocol) if m["kind"] == "train" and "measured" in m]
    line = (f"The d2l net: {base['params']:,} params, {base['flops_224'] / 1e9:.3f} GFLOPs per "
            f"224 px image ({base['flops'] / 1e6:.1f} M at {base['image_size']} px)")
    if mem:
        m = max(mem, key=lambda m: (m["size"], m["framework"] == "torch"))
        line += (f"; one training step at {m['size']} px, batch {protocol.memory_batch}, grew {m['framework']}'s "
                 f"memory by {m['measured'] / 2**20:,.0f} MiB (analytic estimate "
                 f"{(m['analytic'] - m['param_bytes']) / 2**20:,.0f} MiB)")
    out["resources"] = line + "."
    init = [cells[c.name] for c in grid["init"]]
    if all(c.ran for c in init):
        by_law: dict[str, list] = {}
        for c in init:
            by_law.setdefault(INIT_NAMES[c.cell.init], []).extend(r for fw in FRAMEWORKS for r in c.runs[fw])
        parts = [f"{law}: {sum(r.stuck for r in runs)} of {len(runs)} stuck, mean test acc "
                 f"{sum(r.test_acc or 0.0 for r in runs) / len(runs):.3f}" for law, runs in by_law.items()]
        out["init"] = (f"After {protocol.init_budget} (both frameworks, final ReLU on and off together): "
                       + "; ".join(parts) + ".")
    lr = [cells[c.name] for c in grid["lr"]]
    if all(c.ran for c in lr):
        diverged = [c.cell.label for c in lr if any(r.status == "diverged" for fw in FRAMEWORKS for r in c.runs[fw])]
        best = max(lr, key=lambda c: min(c.mean_acc(fw) or 0.0 for fw in FRAMEWORKS))
        spiky = {c.cell.label: sum(r.spikes for fw in FRAMEWORKS for r in c.runs[fw]) for c in lr}
        lowest = min(r.steps[-1]["train_loss"] for c in lr for fw in FRAMEWORKS for r in c.runs[fw] if r.steps)
        out["lr"] = (f"Best: {best.cell.label} ({_both(best) or 'diverged'}); "
                   f"diverged: {', '.join(diverged) or 'none'}; loss spikes (torch + flax): "
                   + ("; ".join(f"{k} {v}" for k, v in spiky.items() if v) or "none")
                   + f"; lowest final training loss {lowest:.3f}"
                   + (f" (ln 10 = 2.303: {protocol.budget}, too few for plain SGD to leave the chance plateau, so "
                      "the discussion's fluctuating loss cannot show)" if lowest > 2.0 else "") + ".")
    opt = [cells[c.name] for c in grid["optimizer-resolution"]]
    if all(c.ran for c in opt):
        out["tune"] = ("Adam minus SGD (warmup + cosine + clip), torch / flax: "
                   f"{_delta(opt[0], opt[1])} at the base size, {_delta(opt[2], opt[3])} at 96 px; Adam at 96 px "
                   f"reached {_both(opt[2])} ({protocol.budget}; the discussion's 0.906 is a full training).")
    best = cells["best"]
    if best.ran and _both(best):
        dead = [f"{fw} {', '.join(x['torch']['dead_classes'])}" for fw in FRAMEWORKS
                if (x := load_extra(root, protocol, f"classes-best-{fw}.json")) and x["torch"]["dead_classes"]]
        fixed = cells["best-norelu"]
        out["collapse"] = (f"The longer `best` cell (2 epochs, final ReLU on): {_both(best)} test accuracy (torch / "
                           f"flax) on the full test set"
                           + (f"; dead classes (logit 0 on every test image, killed by the final ReLU): "
                              f"{'; '.join(dead)}" if dead else "")
                           + (f". Without the final ReLU: {_both(fixed)}" if fixed.ran and _both(fixed) else "") + ".")
    frames = [cells[c.name] for c in grid["frameworks"]]
    diffs = []
    for c in frames:
        pairs = [(r.test_acc, f.test_acc) for r in c.runs.get("torch", []) for f in c.runs.get("flax", [])
                 if r.seed == f.seed and None not in (r.test_acc, f.test_acc)]
        if pairs:
            diffs.append(f"{c.cell.label}: {sum(abs(a - b) for a, b in pairs) / len(pairs):.4f}")
    floor = load_extra(root, protocol, "noise-floor.json")
    if diffs:
        out["frameworks"] = ("Mean |torch - flax| test accuracy for the same config and seed: "
                   + "; ".join(diffs) + "." + (f" The noise floor: {floor['verdict']}; trained in float64 the two "
                                               "agree to rounding (frameworks section)." if floor else ""))
    return out
