"""Open a .tflite flatbuffer and name its operators the same way in every stage that reads one.

Profile, Edge TPU check, firmware/phone export, convert's sidecar and the per-layer error report all read
models with the pure-Python `tflite` parser (no TensorFlow). They share here: the one-line errors for a
file that is missing, a folder, not TFLite, or truncated; and the operator names (`max` of the builtin and
deprecated builtin code, because codes above 127 live only in the new field).

`tflite` is imported inside the functions: importing it costs ~0.15 s, which `edgemnv2 profile
--alpha/--resolution` never needs to pay.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from edgemnv2.errors import ModelError

FILE_IDENTIFIER = b"TFL3"  # flatbuffer file identifier, bytes 4..8 of every .tflite


@dataclass(frozen=True)
class TFLiteModel:
    """A .tflite whose identifier was checked; `model` is the parser's root `tflite.Model` table."""

    source: str   # the path, or what the caller calls the bytes, for error messages
    data: bytes
    model: Any


def read_model_bytes(path: Path, hint: str = "") -> bytes:
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


def read_tflite(path: Path | str, hint: str = "") -> bytes:
    """Bytes of a .tflite file whose identifier was checked, without paying for the `tflite` parser import."""
    data = read_model_bytes(Path(path), hint)
    _check_identifier(data, str(path), hint)
    return data


def _check_identifier(data: bytes, what: str, hint: str) -> None:
    if len(data) < 8 or data[4:8] != FILE_IDENTIFIER:
        raise ModelError(f"{what} is not a TFLite model (no 'TFL3' flatbuffer identifier)"
                         + (f"; {hint}" if hint else ""))


def load_model(source: bytes | Path | str, what: str | None = None, hint: str = "") -> TFLiteModel:
    """Bytes or a path → the parsed root table; anything without the TFLite identifier is a ModelError.

    `what` names the model in messages (default: the path, or "the model" for bytes); `hint` is appended
    to the user-facing errors to say what the command accepts instead.
    """
    import tflite

    if isinstance(source, (bytes, bytearray, memoryview)):
        data, what = bytes(source), what or "the model"
    else:
        data, what = read_model_bytes(Path(source), hint), what or str(source)
    _check_identifier(data, what, hint)
    return TFLiteModel(source=what, data=data, model=tflite.Model.GetRootAsModel(data, 0))


@contextmanager
def parse_errors(what: str) -> Iterator[None]:
    """Turn whatever a truncated or corrupted flatbuffer raises while it is read into one ModelError.

    The generated accessors read lazily, so a bad offset surfaces as struct.error, IndexError, ... only
    when a table is touched: wrap the whole walk over the model, not just `load_model`.
    """
    try:
        yield
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"{what} looks like TFLite but cannot be parsed ({type(exc).__name__}: {exc}); "
                         "the file is probably truncated or corrupted") from None


@lru_cache(maxsize=1)
def builtin_names() -> dict[int, str]:
    """Builtin operator code → schema name ("CONV_2D"), from the installed `tflite` schema."""
    import tflite

    return {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}


def op_name(model: Any, operator: Any, custom: str = "CUSTOM:{}") -> str:
    """Name of `operator` of `model`: its builtin name, `custom` filled with the custom code for a custom op
    ("CUSTOM:edgetpu-custom-op" by default), or "BUILTIN_<code>" for a code newer than the installed schema."""
    code = model.OperatorCodes(operator.OpcodeIndex())
    builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
    name = builtin_names().get(builtin, f"BUILTIN_{builtin}")
    if name != "CUSTOM":
        return name
    return custom.format((code.CustomCode() or b"?").decode("utf-8", "replace"))
