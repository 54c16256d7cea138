"""`python -m compare.report RUN_DIR_A RUN_DIR_B`: both runs' curves overlaid and their summaries side by side,
in one PNG (next to the runs, or --out)."""

from __future__ import annotations

import json
from pathlib import Path

from shared.config import ArgumentParser
from shared.errors import UserError, run_cli
from shared.files import atomic_write, check_writable, read_jsonl
from shared.plots import curves_png

ROWS = (("framework", "{}"), ("device", "{}"), ("precision", "{}"), ("status", "{}"), ("epochs", "{}"),
        ("steps", "{}"), ("train_loss", "{:.4f}"), ("train_acc", "{:.4f}"), ("test_loss", "{:.4f}"),
        ("test_acc", "{:.4f}"), ("examples_per_sec", "{:.1f}"), ("seconds", "{:.1f}"), ("param_count", "{:,}"))


NUMERIC = {key for key, fmt in ROWS if fmt != "{}"}
CURVE_KEYS = {"metrics.jsonl": ("step", "train_loss", "train_acc", "test_loss", "test_acc"),
              "steps.jsonl": ("step", "train_loss", "train_acc")}


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def load_run(path: str) -> tuple[dict, list[dict], list[dict]]:
    """(summary, metrics rows, steps rows) of a run folder, each value checked before it is drawn."""
    folder = Path(path)
    summary_path = folder / "summary.json"
    if not summary_path.is_file():
        raise UserError(f"{folder} has no summary.json: give the --out folder of a finished training run")
    damaged = "; give the --out folder of a finished training run"
    try:
        summary = json.loads(summary_path.read_text())
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise UserError(f"{summary_path} is damaged ({e}){damaged}") from None
    if not isinstance(summary, dict):
        raise UserError(f"{summary_path} is damaged (a {type(summary).__name__}, not a JSON object){damaged}")
    for key in NUMERIC & set(summary):
        if summary[key] is not None and not _number(summary[key]):
            raise UserError(f"{summary_path} is damaged ({key} is {summary[key]!r}, not a number){damaged}")
    rows = {}
    for name, keys in CURVE_KEYS.items():
        rows[name] = read_jsonl(folder / name)
        for i, row in enumerate(rows[name], 1):
            bad = next((k for k in keys if not _number(row.get(k))), None)
            if bad:
                raise UserError(f"{folder / name} is damaged (line {i}: {bad} is {row.get(bad)!r}, not a "
                                f"number){damaged}")
    return summary, rows["metrics.jsonl"], rows["steps.jsonl"]


def _cell(fmt: str, value) -> str:
    return "-" if value is None else fmt.format(value)


def label(path: str, summary: dict) -> str:
    """Each run named once: its folder's name, with the framework when the name does not say it."""
    name, framework = Path(path).resolve().name, str(summary.get("framework", "?"))
    return name if framework in name else f"{framework} ({name})"


def report(paths: list[str], out: Path) -> list[list[str]]:
    runs = [load_run(p) for p in paths]
    labels = [label(p, summary) for p, (summary, _, _) in zip(paths, runs, strict=True)]
    table = [["", *labels]] + [[key, *(_cell(fmt, s.get(key)) for s, _, _ in runs)] for key, fmt in ROWS]
    curves = [(name, metrics, steps) for name, (_, metrics, steps) in zip(labels, runs, strict=True)]
    atomic_write(out, curves_png(curves, table))
    return table


@run_cli
def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(prog="python -m compare.report", description=__doc__)
    parser.add_argument("runs", nargs=2, metavar="RUN_DIR", help="two run directories (any frameworks)")
    parser.add_argument("--out", metavar="PNG", help="where to write the figure (default: report.png next to "
                                                      "the first run)")
    args = parser.parse_args(argv)
    out = Path(args.out) if args.out else Path(args.runs[0]).parent / "report.png"
    check_writable(out)
    table = report(args.runs, out)
    width = max(len(row[0]) for row in table) + 2
    for row in table:
        print(row[0].ljust(width) + "".join(cell.rjust(28) for cell in row[1:]))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
