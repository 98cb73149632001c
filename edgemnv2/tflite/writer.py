"""The one set of flatbuffer writing helpers: model surgery, metadata, in-place patches.

* `unpack` / `pack`: a .tflite as the schema's object API (`ModelT`, from LiteRT's or TFLite Micro's
  generated schema; no TensorFlow) and back, for surgery that adds or replaces ops, tensors and buffers
  (mixed precision, phone I/O, cutting a model after an op, `with_outputs`);
* `table`, `offset_vector`, `float_vector`, `strings` and `TableView`: write and read tables of any other
  flatbuffer schema by field slot (the TFLite metadata, `metadata_schema.fbs`) without generated code;
* `patch_ranges`: overwrite calibration's recorded min/max in place, every other byte unchanged.
"""

from __future__ import annotations

import importlib
import struct
from collections.abc import Mapping
from typing import Any

import flatbuffers
import numpy as np
from flatbuffers import number_types as N
from flatbuffers.table import Table

from edgemnv2.errors import RuntimeUnavailable
from edgemnv2.tflite.files import FILE_IDENTIFIER

_SCHEMA_MODULES = ("ai_edge_litert.schema_py_generated", "tflite_micro.tensorflow.lite.micro.python.schema_py_generated")


def schema() -> Any:
    """The TFLite schema with the flatbuffers object API (shipped by LiteRT or TFLite Micro)."""
    for name in _SCHEMA_MODULES:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise RuntimeUnavailable("rewriting a TFLite model needs the TFLite schema from ai-edge-litert: "
                             "pip install 'edgemnv2[runtime]'")


def unpack(data: bytes) -> Any:
    """The whole model as mutable `ModelT` objects."""
    return schema().ModelT.InitFromPackedBuf(bytearray(data), 0)


def pack(model: Any, size_hint: int = 0) -> bytes:
    """A `ModelT` back to .tflite bytes (with the TFL3 identifier)."""
    builder = flatbuffers.Builder(size_hint)
    builder.Finish(model.Pack(builder), file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())


def with_outputs(data: bytes, tensors: list[int]) -> bytes:
    """A copy of a model whose first subgraph also outputs `tensors`.

    Why: LiteRT's preserve-all-tensors debug mode allows no delegate, so reading intermediate tensors
    that way runs the builtin kernels; as outputs, XNNPACK runs the graph (about 4x faster for
    MobileNetV2) and still hands their values over.
    """
    model = unpack(data)
    subgraph = model.subgraphs[0]
    outputs = [int(i) for i in subgraph.outputs]
    subgraph.outputs = outputs + [int(i) for i in dict.fromkeys(tensors) if int(i) not in outputs]
    return pack(model, len(data))


def name_of(obj: Any) -> str:
    """A `TensorT`/`MetadataT` name as str (the object API keeps bytes)."""
    return obj.name.decode() if isinstance(obj.name, bytes) else str(obj.name)


def builtin_code(code: Any) -> int:
    """An `OperatorCodeT`'s builtin: codes above 127 live only in the new field."""
    return max(code.builtinCode, code.deprecatedBuiltinCode)


# ---------------------------------------------------------------- tables of any schema, by slot

def strings(b: flatbuffers.Builder, *values: str | None) -> list[int | None]:
    return [b.CreateString(v) if v is not None else None for v in values]


def table(b: flatbuffers.Builder, fields: Mapping[int, tuple[str, object]]) -> int:
    """Write one table: slot -> ("offset"|"uint8"|"uint32", value); None values are left out."""
    b.StartObject(max(fields) + 1 if fields else 0)
    for slot, (kind, value) in sorted(fields.items(), reverse=True):
        if value is None:
            continue
        if kind == "offset":
            b.PrependUOffsetTRelativeSlot(slot, value, 0)
        elif kind == "uint8":
            b.PrependUint8Slot(slot, value, 0)
        elif kind == "uint32":
            b.PrependUint32Slot(slot, value, 0)
        else:
            raise ValueError(f"unknown field kind {kind!r}")
    return b.EndObject()


