"""The one place that parses the TFLite flatbuffer schema (the pure-Python `tflite` package, no TensorFlow).

`parse` walks a model once into the frozen values of `edgemnv2.tflite.model`. The generated accessors
read lazily, so a bad offset surfaces only when a table is touched: the whole walk runs under
`parse_errors`, and a truncated or corrupted file is one ModelError line.
"""

from __future__ import annotations

import re
from functools import lru_cache
from types import MappingProxyType
from typing import Any

import tflite

from edgemnv2.errors import ModelError
from edgemnv2.tflite.files import parse_errors
from edgemnv2.tflite.model import Buffer, Graph, Op, OpCode, Quantization, Subgraph, Tensor, dtype

_NOT_FIELDS = re.compile(r"^(Init|GetRootAs.*|.*BufferHasIdentifier|.*AsNumpy|.*Length|.*IsNone)$")


@lru_cache(maxsize=1)
def builtin_names() -> dict[int, str]:
    """Builtin operator code → schema name ("CONV_2D"), from the installed schema."""
    return {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}


@lru_cache(maxsize=1)
def _options_names() -> dict[int, str]:
    return {v: k for k, v in vars(tflite.BuiltinOptions).items() if not k.startswith("_")}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


@lru_cache(maxsize=None)
def _option_fields(cls: type) -> tuple[tuple[str, str, bool], ...]:
    """(accessor, field name, is vector) of every scalar or vector field of a generated options table."""
    methods = {m for m in dir(cls) if not m.startswith("_")}
    return tuple((m, _snake(m), f"{m}Length" in methods) for m in sorted(methods) if not _NOT_FIELDS.match(m))


def _options(op: Any) -> tuple[dict[str, Any], str | None]:
    name = _options_names().get(op.BuiltinOptionsType())
    table = op.BuiltinOptions()
    cls = getattr(tflite, name, None) if name and name != "NONE" else None
    if table is None or cls is None:
        return {}, name if name != "NONE" else None
    options = cls()
    options.Init(table.Bytes, table.Pos)
    values: dict[str, Any] = {}
    for accessor, field, vector in _option_fields(cls):
        if vector:
            values[field] = tuple(getattr(options, accessor)(j) for j in range(getattr(options, f"{accessor}Length")()))
            continue
        value = getattr(options, accessor)()
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if isinstance(value, (bool, int, float, str)):
            values[field] = value
    return values, name


def _ints(accessor: Any, length: int) -> tuple[int, ...]:
    return tuple(int(x) for x in accessor()) if length else ()


def _buffer(model: Any, index: int, data: bytes) -> Buffer | None:
    b = model.Buffers(index)
    vector = b._tab.Offset(4)  # noqa: SLF001 - the data vector's position: a view instead of a copy
    if vector:
        start, size = b._tab.Vector(vector), b._tab.VectorLen(vector)  # noqa: SLF001
    elif b.Offset() > 1:  # models over 2 GB keep buffers after the flatbuffer (offset from the file start)
        start, size = int(b.Offset()), int(b.Size())
    else:
        return None
    if size == 0:
        return None
    if start + size > len(data):
        raise ModelError(f"buffer {index} ends at byte {start + size} but the file has {len(data)}")
    return Buffer(index=index, start=start, size=size, file=data)


def _quantization(t: Any) -> Quantization | None:
    q = t.Quantization()
    if q is None:
        return None
    return Quantization(
        scale=tuple(float(x) for x in q.ScaleAsNumpy()) if q.ScaleLength() else (),
        zero_point=tuple(int(x) for x in q.ZeroPointAsNumpy()) if q.ZeroPointLength() else (),
        axis=int(q.QuantizedDimension()),
        min=tuple(float(x) for x in q.MinAsNumpy()) if q.MinLength() else (),
        max=tuple(float(x) for x in q.MaxAsNumpy()) if q.MaxLength() else ())


def _subgraph(sub: Any, opcodes: tuple[OpCode, ...], buffers: tuple[Buffer | None, ...]) -> Subgraph:
    tensors = []
    for i in range(sub.TensorsLength()):
        t = sub.Tensors(i)
        b = t.Buffer()
        tensors.append(Tensor(
            index=i, name=(t.Name() or b"").decode("utf-8", "replace"), dtype=dtype(t.Type()),
            shape=_ints(t.ShapeAsNumpy, t.ShapeLength()),
            shape_signature=_ints(t.ShapeSignatureAsNumpy, t.ShapeSignatureLength()),
            quantization=_quantization(t), buffer=buffers[b] if 0 < b < len(buffers) else None,
            is_variable=bool(t.IsVariable())))
    ops = []
    for i in range(sub.OperatorsLength()):
        op = sub.Operators(i)
        index = op.OpcodeIndex()
        if not 0 <= index < len(opcodes):
            raise ModelError(f"operator {i} uses operator code {index} of {len(opcodes)}")
        options, options_type = _options(op)
        ops.append(Op(index=i, opcode=opcodes[index], inputs=_ints(op.InputsAsNumpy, op.InputsLength()),
                      outputs=_ints(op.OutputsAsNumpy, op.OutputsLength()), options=MappingProxyType(options),
                      options_type=options_type,
                      custom_options_size=op.CustomOptionsLength() or int(op.LargeCustomOptionsSize())))
    return Subgraph(tensors=tuple(tensors), ops=tuple(ops), inputs=_ints(sub.InputsAsNumpy, sub.InputsLength()),
                    outputs=_ints(sub.OutputsAsNumpy, sub.OutputsLength()),
                    name=(sub.Name() or b"").decode("utf-8", "replace"))


def _opcode(code: Any) -> OpCode:
    # codes above 127 live only in the new field; old files fill only the deprecated one
    builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
    custom = code.CustomCode()
    return OpCode(builtin=builtin_names().get(builtin, f"BUILTIN_{builtin}"), builtin_code=builtin,
                  custom_code=custom.decode("utf-8", "replace") if custom else None, version=code.Version())


def parse(data: bytes, source: str) -> Graph:
    """The graph model of checked .tflite bytes; `source` names the model in errors."""
    with parse_errors(source):
        model = tflite.Model.GetRootAsModel(data, 0)
        buffers = tuple(_buffer(model, i, data) for i in range(model.BuffersLength()))
        opcodes = tuple(_opcode(model.OperatorCodes(i)) for i in range(model.OperatorCodesLength()))
        subgraphs = tuple(_subgraph(model.Subgraphs(i), opcodes, buffers) for i in range(model.SubgraphsLength()))
        if not subgraphs:
            raise ModelError(f"{source} has no subgraph")
        metadata = {}
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            metadata[(entry.Name() or b"").decode("utf-8", "replace")] = int(entry.Buffer())
        main = subgraphs[0]
        return Graph(tensors=main.tensors, ops=main.ops, inputs=main.inputs, outputs=main.outputs, name=main.name,
                     source=source, data=data, version=int(model.Version()),
                     description=(model.Description() or b"").decode("utf-8", "replace"), subgraphs=subgraphs,
                     opcodes=opcodes, buffers=buffers, metadata=MappingProxyType(metadata))
