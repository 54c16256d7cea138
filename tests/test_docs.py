"""The Python blocks of the pages that show code run as written: each page's blocks in order, in one namespace,
from the repository root. A page's claims in code (the book's Sequential is this network, the porting pitfalls,
the ONNX Runtime example) are checked this way."""

from __future__ import annotations

import os
import re

import pytest

from .conftest import ROOT

pytestmark = pytest.mark.e2e
PAGES = ["docs/ARCHITECTURE.md", "docs/PORTING.md", "README.md"]


def python_blocks(page: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", (ROOT / page).read_text(), re.S | re.M)


@pytest.mark.parametrize("page", PAGES)
def test_the_pages_code_runs(page, monkeypatch):
    blocks = python_blocks(page)
    if page != "README.md":
        assert blocks, page
    if "onnxruntime" in "".join(blocks):
        pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (as on the GPU machine's stack)")
    monkeypatch.chdir(ROOT)
    namespace: dict = {"__name__": f"docs:{page}"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{page} (python block {i + 1})", "exec"), namespace)  # noqa: S102


def test_every_docs_link_points_at_a_file():
    for page in ["README.md", *(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]:
        folder = (ROOT / page).parent
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", (ROOT / page).read_text()):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            assert os.path.exists(folder / target), (page, target)


def test_the_readme_stays_a_front_door():
    """At most 10 KB; what does not fit goes to a page of docs/ by topic."""
    assert len((ROOT / "README.md").read_bytes()) <= 10_000
