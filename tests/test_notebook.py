"""notebooks/nin.ipynb: paired with its jupytext text file, committed with its outputs, and executed here from
start to end (any cell error fails), with the parity numbers it prints checked."""

from __future__ import annotations

import re

import pytest

from .conftest import ROOT, requires_notebook_tools

pytestmark = [pytest.mark.e2e, requires_notebook_tools]
NOTEBOOK, PAIRED = ROOT / "notebooks" / "nin.ipynb", ROOT / "notebooks" / "nin.py"


def sources(notebook) -> list[tuple[str, str]]:
    return [(cell.cell_type, cell.source.strip()) for cell in notebook.cells]


def test_the_notebook_and_its_text_file_hold_the_same_cells():
    import jupytext
    import nbformat

    committed = nbformat.read(NOTEBOOK, as_version=4)
    assert sources(committed) == sources(jupytext.read(PAIRED))
    shows = [cell for cell in committed.cells if cell.cell_type == "code"
             and re.search(r"\bprint\(|plt\.show\(\)", cell.source)]
    assert shows and all(cell.outputs for cell in shows)  # committed with its outputs, so that it renders


def printed(notebook) -> str:
    return "\n".join(output.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                     for output in cell.outputs if output.get("output_type") == "stream")


def test_the_notebook_runs_and_its_figures_hold(tmp_path):
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    for cell in notebook.cells:
        cell.outputs = [] if cell.cell_type == "code" else cell.get("outputs")
    NotebookClient(notebook, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()  # raises on a cell error
    text = printed(notebook)
    for direction in ("torch -> flax", "flax -> torch"):
        diff = float(re.search(rf"{direction}: max \|logits \w+ - logits \w+\| = (\S+)", text)[1])
        assert diff <= 1e-5, (direction, diff)
    assert "parameters: torch 1,992,166, analytic 1,992,166" in text
    accuracies = [float(a) for a in re.findall(r"test accuracy (\S+) on 2000 test images", text)]
    assert len(accuracies) == 3 and min(accuracies) > 0.2  # all three learned, from chance (0.1)
    across, within = map(float, re.search(r"torch vs flax (\S+), torch vs torch from an init one ulp away (\S+)",
                                          text).groups())
    assert 0 < across <= 2 * within  # fp32 runs drift, and flax no farther than a one-ulp nudge of torch
    predictions = re.findall(r"^(torch|flax): (Trouser .*)$", text, re.M)
    assert len(predictions) == 2 and predictions[0][1] == predictions[1][1]
