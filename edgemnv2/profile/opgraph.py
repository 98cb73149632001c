"""The operator graph of an int8 .tflite with what an executor needs: shapes, quantization, op geometry.

The schedule planner (`schedule.py`) needs each op's spatial geometry (kernel, stride, dilation, resolved
padding, PAD amounts) to propagate tile regions exactly; the static-engine generator additionally needs the
constant tensors' values and every tensor's quantization. Read with the pure-Python `tflite` parser
(no TensorFlow); constants are read only when asked for (`tensor_data`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgemnv2.errors import ModelError
from edgemnv2.tflite_file import load_model, op_name, parse_errors

# TensorType enum (schema.fbs) -> (numpy dtype name, bytes per element)
TYPES: dict[int, tuple[str, int]] = {
    0: ("float32", 4), 1: ("float16", 2), 2: ("int32", 4), 3: ("uint8", 1), 4: ("int64", 8), 6: ("bool", 1),
    7: ("int16", 2), 9: ("int8", 1), 10: ("float64", 8), 15: ("uint32", 4), 16: ("uint16", 2),
}
ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6"}


@dataclass(frozen=True)
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    itemsize: int
    constant: bool
    buffer: int
    scale: tuple[float, ...] = ()
    zero_point: tuple[int, ...] = ()

    @property
    def elements(self) -> int:
        count = 1
        for d in self.shape:
            count *= max(d, 1)
        return count

    @property
    def bytes(self) -> int:
        return self.elements * self.itemsize


@dataclass(frozen=True)
class Op:
    """One operator; geometry fields are set for CONV_2D / DEPTHWISE_CONV_2D / pooling, `pads` for PAD."""

    index: int
    name: str                              # builtin name, e.g. "CONV_2D"
    inputs: tuple[int, ...]                # all inputs, constants included (-1 = omitted optional input)
    outputs: tuple[int, ...]
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)
    padding: str = "VALID"                 # "SAME" | "VALID" as written in the model
    depth_multiplier: int = 1
    activation: str = "NONE"
    pads: tuple[tuple[int, int], ...] = ()   # PAD/PADV2: (before, after) per dimension
    keep_dims: bool = False                # MEAN
    beta: float = 1.0                      # SOFTMAX


@dataclass(frozen=True)
class OpGraph:
    source: str
    tensors: tuple[Tensor, ...]
    ops: tuple[Op, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    model: Any                             # the parser's root table, for `tensor_data`

    def consumers(self, tensor: int) -> list[int]:
        return [op.index for op in self.ops if tensor in op.inputs]

    def producer(self, tensor: int) -> int | None:
        for op in self.ops:
            if tensor in op.outputs:
                return op.index
        return None

    def activation_inputs(self, op: Op) -> list[int]:
        return [t for t in op.inputs if t >= 0 and not self.tensors[t].constant]

    def tensor_data(self, tensor: int):
        """Values of a constant tensor as a numpy array of its shape."""
        import numpy as np

        t = self.tensors[tensor]
        if not t.constant:
            raise ModelError(f"tensor {t.name} of {self.source} is not a constant")
        raw = self.model.Buffers(t.buffer).DataAsNumpy()
        return np.frombuffer(raw.tobytes(), dtype=t.dtype).reshape(t.shape)


def same_padding(in_size: int, kernel: int, stride: int, dilation: int) -> int:
    """Leading padding TFLite uses for SAME (ComputePaddingWithOffset in kernels/padding.h)."""
    out_size = (in_size + stride - 1) // stride
    effective = (kernel - 1) * dilation + 1
    return max(0, (out_size - 1) * stride + effective - in_size) // 2


def read_opgraph(model: bytes | Path | str) -> OpGraph:
    """Parse subgraph 0 of a .tflite (path or bytes)."""
    tfl = load_model(model, hint="give a .tflite file")
    with parse_errors(tfl.source):
        return _read(tfl.source, tfl.model)


def _read(source: str, model: Any) -> OpGraph:
    import tflite

    if model.SubgraphsLength() < 1:
        raise ModelError(f"{source} has no subgraph")
    graph = model.Subgraphs(0)

    def has_data(buffer_index: int) -> bool:
        if buffer_index <= 0 or buffer_index >= model.BuffersLength():
            return False
        buf = model.Buffers(buffer_index)
        return buf.DataLength() > 0

    tensors = []
    for i in range(graph.TensorsLength()):
        t = graph.Tensors(i)
        shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        dtype, size = TYPES.get(t.Type(), (f"type{t.Type()}", 1))
        q = t.Quantization()
        scale = tuple(float(s) for s in q.ScaleAsNumpy()) if q is not None and q.ScaleLength() else ()
        zp = tuple(int(z) for z in q.ZeroPointAsNumpy()) if q is not None and q.ZeroPointLength() else ()
        tensors.append(Tensor(i, (t.Name() or b"").decode("utf-8", "replace"), shape, dtype, size,
                              has_data(t.Buffer()), t.Buffer(), scale, zp))

    ops = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        name = op_name(model, op)
        ins = tuple(int(x) for x in op.InputsAsNumpy()) if op.InputsLength() else ()
        outs = tuple(int(x) for x in op.OutputsAsNumpy()) if op.OutputsLength() else ()
        fields: dict[str, Any] = {}
        table = op.BuiltinOptions()
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D") and table is not None:
            o = tflite.Conv2DOptions() if name == "CONV_2D" else tflite.DepthwiseConv2DOptions()
            o.Init(table.Bytes, table.Pos)
            w = tensors[ins[1]].shape
            fields = dict(kernel=(w[1], w[2]), stride=(o.StrideH(), o.StrideW()),
                          dilation=(o.DilationHFactor(), o.DilationWFactor()),
                          padding="SAME" if o.Padding() == 0 else "VALID",
                          activation=ACTIVATIONS.get(o.FusedActivationFunction(), "OTHER"))
            if name == "DEPTHWISE_CONV_2D":
                fields["depth_multiplier"] = max(1, w[3] // max(1, tensors[ins[0]].shape[3]))
        elif name in ("AVERAGE_POOL_2D", "MAX_POOL_2D") and table is not None:
            o = tflite.Pool2DOptions()
            o.Init(table.Bytes, table.Pos)
            fields = dict(kernel=(o.FilterHeight(), o.FilterWidth()), stride=(o.StrideH(), o.StrideW()),
                          padding="SAME" if o.Padding() == 0 else "VALID",
                          activation=ACTIVATIONS.get(o.FusedActivationFunction(), "OTHER"))
        elif name in ("ADD", "FULLY_CONNECTED") and table is not None:
            o = tflite.AddOptions() if name == "ADD" else tflite.FullyConnectedOptions()
            o.Init(table.Bytes, table.Pos)
            fields = dict(activation=ACTIVATIONS.get(o.FusedActivationFunction(), "OTHER"))
        elif name == "MEAN" and table is not None:
            o = tflite.ReducerOptions()
            o.Init(table.Bytes, table.Pos)
            fields = dict(keep_dims=bool(o.KeepDims()))
        elif name == "SOFTMAX" and table is not None:
            o = tflite.SoftmaxOptions()
            o.Init(table.Bytes, table.Pos)
            fields = dict(beta=float(o.Beta()))
        ops.append(Op(i, name, ins, outs, **fields))

    g = OpGraph(source, tuple(tensors), tuple(ops),
                tuple(int(x) for x in graph.InputsAsNumpy()) if graph.InputsLength() else (),
                tuple(int(x) for x in graph.OutputsAsNumpy()) if graph.OutputsLength() else (), model)
    resolved = []
    for op in g.ops:
        if op.name in ("PAD", "PADV2") and len(op.inputs) > 1 and tensors[op.inputs[1]].constant:
            pads = g.tensor_data(op.inputs[1]).reshape(-1, 2)
            op = Op(**{**op.__dict__, "pads": tuple((int(a), int(b)) for a, b in pads)})
        resolved.append(op)
    return OpGraph(g.source, g.tensors, tuple(resolved), g.inputs, g.outputs, model)
