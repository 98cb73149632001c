"""Will the Coral Edge TPU run this model, and where does the CPU take over? The compiler's partition, predicted.

`check_model` reads a .tflite through `edgemnv2.tflite` (no TensorFlow), asks the rules (`edgetpu_rules.unsupported`, data in
`edgetpu_ops.toml`) about every operator and partitions the graph the way the chosen compiler version does:

* v16 (default): unsupported ops in front of the model stay on the CPU and the one Edge TPU segment starts
  after them; every later op the Edge TPU can run is mapped unless it needs the output of a CPU op that
  itself runs after the segment (what Coral's compiled MoveNet and LSTM pairs show);
* v15: the first unsupported op and everything after it in execution order run on the CPU (Coral's note on
  partitioning), a float-input QUANTIZE in front excepted.

The report says which ops run where (before the segment, on the TPU, after it), the tensors crossing the
boundary, the first CPU op and why, and the parameters against the on-chip cache (which of them stream from
host memory). An already compiled model (`edgetpu-custom-op`) is read as the compiler left it.
`render_text` and `report_json` are the one place the report is rendered.

`compile_model` runs `edgetpu_compiler` when it is installed and parses its log into the same report.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

from edgemnv2.deploy.edgetpu_rules import (
    MAPPED, ONE_SUBGRAPH, RULES_FILE, EdgeTpuRules, load_rules, unsupported)
from edgemnv2.errors import ConversionError, ModelError, ToolMissing
from edgemnv2.tflite import Subgraph as Graph
from edgemnv2.tflite import load_graph

__all__ = ["EDGETPU_CUSTOM_OP", "RULES_FILE", "SCHEMA_VERSION", "Comparison", "EdgeTpuReport", "Partition", "Placement",
           "check_model", "compare", "compile_model", "load_rules", "partition", "read_graph", "render_text", "report_json"]

EDGETPU_CUSTOM_OP = "edgetpu-custom-op"
SCHEMA_VERSION = 2   # of `edgetpu check|compile --json`; 2: segments, boundary tensors, streamed parameters
COMPILER = "edgetpu_compiler"
INSTALL_HINT = ("edgetpu_compiler is not on PATH: on x86-64 Debian/Ubuntu add Coral's apt repository and run "
                "`sudo apt-get install edgetpu-compiler` (https://coral.ai/docs/edgetpu/compiler/#system-requirements), "
                "or compile in Coral's Colab notebook; `edgemnv2 edgetpu check` works without it")


def read_graph(path: Path) -> Graph:
    """The main subgraph of a .tflite file; a file that is not TFLite is one clear error."""
    return load_graph(Path(path)).main


# ---------------------------------------------------------------- the partition

@dataclasses.dataclass(frozen=True)
class Placement:
    index: int
    op: str
    device: str                  # "tpu" or "cpu"
    segment: str                 # "before" the TPU segment, "tpu", or "after" it
    status: str                  # the compiler's words ("Mapped to Edge TPU", "Operation not supported", ...)
    reason: str | None = None    # why it is on the CPU; None on the TPU
    rule: str | None = None      # the rule that put it there
    outputs: tuple[str, ...] = ()   # output tensor names (how the compiled file names the same op)


@dataclasses.dataclass(frozen=True)
class BoundaryTensor:
    name: str
    shape: tuple[int, ...]
    dtype: str
    bytes: int


@dataclasses.dataclass(frozen=True)
class Partition:
    compiler: str                               # the modelled compiler version ("16")
    placements: tuple[Placement, ...]
    tpu_inputs: tuple[BoundaryTensor, ...]      # what the host hands to the TPU segment
    tpu_outputs: tuple[BoundaryTensor, ...]     # what comes back


def partition(graph: Graph, rules: EdgeTpuRules | None = None, compiler_version: str | None = None) -> Partition:
    """Place every op of an uncompiled graph as the chosen compiler version would."""
    rules = rules or load_rules()
    compiler = rules.compiler(compiler_version)
    verdicts = [unsupported(op, graph, rules) for op in graph.ops]
    if compiler.partition == "dependencies":
        placements = _place_by_dependencies(graph, verdicts)
    else:
        placements = _place_first_unsupported(graph, verdicts)
    tpu_ops = [op for op, p in zip(graph.ops, placements) if p.device == "tpu"]
    if not tpu_ops:   # no segment: nothing is "after" it
        placements = [dataclasses.replace(p, segment="before") for p in placements]
    made_on_tpu = {t for op in tpu_ops for t in op.outputs}
    entering = dict.fromkeys(t for op in tpu_ops for t in op.inputs
                             if t >= 0 and not graph.tensors[t].constant and t not in made_on_tpu)
    read_on_cpu = {t for op, p in zip(graph.ops, placements) if p.device == "cpu" for t in op.inputs}
    leaving = dict.fromkeys(t for op in tpu_ops for t in op.outputs if t in read_on_cpu or t in graph.outputs)
    return Partition(compiler.version, tuple(placements), _boundary(graph, entering), _boundary(graph, leaving))


def _boundary(graph: Graph, tensors) -> tuple[BoundaryTensor, ...]:
    return tuple(BoundaryTensor(graph.tensors[t].name, graph.tensors[t].shape, graph.tensors[t].dtype.name,
                                graph.tensors[t].nbytes) for t in tensors)


def _names(graph: Graph, op) -> tuple[str, ...]:
    return tuple(t.name for t in graph.outputs_of(op))


def _place_by_dependencies(graph: Graph, verdicts) -> list[Placement]:
    """v16: CPU ops in front, one TPU segment, and CPU ops that need what it computes."""
    producer = {t: op.index for op in graph.ops for t in op.outputs}
    placements: list[Placement] = []
    for op, verdict in zip(graph.ops, verdicts):
        sources = [placements[producer[t]] for t in op.inputs if t >= 0 and t in producer]
        after_tpu = any(s.device == "tpu" or s.segment == "after" for s in sources)
        blocker = next((s for s in sources if s.segment == "after"), None)
        segment = "after" if after_tpu else "before"
        if verdict is None and blocker is None:
            placements.append(Placement(op.index, op.kind, "tpu", "tpu", MAPPED, outputs=_names(graph, op)))
        elif verdict is None:
            placements.append(Placement(op.index, op.kind, "cpu", segment, ONE_SUBGRAPH,
                                        f"needs the output of CPU op #{blocker.index} {blocker.op}, which runs after "
                                        "the Edge TPU segment (the compiler makes one segment)",
                                        "one_segment", _names(graph, op)))
        else:
            placements.append(Placement(op.index, op.kind, "cpu", segment, verdict.status, verdict.reason,
                                        verdict.rule, _names(graph, op)))
    return placements


def _place_first_unsupported(graph: Graph, verdicts) -> list[Placement]:
    """v15: TPU up to the first unsupported op; that op and all after it on the CPU."""
    placements: list[Placement] = []
    first: Placement | None = None
    for op, verdict in zip(graph.ops, verdicts):
        names = _names(graph, op)
        leading = not any(p.device == "tpu" for p in placements)
        if first is not None:
            placements.append(Placement(op.index, op.kind, "cpu", "after", ONE_SUBGRAPH,
                                        f"after the first CPU op #{first.index} {first.op} (the compiler "
                                        "partitions the model once)", "one_segment", names))
        elif verdict is None:
            placements.append(Placement(op.index, op.kind, "tpu", "tpu", MAPPED, outputs=names))
        elif leading and _is_input_quantize(op, graph):
            placements.append(Placement(op.index, op.kind, "cpu", "before", verdict.status,
                                        "quantizes a float model input on the CPU before the Edge TPU part "
                                        "(does not split the model)", "float_input_quantize", names))
        else:
            first = Placement(op.index, op.kind, "cpu", "after" if not leading else "before", verdict.status,
                              verdict.reason, verdict.rule, names)
            placements.append(first)
    return placements


def _is_input_quantize(op, graph: Graph) -> bool:
    t = graph.tensors[op.inputs[0]] if op.inputs else None
    return op.kind == "QUANTIZE" and t is not None and t.index in graph.inputs and t.dtype.name == "float32"


# ---------------------------------------------------------------- the report

@dataclasses.dataclass(frozen=True)
class EdgeTpuReport:
    model: str
    compiled: bool
    source: str                  # "static check" or "edgetpu_compiler"
    compiler_version: str | None  # the modelled version (static check) or the one that ran
    tpu_ops: int
    cpu_ops: int
    cpu_before: int | None       # CPU ops in front of the TPU segment (None: the compiler log does not say)
    cpu_after: int | None        # CPU ops that need what the segment computes
    tpu_segments: int
    first_cpu_op: str | None     # the first CPU op in execution order, and why
    first_cpu_index: int | None
    first_cpu_reason: str | None
    fallback_op: str | None      # the first CPU op after the segment: where the CPU takes over, and why
    fallback_index: int | None
    fallback_reason: str | None
    parameter_bytes: int         # constant parameters of the TPU ops (a compiled model: its executable)
    cache_bytes: int
    cached_bytes: int | None
    streamed_bytes: int | None   # parameters that do not fit and stream from host memory every inference
    streamed_ops: tuple[int, ...]
    fits_cache: bool | None
    verdict: str
    tpu_inputs: tuple[BoundaryTensor, ...] = ()
    tpu_outputs: tuple[BoundaryTensor, ...] = ()
    ops: tuple[Placement, ...] = ()
    notes: tuple[str, ...] = ()
    against: Comparison | None = None   # the prediction held against a compiled file (`check --against`)


@dataclasses.dataclass(frozen=True)
class Comparison:
    """A predicted partition against the one a compiled *_edgetpu.tflite holds (ops matched by kind and output
    tensor names, which the compiler keeps)."""

    compiled_model: str
    compiled_cpu_ops: int
    compiled_cpu_before: int
    compiled_cpu_after: int
    matches: bool
    cpu_only_in_compiled: tuple[str, ...]   # predicted on the TPU, left on the CPU by the compiler
    cpu_only_predicted: tuple[str, ...]     # predicted on the CPU, mapped by the compiler


def compare(predicted: EdgeTpuReport, compiled: EdgeTpuReport) -> Comparison:
    """Where the prediction and the compiler's own partition differ, op by op."""
    if not compiled.compiled or compiled.source == COMPILER:
        raise ModelError(f"{compiled.model} is not a model compiled by edgetpu_compiler (no {EDGETPU_CUSTOM_OP})")
    if predicted.compiled:
        raise ModelError(f"{predicted.model} is already compiled: check the model from before edgetpu_compiler")

    def cpu(report: EdgeTpuReport) -> Counter:
        return Counter((p.op, p.outputs) for p in report.ops if p.device == "cpu")

    ours, theirs = cpu(predicted), cpu(compiled)
    index = {(p.op, p.outputs): p.index for p in predicted.ops}

    def listed(ops: Counter) -> tuple[str, ...]:
        return tuple(f"#{index.get(key, '?')} {key[0]}" for key in sorted(ops.elements(), key=lambda k: index.get(k, -1)))

    return Comparison(compiled.model, compiled.cpu_ops, compiled.cpu_before or 0, compiled.cpu_after or 0,
                      ours == theirs and (predicted.cpu_before, predicted.cpu_after) == (compiled.cpu_before,
                                                                                          compiled.cpu_after),
                      listed(theirs - ours), listed(ours - theirs))


