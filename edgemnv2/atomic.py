"""Every file the tool writes goes through here: whole or not at all, and never at the cost of the old one.

A file is written to a temporary file in the destination's own folder, flushed and fsync'ed, then moved over
the destination with `os.replace` (atomic on POSIX and Windows within one file system), so a reader sees the
old content or the new one, never half of it. A project folder is built in a staging folder beside its
destination and moved into place only when complete. A full disk, a read-only destination or a missing
permission becomes one `OutputError` line (exit 1) that says what was kept.

Stdlib only, no edgemnv2 imports but `errors`: every stage may use it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any, Iterable, Iterator

from edgemnv2.errors import OutputError

_REASONS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EFBIG: "file too large for this file system",
    errno.ENOTDIR: "a parent of it is a file, not a folder",
    errno.EISDIR: "it is a folder",
}


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _umask()
_FILE_MODE = 0o666 & ~_UMASK  # what open() gives a new file (mkstemp makes 0600)
_DIR_MODE = 0o777 & ~_UMASK  # what mkdir gives a new folder (mkdtemp makes 0700)


def output_error(path: Path | str, exc: OSError, kept: str) -> OutputError:
    """One line: what could not be written, why, and what is still there."""
    reason = _REASONS.get(exc.errno or 0) or exc.strerror or str(exc)
    return OutputError(f"cannot write {path}: {reason}; {kept}")


def _kept(path: Path, existed: bool) -> str:
    return f"the previous {path.name} is unchanged" if existed else "nothing was written"


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable; some file systems cannot open a folder, which costs only durability."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def replacing(path: Path | str, mode: str = "wb") -> Iterator[IO[Any]]:
    """An open temporary file that replaces `path` when the block ends without an exception.

    `mode` is "wb" or "w" (UTF-8 text). On any failure the temporary file is removed and `path` keeps its
    previous content; an OSError becomes an `OutputError`.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', not {mode!r}")
    path = Path(path)
    existed = path.exists()
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a folder; give a file path")
    temp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        temp = Path(name)
        os.fchmod(fd, os.stat(path).st_mode & 0o7777 if existed else _FILE_MODE)
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
        temp = None
        _fsync_dir(path.parent)
    except OSError as exc:
        raise output_error(path, exc, _kept(path, existed)) from None
    finally:
        if temp is not None:
            with contextlib.suppress(OSError):
                temp.unlink()


def write_bytes(path: Path | str, data: bytes) -> Path:
    """Atomically replace `path` with `data`."""
    with replacing(path, "wb") as handle:
        handle.write(data)
    return Path(path)


def write_text(path: Path | str, text: str) -> Path:
    """Atomically replace `path` with UTF-8 `text`."""
    with replacing(path, "w") as handle:
        handle.write(text)
    return Path(path)


def write_json(path: Path | str, payload: Any) -> Path:
    """Atomically replace `path` with `payload` as indented JSON and a final newline."""
    return write_text(path, json.dumps(payload, indent=2) + "\n")


def copy_file(src: Path | str, dst: Path | str) -> Path:
    """Atomically replace `dst` with a copy of `src` (bytes only, like shutil.copyfile)."""
    with open(src, "rb") as source, replacing(dst, "wb") as handle:
        shutil.copyfileobj(source, handle)
    return Path(dst)


def save_figure(figure: Any, path: Path | str, dpi: int) -> Path:
    """Atomically save a matplotlib figure; the format follows the file's extension (PNG without one)."""
    path = Path(path)
    with replacing(path, "wb") as handle:
        figure.savefig(handle, format=path.suffix.lstrip(".").lower() or "png", dpi=dpi)
    return path


class AppendLog:
    """A line-per-record file that grows as results arrive (bench's JSONL): each line goes out in one write
    and is fsync'ed, so a crash or a full disk leaves at most one torn last line, which `repair_torn_tail`
    removes on the next run."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, _FILE_MODE)
        except OSError as exc:
            raise output_error(self.path, exc, "the results already in it are kept") from None

    def write_line(self, line: str) -> None:
        data = (line.rstrip("\n") + "\n").encode("utf-8")
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
            os.fsync(self._fd)
        except OSError as exc:
            raise output_error(self.path, exc, "the results before this one are kept") from None

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "AppendLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def repair_torn_tail(path: Path | str) -> bool:
    """Cut an unterminated last line (a write cut short by a crash or a full disk); True if one was cut."""
    path = Path(path)
    try:
        with open(path, "rb+") as handle:
            size = handle.seek(0, os.SEEK_END)
            if size == 0:
                return False
            handle.seek(size - 1)
            if handle.read(1) == b"\n":
                return False
            keep = 0
            position = size
            while position > 0:  # scan back for the last newline, a block at a time
                step = min(65536, position)
                position -= step
                handle.seek(position)
                block = handle.read(step)
                index = block.rfind(b"\n")
                if index >= 0:
                    keep = position + index + 1
                    break
            handle.truncate(keep)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        raise output_error(path, exc, "it was not changed") from None
    return True


@contextlib.contextmanager
def staged_dir(dest: Path | str, generated: Iterable[str] = ()) -> Iterator[Path]:
    """Build a folder in a staging folder beside `dest`; move it into place only if the block succeeds.

    On failure the staging folder is removed and `dest` is untouched. On success a missing or empty `dest`
    becomes the staged folder by one rename. Into an existing `dest` (a previous build the caller agreed to
    replace) each staged top-level entry is renamed into place, and the previous entries named in
    `generated` (what the previous build wrote) go; everything else there (the user's build folder, notes)
    stays. `dest` itself is never moved: it may be the working directory or a mount point.
    """
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".staging"))
    except OSError as exc:
        raise output_error(dest, exc, "nothing was written") from None
    existed = dest.exists()
    try:
        yield stage
        _commit(stage, dest, set(generated))
    except OSError as exc:
        raise output_error(dest, exc, f"the previous {dest.name} is unchanged" if existed
                           else "nothing was written") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _commit(stage: Path, dest: Path, generated: set[str]) -> None:
    os.chmod(stage, _DIR_MODE)
    if dest.is_dir() and not any(dest.iterdir()):
        dest.rmdir()
    if not dest.exists():
        os.rename(stage, dest)
        _fsync_dir(dest.parent)
        return
    trash = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".old"))
    moves: list[tuple[Path, Path]] = []  # (from, to), undone in reverse if a rename fails
    try:
        for entry in sorted(dest.iterdir()):
            if entry.name in generated or (stage / entry.name).exists():
                os.rename(entry, trash / entry.name)
                moves.append((entry, trash / entry.name))
        for entry in sorted(stage.iterdir()):
            os.rename(entry, dest / entry.name)
            moves.append((entry, dest / entry.name))
    except OSError:
        for origin, moved in reversed(moves):
            with contextlib.suppress(OSError):
                os.rename(moved, origin)
        with contextlib.suppress(OSError):
            trash.rmdir()  # left in place (with what could not be moved back) unless empty
        raise
    shutil.rmtree(trash, ignore_errors=True)
    _fsync_dir(dest)
