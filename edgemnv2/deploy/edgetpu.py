"""Will the Coral Edge TPU run this model? Static check against Coral's rules, and the compiler's own answer.

`check_model` reads a .tflite with the `tflite` flatbuffer parser (no TensorFlow), applies the rules in
`edgetpu_ops.toml` operator by operator in execution order and reproduces the compiler's partitioning:
everything up to the first unsupported operator goes to the TPU, that operator and everything after it
runs on the CPU. An already compiled model (`edgetpu-custom-op`) is recognised and reported as such.

`compile_model` runs `edgetpu_compiler` when it is installed and parses its log into the same report.

Each rule is a small function registered in `CHECKS`; its docstring is the message the user sees and its
return value (None when the rule holds) says what exactly broke it, like Arm Vela's supported-operator checks.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import tomllib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tflite
from tflite.TensorType import TensorType

from edgemnv2.errors import ConversionError, DeviceProfileError, ModelError, ToolMissing
from edgemnv2.tflite_file import builtin_names, load_model, op_name, parse_errors

RULES_FILE = Path(__file__).with_name("edgetpu_ops.toml")
EDGETPU_CUSTOM_OP = "edgetpu-custom-op"
COMPILER = "edgetpu_compiler"
INSTALL_HINT = ("edgetpu_compiler is not on PATH: on x86-64 Debian/Ubuntu add Coral's apt repository and run "
                "`sudo apt-get install edgetpu-compiler` (https://coral.ai/docs/edgetpu/compiler/#system-requirements), "
                "or compile in Coral's Colab notebook; `edgemnv2 edgetpu check` works without it")

_TYPE_NAMES = {v: k.lower() for k, v in vars(TensorType).items() if not k.startswith("_")}
_NUMPY_TYPES = {TensorType.INT8: np.int8, TensorType.UINT8: np.uint8, TensorType.INT32: np.int32,
                TensorType.INT64: np.int64, TensorType.FLOAT32: np.float32, TensorType.INT16: np.int16}
_EIGHT_BIT = (TensorType.INT8, TensorType.UINT8)


# ---------------------------------------------------------------- the model, as far as the rules need it

@dataclasses.dataclass(frozen=True)
class Tensor:
    index: int
    name: str
    dtype: int
    shape: tuple[int, ...]
    signature: tuple[int, ...]   # shape_signature: -1 marks a dynamic dimension
    data: bytes | None           # constant data, None for activations
    quantized: bool
    zero_point: int = 0          # first zero point: the quantized value of a real 0

    @property
    def type_name(self) -> str:
        return _TYPE_NAMES.get(self.dtype, str(self.dtype))

    def values(self) -> np.ndarray:
        """The constant's values (only for constant tensors of a numeric type)."""
        return np.frombuffer(self.data or b"", dtype=_NUMPY_TYPES[self.dtype]).reshape(self.shape)


@dataclasses.dataclass(frozen=True)
class Op:
    index: int
    kind: str                    # TFLite builtin name, or the custom code
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: object | None       # the tflite.*Options table, when the operator has one
    custom_options_bytes: int


@dataclasses.dataclass(frozen=True)
class Graph:
    tensors: tuple[Tensor, ...]
    ops: tuple[Op, ...]
    inputs: tuple[int, ...] = ()   # the subgraph's input tensors

    def inputs_of(self, op: Op) -> list[Tensor]:
        return [self.tensors[i] for i in op.inputs if i >= 0]

    def outputs_of(self, op: Op) -> list[Tensor]:
        return [self.tensors[i] for i in op.outputs if i >= 0]


_OPTION_CLASSES = {
    "CONV_2D": tflite.Conv2DOptions, "DEPTHWISE_CONV_2D": tflite.DepthwiseConv2DOptions,
    "AVERAGE_POOL_2D": tflite.Pool2DOptions, "MAX_POOL_2D": tflite.Pool2DOptions,
    "CONCATENATION": tflite.ConcatenationOptions, "FULLY_CONNECTED": tflite.FullyConnectedOptions,
    "STRIDED_SLICE": tflite.StridedSliceOptions, "SQUEEZE": tflite.SqueezeOptions, "PACK": tflite.PackOptions,
}


