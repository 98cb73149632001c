"""A .tflite model → one `Layer` per operator, from the package's one graph model (`edgemnv2.tflite`).

No TensorFlow: `edgemnv2 profile` must start fast on a laptop or a Raspberry Pi. The weight values are
never copied (buffers are sizes and views), so a 14 MB model parses in milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgemnv2.tflite import Graph, layer_name, load_graph

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


_NOT_TFLITE_HINT = "give a .tflite file, a Keras model (.keras/.h5) or --alpha/--resolution"


def layers_of(graph: Graph) -> ModelGraph:
    """The profile's view of a parsed model: one Layer per operator of the main subgraph."""
    tensors = graph.tensors

    def stored_bytes(i: int) -> int:
        """Constant data and quantization parameters of tensor i, as stored in the file."""
        t = tensors[i]
        return (t.buffer.size if t.buffer else 0) + (t.quantization.stored_bytes if t.quantization else 0)

    layers: list[Layer] = []
    tensor_bytes: dict[int, int] = {}
    for op in graph.ops:
        name = op.builtin  # "CUSTOM" for every custom op
        input_ids = list(op.inputs)
        output_ids = list(op.outputs)
        activations = [i for i in input_ids if i >= 0 and not tensors[i].constant]
        constants = [i for i in input_ids if i >= 0 and tensors[i].constant]
        for i in activations + output_ids:
            tensor_bytes[i] = tensors[i].nbytes

        kind = OP_KINDS.get(name)
        known = kind is not None
        if not known:
            kind = f"UNKNOWN({op.name.replace(':', ' ')})"
        kernel = stride = None
        weight_dtype = None
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") and len(input_ids) > 1 and input_ids[1] >= 0:
            weights = tensors[input_ids[1]]
            weight_dtype = weights.dtype.name
            if name != "FULLY_CONNECTED" and len(weights.shape) == 4:
                kernel = (weights.shape[1], weights.shape[2])
                stride = _pair(op.options, "stride_h", "stride_w")
                if name == "CONV_2D" and kernel == (1, 1):
                    kind = "pointwise"
        elif name in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
            kernel = _pair(op.options, "filter_height", "filter_width")
            stride = _pair(op.options, "stride_h", "stride_w")

        weight_inputs = constants if kind in MAC_KINDS or kind in ("add", "mul") else []
        params = sum(tensors[i].elements for i in weight_inputs)
        weight_bytes = sum(stored_bytes(i) for i in weight_inputs)
        if name == "CUSTOM":  # e.g. the Edge TPU's compiled program and parameters
            weight_bytes += sum(stored_bytes(i) for i in constants) + op.custom_options_size
        first_in = activations[0] if activations else (input_ids[0] if input_ids and input_ids[0] >= 0 else None)
        out = tensors[output_ids[0]] if output_ids else None
        layers.append(Layer(
            index=op.index,
            name=layer_name(out.name) if out is not None else f"op{op.index}",
            op=kind,
            tflite_op=op.name,
            known=known,
            input_shape=tensors[first_in].shape if first_in is not None else (),
            output_shape=out.shape if out is not None else (),
            kernel=kernel,
            stride=stride,
            dtype=out.dtype.name if out is not None else "",
            weight_dtype=weight_dtype,
            params=params,
            weight_bytes=weight_bytes,
            activation_in_bytes=sum(tensor_bytes[i] for i in activations),
            activation_out_bytes=sum(tensor_bytes[i] for i in output_ids),
            inputs=tuple(activations),
            outputs=tuple(output_ids),
        ))
    return ModelGraph(
        source=graph.source, source_kind="tflite", layers=tuple(layers), model_bytes=len(graph.data),
        model_bytes_estimated=False, tflite=graph.data, tensor_bytes=tensor_bytes,
        graph_inputs=graph.inputs, graph_outputs=graph.outputs,
    )


def _pair(options, first: str, second: str) -> tuple[int, int] | None:
    return (options[first], options[second]) if first in options and second in options else None


def load_tflite(path: Path) -> ModelGraph:
    """Read and parse a .tflite file."""
    return layers_of(load_graph(path, hint=_NOT_TFLITE_HINT))
