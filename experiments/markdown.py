"""The Markdown of docs/RESULTS.md: a document of lines with links relative to it, tables, formatted figures."""

from __future__ import annotations

import math
import os
from pathlib import Path

from experiments.results import CellRuns, mean_spread

NOT_RUN = "not run"


class Doc:
    def __init__(self, root: Path, docs: Path):
        self.root, self.docs, self.lines = root, docs, []

    def link(self, path: Path) -> str:
        return Path(os.path.relpath(path.resolve(), self.docs.resolve())).as_posix()

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        self.add("| " + " | ".join(header) + " |", "|" + "---|" * len(header))
        self.add(*("| " + " | ".join(r) + " |" for r in rows), "")


def fmt_acc(cell: CellRuns, framework: str, doc: Doc) -> str:
    runs = cell.runs.get(framework, [])
    if not runs:
        return NOT_RUN
    stats = mean_spread(cell.accs(framework))
    diverged = sum(r.status == "diverged" for r in runs)
    text = "diverged" if stats is None else (f"{stats[0]:.3f}" if math.isnan(stats[1]) or len(runs) == 1 else
                                             f"{stats[0]:.3f} ± {stats[1]:.3f}")
    if stats is not None and diverged:
        text += f" ({diverged} diverged)"
    return f"[{text}]({doc.link(cell.path)})"


def fmt_num(value: float | None, fmt: str) -> str:
    return NOT_RUN if value is None else fmt.format(value)