def read_graph(path: Path) -> Graph:
    """Parse the main subgraph of a .tflite file; a file that is not TFLite is one clear error."""
    path = Path(path)
    model = load_model(path).model
    with parse_errors(str(path)):
        sub = model.Subgraphs(0)
        tensors = []
        for i in range(sub.TensorsLength()):
            t = sub.Tensors(i)
            buffer = model.Buffers(t.Buffer()) if t.Buffer() > 0 else None
            data = bytes(buffer.DataAsNumpy().tobytes()) if buffer is not None and buffer.DataLength() else None
            q = t.Quantization()
            tensors.append(Tensor(
                index=i, name=(t.Name() or b"").decode(errors="replace"), dtype=t.Type(),
                shape=tuple(int(d) for d in (t.ShapeAsNumpy() if t.ShapeLength() else ())),
                signature=tuple(int(d) for d in (t.ShapeSignatureAsNumpy() if t.ShapeSignatureLength() else ())),
                data=data, quantized=bool(q is not None and q.ScaleLength()),
                zero_point=int(q.ZeroPoint(0)) if q is not None and q.ZeroPointLength() else 0))
        ops = []
        for i in range(sub.OperatorsLength()):
            op = sub.Operators(i)
            kind = op_name(model, op, custom="{}")  # a custom op is named by its code: EDGETPU_CUSTOM_OP
            options = None
            table = op.BuiltinOptions()
            if table is not None and kind in _OPTION_CLASSES:
                options = _OPTION_CLASSES[kind]()
                options.Init(table.Bytes, table.Pos)
            ops.append(Op(index=i, kind=kind,
                          inputs=tuple(int(x) for x in (op.InputsAsNumpy() if op.InputsLength() else ())),
                          outputs=tuple(int(x) for x in (op.OutputsAsNumpy() if op.OutputsLength() else ())),
                          options=options, custom_options_bytes=op.CustomOptionsLength()))
        return Graph(tensors=tuple(tensors), ops=tuple(ops),
                     inputs=tuple(int(x) for x in (sub.InputsAsNumpy() if sub.InputsLength() else ())))


# ---------------------------------------------------------------- the rules: one function per constraint

Check = Callable[[Op, Graph], "str | None"]
CHECKS: dict[str, Check] = {}


def _check(func: Check) -> Check:
    CHECKS[func.__name__] = func
    return func


def _message(name: str) -> str:
    return " ".join((CHECKS[name].__doc__ or name).split())


def _is_parameter_input(op: Op, position: int) -> bool:
    """Inputs that are integer parameters rather than data: biases and shape/axis/padding operands."""
    if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") and position == 2:
        return True  # int32 bias
    if op.kind == "TRANSPOSE_CONV":
        return position in (0, 3)  # output shape, bias
    return position >= 1 and op.kind in {"RESHAPE", "MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "PAD", "SLICE",
                                         "STRIDED_SLICE", "TRANSPOSE", "EXPAND_DIMS", "RESIZE_BILINEAR",
                                         "RESIZE_NEAREST_NEIGHBOR"} or (op.kind == "SPLIT" and position == 0)


@_check
def tensors_8bit(op: Op, graph: Graph) -> str | None:
    """The Edge TPU runs only fully 8-bit quantized models: activations and weights must be int8 or uint8
    with quantization parameters (int32 is allowed only for biases and shape/axis operands)."""
    for position, i in enumerate(op.inputs):
        if i < 0:
            continue
        t = graph.tensors[i]
        if _is_parameter_input(op, position) and t.dtype in (TensorType.INT32, TensorType.INT64):
            continue
        if t.dtype not in _EIGHT_BIT or not t.quantized:
            return f"input {t.name!r} is {t.type_name}{'' if t.quantized else ' without quantization'}"
    for t in graph.outputs_of(op):
        if t.dtype not in _EIGHT_BIT or not t.quantized:
            return f"output {t.name!r} is {t.type_name}{'' if t.quantized else ' without quantization'}"
    return None


