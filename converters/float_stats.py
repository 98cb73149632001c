"""Second moments of every weighted op's input, from one pass of the converter's calibrated float model.

AdaRound's layer-wise loss is quadratic in the weights and needs only G = E[x xᵀ] of each convolution's
or fully connected op's input patches (every output position of every image). Working on the converter's
own float model (batch norm already folded by the converter) means the statistics are those of exactly the
weights and tensors the quantizer sees, for any model the converter handles, and the images run once for
every layer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable

import numpy as np

from edgemnv2.tflite import Graph, load_graph

WEIGHTED_KINDS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


@dataclasses.dataclass(frozen=True)
class WeightedOp:
    """A convolution or fully connected op of the float model, with what an im2col of its input needs."""

    index: int
    kind: str
    input: int
    weights: int
    bias: int  # -1 when the op has none
    output: int
    kernel: tuple[int, int]  # (kh, kw); (1, 1) for fully connected
    stride: tuple[int, int]
    dilation: tuple[int, int]
    same_padding: bool

    @property
    def depthwise(self) -> bool:
        return self.kind == "DEPTHWISE_CONV_2D"

    @property
    def channel_axis(self) -> int:
        """The weights' output-channel axis (TFLite layouts: conv OHWI, depthwise 1HWC, FC OI)."""
        return 3 if self.depthwise else 0


def weighted_ops(graph: Graph) -> list[WeightedOp]:
    """Every CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED with constant weights, in graph order."""
    found = []
    for op in graph.ops:
        if op.kind not in WEIGHTED_KINDS or len(op.inputs) < 2 or not graph.tensors[op.inputs[1]].constant:
            continue
        weights = graph.tensors[op.inputs[1]]
        if op.kind == "FULLY_CONNECTED":
            kernel, stride, dilation, same = (1, 1), (1, 1), (1, 1), False
        else:
            kernel = (int(weights.shape[1]), int(weights.shape[2]))
            stride = (int(op.options.get("stride_h", 1)), int(op.options.get("stride_w", 1)))
            dilation = (int(op.options.get("dilation_h_factor", 1)), int(op.options.get("dilation_w_factor", 1)))
            same = int(op.options.get("padding", 0)) == 0  # schema Padding: SAME = 0, VALID = 1
        bias = op.inputs[2] if len(op.inputs) > 2 else -1
        found.append(WeightedOp(op.index, op.kind, op.inputs[0], op.inputs[1], bias, op.outputs[0], kernel, stride,
                                dilation, same))
    return found


def patches(x: np.ndarray, op: WeightedOp) -> np.ndarray:
    """The op's input as (positions, taps, channels): each output position's receptive field, zero padded as
    TFLite pads (SAME: the extra row/column after), taps in the weights' (kh, kw) order."""
    if op.kind == "FULLY_CONNECTED":
        return x.reshape(-1, 1, x.shape[-1])
    x = x.reshape(x.shape[-3:])
    (kh, kw), (sh, sw), (dh, dw) = op.kernel, op.stride, op.dilation
    if (kh, kw, sh, sw) == (1, 1, 1, 1):
        return x.reshape(-1, 1, x.shape[-1])
    h, w, c = x.shape
    eff_h, eff_w = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    if op.same_padding:
        out_h, out_w = -(-h // sh), -(-w // sw)
        pad_h, pad_w = max((out_h - 1) * sh + eff_h - h, 0), max((out_w - 1) * sw + eff_w - w, 0)
        x = np.pad(x, ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
    else:
        out_h, out_w = (h - eff_h) // sh + 1, (w - eff_w) // sw + 1
    taps = [x[i * dh:i * dh + (out_h - 1) * sh + 1:sh, j * dw:j * dw + (out_w - 1) * sw + 1:sw]
            for i in range(kh) for j in range(kw)]
    return np.stack(taps, axis=2).reshape(out_h * out_w, kh * kw, c)


@dataclasses.dataclass
class InputStats:
    """Sum over every output position of every image of one weighted op's input patches' outer products."""

    gram: np.ndarray  # conv/FC: (taps*C, taps*C); depthwise: (C, taps, taps)
    positions: int = 0

    @property
    def second_moment(self) -> np.ndarray:
        return self.gram / max(self.positions, 1)


@dataclasses.dataclass
class FloatStats:
    inputs: dict[int, InputStats]  # op index -> statistics of its input
    ops: list[WeightedOp]
    images: int


def collect(model: bytes, images: Iterable[np.ndarray], only: Collection[int] | None = None) -> FloatStats:
    """Run `model` (float) once per image, summing every weighted op's input second moment (of the ops whose
    index is in `only`, when given)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    graph = load_graph(model, what="the calibrated model")
    ops = [op for op in weighted_ops(graph) if only is None or op.index in only]
    interpreter = Interpreter(model_content=model, experimental_preserve_all_tensors=True,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    input_index = interpreter.get_input_details()[0]["index"]
    stats: dict[int, InputStats] = {}
    count = 0
    for image in images:
        interpreter.set_tensor(input_index, np.asarray(image, np.float32)[None])
        interpreter.invoke()
        count += 1
        for op in ops:
            p = patches(interpreter.get_tensor(op.input), op)
            if op.depthwise:  # one taps x taps matrix per channel
                a = np.ascontiguousarray(p.transpose(2, 1, 0))
                gram = a @ a.transpose(0, 2, 1)
            else:
                flat = p.reshape(p.shape[0], -1)
                gram = flat.T @ flat
            entry = stats.get(op.index)
            if entry is None:
                stats[op.index] = InputStats(gram=gram.astype(np.float64), positions=p.shape[0])
            else:
                entry.gram += gram
                entry.positions += p.shape[0]
    return FloatStats(inputs=stats, ops=ops, images=count)
