"""The TFLite graph as the Edge TPU rules see it: frozen `Graph` / `Op` / `Tensor` built from the package's
graph model (`edgemnv2.tflite`, which parses the file; one dtype table, options by schema field name such as
"dilation_h_factor"). These are small enough to write by hand in the rule tests.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgemnv2.tflite import DType, dtype, load_graph

__all__ = ["EDGETPU_CUSTOM_OP", "DType", "Graph", "Op", "Tensor", "dtype", "read_graph"]

EDGETPU_CUSTOM_OP = "edgetpu-custom-op"


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
        return int(np.prod([max(d, 1) for d in self.shape], dtype=np.int64)) * self.dtype.itemsize

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


def read_graph(path: Path) -> Graph:
    """The main subgraph of a .tflite file; a file that is not TFLite is one clear error."""
    graph = load_graph(Path(path))
    tensors = tuple(Tensor(
        index=t.index, name=t.name, dtype=t.dtype, shape=t.shape, shape_signature=t.shape_signature,
        scale=t.quantization.scale if t.quantization else (),
        zero_points=t.quantization.zero_point if t.quantization else (),
        raw=t.data.tobytes() if t.data is not None else None, is_variable=t.is_variable) for t in graph.tensors)
    ops = tuple(Op(index=op.index, kind=op.kind, inputs=op.inputs, outputs=op.outputs, options=dict(op.options),
                   custom_options_size=op.custom_options_size) for op in graph.ops)
    return Graph(tensors=tensors, ops=ops, inputs=graph.inputs, outputs=graph.outputs)
