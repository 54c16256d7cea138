"""`python -m compare.report RUN_DIR_A RUN_DIR_B`: both runs' curves overlaid and their summaries side by side,
in one PNG (next to the runs, or --out)."""

from __future__ import annotations

import json
from pathlib import Path

from shared.config import ArgumentParser
from shared.errors import UserError, run_cli
from shared.files import check_writable, read_jsonl
from shared.plots import plot_runs

ROWS = (("framework", "{}"), ("device", "{}"), ("precision", "{}"), ("status", "{}"), ("epochs", "{}"),
        ("steps", "{}"), ("train_loss", "{:.4f}"), ("train_acc", "{:.4f}"), ("test_loss", "{:.4f}"),
        ("test_acc", "{:.4f}"), ("examples_per_sec", "{:.1f}"), ("seconds", "{:.1f}"), ("param_count", "{:,}"))


def load_run(path: str) -> tuple[dict, list[dict]]:
    folder = Path(path)
    summary = folder / "summary.json"
    if not summary.is_file():
        raise UserError(f"{folder} has no summary.json: give the --out folder of a finished training run")
    try:
        return json.loads(summary.read_text()), read_jsonl(folder / "metrics.jsonl")
    except (OSError, ValueError) as e:
        raise UserError(f"{folder} is damaged ({e}); give the --out folder of a finished training run") from None


def _cell(fmt: str, value) -> str:
    return "-" if value is None else fmt.format(value)


def report(paths: list[str], out: Path) -> list[list[str]]:
    runs = [load_run(p) for p in paths]
    labels = [f"{s['framework']} ({Path(p).name})" for p, (s, _) in zip(paths, runs, strict=True)]
    table = [["", *labels]] + [[key, *(_cell(fmt, s.get(key)) for s, _ in runs)] for key, fmt in ROWS]
    plot_runs([(label, metrics) for label, (_, metrics) in zip(labels, runs, strict=True)], out, table)
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
