"""The operator graph of an int8 .tflite with what an executor needs: shapes, quantization, op geometry.

The schedule planner (`schedule.py`) needs each op's spatial geometry (kernel, stride, dilation, resolved
padding, PAD amounts) to propagate tile regions exactly; the static-engine generator additionally needs the
constant tensors' values and every tensor's quantization. Built from the package's graph model
(`edgemnv2.tflite`, no TensorFlow); constants are read only when asked for (`tensor_data`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgemnv2.errors import ModelError
from edgemnv2.tflite import Graph, load_graph

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
    graph: Graph                           # the parsed model, for `tensor_data`

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
        t = self.tensors[tensor]
        if not t.constant:
            raise ModelError(f"tensor {t.name} of {self.source} is not a constant")
        return self.graph.tensors[tensor].values()


def same_padding(in_size: int, kernel: int, stride: int, dilation: int) -> int:
    """Leading padding TFLite uses for SAME (ComputePaddingWithOffset in kernels/padding.h)."""
    out_size = (in_size + stride - 1) // stride
    effective = (kernel - 1) * dilation + 1
    return max(0, (out_size - 1) * stride + effective - in_size) // 2


def read_opgraph(model: bytes | Path | str) -> OpGraph:
    """Parse subgraph 0 of a .tflite (path or bytes)."""
    return _read(load_graph(model, hint="give a .tflite file"))


def _read(graph: Graph) -> OpGraph:
    tensors = tuple(Tensor(t.index, t.name, t.shape, t.dtype.name, t.dtype.itemsize, t.constant,
                           t.buffer.index if t.buffer else 0, t.quantization.scale if t.quantization else (),
                           t.quantization.zero_point if t.quantization else ()) for t in graph.tensors)
    ops = []
    for graph_op in graph.ops:
        name, ins, outs, o = graph_op.name, graph_op.inputs, graph_op.outputs, graph_op.options
        fields: dict[str, Any] = {}
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D") and o:
            w = tensors[ins[1]].shape
            fields = dict(kernel=(w[1], w[2]), stride=(o["stride_h"], o["stride_w"]),
                          dilation=(o["dilation_h_factor"], o["dilation_w_factor"]),
                          padding="SAME" if o["padding"] == 0 else "VALID",
                          activation=ACTIVATIONS.get(o["fused_activation_function"], "OTHER"))
            if name == "DEPTHWISE_CONV_2D":
                fields["depth_multiplier"] = max(1, w[3] // max(1, tensors[ins[0]].shape[3]))
        elif name in ("AVERAGE_POOL_2D", "MAX_POOL_2D") and o:
            fields = dict(kernel=(o["filter_height"], o["filter_width"]), stride=(o["stride_h"], o["stride_w"]),
                          padding="SAME" if o["padding"] == 0 else "VALID",
                          activation=ACTIVATIONS.get(o["fused_activation_function"], "OTHER"))
        elif name in ("ADD", "FULLY_CONNECTED") and o:
            fields = dict(activation=ACTIVATIONS.get(o["fused_activation_function"], "OTHER"))
        elif name == "MEAN" and o:
            fields = dict(keep_dims=bool(o["keep_dims"]))
        elif name == "SOFTMAX" and o:
            fields = dict(beta=float(o["beta"]))
        ops.append(Op(graph_op.index, name, ins, outs, **fields))

    g = OpGraph(graph.source, tensors, tuple(ops), graph.inputs, graph.outputs, graph)
    resolved = []
    for op in g.ops:
        if op.name in ("PAD", "PADV2") and len(op.inputs) > 1 and tensors[op.inputs[1]].constant:
            pads = g.tensor_data(op.inputs[1]).reshape(-1, 2)
            op = Op(**{**op.__dict__, "pads": tuple((int(a), int(b)) for a, b in pads)})
        resolved.append(op)
    return OpGraph(g.source, g.tensors, tuple(resolved), g.inputs, g.outputs, graph)