def offset_vector(b: flatbuffers.Builder, offsets: list[int]) -> int:
    b.StartVector(4, len(offsets), 4)
    for off in reversed(offsets):
        b.PrependUOffsetTRelative(off)
    return b.EndVector()


def float_vector(b: flatbuffers.Builder, values: list[float]) -> int:
    return b.CreateNumpyVector(np.asarray(values, dtype=np.float32))


def finish(b: flatbuffers.Builder, root: int, identifier: bytes) -> bytes:
    b.Finish(root, file_identifier=identifier)
    return bytes(b.Output())


def builder(size: int = 1024, force_defaults: bool = True) -> flatbuffers.Builder:
    """A builder that writes every given field, even one equal to the schema default."""
    b = flatbuffers.Builder(size)
    b.ForceDefaults(force_defaults)
    return b


class TableView:
    """Read a table of any flatbuffer schema by field slot (no generated code needed)."""

    def __init__(self, buf: bytes | bytearray, pos: int):
        self.t = Table(bytearray(buf) if not isinstance(buf, bytearray) else buf, pos)

    @classmethod
    def root(cls, buf: bytes) -> "TableView":
        return cls(buf, int.from_bytes(buf[:4], "little"))

    def _o(self, slot: int) -> int:
        return self.t.Offset(4 + 2 * slot)

    def string(self, slot: int) -> str | None:
        o = self._o(slot)
        return self.t.String(o + self.t.Pos).decode() if o else None

    def table(self, slot: int) -> "TableView | None":
        o = self._o(slot)
        return TableView(self.t.Bytes, self.t.Indirect(o + self.t.Pos)) if o else None

    def tables(self, slot: int) -> list["TableView"]:
        o = self._o(slot)
        if not o:
            return []
        start = self.t.Vector(o)
        return [TableView(self.t.Bytes, self.t.Indirect(start + 4 * i)) for i in range(self.t.VectorLen(o))]

    def uint8(self, slot: int, default: int = 0) -> int:
        o = self._o(slot)
        return self.t.Get(N.Uint8Flags, o + self.t.Pos) if o else default

    def uint32(self, slot: int, default: int = 0) -> int:
        o = self._o(slot)
        return self.t.Get(N.Uint32Flags, o + self.t.Pos) if o else default

    def floats(self, slot: int) -> list[float]:
        o = self._o(slot)
        return [float(x) for x in self.t.GetVectorAsNumpy(N.Float32Flags, o)] if o else []


# ---------------------------------------------------------------- in-place patches

_QP_MIN_SLOT, _QP_MAX_SLOT = 4, 6   # vtable slots of QuantizationParameters.min / .max (schema fields 0, 1)


def patch_ranges(data: bytes, ranges: Mapping[int, tuple[float, float]]) -> bytes:
    """A copy of a calibrated model with the recorded (min, max) of subgraph-0 tensors replaced in place.

    Only the float values change, so the file keeps its layout (what the converter's quantizer reads
    back is the calibrated model with just these ranges moved). Every tensor named must carry one min/max.
    """
    import tflite

    patched = bytearray(data)
    graph = tflite.Model.GetRootAsModel(data, 0).Subgraphs(0)
    for index, values in ranges.items():
        quant = graph.Tensors(index).Quantization()
        if quant is None or quant.MinLength() != 1 or quant.MaxLength() != 1:
            raise ValueError(f"tensor {index} has no recorded min/max to replace")
        for slot, value in zip((_QP_MIN_SLOT, _QP_MAX_SLOT), values):
            offset = quant._tab.Offset(slot)  # noqa: SLF001 - flatbuffers' own accessor for the field position
            struct.pack_into("<f", patched, quant._tab.Vector(offset), value)  # noqa: SLF001
    return bytes(patched)