@_check
def static_shapes(op: Op, graph: Graph) -> str | None:
    """Tensor sizes must be constant at compile time (a dynamic batch dimension is fixed to 1)."""
    for t in graph.inputs_of(op) + graph.outputs_of(op):
        dynamic = [axis for axis, d in enumerate(t.signature) if d < 0]
        if any(axis > 0 for axis in dynamic) or any(d <= 0 for d in t.shape[1:]):
            return f"{t.name!r} has a dynamic shape {list(t.signature or t.shape)}"
    return None


@_check
def rank_3_innermost(op: Op, graph: Graph) -> str | None:
    """Tensors are 1-, 2- or 3-dimensional; with more dimensions only the 3 innermost may be larger than 1."""
    for t in graph.inputs_of(op) + graph.outputs_of(op):
        if t.data is None and len(t.shape) > 3 and any(d > 1 for d in t.shape[:-3]):
            return f"{t.name!r} has shape {list(t.shape)}"
    return None


@_check
def constant_parameters(op: Op, graph: Graph) -> str | None:
    """Model parameters (weights and biases) must be constant at compile time."""
    if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV"):
        positions = (1, 2) if op.kind != "TRANSPOSE_CONV" else (1,)
        for position in positions:
            if position < len(op.inputs) and op.inputs[position] >= 0:
                t = graph.tensors[op.inputs[position]]
                if t.data is None:
                    return f"{t.name!r} is computed at run time"
    return None


@_check
def same_dilation(op: Op, graph: Graph) -> str | None:
    """Must use the same dilation in x and y dimensions."""
    o = op.options
    if o is not None and o.DilationHFactor() != o.DilationWFactor():
        return f"dilation is {o.DilationHFactor()} x {o.DilationWFactor()}"
    return None


@_check
def no_fused_activation(op: Op, graph: Graph) -> str | None:
    """No fused activation function."""
    o = op.options
    if o is not None and o.FusedActivationFunction() != 0:
        return f"fused activation {o.FusedActivationFunction()}"
    return None


@_check
def concat_constant_is_zero_pad(op: Op, graph: Graph) -> str | None:
    """If any input is a compile-time constant tensor, there must be only 2 inputs, and this constant tensor
    must be all zeros (effectively, a zero-padding op)."""
    constants = [t for t in graph.inputs_of(op) if t.data is not None]
    if not constants:
        return None
    if len(op.inputs) != 2:
        return f"{len(op.inputs)} inputs, {len(constants)} of them constant"
    t = constants[0]
    if t.dtype in _NUMPY_TYPES and np.any(t.values() != t.zero_point):
        return f"constant input {t.name!r} is not all zeros"
    return None


@_check
def fc_default_weights_format(op: Op, graph: Graph) -> str | None:
    """Only the default format is supported for fully-connected weights."""
    o = op.options
    if o is not None and o.WeightsFormat() != 0:
        return f"weights format {o.WeightsFormat()}"
    return None


@_check
def output_1d(op: Op, graph: Graph) -> str | None:
    """Output tensor is one-dimensional (only the innermost dimension may be larger than 1)."""
    for t in graph.outputs_of(op):
        if any(d > 1 for d in t.shape[:-1]):
            return f"output {t.name!r} has shape {list(t.shape)}"
    return None


def _axes(op: Op, graph: Graph, position: int) -> list[int] | None:
    """A constant axis operand, normalised to non-negative axes of the first input."""
    if position >= len(op.inputs) or op.inputs[position] < 0:
        return None
    t = graph.tensors[op.inputs[position]]
    if t.data is None or t.dtype not in _NUMPY_TYPES:
        return None
    rank = len(graph.tensors[op.inputs[0 if op.kind != "SPLIT" else 1]].shape)
    return [int(a) % rank if rank else int(a) for a in np.ravel(t.values())]