def format_mib(n: float) -> str:
    return f"{n / 2**20:.2f} MiB"


def check_model(path: Path, rules: EdgeTpuRules | None = None, compiler_version: str | None = None) -> EdgeTpuReport:
    """Static Edge TPU check of one .tflite (compiled or not)."""
    rules = rules or load_rules()
    compiler = rules.compiler(compiler_version)
    graph = read_graph(path)
    if any(op.kind == EDGETPU_CUSTOM_OP for op in graph.ops):
        return _compiled_report(Path(path), graph, rules)
    part = partition(graph, rules, compiler.version)
    placements = part.placements
    tpu_ops = [op for op, p in zip(graph.ops, placements) if p.device == "tpu"]
    parameters: dict[int, int] = {}   # constant tensor -> the first TPU op that reads it, in execution order
    for op in tpu_ops:
        for t in op.inputs:
            if t >= 0 and graph.tensors[t].constant:
                parameters.setdefault(t, op.index)
    parameter_bytes, cached, streamed_ops = 0, 0, []
    for t, index in parameters.items():
        size = graph.tensors[t].buffer.size
        parameter_bytes += size
        if cached + size <= rules.cache_bytes and not streamed_ops:
            cached += size
        elif index not in streamed_ops:
            streamed_ops.append(index)
    streamed = parameter_bytes - cached
    cpu = [p for p in placements if p.device == "cpu"]
    first = cpu[0] if cpu else None
    fallback = next((p for p in cpu if p.segment == "after"), None)
    before, after = sum(p.segment == "before" for p in cpu), sum(p.segment == "after" for p in cpu)
    notes = _notes(graph, rules, placements, parameter_bytes, streamed)
    report = EdgeTpuReport(
        model=str(path), compiled=False, source="static check", compiler_version=compiler.version,
        tpu_ops=len(tpu_ops), cpu_ops=len(cpu), cpu_before=before, cpu_after=after,
        tpu_segments=1 if tpu_ops else 0,
        first_cpu_op=first.op if first else None, first_cpu_index=first.index if first else None,
        first_cpu_reason=first.reason if first else None,
        fallback_op=fallback.op if fallback else None, fallback_index=fallback.index if fallback else None,
        fallback_reason=fallback.reason if fallback else None,
        parameter_bytes=parameter_bytes, cache_bytes=rules.cache_bytes, cached_bytes=cached,
        streamed_bytes=streamed, streamed_ops=tuple(streamed_ops), fits_cache=streamed == 0, verdict="",
        tpu_inputs=part.tpu_inputs, tpu_outputs=part.tpu_outputs, ops=placements, notes=notes)
    return dataclasses.replace(report, verdict=_verdict(report))


