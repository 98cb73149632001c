"""Reading .tflite bytes with one-line errors, without the flatbuffer schema (cheap to import).

`read_tflite` is what runtimes and the TFLM measurement need (bytes whose 'TFL3' identifier was
checked); `edgemnv2.tflite.load_graph` parses those bytes into the graph model.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edgemnv2.errors import ModelError

FILE_IDENTIFIER = b"TFL3"  # flatbuffer file identifier, bytes 4..8 of every .tflite


def read_model_bytes(path: Path | str, hint: str = "") -> bytes:
    """Read a model file with a one-line error when it is missing, a folder or unreadable."""
    suffix = f"; {hint}" if hint else ""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise ModelError(f"model file {path} does not exist") from None
    except IsADirectoryError:
        raise ModelError(f"{path} is a folder, not a .tflite file (a SavedModel? use the .tflite that "
                         f"`edgemnv2 convert` writes){suffix}") from None
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc.strerror}") from None


def check_identifier(data: bytes, what: str, hint: str = "") -> None:
    """A ModelError unless `data` carries the TFLite flatbuffer identifier."""
    if len(data) < 8 or data[4:8] != FILE_IDENTIFIER:
        raise ModelError(f"{what} is not a TFLite model (no 'TFL3' flatbuffer identifier)"
                         + (f"; {hint}" if hint else ""))


def read_tflite(path: Path | str, hint: str = "") -> bytes:
    """Bytes of a .tflite file whose identifier was checked, without paying for the schema import."""
    data = read_model_bytes(path, hint)
    check_identifier(data, str(path), hint)
    return data


def model_bytes(source: bytes | bytearray | memoryview | Path | str, what: str | None = None,
                hint: str = "") -> tuple[bytes, str]:
    """(checked bytes, name for messages) of a path or of bytes already in memory."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, what = bytes(source), what or "the model"
    else:
        data, what = read_model_bytes(source, hint), what or str(source)
    check_identifier(data, what, hint)
    return data, what


@contextmanager
def parse_errors(what: str) -> Iterator[None]:
    """Turn whatever a truncated or corrupted flatbuffer raises while it is read into one ModelError."""
    try:
        yield
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"{what} looks like TFLite but cannot be parsed ({type(exc).__name__}: {exc}); "
                         "the file is probably truncated or corrupted") from None
