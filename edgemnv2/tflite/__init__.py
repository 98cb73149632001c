"""One TFLite graph model for the whole package.

`load_graph(path or bytes)` → a frozen `Graph` (subgraphs of `Op`s and `Tensor`s, buffers as lazy numpy
views, one dtype table, quantization, builtin options, one layer-name rule), with one-line ModelErrors for
a file that is missing, a folder, not TFLite, or truncated. The schema is parsed only in
`edgemnv2.tflite.reader` and written only in `edgemnv2.tflite.writer`; everything else uses these values.
The schema import (~0.2 s) is paid on the first `load_graph`, so `profile --alpha` never pays it.
"""

from __future__ import annotations

from pathlib import Path

from edgemnv2.tflite.files import (FILE_IDENTIFIER, check_identifier, model_bytes, parse_errors, read_model_bytes,
                                   read_tflite)
from edgemnv2.tflite.model import (DTYPES, Buffer, DType, Graph, Op, OpCode, Quantization, Subgraph,
                                   Tensor, dtype, layer_name)

__all__ = ["DTYPES", "FILE_IDENTIFIER", "Buffer", "DType", "Graph", "Op", "OpCode", "Quantization",
           "Subgraph", "Tensor", "builtin_names", "check_identifier", "dtype", "layer_name", "load_graph",
           "model_bytes", "parse_errors", "read_model_bytes", "read_tflite"]


def load_graph(source: bytes | bytearray | memoryview | Path | str, what: str | None = None, hint: str = "") -> Graph:
    """Bytes or a path → the graph model; anything that is not a readable TFLite model is one ModelError.

    `what` names the model in messages (default: the path, or "the model" for bytes); `hint` is appended
    to the user-facing errors to say what the command accepts instead.
    """
    from edgemnv2.tflite.reader import parse

    data, what = model_bytes(source, what, hint)
    return parse(data, what)


def builtin_names() -> dict[int, str]:
    """Builtin operator code → schema name, from the installed schema."""
    from edgemnv2.tflite import reader

    return reader.builtin_names()
