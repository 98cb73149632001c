"""The TFLite graph model every stage reads: frozen `Graph` → `Subgraph` → `Op` / `Tensor`, plus buffers.

Nothing here knows the flatbuffer schema (that is `edgemnv2.tflite.reader`); these are plain values, so
profile, memory planning, the Edge TPU check, export, convert's summary, calibration and the per-layer
error all see the same shapes, types, quantization and names. Constant data stays in the file's bytes
and is exposed as zero-copy numpy views only when asked for (`Tensor.data`, `Tensor.values()`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class DType:
    """One TensorType of schema.fbs."""

    code: int
    name: str        # "int8", "float32", ...
    itemsize: int    # bytes per element as TFLite (and TFLM) size tensors in memory
    numpy: str | None  # numpy dtype of the stored values, None when numpy has no such type


# TensorType enum of tensorflow/compiler/mlir/lite/schema/schema.fbs. INT4 is one byte per element once
# unpacked (TFLM's arena and LiteRT's tensors); strings, resources and variants have no fixed element size
# and are counted at one byte per element.
DTYPES: dict[int, DType] = {d.code: d for d in (
    DType(0, "float32", 4, "float32"), DType(1, "float16", 2, "float16"), DType(2, "int32", 4, "int32"),
    DType(3, "uint8", 1, "uint8"), DType(4, "int64", 8, "int64"), DType(5, "string", 1, None),
    DType(6, "bool", 1, "bool"), DType(7, "int16", 2, "int16"), DType(8, "complex64", 8, "complex64"),
    DType(9, "int8", 1, "int8"), DType(10, "float64", 8, "float64"), DType(11, "complex128", 16, "complex128"),
    DType(12, "uint64", 8, "uint64"), DType(13, "resource", 1, None), DType(14, "variant", 1, None),
    DType(15, "uint32", 4, "uint32"), DType(16, "uint16", 2, "uint16"), DType(17, "int4", 1, None),
    DType(18, "bfloat16", 2, None),
)}


def dtype(code: int | str) -> DType:
    """The DType of a TensorType code or name ("int8"); a code newer than this table is "type<N>", one byte
    per element."""
    if isinstance(code, str):
        found = next((d for d in DTYPES.values() if d.name == code), None)
        if found is None:
            raise ValueError(f"unknown TFLite tensor type {code!r}")
        return found
    return DTYPES.get(code) or DType(code, f"type{code}", 1, None)


def layer_name(tensor_name: str) -> str:
    """The layer a (fused) TFLite tensor name belongs to, as every report shows it.

    The first fused name, without the model scope and without the TensorFlow op at its end:
    'model/block_1_expand_relu/Relu6;model/…' -> 'block_1_expand_relu' (the Keras layer);
    'MobilenetV2/expanded_conv_1/depthwise/relu6/Relu6' -> 'expanded_conv_1/depthwise/relu6'.
    Names with one '/' or none are kept whole.
    """
    first = tensor_name.split(";", 1)[0]
    parts = first.split("/")
    return "/".join(parts[1:-1]) if len(parts) > 2 else first


@dataclass(frozen=True)
class Quantization:
    """Affine quantization of a tensor: real = scale * (q - zero_point), per channel along `axis` when several."""

    scale: tuple[float, ...] = ()
    zero_point: tuple[int, ...] = ()
    axis: int = 0                     # quantized_dimension
    min: tuple[float, ...] = ()       # ranges recorded by calibration (float models)
    max: tuple[float, ...] = ()

    @property
    def quantized(self) -> bool:
        return bool(self.scale)

    @property
    def per_channel(self) -> bool:
        return len(self.scale) > 1

    @property
    def stored_bytes(self) -> int:
        """Bytes the parameters take in the file (schema: scale:[float], zero_point:[long])."""
        return 4 * len(self.scale) + 8 * len(self.zero_point)


@dataclass(frozen=True)
class Buffer:
    """A model buffer: `size` bytes at `start` in the file (inside the flatbuffer, or appended after it)."""

    index: int
    start: int
    size: int
    file: bytes = field(repr=False, compare=False, default=b"")

    @property
    def data(self) -> np.ndarray:
        """The bytes as a read-only uint8 view of the file (no copy)."""
        return np.frombuffer(self.file, dtype=np.uint8, count=self.size, offset=self.start)


@dataclass(frozen=True)
class Tensor:
    index: int
    name: str
    dtype: DType
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...]   # -1 marks a dynamic dimension; () when the file has none
    quantization: Quantization | None
    buffer: Buffer | None              # None for activations (buffer 0 or empty)
    is_variable: bool = False

    @property
    def constant(self) -> bool:
        return self.buffer is not None

    @property
    def elements(self) -> int:
        return math.prod(max(d, 1) for d in self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes of the tensor in memory (dynamic dimensions counted as 1)."""
        return self.elements * self.dtype.itemsize

    @property
    def quantized(self) -> bool:
        return self.quantization is not None and self.quantization.quantized

    @property
    def scale(self) -> float:
        """The first (per-tensor) scale, 0.0 when not quantized."""
        return self.quantization.scale[0] if self.quantized else 0.0

    @property
    def zero_point(self) -> int:
        """The first zero point: the quantized value of a real 0 (0 when there is none)."""
        q = self.quantization
        return q.zero_point[0] if q is not None and q.zero_point else 0

    @property
    def data(self) -> np.ndarray | None:
        """Constant bytes (uint8 view of the file), None for activations."""
        return self.buffer.data if self.buffer is not None else None

    def values(self) -> np.ndarray:
        """The constant's values with their numpy type and shape (a view of the file)."""
        if self.buffer is None or self.dtype.numpy is None:
            raise ValueError(f"tensor {self.name!r} ({self.dtype.name}) has no numeric constant data")
        return self.buffer.data.view(self.dtype.numpy).reshape(self.shape)


