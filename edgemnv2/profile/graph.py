"""A .tflite flatbuffer → one `Layer` per operator, read with the pure-Python `tflite` parser.

No TensorFlow: `edgemnv2 profile` must start fast on a laptop or a Raspberry Pi. Only the fields the
profile needs are read (operator codes, options, tensor shapes/types, buffer sizes, quantization
parameter counts), never the weight values themselves, so a 14 MB model parses in milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgemnv2.errors import ModelError
from edgemnv2.tflite_file import TFLiteModel, load_model, op_name, parse_errors

# TFLite builtin op name -> profile op kind. Anything not listed becomes an UNKNOWN(...) row.
OP_KINDS: dict[str, str] = {
    "CONV_2D": "conv",  # refined to "pointwise" for 1x1 kernels
    "DEPTHWISE_CONV_2D": "depthwise",
    "FULLY_CONNECTED": "fully_connected",
    "ADD": "add",
    "SUB": "add",
    "MUL": "mul",
    "AVERAGE_POOL_2D": "pool",
    "MAX_POOL_2D": "pool",
    "MEAN": "mean",
    "SOFTMAX": "softmax",
    "QUANTIZE": "quantize",
    "DEQUANTIZE": "dequantize",
    "RESHAPE": "reshape",
    "SQUEEZE": "reshape",
    "PAD": "pad",
    "PADV2": "pad",
    "CONCATENATION": "concat",
    "RELU": "activation",
    "RELU6": "activation",
    "LOGISTIC": "activation",
    "HARD_SWISH": "activation",
    "TANH": "activation",
    "RESIZE_BILINEAR": "resize",
    "RESIZE_NEAREST_NEIGHBOR": "resize",
}

# Kinds whose cost is multiplications (the seed's formulas); the others move or rescale data.
MAC_KINDS = ("conv", "depthwise", "pointwise", "fully_connected")

# Bytes per element of TFLite tensor types (TensorType enum order in the schema).
_TYPE_INFO: dict[int, tuple[str, int]] = {
    0: ("float32", 4), 1: ("float16", 2), 2: ("int32", 4), 3: ("uint8", 1), 4: ("int64", 8),
    6: ("bool", 1), 7: ("int16", 2), 9: ("int8", 1), 10: ("float64", 8), 15: ("uint32", 4), 16: ("uint16", 2),
    17: ("int4", 1),
}
_SCALE_BYTES, _ZERO_POINT_BYTES = 4, 8  # schema: scale:[float], zero_point:[long]
EDGETPU_CUSTOM_CODE = "edgetpu-custom-op"


@dataclass(frozen=True)
class Layer:
    """One operator as the profile sees it (shapes NHWC; sizes in bytes as stored in the model)."""

    index: int
    name: str
    op: str                      # kind from OP_KINDS, "pointwise" for 1x1 conv, or "UNKNOWN(...)"
    tflite_op: str               # builtin name, or "CUSTOM:<code>"
    known: bool
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    kernel: tuple[int, int] | None = None
    stride: tuple[int, int] | None = None
    dtype: str = "int8"          # activation (output) type
    weight_dtype: str | None = None
    params: int = 0              # weight + bias elements
    weight_bytes: int = 0        # constant data as stored: weights, biases, quantization scales/zero points
    activation_in_bytes: int = 0
    activation_out_bytes: int = 0
    inputs: tuple[int, ...] = ()   # activation tensor ids (for pairing depthwise→pointwise and lifetimes)
    outputs: tuple[int, ...] = ()


@dataclass(frozen=True)
class ModelGraph:
    """Everything the profile knows about one model, whatever it was read from."""

    source: str
    source_kind: str             # "tflite" | "spec" | "keras"
    layers: tuple[Layer, ...]
    model_bytes: int
    model_bytes_estimated: bool  # True when no .tflite exists yet (spec / Keras input)
    tflite: bytes | None = None  # the flatbuffer, for the arena planner
    tensor_bytes: dict[int, int] | None = None   # activation tensor id -> bytes
    graph_inputs: tuple[int, ...] = ()
    graph_outputs: tuple[int, ...] = ()

    @property
    def edgetpu_compiled(self) -> bool:
        return any(layer.tflite_op == f"CUSTOM:{EDGETPU_CUSTOM_CODE}" for layer in self.layers)


def short_name(tensor_name: str) -> str:
    """The first fused name, without the model scope: 'model/block_1_expand/Relu6;…' -> 'block_1_expand/Relu6'."""
    first = tensor_name.split(";", 1)[0]
    parts = first.split("/")
    return "/".join(parts[1:]) if len(parts) > 2 else first


_NOT_TFLITE_HINT = "give a .tflite file, a Keras model (.keras/.h5) or --alpha/--resolution"


def _parse(tfl: TFLiteModel) -> ModelGraph:
    with parse_errors(tfl.source):
        return _layers(tfl)


def _layers(tfl: TFLiteModel) -> ModelGraph:
    data, source, model = tfl.data, tfl.source, tfl.model
    if model.SubgraphsLength() < 1:
        raise ModelError(f"{source} has no subgraph")
    graph = model.Subgraphs(0)

    tensor_cache: dict[int, tuple] = {}

    def tensor(i: int) -> tuple[tuple[int, ...], str, int, int, int, str]:
        """(shape, dtype, element bytes, constant data bytes, quantization bytes, name) of tensor i."""
        if i not in tensor_cache:
            t = graph.Tensors(i)
            shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
            dtype, size = _TYPE_INFO.get(t.Type(), (f"type{t.Type()}", 1))
            buf = model.Buffers(t.Buffer()) if t.Buffer() > 0 else None
            const_bytes = 0
            if buf is not None:
                const_bytes = buf.DataLength() or (buf.Size() if buf.Offset() > 1 else 0)
            q = t.Quantization()
            q_bytes = (q.ScaleLength() * _SCALE_BYTES + q.ZeroPointLength() * _ZERO_POINT_BYTES) if q else 0
            tensor_cache[i] = (shape, dtype, size, const_bytes, q_bytes, t.Name().decode("utf-8", "replace"))
        return tensor_cache[i]

    def nbytes(i: int) -> int:
        shape, _, size, _, _, _ = tensor(i)
        count = 1
        for d in shape:
            count *= max(d, 1)
        return count * size

    layers: list[Layer] = []
    tensor_bytes: dict[int, int] = {}
    for index in range(graph.OperatorsLength()):
        op = graph.Operators(index)
        tflite_op = op_name(model, op)
        name = tflite_op.split(":", 1)[0]  # "CUSTOM" for every custom op
        input_ids = [int(i) for i in op.InputsAsNumpy()] if op.InputsLength() else []
        output_ids = [int(i) for i in op.OutputsAsNumpy()] if op.OutputsLength() else []
        activations, constants = [], []
        for i in input_ids:
            if i < 0:
                continue
            (constants if tensor(i)[3] > 0 else activations).append(i)
        for i in activations + output_ids:
            tensor_bytes[i] = nbytes(i)

        kind = OP_KINDS.get(name)
        known = kind is not None
        if not known:
            kind = f"UNKNOWN({tflite_op.replace(':', ' ')})"
        kernel = stride = None
        weight_dtype = None
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") and len(input_ids) > 1 and input_ids[1] >= 0:
            wshape = tensor(input_ids[1])[0]
            weight_dtype = tensor(input_ids[1])[1]
            if name != "FULLY_CONNECTED" and len(wshape) == 4:
                kernel = (wshape[1], wshape[2])
                stride = _strides(op, name)
                if name == "CONV_2D" and kernel == (1, 1):
                    kind = "pointwise"
        elif name in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
            kernel, stride = _pool_geometry(op)

        weight_inputs = constants if kind in MAC_KINDS or kind in ("add", "mul") else []
        params = sum(_count(tensor(i)[0]) for i in weight_inputs)
        weight_bytes = sum(tensor(i)[3] + tensor(i)[4] for i in weight_inputs)
        if tflite_op.startswith("CUSTOM:"):  # e.g. the Edge TPU's compiled program and parameters
            weight_bytes += sum(tensor(i)[3] + tensor(i)[4] for i in constants) + op.CustomOptionsLength()
        first_in = activations[0] if activations else (input_ids[0] if input_ids and input_ids[0] >= 0 else None)
        out = output_ids[0] if output_ids else None
        layers.append(Layer(
            index=index,
            name=short_name(tensor(out)[5]) if out is not None else f"op{index}",
            op=kind,
            tflite_op=tflite_op,
            known=known,
            input_shape=tensor(first_in)[0] if first_in is not None else (),
            output_shape=tensor(out)[0] if out is not None else (),
            kernel=kernel,
            stride=stride,
            dtype=tensor(out)[1] if out is not None else "",
            weight_dtype=weight_dtype,
            params=params,
            weight_bytes=weight_bytes,
            activation_in_bytes=sum(tensor_bytes[i] for i in activations),
            activation_out_bytes=sum(tensor_bytes[i] for i in output_ids),
            inputs=tuple(activations),
            outputs=tuple(output_ids),
        ))
    return ModelGraph(
        source=source, source_kind="tflite", layers=tuple(layers), model_bytes=len(data),
        model_bytes_estimated=False, tflite=data, tensor_bytes=tensor_bytes,
        graph_inputs=tuple(int(graph.Inputs(i)) for i in range(graph.InputsLength())),
        graph_outputs=tuple(int(graph.Outputs(i)) for i in range(graph.OutputsLength())),
    )


def _count(shape: tuple[int, ...]) -> int:
    count = 1
    for d in shape:
        count *= max(d, 1)
    return count


def _strides(op, name: str) -> tuple[int, int] | None:
    import tflite

    table = op.BuiltinOptions()
    if table is None:
        return None
    options = tflite.Conv2DOptions() if name == "CONV_2D" else tflite.DepthwiseConv2DOptions()
    options.Init(table.Bytes, table.Pos)
    return (options.StrideH(), options.StrideW())


def _pool_geometry(op) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
    import tflite

    table = op.BuiltinOptions()
    if table is None:
        return None, None
    options = tflite.Pool2DOptions()
    options.Init(table.Bytes, table.Pos)
    return (options.FilterHeight(), options.FilterWidth()), (options.StrideH(), options.StrideW())


def load_tflite(path: Path) -> ModelGraph:
    """Read and parse a .tflite file."""
    return _parse(load_model(path, hint=_NOT_TFLITE_HINT))
