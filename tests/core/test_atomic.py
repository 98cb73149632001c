"""Atomic writes: whole file or the old one, staged projects, one line for a full disk or a read-only place."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from edgemnv2 import atomic
from edgemnv2.errors import OutputError

READ_ONLY = Path("/sys")  # sysfs refuses new files even to root (EACCES, or EROFS where mounted read-only)


def _no_space(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_write_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "m.tflite"
    atomic.write_bytes(path, b"one")
    atomic.write_bytes(path, b"two")
    assert path.read_bytes() == b"two" and _leftovers(path.parent) == []
    assert path.stat().st_mode & 0o777 == 0o666 & ~atomic._UMASK
    atomic.write_json(tmp_path / "r.json", {"a": 1})
    assert (tmp_path / "r.json").read_text() == '{\n  "a": 1\n}\n'


def test_full_disk_keeps_the_previous_file(tmp_path: Path, monkeypatch) -> None:
    """ENOSPC surfacing at fsync (delayed allocation) or mid-write: one line, the old content, no temp file."""
    path = tmp_path / "m.tflite"
    path.write_bytes(b"previous")
    monkeypatch.setattr(atomic.os, "fsync", _no_space)
    with pytest.raises(OutputError) as caught:
        atomic.write_bytes(path, b"x" * 1000)
    assert str(caught.value) == f"cannot write {path}: no space left on device; the previous m.tflite is unchanged"
    assert caught.value.exit_code == 1
    assert path.read_bytes() == b"previous" and _leftovers(tmp_path) == []
    monkeypatch.undo()

    with pytest.raises(OutputError, match="no space left on device; nothing was written"):
        with atomic.replacing(tmp_path / "new.png") as handle:
            handle.write(b"half")
            _no_space()
    assert not (tmp_path / "new.png").exists() and _leftovers(tmp_path) == []


def test_read_only_destination_is_one_line(tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(OutputError) as caught:
        atomic.write_text(READ_ONLY / "edgemnv2-test.json", "{}")
    message = str(caught.value)
    assert message.startswith(f"cannot write {READ_ONLY}/edgemnv2-test.json: ")
    assert message.endswith("; nothing was written") and "\n" not in message
    # a file system remounted read-only between the temp file and the rename
    path = tmp_path / "r.json"
    path.write_text("old")
    monkeypatch.setattr(atomic.os, "replace", lambda *_: (_ for _ in ()).throw(OSError(errno.EROFS, "ro")))
    with pytest.raises(OutputError, match="read-only file system; the previous r.json is unchanged"):
        atomic.write_text(path, "new")
    assert path.read_text() == "old" and _leftovers(tmp_path) == []


def test_staged_dir_moves_in_only_on_success(tmp_path: Path) -> None:
    dest = tmp_path / "proj"
    with pytest.raises(RuntimeError):
        with atomic.staged_dir(dest) as stage:
            (stage / "a.c").write_text("half")
            raise RuntimeError("renderer failed")
    assert not dest.exists() and list(tmp_path.iterdir()) == []
    with atomic.staged_dir(dest) as stage:
        (stage / "a.c").write_text("v1")
        (stage / "stale.h").write_text("v1")
    assert (dest / "a.c").read_text() == "v1"
    (dest / "build").mkdir()
    (dest / "build" / "fw.elf").write_text("user's build")
    with pytest.raises(OutputError, match="no space left on device; the previous proj is unchanged"):
        with atomic.staged_dir(dest, generated=["a.c", "stale.h"]) as stage:
            (stage / "a.c").write_text("v2")
            _no_space()
    assert sorted(p.name for p in dest.iterdir()) == ["a.c", "build", "stale.h"]
    assert (dest / "a.c").read_text() == "v1" and [p.name for p in tmp_path.iterdir()] == ["proj"]
    with atomic.staged_dir(dest, generated=["a.c", "stale.h"]) as stage:
        (stage / "a.c").write_text("v2")
    assert sorted(p.name for p in dest.iterdir()) == ["a.c", "build"]  # the user's build kept, stale file gone
    assert (dest / "a.c").read_text() == "v2" and (dest / "build" / "fw.elf").read_text() == "user's build"
    assert [p.name for p in tmp_path.iterdir()] == ["proj"]


def test_append_log_and_torn_tail(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "r.jsonl"
    with atomic.AppendLog(path) as log:
        log.write_line('{"id": 0}')
        log.write_line('{"id": 1}')
    with open(path, "a") as handle:
        handle.write('{"id": 2, "lat')  # the write a crash cut short
    assert atomic.repair_torn_tail(path) is True
    assert path.read_text() == '{"id": 0}\n{"id": 1}\n'
    assert atomic.repair_torn_tail(path) is False
    monkeypatch.setattr(atomic.os, "write", _no_space)
    with atomic.AppendLog(path) as log, pytest.raises(OutputError) as caught:
        log.write_line('{"id": 2}')
    assert str(caught.value) == (f"cannot write {path}: no space left on device; the results before this one "
                                 "are kept")