@dataclass(frozen=True)
class OpCode:
    builtin: str                # schema name ("CONV_2D"), "CUSTOM", or "BUILTIN_<n>" for a newer code
    builtin_code: int
    custom_code: str | None
    version: int

    @property
    def name(self) -> str:
        """The builtin name, or "CUSTOM:<code>" for a custom op ("CUSTOM:edgetpu-custom-op")."""
        return f"CUSTOM:{self.custom_code or '?'}" if self.builtin == "CUSTOM" else self.builtin

    @property
    def kind(self) -> str:
        """The builtin name, or a custom op's own code ("edgetpu-custom-op")."""
        return (self.custom_code or "?") if self.builtin == "CUSTOM" else self.builtin


@dataclass(frozen=True)
class Op:
    index: int
    opcode: OpCode
    inputs: tuple[int, ...]           # tensor indices, -1 for an omitted optional input
    outputs: tuple[int, ...]
    options: Mapping[str, Any]        # builtin options by schema field name ("stride_h"); {} when none
    options_type: str | None          # "Conv2DOptions", ...
    custom_options_size: int = 0      # bytes of custom options (an Edge TPU op's compiled program)

    @property
    def name(self) -> str:
        return self.opcode.name

    @property
    def kind(self) -> str:
        return self.opcode.kind

    @property
    def builtin(self) -> str:
        return self.opcode.builtin


@dataclass(frozen=True)
class Subgraph:
    tensors: tuple[Tensor, ...]
    ops: tuple[Op, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    name: str = ""

    def inputs_of(self, op: Op) -> list[Tensor]:
        return [self.tensors[i] for i in op.inputs if i >= 0]

    def outputs_of(self, op: Op) -> list[Tensor]:
        return [self.tensors[i] for i in op.outputs if i >= 0]


@dataclass(frozen=True, kw_only=True)
class Graph(Subgraph):
    """A whole .tflite file. As a Subgraph it is its main subgraph (0), the one most callers look at alone."""

    source: str                       # the path, or what the caller calls the bytes (for messages)
    data: bytes = field(repr=False)
    version: int
    description: str
    subgraphs: tuple[Subgraph, ...]
    opcodes: tuple[OpCode, ...]
    buffers: tuple[Buffer | None, ...]   # None for empty buffers (buffer 0 is always empty)
    metadata: Mapping[str, int]          # metadata name -> buffer index

    @property
    def main(self) -> Subgraph:
        return self.subgraphs[0]

    def metadata_bytes(self, name: str) -> bytes | None:
        """The contents of the metadata entry `name` ("TFLITE_METADATA", ...), None when absent or empty."""
        index = self.metadata.get(name)
        buffer = self.buffers[index] if index is not None and 0 <= index < len(self.buffers) else None
        return buffer.data.tobytes() if buffer is not None else None