@_check
def no_batch_axis(op: Op, graph: Graph) -> str | None:
    """Cannot operate on (reduce or pack along) the batch dimension."""
    if op.kind == "PACK":
        axis = op.options.Axis() if op.options is not None else 0
        return "packs along axis 0" if axis == 0 else None
    axes = _axes(op, graph, 1)
    if axes is None:
        return "reduction axes are not constant"
    return "reduces the batch axis 0" if 0 in axes else None


@_check
def z_reduction_multiple_of_4(op: Op, graph: Graph) -> str | None:
    """If a z-reduction (over channels), the z-dimension must be a multiple of 4."""
    axes = _axes(op, graph, 1) or []
    shape = graph.tensors[op.inputs[0]].shape
    if shape and (len(shape) - 1) in axes and shape[-1] % 4:
        return f"reduces {shape[-1]} channels"
    return None


@_check
def no_batch_padding(op: Op, graph: Graph) -> str | None:
    """No padding in batch dimension."""
    t = graph.tensors[op.inputs[1]] if len(op.inputs) > 1 else None
    if t is None or t.data is None:
        return "paddings are not constant"
    pads = t.values()
    return f"pads the batch axis by {pads[0].tolist()}" if pads.ndim == 2 and np.any(pads[0] != 0) else None


@_check
def no_batch_split(op: Op, graph: Graph) -> str | None:
    """No splitting in batch dimension."""
    axes = _axes(op, graph, 0)
    if axes is None:
        return "split axis is not constant"
    return "splits the batch axis 0" if 0 in axes else None


@_check
def prelu_alpha_1d(op: Op, graph: Graph) -> str | None:
    """Alpha must be 1-dimensional (only the innermost dimension can be >1 size)."""
    alpha = graph.tensors[op.inputs[1]]
    return f"alpha has shape {list(alpha.shape)}" if any(d > 1 for d in alpha.shape[:-1]) else None


@_check
def batch_of_one(op: Op, graph: Graph) -> str | None:
    """Input/output is a 3-dimensional tensor (a batch of one image)."""
    for t in graph.inputs_of(op)[:1] + graph.outputs_of(op):
        if len(t.shape) == 4 and t.shape[0] > 1:
            return f"{t.name!r} has batch {t.shape[0]}"
    return None


@_check
def softmax_1d_max_16000(op: Op, graph: Graph) -> str | None:
    """Supports only 1-D input tensor with a max of 16,000 elements."""
    t = graph.tensors[op.inputs[0]]
    if any(d > 1 for d in t.shape[:-1]):
        return f"input has shape {list(t.shape)}"
    if t.shape and t.shape[-1] > 16000:
        return f"input has {t.shape[-1]} elements"
    return None


@_check
def squeeze_leading_ones(op: Op, graph: Graph) -> str | None:
    """Squeeze is supported only for leading dimensions of size 1 (no relayout needed): [1,1,10] or
    [1,5,10] is fine, [5,1,10] is not."""
    shape = graph.tensors[op.inputs[0]].shape
    dims = list(op.options.SqueezeDimsAsNumpy()) if op.options is not None and op.options.SqueezeDimsLength() else [
        i for i, d in enumerate(shape) if d == 1]
    first_big = next((i for i, d in enumerate(shape) if d > 1), len(shape))
    late = [int(d) % len(shape) for d in dims if int(d) % len(shape) > first_big]
    return f"squeezes axis {late[0]} of {list(shape)}" if late else None


@_check
def strided_slice_unit_strides(op: Op, graph: Graph) -> str | None:
    """Supported only when all strides are equal to 1 (effectively a Slice), with ellipsis-axis-mask == 0
    and new-axis-mask == 0."""
    o = op.options
    if o is not None and (o.EllipsisMask() or o.NewAxisMask()):
        return f"ellipsis mask {o.EllipsisMask()}, new-axis mask {o.NewAxisMask()}"
    strides = graph.tensors[op.inputs[3]] if len(op.inputs) > 3 else None
    if strides is None or strides.data is None:
        return "strides are not constant"
    values = strides.values()
    return f"strides {values.tolist()}" if np.any(values != 1) else None


