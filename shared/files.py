"""Files that are whole or absent: the one atomic writer (files and folders) every tool uses, the output-path
check made before any work, and JSON lines that survive a crash mid-append."""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from shared.errors import UserError


def _file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = _file_mode()


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write `data` to a temporary file beside `path`, fsync it and rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, FILE_MODE)  # mkstemp's 0600 would differ from the appended files' mode
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_figure(fig, path: Path, dpi: int = 90) -> None:
    """A matplotlib figure as a PNG, atomically; the figure is closed."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    atomic_write(path, buffer.getvalue())


def fresh_folder(path: Path) -> Path:
    """An empty hidden folder beside `path` to write a new version of the folder into (see swap_in)."""
    fresh = path.with_name(f".{path.name}.new")
    shutil.rmtree(fresh, ignore_errors=True)
    return fresh


def swap_in(fresh: Path, path: Path) -> None:
    """Replace folder `path` by `fresh`: the old one is renamed aside first, so that at every moment one whole
    version exists (recover_folder puts it back after a crash between the two renames)."""
    previous = path.with_name(f".{path.name}.old")
    shutil.rmtree(previous, ignore_errors=True)
    if path.exists():
        path.rename(previous)
    fresh.rename(path)
    shutil.rmtree(previous, ignore_errors=True)


def recover_folder(path: Path) -> None:
    """After a crash between swap_in's two renames, the previous version is the one to keep."""
    previous = path.with_name(f".{path.name}.old")
    if previous.exists() and not path.exists():
        previous.rename(path)


def check_writable(path: Path) -> None:
    """Refuse an output file path that cannot be written, before any work starts."""
    if path.is_dir():
        raise UserError(f"{path} is a folder; give a file path to write")
    existing = next(p for p in (path.parent, *path.parent.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"cannot write {path}: {existing} is not a writable folder; choose another path")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSON-lines file; a torn last line (a crash mid-append) is dropped, any other bad line is
    a damaged file."""
    if not path.exists():
        return []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    rows = []
    for i, line in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except ValueError:
            if i < len(lines) - 1:
                raise UserError(f"{path} is damaged (line {i + 1} is not JSON); start a new --out") from None
    return rows


def append_jsonl(path: Path, row: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())
