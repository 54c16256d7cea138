"""Files that are whole or absent, written only where they should be: the one place that decides how every
tool writes (files, streams, folders), checks an output path before any work, and appends JSON lines that
survive a crash mid-append.

- A regular file (or a path not there yet) is written atomically: a temporary file beside it, fsync, rename.
- A character device or a FIFO (`--json /dev/null`, `--json /dev/stdout`, a named pipe) is written as a stream,
  as any Unix tool does; it is never replaced by a file.
- A folder, a socket or a block device as an output file is refused before the work starts.
- Nothing is written through a symbolic link to a file: renames replace a link itself, never its target, and the
  files of a tool's own output folder (appends, the run lock) open with O_NOFOLLOW.
- A write that fails (disk full, read-only, permission) is one `error:` line naming the file, not a traceback.
"""

from __future__ import annotations

import errno
import io
import json
import math
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any

from shared.errors import UserError

STREAM_KINDS = {stat.S_IFCHR: "a character device", stat.S_IFIFO: "a FIFO"}
REFUSED_KINDS = {stat.S_IFDIR: "a folder", stat.S_IFSOCK: "a socket", stat.S_IFBLK: "a block device"}


def _file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = _file_mode()


def write_failed(path: Path, e: OSError) -> UserError:
    """An OSError from writing `path`, in the contract's words."""
    fix = {errno.ENOSPC: "free some space", errno.EDQUOT: "free some space", errno.EFBIG: "free some space",
           errno.EROFS: "choose a writable place", errno.EACCES: "choose a writable place",
           errno.EPERM: "choose a writable place", errno.ENAMETOOLONG: "use a shorter path",
           errno.ENOENT: "the folder disappeared; choose another"}.get(e.errno, "choose another path")
    return UserError(f"cannot write {path}: {e.strerror or e}; {fix}")


def path_kind(path: Path, follow: bool = True) -> str | None:
    """'missing', 'file', 'link' (follow=False), or the words for a stream or a refused kind."""
    try:
        mode = (os.stat if follow else os.lstat)(path).st_mode
    except FileNotFoundError:
        return "missing"
    except NotADirectoryError:
        return "below a file"
    except OSError as e:
        if e.errno == errno.ENAMETOOLONG:
            raise UserError(f"the path {str(path)[:60]}... is too long ({len(str(path))} characters); use a "
                            f"shorter one") from None
        raise
    kind = stat.S_IFMT(mode)
    if stat.S_ISLNK(mode):
        return "link"
    return "file" if kind == stat.S_IFREG else STREAM_KINDS.get(kind) or REFUSED_KINDS.get(kind, "special file")


def is_stream(path: Path) -> bool:
    return path_kind(path) in STREAM_KINDS.values()


def atomic_write(path: Path, data: bytes | str, make_parents: bool = True, own: bool = False) -> None:
    """Write `data` to `path`: atomically for a file (temporary file beside it, fsync, rename over it; a link
    there is replaced, not followed), as a stream for a character device or a FIFO the user named (`own`: a
    file of the tool's own output folder, never a stream). A failed write is a UserError naming the file."""
    payload = data.encode() if isinstance(data, str) else data
    if not own and is_stream(path):
        try:
            with open(path, "wb") as f:
                f.write(payload)
        except OSError as e:
            raise write_failed(path, e) from None
        return
    try:
        if make_parents:
            path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise write_failed(path, e) from None
    try:
        os.fchmod(fd, FILE_MODE)  # mkstemp's 0600 would differ from the appended files' mode
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise write_failed(path, e) from None
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


def open_own(path: Path, append: bool = True):
    """A file of the tool's own output folder, for appending (or writing), never through a symbolic link."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_APPEND if append else 0)
    try:
        return os.fdopen(os.open(path, flags, 0o666), "a" if append else "w")
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UserError(f"{path} is a symbolic link, not a file of this run; remove it") from None
        raise write_failed(path, e) from None


def remove_own(path: Path) -> None:
    """Remove a file or folder of the tool's own making; a symbolic link in its place goes, its target stays."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.is_dir():
        shutil.rmtree(path, ignore_errors=True)


def fresh_folder(path: Path) -> Path:
    """An empty hidden folder beside `path` to write a new version of the folder into (see swap_in)."""
    fresh = path.with_name(f".{path.name}.new")
    remove_own(fresh)
    return fresh


def swap_in(fresh: Path, path: Path) -> None:
    """Replace folder `path` by `fresh`: the old one is renamed aside first, so that at every moment one whole
    version exists (recover_folder puts it back after a crash between the two renames)."""
    previous = path.with_name(f".{path.name}.old")
    remove_own(previous)
    try:
        if path.exists() or path.is_symlink():
            path.rename(previous)
        fresh.rename(path)
    except OSError as e:
        raise write_failed(path, e) from None
    remove_own(previous)


def recover_folder(path: Path) -> None:
    """After a crash between swap_in's two renames, the previous version is the one to keep."""
    previous = path.with_name(f".{path.name}.old")
    if previous.is_dir() and not previous.is_symlink() and not path.exists():
        previous.rename(path)


def check_writable(path: Path) -> None:
    """Refuse, before any work starts, an output file path that cannot be written: a folder or another kind that
    is not a file or a stream, or a place below a file or without write permission."""
    kind = path_kind(path)
    if kind in REFUSED_KINDS.values() or kind == "special file":
        raise UserError(f"{path} is {kind}; give a file path to write")
    if kind in STREAM_KINDS.values():
        return
    if kind == "below a file":
        raise UserError(f"cannot write {path}: a part of it is a file, not a folder; choose another path")
    existing = next(p for p in (path.parent, *path.parent.parents) if path_kind(p) != "missing")
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
            row = json.loads(line)
        except ValueError:
            if i < len(lines) - 1:
                raise UserError(f"{path} is damaged (line {i + 1} is not JSON); start a new --out") from None
            continue
        if not isinstance(row, dict):
            raise UserError(f"{path} is damaged (line {i + 1} is not a JSON object); start a new --out")
        rows.append(row)
    return rows


def finite_or_none(value: Any) -> Any:
    """`value` with every NaN or infinite float replaced by None (JSON has no NaN), recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(v) for v in value]
    return value


def json_text(value: Any, **kwargs) -> str:
    """Valid JSON always: a non-finite float becomes null."""
    return json.dumps(finite_or_none(value), allow_nan=False, **kwargs)


def append_jsonl(path: Path, row: dict[str, Any]) -> None:
    with open_own(path) as f:
        try:
            f.write(json_text(row) + "\n")
            f.flush()
            os.fsync(f.fileno())
        except OSError as e:
            raise write_failed(path, e) from None
