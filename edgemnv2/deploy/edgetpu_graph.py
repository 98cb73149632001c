"""The TFLite graph as the Edge TPU rules see it: frozen `Graph` / `Op` / `Tensor` read with the `tflite` parser.

The field names follow the package's graph model (`edgemnv2.tflite`: `dtype.name`, `shape_signature`,
`constant`, `values()`, `options` by schema field name such as "dilation_h_factor"), so the rules and the
partitioner read the same attributes whichever reader produced the graph.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgemnv2.tflite_file import load_model, op_name, parse_errors

EDGETPU_CUSTOM_OP = "edgetpu-custom-op"


@dataclasses.dataclass(frozen=True)
class DType:
    code: int
    name: str                    # "int8", "float32", ...
    numpy: str | None            # numpy dtype of stored values, None when numpy has none


_DTYPES = {d.code: d for d in (
    DType(0, "float32", "float32"), DType(1, "float16", "float16"), DType(2, "int32", "int32"),
    DType(3, "uint8", "uint8"), DType(4, "int64", "int64"), DType(5, "string", None), DType(6, "bool", "bool"),
    DType(7, "int16", "int16"), DType(9, "int8", "int8"), DType(10, "float64", "float64"),
    DType(15, "uint32", "uint32"), DType(16, "uint16", "uint16"), DType(17, "int4", None))}


def dtype(code: int | str) -> DType:
    """The DType of a TensorType code or name ("int8")."""
    if isinstance(code, str):
        return next(d for d in _DTYPES.values() if d.name == code)
    return _DTYPES.get(code) or DType(code, f"type{code}", None)


@dataclasses.dataclass(frozen=True)
class Tensor:
    index: int
    name: str
    dtype: DType
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...]   # -1 marks a dynamic dimension; () when the file has none
    scale: tuple[float, ...] = ()      # quantization scales (several: per channel)
    zero_points: tuple[int, ...] = ()
    raw: bytes | None = dataclasses.field(default=None, repr=False)   # constant data, None for activations
    is_variable: bool = False          # LSTM state and other variables: written at run time

    @property
    def constant(self) -> bool:
        return self.raw is not None

    @property
    def quantized(self) -> bool:
        return bool(self.scale)

    @property
    def zero_point(self) -> int:
        """The first zero point: the quantized value of a real 0."""
        return self.zero_points[0] if self.zero_points else 0

    @property
    def nbytes(self) -> int:
        """Bytes of the tensor (dynamic dimensions counted as 1)."""
        size = np.dtype(self.dtype.numpy).itemsize if self.dtype.numpy else 1
        return int(np.prod([max(d, 1) for d in self.shape], dtype=np.int64)) * size

    @property
    def constant_bytes(self) -> int:
        return len(self.raw) if self.raw is not None else 0

    def values(self) -> np.ndarray:
        """The constant's values with their numpy type and shape."""
        if self.raw is None or self.dtype.numpy is None:
            raise ValueError(f"tensor {self.name!r} ({self.dtype.name}) has no numeric constant data")
        return np.frombuffer(self.raw, dtype=self.dtype.numpy).reshape(self.shape)


@dataclasses.dataclass(frozen=True)
class Op:
    index: int
    kind: str                          # TFLite builtin name, or a custom op's code ("edgetpu-custom-op")
    inputs: tuple[int, ...]            # tensor indices, -1 for an omitted optional input
    outputs: tuple[int, ...]
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)   # by schema field name
    custom_options_size: int = 0       # an Edge TPU op's compiled executable


@dataclasses.dataclass(frozen=True)
class Graph:
    tensors: tuple[Tensor, ...]
    ops: tuple[Op, ...]
    inputs: tuple[int, ...] = ()
    outputs: tuple[int, ...] = ()

    def inputs_of(self, op: Op) -> list[Tensor]:
        return [self.tensors[i] for i in op.inputs if i >= 0]

    def outputs_of(self, op: Op) -> list[Tensor]:
        return [self.tensors[i] for i in op.outputs if i >= 0]


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