# ---------------------------------------------------------------- the rules file

@dataclasses.dataclass(frozen=True)
class Source:
    url: str
    section: str
    retrieved: str

    def cite(self) -> str:
        return f"{self.url}{self.section} (read {self.retrieved})"


@dataclasses.dataclass(frozen=True)
class OpRule:
    op: str                      # TFLite builtin name
    name: str                    # Coral's name in its table
    limitations: str
    checks: tuple[str, ...]
    source: Source


@dataclasses.dataclass(frozen=True)
class EdgeTpuRules:
    general: tuple[str, ...]
    general_source: Source
    ops: dict[str, OpRule]
    cache_bytes: int
    borderline_fraction: float
    cache_source: Source
    partition_source: Source
    input_quantize_on_cpu: bool
    path: Path


def load_rules(path: Path = RULES_FILE) -> EdgeTpuRules:
    """Load the rules; a malformed file names the file, the key and what is allowed."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise DeviceProfileError(f"{path}: cannot read Edge TPU rules ({exc})") from exc
    sources = data.get("sources", {})

    def source(table: dict, key: str, defaults: dict | None = None) -> Source:
        merged = {**(defaults or {}), **table}
        name = merged.get("source")
        if name not in sources:
            raise DeviceProfileError(f"{path}: {key}.source = {name!r} is not one of {sorted(sources)}")
        for field in ("section", "retrieved"):
            if field not in merged:
                raise DeviceProfileError(f"{path}: {key} needs '{field}'")
        return Source(url=sources[name]["url"], section=merged["section"], retrieved=str(merged["retrieved"]))

    def known(names: list, key: str) -> tuple[str, ...]:
        for name in names:
            if name not in CHECKS:
                raise DeviceProfileError(f"{path}: {key} names unknown check {name!r}; "
                                         f"known: {', '.join(sorted(CHECKS))}")
        return tuple(names)

    try:
        general = data["general"]
        cache = data["cache"]
        ops = {}
        for op, table in data["ops"].items():
            if op not in builtin_names().values():
                raise DeviceProfileError(f"{path}: [ops.{op}] is not a TFLite builtin operator name")
            ops[op] = OpRule(op=op, name=table["name"], limitations=table.get("limitations", ""),
                             checks=known(table.get("checks", []), f"ops.{op}.checks"),
                             source=source(table, f"ops.{op}", data["ops_defaults"]))
        return EdgeTpuRules(
            general=known(general["checks"], "general.checks"), general_source=source(general, "general"),
            ops=ops, cache_bytes=int(cache["bytes"]), borderline_fraction=float(cache["borderline_fraction"]),
            cache_source=source(cache, "cache"), partition_source=source(data["partitioning"], "partitioning"),
            input_quantize_on_cpu=bool(data["partitioning"]["input_quantize_on_cpu"]), path=path)
    except KeyError as exc:
        raise DeviceProfileError(f"{path}: missing key {exc.args[0]!r}") from exc


# ---------------------------------------------------------------- the report

@dataclasses.dataclass(frozen=True)
class Placement:
    index: int
    op: str
    device: str                  # "tpu" or "cpu"
    reason: str | None = None    # why it is on the CPU (None when on the TPU, or "after the first CPU op")
    rule: str | None = None


@dataclasses.dataclass(frozen=True)
class EdgeTpuReport:
    model: str
    compiled: bool
    tpu_ops: int
    cpu_ops: int
    first_cpu_op: str | None
    first_cpu_index: int | None
    first_cpu_reason: str | None
    parameter_bytes: int
    cache_bytes: int
    fits_cache: bool | None
    verdict: str
    source: str                  # "static check" or "edgetpu_compiler"
    ops: tuple[Placement, ...] = ()
    notes: tuple[str, ...] = ()


def format_mib(n: float) -> str:
    return f"{n / 2**20:.2f} MiB"


def check_model(path: Path, rules: EdgeTpuRules | None = None) -> EdgeTpuReport:
    """Static Edge TPU check of one .tflite (compiled or not)."""
    rules = rules or load_rules()
    graph = read_graph(path)
    if any(op.kind == EDGETPU_CUSTOM_OP for op in graph.ops):
        return _compiled_report(Path(path), graph, rules)

    placements = place_ops(graph, rules)
    first = next((p for p in placements if p.device == "cpu" and p.rule != "float_input_quantize"), None)
    tpu_indices = {p.index for p in placements if p.device == "tpu"}
    parameter_tensors = {i for op in graph.ops if op.index in tpu_indices for i in op.inputs
                         if i >= 0 and graph.tensors[i].data is not None}
    parameter_bytes = sum(len(graph.tensors[i].data or b"") for i in parameter_tensors)
    fits = parameter_bytes <= rules.cache_bytes
    tpu, cpu = len(tpu_indices), len(placements) - len(tpu_indices)
    notes = []
    dynamic_batch = [t.name for t in graph.tensors if t.signature[:1] == (-1,)]
    if dynamic_batch:
        notes.append(f"{len(dynamic_batch)} tensors have a dynamic batch dimension (shape_signature -1); if "
                     "edgetpu_compiler stops with 'dynamic-sized tensors', convert with a fixed batch of 1")
    if fits and parameter_bytes > rules.borderline_fraction * rules.cache_bytes:
        notes.append("parameters fill most of the on-chip cache; the compiler may still stream some from host memory")
    verdict = _verdict(tpu, cpu, first, parameter_bytes, fits, rules)
    return EdgeTpuReport(model=str(path), compiled=False, tpu_ops=tpu, cpu_ops=cpu,
                         first_cpu_op=first.op if first else None, first_cpu_index=first.index if first else None,
                         first_cpu_reason=first.reason if first else None, parameter_bytes=parameter_bytes,
                         cache_bytes=rules.cache_bytes, fits_cache=fits, verdict=verdict, source="static check",
                         ops=tuple(placements), notes=tuple(notes))


def place_ops(graph: Graph, rules: EdgeTpuRules) -> list[Placement]:
    """The compiler's partitioning: TPU up to the first op breaking a rule; that op and all after it on the CPU."""
    placements: list[Placement] = []
    first: Placement | None = None
    for op in graph.ops:
        leading = not any(p.device == "tpu" for p in placements)
        if rules.input_quantize_on_cpu and leading and _is_input_quantize(op, graph):
            placements.append(Placement(op.index, op.kind, "cpu", "quantizes a float model input on the CPU before "
                                        "the Edge TPU part (does not split the model)", "float_input_quantize"))
            continue
        if first is not None:
            placements.append(Placement(op.index, op.kind, "cpu", "after the first CPU op (the compiler "
                                        "partitions the model once)"))
            continue
        reason, rule = _first_violation(op, graph, rules)
        if reason is None:
            placements.append(Placement(op.index, op.kind, "tpu"))
        else:
            first = Placement(op.index, op.kind, "cpu", reason, rule)
            placements.append(first)
    return placements


