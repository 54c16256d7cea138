"""The one atomic writer: whole or absent, for files and for folders (the flax checkpoint's swap)."""

from __future__ import annotations

import os

import pytest

from shared.files import FILE_MODE, atomic_write, fresh_folder, read_jsonl, recover_folder, swap_in


def test_atomic_write_replaces_whole_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "out.json"
    atomic_write(path, "first")
    atomic_write(path, b"second")
    assert path.read_text() == "second" and os.stat(path).st_mode & 0o777 == FILE_MODE
    assert [p.name for p in path.parent.iterdir()] == ["out.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "out.txt"
    atomic_write(path, "kept")
    with pytest.raises(TypeError):
        atomic_write(path, 12345)  # not bytes: fails mid-write
    assert path.read_text() == "kept" and [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_swap_in_replaces_a_folder_and_recovers_from_a_crash_between_renames(tmp_path):
    path = tmp_path / "checkpoint"
    fresh = fresh_folder(path)
    fresh.mkdir()
    (fresh / "v").write_text("1")
    swap_in(fresh, path)
    assert (path / "v").read_text() == "1" and sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]
    fresh = fresh_folder(path)
    fresh.mkdir()
    (fresh / "v").write_text("2")
    swap_in(fresh, path)
    assert (path / "v").read_text() == "2" and sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]
    path.rename(tmp_path / ".checkpoint.old")  # a crash after the first rename of a swap
    recover_folder(path)
    assert (path / "v").read_text() == "2"


def test_read_jsonl_drops_a_torn_last_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n{"a":')
    assert read_jsonl(path) == [{"a": 1}, {"a": 2}]