def _notes(graph: Graph, rules: EdgeTpuRules, placements, parameter_bytes: int, streamed: int) -> tuple[str, ...]:
    notes = []
    dynamic_batch = [t.name for t in graph.tensors if t.shape_signature[:1] == (-1,)]
    if dynamic_batch:
        notes.append(f"{len(dynamic_batch)} tensors have a dynamic batch dimension (shape_signature -1); if "
                     "edgetpu_compiler stops with 'dynamic-sized tensors', convert with a fixed batch of 1")
    if not streamed and parameter_bytes > rules.borderline_fraction * rules.cache_bytes:
        notes.append("parameters fill most of the on-chip cache; the compiler may still stream some from host memory")
    uncertain = Counter(p.op for p in placements if p.device == "tpu" and rules.ops[p.op].may_not_map)
    for op, count in sorted(uncertain.items()):
        notes.append(f"{count} {op} mapped here; Coral's table warns: \"{rules.ops[op].limitations}\"")
    return tuple(notes)


def _verdict(r: EdgeTpuReport) -> str:
    if r.tpu_ops == 0:
        return f"nothing runs on the Edge TPU: the first op, {r.first_cpu_op}, already falls back to the CPU"
    if r.fits_cache:
        cache = f"parameters {format_mib(r.parameter_bytes)} fit the {format_mib(r.cache_bytes)} on-chip cache"
    else:
        cache = (f"parameters {format_mib(r.parameter_bytes)} exceed the {format_mib(r.cache_bytes)} on-chip cache: "
                 f"{format_mib(r.streamed_bytes or 0)} stream from host memory on every inference")
    if r.cpu_ops == 0:
        return f"all {r.tpu_ops} ops can run on the Edge TPU; {cache}"
    cpu = [f"{r.cpu_before} before it" if r.cpu_before else "",
           f"{r.cpu_after} after it from #{r.fallback_index} {r.fallback_op}" if r.cpu_after else ""]
    return (f"{r.tpu_ops} of {r.tpu_ops + r.cpu_ops} ops on the Edge TPU in one segment; CPU ops: "
            f"{', '.join(c for c in cpu if c)}; {cache}")