def _is_input_quantize(op: Op, graph: Graph) -> bool:
    t = graph.tensors[op.inputs[0]] if op.inputs else None
    return op.kind == "QUANTIZE" and t is not None and t.index in graph.inputs and t.dtype == TensorType.FLOAT32


def _first_violation(op: Op, graph: Graph, rules: EdgeTpuRules) -> tuple[str | None, str | None]:
    rule = rules.ops.get(op.kind)
    if rule is None:
        return (f"{op.kind} is not in the Edge TPU's supported operations "
                f"({rules.general_source.url}#supported-operations)"), "supported_operations"
    for name in rules.general + rule.checks:
        detail = CHECKS[name](op, graph)
        if detail is not None:
            return f"{_message(name)} Here: {detail}.", name
    return None, None


def _verdict(tpu: int, cpu: int, first: Placement | None, parameter_bytes: int, fits: bool,
             rules: EdgeTpuRules) -> str:
    cache = (f"parameters {format_mib(parameter_bytes)} {'fit' if fits else 'exceed'} "
             f"the {format_mib(rules.cache_bytes)} on-chip cache")
    if first is None:
        return f"all {tpu} ops can run on the Edge TPU; {cache}"
    if tpu == 0:
        return f"nothing runs on the Edge TPU: the first op, {first.op}, already falls back to the CPU"
    return f"{tpu} of {tpu + cpu} ops on the Edge TPU; CPU fallback from op {first.index} ({first.op}); {cache}"