@functools.lru_cache(maxsize=None)
def _fields(cls: type) -> tuple[tuple[str, str, bool], ...]:
    """(schema field name, accessor, is a vector) of a tflite.*Options class."""
    fields = []
    for name in dir(cls):
        if not name[:1].isupper() or name.startswith(("GetRootAs", "Init")) or name.endswith(
                ("BufferHasIdentifier", "Length", "IsNone")):
            continue
        if name.endswith("AsNumpy"):
            fields.append((_snake(name[:-len("AsNumpy")]), name[:-len("AsNumpy")], True))
        elif not hasattr(cls, name + "AsNumpy") and len(inspect.signature(getattr(cls, name)).parameters) == 1:
            fields.append((_snake(name), name, False))
    return tuple(fields)


def _options(table: Any) -> dict[str, Any]:
    """A tflite.*Options table as {schema field name: value} (vectors as tuples)."""
    values: dict[str, Any] = {}
    for field, accessor, vector in _fields(type(table)):
        if vector:
            values[field] = tuple(int(v) for v in getattr(table, accessor + "AsNumpy")()) if getattr(
                table, accessor + "Length")() else ()
        else:
            values[field] = getattr(table, accessor)()
    return values


def read_graph(path: Path) -> Graph:
    """Parse the main subgraph of a .tflite file; a file that is not TFLite is one clear error."""
    import tflite

    option_names = {v: k for k, v in vars(tflite.BuiltinOptions).items() if not k.startswith("_")}
    path = Path(path)
    model = load_model(path).model
    with parse_errors(str(path)):
        sub = model.Subgraphs(0)
        tensors = []
        for i in range(sub.TensorsLength()):
            t = sub.Tensors(i)
            buffer = model.Buffers(t.Buffer()) if t.Buffer() > 0 else None
            raw = bytes(buffer.DataAsNumpy().tobytes()) if buffer is not None and buffer.DataLength() else None
            q = t.Quantization()
            tensors.append(Tensor(
                index=i, name=(t.Name() or b"").decode(errors="replace"), dtype=dtype(t.Type()),
                shape=tuple(int(d) for d in (t.ShapeAsNumpy() if t.ShapeLength() else ())),
                shape_signature=tuple(int(d) for d in (t.ShapeSignatureAsNumpy() if t.ShapeSignatureLength() else ())),
                scale=tuple(q.ScaleAsNumpy().tolist()) if q is not None and q.ScaleLength() else (),
                zero_points=tuple(q.ZeroPointAsNumpy().tolist()) if q is not None and q.ZeroPointLength() else (),
                raw=raw, is_variable=bool(t.IsVariable())))
        ops = []
        for i in range(sub.OperatorsLength()):
            op = sub.Operators(i)
            options: dict[str, Any] = {}
            table, kind_name = op.BuiltinOptions(), option_names.get(op.BuiltinOptionsType())
            if table is not None and kind_name and hasattr(tflite, kind_name):
                parsed = getattr(tflite, kind_name)()
                parsed.Init(table.Bytes, table.Pos)
                options = _options(parsed)
            ops.append(Op(index=i, kind=op_name(model, op, custom="{}"),
                          inputs=tuple(int(x) for x in (op.InputsAsNumpy() if op.InputsLength() else ())),
                          outputs=tuple(int(x) for x in (op.OutputsAsNumpy() if op.OutputsLength() else ())),
                          options=options, custom_options_size=op.CustomOptionsLength()))
        return Graph(tensors=tuple(tensors), ops=tuple(ops),
                     inputs=tuple(int(x) for x in (sub.InputsAsNumpy() if sub.InputsLength() else ())),
                     outputs=tuple(int(x) for x in (sub.OutputsAsNumpy() if sub.OutputsLength() else ())))