def _compiled_report(path: Path, graph: Graph, rules: EdgeTpuRules) -> EdgeTpuReport:
    """A model already compiled: the TPU part is one or more custom ops whose payload is the executable."""
    custom = [op.index for op in graph.ops if op.kind == EDGETPU_CUSTOM_OP]
    placements = tuple(
        Placement(op.index, op.kind, "tpu", "tpu", MAPPED, outputs=_names(graph, op)) if op.kind == EDGETPU_CUSTOM_OP
        else Placement(op.index, op.kind, "cpu", "before" if op.index < custom[0] else "after",
                       "left on the CPU by the compiler", "left on the CPU by the compiler", None, _names(graph, op))
        for op in graph.ops)
    cpu = [p for p in placements if p.device == "cpu"]
    first = cpu[0] if cpu else None
    fallback = next((p for p in cpu if p.segment == "after"), None)
    executable = sum(op.custom_options_size for op in graph.ops if op.kind == EDGETPU_CUSTOM_OP)
    tpu_in = dict.fromkeys(t for i in custom for t in graph.ops[i].inputs if t >= 0)
    tpu_out = dict.fromkeys(t for i in custom for t in graph.ops[i].outputs if t >= 0)
    verdict = (f"already compiled for the Edge TPU: {len(custom)} {EDGETPU_CUSTOM_OP}"
               + (f", {len(cpu)} ops left on the CPU" if cpu else ", nothing left on the CPU")
               + f"; executable {format_mib(executable)}")
    return EdgeTpuReport(
        model=str(path), compiled=True, source="static check", compiler_version=None, tpu_ops=len(custom),
        cpu_ops=len(cpu), cpu_before=sum(p.segment == "before" for p in cpu),
        cpu_after=sum(p.segment == "after" for p in cpu), tpu_segments=len(custom),
        first_cpu_op=first.op if first else None, first_cpu_index=first.index if first else None,
        first_cpu_reason=first.reason if first else None,
        fallback_op=fallback.op if fallback else None, fallback_index=fallback.index if fallback else None,
        fallback_reason=fallback.reason if fallback else None,
        parameter_bytes=executable, cache_bytes=rules.cache_bytes, cached_bytes=None, streamed_bytes=None,
        streamed_ops=(), fits_cache=None, verdict=verdict, tpu_inputs=_boundary(graph, tpu_in),
        tpu_outputs=_boundary(graph, tpu_out), ops=placements,
        notes=("parameter_bytes is the size of the compiled executable (parameters + instructions); "
               "whether it is cached on chip was decided by the compiler",))


