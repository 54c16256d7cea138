"""The recipe behind the shipped weights in docs/RESULTS.md (best section): both frameworks trained with
`--preset best` from one init draw by scripts/best.sh, into results/recipe/<framework>/, and each run's weights
evaluated in both frameworks (results/recipe/<framework>/evaluate.json, `python -m compare.evaluate`)."""

from __future__ import annotations

import json
from pathlib import Path

from experiments.grid import FRAMEWORKS, GOAL_ACC
from experiments.markdown import NOT_RUN, Doc
from shared.files import atomic_write, read_jsonl
from shared.plots import curves_png
from shared.presets import PRESETS

RECIPE = "recipe"  # the folder under the results root


def _load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def preset_flags() -> str:
    """The best preset as trainer flags, for a reader who wants to change one."""
    flags = []
    for section in PRESETS["best"].values():
        for key, value in section.items():
            flag = "--" + key.replace("_", "-")
            flags.append((flag if value else f"--no-{flag[2:]}") if isinstance(value, bool) else f"{flag} {value}")
    return " ".join(flags)


def section_recipe(doc: Doc) -> None:
    folder = doc.root / RECIPE
    runs = {fw: _load(folder / fw / "summary.json") for fw in FRAMEWORKS}
    doc.add("### The recipe (`--preset best`)", "",
            f"`bash scripts/best.sh` trains both frameworks from one init draw with `--preset best` "
            f"(`{preset_flags()}`) and evaluates each run's weights in both frameworks. Full train and test sets, "
            "fp32, on this 2-core CPU.", "")
    if not any(runs.values()):
        doc.add(f"Not run yet ({NOT_RUN}).", "")
        return
    rows = []
    for fw in FRAMEWORKS:
        summary, evaluation = runs[fw], _load(folder / fw / "evaluate.json")
        if summary is None:
            rows.append([fw, *[NOT_RUN] * 7])
            continue
        both = (f"{evaluation['torch']['test_acc']:.4f} / {evaluation['flax']['test_acc']:.4f}, agreement "
                f"{evaluation['agreement']:.4f}" if evaluation else NOT_RUN)
        dead = (", ".join(evaluation[fw]["dead_classes"]) or "none") if evaluation else NOT_RUN
        rows.append([f"[{fw}]({doc.link(folder / fw)})", f"{summary['test_acc']:.4f}", f"{summary['train_acc']:.4f}",
                     f"{summary['test_loss']:.4f}", str(summary["epochs"]), f"{summary['seconds'] / 60:.0f} min",
                     both, dead])
    doc.table(["run", "test acc", "train acc", "test loss", "epochs", "training time",
               "its weights evaluated in torch / flax", "dead classes"], rows)
    reached = [fw for fw in FRAMEWORKS if runs[fw] and runs[fw]["test_acc"] >= GOAL_ACC]
    doc.add(f"Goal {GOAL_ACC} reached by: {', '.join(reached) or 'neither framework'}. Training time is the "
            "trainer's own clock (epochs and evaluations); each run's `train.log` has the process's wall time.", "")
    curves = [(fw, read_jsonl(folder / fw / "metrics.jsonl"), read_jsonl(folder / fw / "steps.jsonl"))
              for fw in FRAMEWORKS if runs[fw]]
    atomic_write(doc.docs / "figures" / "recipe.png", curves_png(curves))
    doc.add("![recipe](figures/recipe.png)", "")