def _compiled_report(path: Path, graph: Graph, rules: EdgeTpuRules) -> EdgeTpuReport:
    """A model already compiled: the TPU part is one or more custom ops whose payload is the executable."""
    placements = tuple(Placement(op.index, op.kind, "tpu" if op.kind == EDGETPU_CUSTOM_OP else "cpu",
                                 None if op.kind == EDGETPU_CUSTOM_OP else "left on the CPU by the compiler")
                       for op in graph.ops)
    tpu = [p for p in placements if p.device == "tpu"]
    cpu = [p for p in placements if p.device == "cpu"]
    first = cpu[0] if cpu else None
    executable = sum(op.custom_options_bytes for op in graph.ops if op.kind == EDGETPU_CUSTOM_OP)
    verdict = (f"already compiled for the Edge TPU: {len(tpu)} {EDGETPU_CUSTOM_OP}"
               + (f", {len(cpu)} ops left on the CPU" if cpu else ", nothing left on the CPU")
               + f"; executable {format_mib(executable)}")
    return EdgeTpuReport(model=str(path), compiled=True, tpu_ops=len(tpu), cpu_ops=len(cpu),
                         first_cpu_op=first.op if first else None, first_cpu_index=first.index if first else None,
                         first_cpu_reason=first.reason if first else None, parameter_bytes=executable,
                         cache_bytes=rules.cache_bytes, fits_cache=None, verdict=verdict, source="static check",
                         ops=placements,
                         notes=("parameter_bytes is the size of the compiled executable (parameters + instructions); "
                                "whether it is cached on chip was decided by the compiler",))


# ---------------------------------------------------------------- the compiler

@dataclasses.dataclass(frozen=True)
class CompilerLog:
    version: str | None
    output_model: str | None
    on_chip_bytes: int | None
    on_chip_remaining_bytes: int | None
    off_chip_bytes: int | None
    subgraphs: int | None
    total_ops: int | None
    tpu_ops: int | None
    cpu_ops: int | None
    operators: tuple[tuple[str, int, str], ...]   # (operator, count, status) rows of the table
    succeeded: bool
    error: str | None


_SIZE_UNITS = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}


def _size(text: str | None) -> int | None:
    if text is None:
        return None
    m = re.fullmatch(r"\s*([\d.]+)\s*(B|KiB|MiB|GiB)\s*", text)
    return int(round(float(m.group(1)) * _SIZE_UNITS[m.group(2)])) if m else None