# ---------------------------------------------------------------- rendering (the one place)

def report_json(report: EdgeTpuReport) -> dict[str, Any]:
    """The report as versioned JSON-ready data."""
    return {"schema_version": SCHEMA_VERSION, **dataclasses.asdict(report)}


def _human(n: int) -> str:
    return f"{n} B" if n < 2**10 else f"{n / 2**10:.1f} KiB" if n < 2**20 else format_mib(n)


def _tensors(tensors: tuple[BoundaryTensor, ...]) -> str:
    return f"{len(tensors)} tensor{'s' if len(tensors) != 1 else ''} ({_human(sum(t.bytes for t in tensors))})"


def render_text(report: EdgeTpuReport, show_ops: bool = False) -> str:
    """The report as the table `edgetpu check|compile` prints."""
    lines = [f"Model:       {report.model}"]
    how = report.source
    if report.compiled and report.source != COMPILER:
        how += " (already compiled model)"
    elif report.compiler_version:
        how += f", as Edge TPU Compiler {report.compiler_version} partitions"
    lines.append(f"Checked by:  {how}")
    if report.ops:
        tpu = Counter(p.op for p in report.ops if p.device == "tpu")
        cpu = Counter(p.op for p in report.ops if p.device == "cpu")
        lines += ["", f"{'Operator':<28}{'TPU':>6}{'CPU':>6}"]
        lines += [f"{op:<28}{tpu[op]:>6}{cpu[op]:>6}" for op in
                  sorted(set(tpu) | set(cpu), key=lambda o: (-(tpu[o] + cpu[o]), o))]
        lines.append("")
    if show_ops:
        for p in report.ops:
            where = "TPU" if p.device == "tpu" else f"CPU {p.segment}"
            why = "" if not p.reason else f" {p.reason}" if p.reason == p.status else f" {p.status}: {p.reason}"
            lines.append(f"  #{p.index:<4} {p.op:<26} {where:<11}{why}".rstrip())
        lines.append("")
    split = ""
    if report.cpu_ops and not report.tpu_ops:
        split = " (no TPU segment)"
    elif report.cpu_ops and report.cpu_before is not None:
        split = f" ({report.cpu_before} before the TPU segment, {report.cpu_after} after it)"
    lines.append(f"Ops:         {report.tpu_ops} on the Edge TPU, {report.cpu_ops} on the CPU{split}")
    if report.tpu_inputs or report.tpu_outputs:
        lines.append(f"Boundary:    host -> TPU {_tensors(report.tpu_inputs)}, TPU -> host {_tensors(report.tpu_outputs)}")
    if report.first_cpu_op:
        where = f"#{report.first_cpu_index} " if report.first_cpu_index is not None else ""
        lines.append(f"First CPU op: {where}{report.first_cpu_op}: {report.first_cpu_reason}")
    if report.fallback_op and report.fallback_index != report.first_cpu_index:
        lines.append(f"CPU takes over: #{report.fallback_index} {report.fallback_op}: {report.fallback_reason}")
    if report.fits_cache is None:
        fits = "decided by the compiler"
    elif report.fits_cache:
        fits = "fits; nothing streams from host memory"
    else:
        fits = (f"does NOT fit: {format_mib(report.streamed_bytes or 0)} stream from host memory on every inference"
                + (f", the parameters of {len(report.streamed_ops)} ops from #{report.streamed_ops[0]} on in "
                   "execution order" if report.streamed_ops else ""))
    lines.append(f"Parameters:  {format_mib(report.parameter_bytes)} vs {format_mib(report.cache_bytes)} "
                 f"on-chip cache ({fits})")
    lines += [f"Note:        {note}" for note in report.notes]
    lines.append(f"Verdict:     {report.verdict}")
    if report.against is not None:
        a = report.against
        lines.append(f"Against:     {a.compiled_model}: the compiler left {a.compiled_cpu_ops} ops on the CPU "
                     f"({a.compiled_cpu_before} before, {a.compiled_cpu_after} after); "
                     + ("the prediction is identical" if a.matches else "the prediction differs"))
        for label, ops in (("on the CPU there, predicted on the TPU", a.cpu_only_in_compiled),
                           ("mapped there, predicted on the CPU", a.cpu_only_predicted)):
            if ops:
                more = f" and {len(ops) - 10} more" if len(ops) > 10 else ""
                lines.append(f"             {label} ({len(ops)}): {', '.join(ops[:10])}{more}")
    return "\n".join(lines)


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
    return EdgeTpuReport(
        model=str(model), compiled=True, source=COMPILER, compiler_version=log.version, tpu_ops=tpu, cpu_ops=cpu,
        cpu_before=None, cpu_after=None, tpu_segments=log.subgraphs or (1 if tpu else 0),
        first_cpu_op=first[0] if first else None, first_cpu_index=None, first_cpu_reason=first[1] if first else None,
        fallback_op=None, fallback_index=None, fallback_reason=None, parameter_bytes=on_chip + off_chip,
        cache_bytes=rules.cache_bytes, cached_bytes=on_chip, streamed_bytes=off_chip, streamed_ops=(),
        fits_cache=fits, verdict=verdict, notes=(f"output: {log.output_model}",) if log.output_model else ())


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
    report = report_from_log(model, log)
    output = Path(log.output_model) if log.output_model else None
    if output is not None and output.is_file():
        report = with_compiled_placement(report, check_model(output))
    return report, log, text


def with_compiled_placement(report: EdgeTpuReport, compiled: EdgeTpuReport) -> EdgeTpuReport:
    """The compiler's log report, with where each op landed read from the model it wrote."""
    return dataclasses.replace(
        report, cpu_before=compiled.cpu_before, cpu_after=compiled.cpu_after, tpu_segments=compiled.tpu_segments,
        first_cpu_index=compiled.first_cpu_index, first_cpu_op=compiled.first_cpu_op or report.first_cpu_op,
        fallback_op=compiled.fallback_op, fallback_index=compiled.fallback_index,
        fallback_reason=compiled.fallback_reason, tpu_inputs=compiled.tpu_inputs, tpu_outputs=compiled.tpu_outputs,
        ops=compiled.ops, notes=report.notes + (f"op placement read from {compiled.model} (its op indices)",))
