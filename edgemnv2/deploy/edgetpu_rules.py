"""Coral's Edge TPU rules: the data file `edgetpu_ops.toml` and one small function per constraint.

`unsupported(op, graph, rules)` is the one place that decides whether the Edge TPU can run an operator on
its own; `edgemnv2.deploy.edgetpu` adds how the compiler partitions the graph around the ones it cannot.
Each check returns None when its rule holds, else what exactly broke it; its docstring is the message the
user sees (the pattern of Arm Vela's supported-operator checks). Which checks apply to which operator, the
operand positions that may be wider than 8 bits and the parameters that must be constant are data, each
with its source.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgemnv2.errors import DeviceProfileError
from edgemnv2.resources import data_file
from edgemnv2.tflite import Op, builtin_names
from edgemnv2.tflite import Subgraph as Graph  # the rules see the model's main subgraph

RULES_FILE = Path(str(data_file("deploy/edgetpu_ops.toml")))
EIGHT_BIT = ("int8", "uint8")

# The compiler's own words for why an op is not mapped ("Operator Count Status" table of its log).
MAPPED = "Mapped to Edge TPU"
NOT_SUPPORTED = "Operation not supported"
DATA_TYPE = "Operation is working on an unsupported data type"
LIMITATION = "Operation is otherwise supported, but not mapped due to some unspecified limitation"
ONE_SUBGRAPH = "More than one subgraph is not supported"


# ---------------------------------------------------------------- the rules file

@dataclasses.dataclass(frozen=True)
class Source:
    where: str                   # URL, or the shared model pair that shows the behaviour
    section: str
    retrieved: str

    def cite(self) -> str:
        return f"{self.where} {self.section} (read {self.retrieved})"


@dataclasses.dataclass(frozen=True)
class OpRule:
    op: str                                         # TFLite builtin name
    name: str                                       # Coral's name in its table
    limitations: str
    checks: tuple[str, ...]
    wide_inputs: dict[int, tuple[str, ...]]         # operand position -> allowed non-8-bit types
    parameters: tuple[int, ...]                     # operand positions that must be compile-time constants
    may_not_map: bool                               # Coral: the compiler may still keep it on the CPU
    source: Source
    wide_inputs_source: Source | None = None


@dataclasses.dataclass(frozen=True)
class Compiler:
    version: str
    partition: str               # "dependencies" (v16) or "first-unsupported" (v15)
    description: str
    source: Source


@dataclasses.dataclass(frozen=True)
class EdgeTpuRules:
    general: tuple[str, ...]
    general_source: Source
    ops: dict[str, OpRule]
    cache_bytes: int
    borderline_fraction: float
    cache_source: Source
    compilers: dict[str, Compiler]
    default_compiler: str
    path: Path

    def compiler(self, version: str | None) -> Compiler:
        """The modelled compiler behaviour for `version` ("16", "16.0.384591198", ...)."""
        key = (version or self.default_compiler).split(".")[0]
        if key not in self.compilers:
            raise DeviceProfileError(f"no Edge TPU compiler model for version {version!r}; "
                                     f"known: {', '.join(sorted(self.compilers))} ({self.path})")
        return self.compilers[key]


PARTITIONS = ("dependencies", "first-unsupported")


def load_rules(path: Path | None = None) -> EdgeTpuRules:
    """Load the rules; a malformed file names the file, the key and what is allowed."""
    path = Path(path) if path is not None else RULES_FILE
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
        return Source(where=sources[name]["url"], section=merged["section"], retrieved=str(merged["retrieved"]))

    def known(names: list, key: str) -> tuple[str, ...]:
        for name in names:
            if name not in CHECKS:
                raise DeviceProfileError(f"{path}: {key} names unknown check {name!r}; "
                                         f"known: {', '.join(sorted(CHECKS))}")
        return tuple(names)

    try:
        general, cache = data["general"], data["cache"]
        ops = {}
        for op, table in data["ops"].items():
            if op not in builtin_names().values():
                raise DeviceProfileError(f"{path}: [ops.{op}] is not a TFLite builtin operator name")
            wide = {int(k): tuple([v] if isinstance(v, str) else v) for k, v in table.get("wide_inputs", {}).items()}
            ops[op] = OpRule(op=op, name=table["name"], limitations=table.get("limitations", ""),
                             checks=known(table.get("checks", []), f"ops.{op}.checks"), wide_inputs=wide,
                             parameters=tuple(int(p) for p in table.get("parameters", ())),
                             may_not_map=bool(table.get("may_not_map", False)),
                             source=source(table, f"ops.{op}", data["ops_defaults"]),
                             wide_inputs_source=source(
                                 {"source": table["wide_inputs_source"],
                                  **sources.get(table["wide_inputs_source"], {})}, f"ops.{op}.wide_inputs_source")
                             if "wide_inputs_source" in table else None)
        compilers = {}
        for version, table in data["compilers"].items():
            if table["partition"] not in PARTITIONS:
                raise DeviceProfileError(f"{path}: compilers.{version}.partition = {table['partition']!r} is not "
                                         f"one of {', '.join(PARTITIONS)}")
            compilers[version] = Compiler(version=version, partition=table["partition"],
                                          description=table["description"],
                                          source=source(table, f"compilers.{version}"))
        default = str(data["partitioning"]["default_compiler"])
        if default not in compilers:
            raise DeviceProfileError(f"{path}: partitioning.default_compiler = {default!r} is not one of "
                                     f"{sorted(compilers)}")
        return EdgeTpuRules(
            general=known(general["checks"], "general.checks"), general_source=source(general, "general"),
            ops=ops, cache_bytes=int(cache["bytes"]), borderline_fraction=float(cache["borderline_fraction"]),
            cache_source=source(cache, "cache"), compilers=compilers, default_compiler=default, path=path)
    except KeyError as exc:
        raise DeviceProfileError(f"{path}: missing key {exc.args[0]!r}") from exc


# ---------------------------------------------------------------- the checks

Check = Callable[[Op, Graph, OpRule], "str | None"]


@dataclasses.dataclass(frozen=True)
class CheckEntry:
    func: Check
    status: str                  # what the compiler's log says for an op failing this check

    @property
    def message(self) -> str:
        return " ".join((self.func.__doc__ or self.func.__name__).split())


CHECKS: dict[str, CheckEntry] = {}


def _check(status: str) -> Callable[[Check], Check]:
    def register(func: Check) -> Check:
        CHECKS[func.__name__] = CheckEntry(func, status)
        return func
    return register


@dataclasses.dataclass(frozen=True)
class Unsupported:
    """Why the Edge TPU cannot run one operator."""

    rule: str                    # the check's name, or "supported_operations"
    status: str                  # the compiler's words
    reason: str                  # the rule's message and what broke it


def unsupported(op: Op, graph: Graph, rules: EdgeTpuRules) -> Unsupported | None:
    """None when the Edge TPU can run `op`, else the first rule it breaks (the one place this is decided)."""
    rule = rules.ops.get(op.kind)
    if rule is None:
        return Unsupported("supported_operations", NOT_SUPPORTED,
                           f"{op.kind} is not in the Edge TPU's supported operations ({rules.general_source.where}"
                           "#supported-operations).")
    for name in rules.general + rule.checks:
        entry = CHECKS[name]
        detail = entry.func(op, graph, rule)
        if detail is not None:
            return Unsupported(name, entry.status, f"{entry.message} Here: {detail}.")
    return None


def _describe(t) -> str:
    return f"{t.dtype.name}{'' if t.quantized else ' without quantization'}"


@_check(DATA_TYPE)
def tensors_8bit(op: Op, graph: Graph, rule: OpRule) -> str | None:
    """The Edge TPU runs only 8-bit quantized tensors: inputs and outputs must be int8 or uint8 with
    quantization parameters (wider types only where the operator's table entry allows them: int32 biases,
    shape and axis operands, an LSTM's int16 cell state)."""
    for position, i in enumerate(op.inputs):
        if i < 0:
            continue
        t = graph.tensors[i]
        if t.dtype.name in rule.wide_inputs.get(position, ()):
            continue
        if t.dtype.name not in EIGHT_BIT or not t.quantized:
            return f"input {position} {t.name!r} is {_describe(t)}"
    for t in graph.outputs_of(op):
        if t.dtype.name not in EIGHT_BIT or not t.quantized:
            return f"output {t.name!r} is {_describe(t)}"
    return None


@_check(LIMITATION)
def static_shapes(op: Op, graph: Graph, rule: OpRule) -> str | None:
    """Tensor sizes must be constant at compile time (a dynamic batch dimension is fixed to 1)."""
    for t in graph.inputs_of(op) + graph.outputs_of(op):
        dynamic = [axis for axis, d in enumerate(t.shape_signature) if d < 0]
        if any(axis > 0 for axis in dynamic) or any(d <= 0 for d in t.shape[1:]):
            return f"{t.name!r} has a dynamic shape {list(t.shape_signature or t.shape)}"
    return None


@_check(LIMITATION)
def rank_3_innermost(op: Op, graph: Graph, rule: OpRule) -> str | None:
    """Tensors are 1-, 2- or 3-dimensional; with more dimensions only the 3 innermost may be larger than 1."""
    for t in graph.inputs_of(op) + graph.outputs_of(op):
        if not t.constant and len(t.shape) > 3 and any(d > 1 for d in t.shape[:-3]):
            return f"{t.name!r} has shape {list(t.shape)}"
    return None


@_check(LIMITATION)
def constant_parameters(op: Op, graph: Graph, rule: OpRule) -> str | None:
    """Model parameters (weights and biases) must be constant at compile time."""
    for position in rule.parameters:
        if position < len(op.inputs) and op.inputs[position] >= 0:
            t = graph.tensors[op.inputs[position]]
            if not t.constant:
                return f"input {position} {t.name!r} is computed at run time"
    return None


@_check(LIMITATION)
def same_dilation(op: Op, graph: Graph, rule: OpRule) -> str | None:
    """Must use the same dilation in x and y dimensions."""
    h, w = op.options.get("dilation_h_factor", 1), op.options.get("dilation_w_factor", 1)
    return f"dilation is {h} x {w}" if h != w else None


def _nonzero_option(op: Op, field: str, what: str) -> str | None:
    """What is set when an option that must keep its default (0) is not."""
    value = op.options.get(field, 0)
    return f"{what} {value}" if value else None


@_check(LIMITATION)
def no_fused_activation(op: Op, graph: Graph, rule: OpRule) -> str | None:
    """No fused activation function."""
    return _nonzero_option(op, "fused_activation_function", "fused activation")


@_check(LIMITATION)
def concat_constant_is_zero_pad(op: Op, graph: Graph, rule: OpRule) -> str | None:
    """If any input is a compile-time constant tensor, there must be only 2 inputs, and this constant tensor
    must be all zeros (effectively, a zero-padding op)."""
    constants = [t for t in graph.inputs_of(op) if t.constant]
    if not constants:
        return None
    if len(op.inputs) != 2:
        return f"{len(op.inputs)} inputs, {len(constants)} of them constant"
    t = constants[0]
    if t.dtype.numpy and np.any(t.values() != t.zero_point):
        return f"constant input {t.name!r} is not all zeros"
    return None


@_check(LIMITATION)
def fc_default_weights_format(op: Op, graph: Graph, rule: OpRule) -> str | None:
    """Only the default format is supported for fully-connected weights."""
    return _nonzero_option(op, "weights_format", "weights format")


@_check(LIMITATION)
def output_1d(op: Op, graph: Graph, rule: OpRule) -> str | None:
    """Output tensor is one-dimensional (only the innermost dimension may be larger than 1)."""
    for t in graph.outputs_of(op):
        if any(d > 1 for d in t.shape[:-1]):
            return f"output {t.name!r} has shape {list(t.shape)}"
    return None


def _axes(op: Op, graph: Graph, position: int, data_position: int = 0) -> list[int] | None:
    """A constant axis operand, normalised to non-negative axes of the data input."""
    if position >= len(op.inputs) or op.inputs[position] < 0:
        return None
    t = graph.tensors[op.inputs[position]]
    if not t.constant or t.dtype.numpy is None:
        return None
    rank = len(graph.tensors[op.inputs[data_position]].shape)
    return [int(a) % rank if rank else int(a) for a in np.ravel(t.values())]


@_check(LIMITATION)
def no_batch_axis(op: Op, graph: Graph, rule: OpRule) -> str | None:
    """Cannot operate on (reduce or pack along) the batch dimension."""
    if op.kind == "PACK":
        return "packs along axis 0" if op.options.get("axis", 0) == 0 else None
    axes = _axes(op, graph, 1)
    if axes is None:
        return "reduction axes are not constant"
    return "reduces the batch axis 0" if 0 in axes else None


@_check(LIMITATION)
def z_reduction_multiple_of_4(op: Op, graph: Graph, rule: OpRule) -> str | None:
    """If a z-reduction (over channels), the z-dimension must be a multiple of 4."""
    axes = _axes(op, graph, 1) or []
    shape = graph.tensors[op.inputs[0]].shape
    if shape and (len(shape) - 1) in axes and shape[-1] % 4:
        return f"reduces {shape[-1]} channels"
    return None


@_check(LIMITATION)
def no_batch_padding(op: Op, graph: Graph, rule: OpRule) -> str | None:
    """No padding in batch dimension."""
    t = graph.tensors[op.inputs[1]] if len(op.inputs) > 1 else None
    if t is None or not t.constant:
        return "paddings are not constant"
    pads = t.values()
    return f"pads the batch axis by {pads[0].tolist()}" if pads.ndim == 2 and np.any(pads[0] != 0) else None


@_check(LIMITATION)
def no_batch_split(op: Op, graph: Graph, rule: OpRule) -> str | None:
    """No splitting in batch dimension."""
    axes = _axes(op, graph, 0, data_position=1)
    if axes is None:
        return "split axis is not constant"
    return "splits the batch axis 0" if 0 in axes else None


@_check(LIMITATION)
def prelu_alpha_1d(op: Op, graph: Graph, rule: OpRule) -> str | None:
    """Alpha must be 1-dimensional (only the innermost dimension can be >1 size)."""
    alpha = graph.tensors[op.inputs[1]]
    return f"alpha has shape {list(alpha.shape)}" if any(d > 1 for d in alpha.shape[:-1]) else None


@_check(LIMITATION)
def batch_of_one(op: Op, graph: Graph, rule: OpRule) -> str | None:
    """Input/output is a 3-dimensional tensor (a batch of one image)."""
    for t in graph.inputs_of(op)[:1] + graph.outputs_of(op):
        if len(t.shape) == 4 and t.shape[0] > 1:
            return f"{t.name!r} has batch {t.shape[0]}"
    return None


@_check(LIMITATION)
def softmax_1d_max_16000(op: Op, graph: Graph, rule: OpRule) -> str | None:
    """Supports only 1-D input tensor with a max of 16,000 elements."""
    t = graph.tensors[op.inputs[0]]
    if any(d > 1 for d in t.shape[:-1]):
        return f"input has shape {list(t.shape)}"
    if t.shape and t.shape[-1] > 16000:
        return f"input has {t.shape[-1]} elements"
    return None


@_check(LIMITATION)
def squeeze_leading_ones(op: Op, graph: Graph, rule: OpRule) -> str | None:
    """Squeeze is supported only for leading dimensions of size 1 (no relayout needed): [1,1,10] or
    [1,5,10] is fine, [5,1,10] is not."""
    shape = graph.tensors[op.inputs[0]].shape
    dims = list(op.options.get("squeeze_dims", ())) or [i for i, d in enumerate(shape) if d == 1]
    first_big = next((i for i, d in enumerate(shape) if d > 1), len(shape))
    late = [int(d) % len(shape) for d in dims if int(d) % len(shape) > first_big]
    return f"squeezes axis {late[0]} of {list(shape)}" if late else None


@_check(LIMITATION)
def strided_slice_unit_strides(op: Op, graph: Graph, rule: OpRule) -> str | None:
    """Supported only when all strides are equal to 1 (effectively a Slice), with ellipsis-axis-mask == 0
    and new-axis-mask == 0."""
    ellipsis, new_axis = op.options.get("ellipsis_mask", 0), op.options.get("new_axis_mask", 0)
    if ellipsis or new_axis:
        return f"ellipsis mask {ellipsis}, new-axis mask {new_axis}"
    strides = graph.tensors[op.inputs[3]] if len(op.inputs) > 3 else None
    if strides is None or not strides.constant:
        return "strides are not constant"
    values = strides.values()
    return f"strides {values.tolist()}" if np.any(values != 1) else None
