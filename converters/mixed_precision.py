"""Per-layer int8/16x8 mixed precision by flatbuffer surgery.

TensorFlow 2.21's quantizers give one activation type per graph (`calibration.quantize_calibrated`), and
its selective quantization leaves the listed layers in float. LiteRT, however, runs QUANTIZE ops that
requantize int8 → int16 and int16 → int8. So the same calibrated float model is quantized twice (int8
and 16x8); the int8 model is the base, and for a chosen set of activation tensors ("16-bit tensors"):

* every op that produces or consumes one of them is replaced by its 16x8 twin from the 16x8 model
  (int16 activations, int8 weights, int64 biases, the twin's operator version and options);
* an input of such an op that stays int8 is requantized int8 → int16 by an inserted QUANTIZE (the int16
  scale/zero point are the 16x8 model's for that tensor: symmetric, zero point 0);
* an output of such an op that is not a 16-bit tensor is requantized int16 → int8 into the int8 model's
  tensor, so int8 consumers see exactly the tensor (and parameters) they had.

A 16-bit tensor therefore carries 16-bit precision from its producer into all of its consumers; making
only an op's output int16 and requantizing it at once would round it to the same int8 grid as before.
Both quantized models come from one calibrated model, so ops and tensors are matched by tensor name
(the quantizers keep the float model's names). The graph's own inputs/outputs stay as they are.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import numpy as np

from edgemnv2.tflite import writer

_QUANTIZE_VERSION = 3  # LiteRT registers QUANTIZE 1..3; int16 in/out needs the newest


@dataclasses.dataclass(frozen=True)
class MixedModel:
    """The mixed model and what the surgery did."""

    content: bytes
    int16_tensors: tuple[str, ...]  # activation tensors that are int16 (names as in the float model)
    ops_16x8: tuple[str, ...]  # "OP:output tensor" of every op now running in 16x8 mode
    requantize_ops: int  # QUANTIZE ops inserted (int8 → int16 and int16 → int8)


def _code(model: Any, op: Any) -> int:
    return writer.builtin_code(model.operatorCodes[op.opcodeIndex])


def _is_constant(model: Any, tensor: Any) -> bool:
    buffer = model.buffers[tensor.buffer] if tensor.buffer < len(model.buffers) else None
    return buffer is not None and buffer.data is not None and len(buffer.data) > 0


class _Graphs:
    """The int8 and 16x8 models (object API) and the matching between their ops and tensors."""

    def __init__(self, int8_model: bytes, int16_model: bytes) -> None:
        self.schema = writer.schema()
        self.m8, self.m16 = writer.unpack(int8_model), writer.unpack(int16_model)
        self.g8, self.g16 = self.m8.subgraphs[0], self.m16.subgraphs[0]
        by_output: dict[tuple[int, str], int] = {}
        by_input: dict[tuple[int, str], int] = {}
        for j, op in enumerate(self.g16.operators):
            code = _code(self.m16, op)
            if op.outputs is not None and len(op.outputs):
                by_output[(code, writer.name_of(self.g16.tensors[op.outputs[0]]))] = j
            if op.inputs is not None and len(op.inputs) and op.inputs[0] >= 0:
                by_input.setdefault((code, writer.name_of(self.g16.tensors[op.inputs[0]])), j)
        # int8 op -> its 16x8 twin: same builtin and output name, else same builtin and first input name
        # (the graph output is renamed by the 16x8 quantizer's final DEQUANTIZE)
        self.twin: dict[int, int] = {}
        for i, op in enumerate(self.g8.operators):
            code = _code(self.m8, op)
            out = writer.name_of(self.g8.tensors[op.outputs[0]]) if op.outputs is not None and len(op.outputs) else ""
            first = (writer.name_of(self.g8.tensors[op.inputs[0]])
                     if op.inputs is not None and len(op.inputs) and op.inputs[0] >= 0 else "")
            j = by_output.get((code, out), by_input.get((code, first)))
            if j is not None and self._same_arity(op, self.g16.operators[j]):
                self.twin[i] = j
        self.producer: dict[int, int] = {}
        self.consumers: dict[int, list[int]] = {}
        for i, op in enumerate(self.g8.operators):
            for t in op.outputs if op.outputs is not None else []:
                self.producer[int(t)] = i
            for t in op.inputs if op.inputs is not None else []:
                if t >= 0:
                    self.consumers.setdefault(int(t), []).append(i)

    @staticmethod
    def _same_arity(op8: Any, op16: Any) -> bool:
        return len(op8.inputs if op8.inputs is not None else []) == len(op16.inputs if op16.inputs is not None else []) \
            and len(op8.outputs if op8.outputs is not None else []) == len(op16.outputs if op16.outputs is not None else [])

    def candidates(self) -> dict[str, int]:
        """Tensor name -> int8 tensor index, for every activation that can be made 16-bit.

        The producer and every consumer need a 16x8 twin; the graph's inputs and outputs keep their type.
        """
        io = {int(t) for t in list(self.g8.inputs) + list(self.g8.outputs)}
        found = {}
        for t, i in self.producer.items():
            if t in io or i not in self.twin or not all(c in self.twin for c in self.consumers.get(t, [])):
                continue
            if not self.consumers.get(t):
                continue
            found[writer.name_of(self.g8.tensors[t])] = t
        return found


def candidates(int8_model: bytes, int16_model: bytes) -> list[str]:
    """Names of the activation tensors `mix` can make 16-bit, in graph order."""
    graphs = _Graphs(int8_model, int16_model)
    found = graphs.candidates()
    return sorted(found, key=lambda name: graphs.producer[found[name]])


def mix(int8_model: bytes, int16_model: bytes, int16_tensors: Iterable[str]) -> MixedModel:
    """The int8 model with the named activation tensors (and the ops around them) in 16x8 mode.

    Both models must come from the same calibrated float model (`calibration.quantize_calibrated` with
    activations int8 and int16). Raises ValueError naming a tensor that cannot be made 16-bit.
    """
    graphs = _Graphs(int8_model, int16_model)
    schema, m8, m16, g8, g16 = graphs.schema, graphs.m8, graphs.m16, graphs.g8, graphs.g16
    allowed = graphs.candidates()
    wanted = list(dict.fromkeys(int16_tensors))
    for name in wanted:
        if name not in allowed:
            raise ValueError(f"tensor {name!r} cannot be made 16-bit (graph input/output, or an op around it "
                             "has no 16x8 twin)")
    selected = {allowed[name] for name in wanted}
    switched = set()
    for t in selected:
        switched.add(graphs.producer[t])
        switched.update(graphs.consumers[t])

    opcode_cache: dict[tuple[int, int], int] = {}

    def opcode(builtin: int, version: int) -> int:
        key = (builtin, version)
        if key not in opcode_cache:
            for k, code in enumerate(m8.operatorCodes):
                if writer.builtin_code(code) == builtin and code.version == version:
                    opcode_cache[key] = k
                    break
            else:
                code = schema.OperatorCodeT()
                code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, min(builtin, 127), version
                m8.operatorCodes.append(code)
                opcode_cache[key] = len(m8.operatorCodes) - 1
        return opcode_cache[key]

    quantize_code = opcode(schema.BuiltinOperator.QUANTIZE, _QUANTIZE_VERSION)

    def add_tensor(source: Any, buffer: int) -> int:
        t = schema.TensorT()
        t.shape, t.shapeSignature, t.type, t.buffer, t.name = source.shape, source.shapeSignature, source.type, \
            buffer, source.name
        if source.quantization is not None:
            q = schema.QuantizationParametersT()
            q.scale, q.zeroPoint = source.quantization.scale, source.quantization.zeroPoint
            q.quantizedDimension = source.quantization.quantizedDimension
            t.quantization = q
        g8.tensors.append(t)
        return len(g8.tensors) - 1

    constants: dict[int, int] = {}

    def copy_constant(t16: int) -> int:
        if t16 not in constants:
            buffer = schema.BufferT()
            buffer.data = np.array(m16.buffers[g16.tensors[t16].buffer].data, dtype=np.uint8)
            m8.buffers.append(buffer)
            constants[t16] = add_tensor(g16.tensors[t16], len(m8.buffers) - 1)
        return constants[t16]

    def quantize_op(src: int, dst: int) -> Any:
        op = schema.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = quantize_code, [src], [dst]
        return op

    int16_of: dict[str, int] = {}  # 16x8 tensor name -> its int16 tensor in the new graph
    new_ops: list[Any] = []
    ops_16x8: list[str] = []
    requantize = 0
    for i, op in enumerate(g8.operators):
        if i not in switched:
            new_ops.append(op)
            continue
        op16 = g16.operators[graphs.twin[i]]
        new = schema.OperatorT()
        code16 = m16.operatorCodes[op16.opcodeIndex]
        new.opcodeIndex = opcode(writer.builtin_code(code16), code16.version)
        new.builtinOptionsType, new.builtinOptions = op16.builtinOptionsType, op16.builtinOptions
        new.inputs, new.outputs = [], []
        for k, t16 in enumerate(op16.inputs):
            if t16 < 0:
                new.inputs.append(-1)
                continue
            tensor16 = g16.tensors[t16]
            if _is_constant(m16, tensor16):
                new.inputs.append(copy_constant(int(t16)))
                continue
            if tensor16.type != schema.TensorType.INT16:  # e.g. the float input of the input QUANTIZE
                new.inputs.append(int(op.inputs[k]))
                continue
            name = writer.name_of(tensor16)
            if name not in int16_of:  # an int8 activation entering the 16x8 op: requantize it
                int16_of[name] = add_tensor(tensor16, 0)
                new_ops.append(quantize_op(int(op.inputs[k]), int16_of[name]))
                requantize += 1
            new.inputs.append(int16_of[name])
        after = []
        for k, t16 in enumerate(op16.outputs):
            tensor16, t8 = g16.tensors[t16], int(op.outputs[k])
            if tensor16.type != schema.TensorType.INT16:  # e.g. the float output of the output DEQUANTIZE
                new.outputs.append(t8)
                continue
            out16 = int16_of[writer.name_of(tensor16)] = add_tensor(tensor16, 0)
            new.outputs.append(out16)
            if t8 not in selected:  # int8 consumers (or the graph output) read the int8 tensor as before
                after.append(quantize_op(out16, t8))
                requantize += 1
        new_ops.append(new)
        new_ops.extend(after)
        ops_16x8.append(f"{_op_name(schema, _code(m16, op16))}:{writer.name_of(g16.tensors[op16.outputs[0]])}")
    g8.operators = new_ops
    _drop_unused_constants(m8, g8)
    return MixedModel(content=writer.pack(m8, len(int8_model) + len(int16_model)), int16_tensors=tuple(wanted), ops_16x8=tuple(ops_16x8),
                      requantize_ops=requantize)


def _op_name(schema: Any, code: int) -> str:
    return next((k for k, v in vars(schema.BuiltinOperator).items() if v == code and not k.startswith("_")), str(code))


def _drop_unused_constants(model: Any, graph: Any) -> None:
    """Empty the buffers of the int8 weights/biases that the 16x8 twins replaced (the file would carry both)."""
    used = {int(t) for op in graph.operators for t in list(op.inputs) + list(op.outputs) if t >= 0}
    used_buffers = {graph.tensors[t].buffer for t in used}
    for t, tensor in enumerate(graph.tensors):
        if t not in used and tensor.buffer not in used_buffers and _is_constant(model, tensor):
            model.buffers[tensor.buffer].data = None


def float_output_sources(int8_model: bytes) -> list[str]:
    """Tensors a DEQUANTIZE turns into a float graph output (with float I/O: the int8 probabilities)."""
    graphs = _Graphs(int8_model, int8_model)
    outputs = {int(t) for t in graphs.g8.outputs}
    found = []
    for op in graphs.g8.operators:
        if _code(graphs.m8, op) == graphs.schema.BuiltinOperator.DEQUANTIZE \
                and int(op.outputs[0]) in outputs:
            found.append(writer.name_of(graphs.g8.tensors[op.inputs[0]]))
    return found