def parse_compiler_log(text: str) -> CompilerLog:
    """Parse edgetpu_compiler's console output (and/or its .log file's operator table)."""
    def field(label: str) -> str | None:
        m = re.search(rf"^{re.escape(label)}:\s*(.+?)\s*$", text, re.MULTILINE)
        return m.group(1) if m else None

    def number(label: str) -> int | None:
        value = field(label)
        return int(value) if value is not None and value.isdigit() else None

    rows = tuple((m.group(1), int(m.group(2)), m.group(3).strip()) for m in re.finditer(
        r"^([A-Z][A-Z0-9_]*|[a-z][a-z0-9-]+)\s{2,}(\d+)\s{2,}(\S.*?)\s*$", text, re.MULTILINE))
    tpu_ops, cpu_ops = number("Number of operations that will run on Edge TPU"), number(
        "Number of operations that will run on CPU")
    total = number("Total number of operations")
    if tpu_ops is None and rows:
        tpu_ops = sum(count for _, count, status in rows if status == "Mapped to Edge TPU")
        cpu_ops = sum(count for _, count, status in rows if status != "Mapped to Edge TPU")
    if tpu_ops is None and total is not None and "not all operations are supported" not in text:
        tpu_ops, cpu_ops = total, 0   # without -s the compiler prints only the total when everything maps
    version = re.search(r"Edge TPU Compiler version (\S+)", text)
    error = re.search(r"^(?:ERROR|Internal compiler error|Compilation failed)[:!]?\s*(.*)$", text, re.MULTILINE)
    succeeded = "Model compiled successfully" in text and "Compilation failed" not in text
    return CompilerLog(version=version.group(1) if version else None, output_model=field("Output model"),
                       on_chip_bytes=_size(field("On-chip memory used for caching model parameters")),
                       on_chip_remaining_bytes=_size(field("On-chip memory remaining for caching model parameters")),
                       off_chip_bytes=_size(field("Off-chip memory used for streaming uncached model parameters")),
                       subgraphs=number("Number of Edge TPU subgraphs"), total_ops=total, tpu_ops=tpu_ops,
                       cpu_ops=cpu_ops, operators=rows, succeeded=succeeded,
                       error=None if succeeded else (error.group(0).strip() if error else "no success line in the log"))


def report_from_log(model: Path, log: CompilerLog, rules: EdgeTpuRules | None = None) -> EdgeTpuReport:
    """The compiler's answer in the same shape as the static check."""
    rules = rules or load_rules()
    if not log.succeeded:
        raise ConversionError(f"edgetpu_compiler failed on {model}: {log.error}")
    first = next(((op, status) for op, _, status in log.operators if status != "Mapped to Edge TPU"), None)
    on_chip, off_chip = log.on_chip_bytes or 0, log.off_chip_bytes or 0
    fits = off_chip == 0
    tpu, cpu = log.tpu_ops or 0, log.cpu_ops or 0
    verdict = (f"compiled: {tpu} of {tpu + cpu} ops on the Edge TPU"
               + (f", first CPU op type {first[0]} ({first[1]})" if first else "")
               + f"; {format_mib(on_chip)} cached on chip, {format_mib(off_chip)} streamed from host memory")
    return EdgeTpuReport(model=str(model), compiled=True, tpu_ops=tpu, cpu_ops=cpu,
                         first_cpu_op=first[0] if first else None, first_cpu_index=None,
                         first_cpu_reason=first[1] if first else None, parameter_bytes=on_chip + off_chip,
                         cache_bytes=rules.cache_bytes, fits_cache=fits, verdict=verdict, source=COMPILER,
                         notes=(f"output: {log.output_model}",) if log.output_model else ())


def compile_model(model: Path, extra_args: list[str] | tuple[str, ...] = (), out_dir: Path | None = None,
                  compiler: str = COMPILER) -> tuple[EdgeTpuReport, CompilerLog, str]:
    """Run edgetpu_compiler (options passed through; -s added so the operator table is printed)."""
    model = Path(model)
    if not model.is_file():
        raise ModelError(f"model file not found: {model}")
    exe = shutil.which(compiler)
    if exe is None:
        raise ToolMissing(INSTALL_HINT)
    args = [exe, *extra_args]
    if not {"-s", "--show_operations"} & set(extra_args):
        args.append("-s")
    if out_dir is not None and not {"-o", "--out_dir"} & set(extra_args):
        args += ["-o", str(out_dir)]
    args.append(str(model))
    try:
        proc = subprocess.run(args, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise ToolMissing(f"cannot run {exe}: {exc}") from exc
    text = proc.stdout + proc.stderr
    log = parse_compiler_log(text)
    if proc.returncode != 0 and log.succeeded:
        log = dataclasses.replace(log, succeeded=False, error=f"exit code {proc.returncode}")
    return report_from_log(model, log), log, text
