"""Tensor-arena plan that reproduces TensorFlow Lite Micro's, from the .tflite alone (no TensorFlow).

TFLM puts everything a model needs at run time into one caller-supplied arena:

* the **head** (non-persistent) holds activations and kernel scratch buffers, placed by
  `GreedyMemoryPlanner` (memory_planner/greedy_memory_planner.cc): buffers sorted by size, largest
  first, each at the lowest offset that does not overlap a buffer alive at the same time; lifetimes
  from `AllocationInfoBuilder` (micro_allocation_info.cc), sizes rounded up to 16 bytes
  (micro_arena_constants.h);
* the **tail** (persistent) grows down from the arena's end: the runtime's own objects, one
  TfLiteEvalTensor per tensor, one NodeAndRegistration per op, each op's parsed options and kernel
  OpData with its per-channel multiplier/shift arrays, scratch-buffer handles, variable tensors, and
  full TfLiteTensors (with quantization) for the graph inputs and outputs (micro_allocator.cc,
  micro_interpreter.cc).

`plan_arena` replays both in the same order with the same alignment rules, so its total is what
`RecordingMicroAllocator::PrintAllocations` reports as "Arena allocation total" for the `tflite-micro`
wheel (see `tflm_arena.measure_arena` and `benchmarks/arena_check.py`). Kernel facts live in
`tflm_kernels.toml`.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from edgemnv2.errors import ModelError
from edgemnv2.resources import data_file
from edgemnv2.tflite import Graph, load_graph

BUFFER_ALIGNMENT = 16          # MicroArenaBufferAlignment() (micro_arena_constants.h)
LITERT_TENSOR_ALIGNMENT = 64   # kDefaultTensorAlignment in LiteRT's arena_planner.h

# sizeof/alignof of runtime structs in the tflite-micro wheel (x86-64, 8-byte pointers), from
# tensorflow/lite/micro/micro_common.h, core/c/common.h and micro_allocator.h.
_EVAL_TENSOR = (24, 8)             # TfLiteEvalTensor {data*, dims*, type}
_NODE_AND_REGISTRATION = (64, 8)   # NodeAndRegistration {TfLiteNode, TFLMRegistration*}
_TFLITE_TENSOR = (64, 8)           # TfLiteTensor as allocated for graph inputs/outputs
_AFFINE_QUANTIZATION = (24, 8)     # TfLiteAffineQuantization {scale*, zero_point*, quantized_dimension}
_INT_ARRAY_ALIGN = 4               # TfLiteIntArray {size, data[]}
_SUBGRAPH_ALLOCATIONS = (16, 8)    # SubgraphAllocations {node_and_registrations*, tensors*}
_BUILTIN_DATA_ALLOCATOR = (16, 8)  # MicroBuiltinDataAllocator {vtable*, persistent_allocator*}
_SCRATCH_HANDLE = (24, 8)          # internal::ScratchBufferHandle {data*, bytes, node_idx}; measured +24 per MEAN
_POINTER = 8
# RecordingSingleArenaBufferAllocator + GreedyMemoryPlanner + RecordingMicroAllocator (and whatever else
# the interpreter keeps in the arena before the model is read), placed at the very end of the arena by
# RecordingMicroAllocator::Create. A constant of the runtime build, not of the model: measured as the tail
# of one-op models minus every model-dependent allocation below (its size mod 16 fixes the padding after
# the 4-byte-aligned op options, which the op-by-op check confirms for 1..68 ops).
_RUNTIME_OBJECTS = 456

_OFFLINE_PLAN_METADATA = "OfflineMemoryAllocation"
_UNKNOWN_KERNEL = {"builtin_bytes": 16, "builtin_align": 4, "op_data_bytes": 64}


@dataclass(frozen=True)
class PlannedBuffer:
    """One buffer of the head: a tensor (tensor >= 0) or an op's scratch buffer (tensor == -1)."""

    name: str
    tensor: int
    bytes: int          # rounded up to the planner alignment
    first_op: int       # op index where it is created (-1: before the first op, i.e. a graph input)
    last_op: int        # op index of its last use
    offset: int         # byte offset in the head chosen by the planner


@dataclass(frozen=True)
class ArenaPlan:
    """TFLM arena as its allocator would lay it out (bytes).

    `peak_bytes` = `nonpersistent_bytes` (head: greedy-planned activations + scratch buffers)
    + `persistent_bytes` (tail: eval tensors, I/O TfLiteTensors, node structs, kernels' op data, ...).
    """

    peak_bytes: int
    nonpersistent_bytes: int
    persistent_bytes: int
    timeline: list[int]          # activation + scratch bytes live while each op runs, op order
    op_names: list[str]          # builtin op name per op (e.g. "CONV_2D"), same order as timeline
    persistent_breakdown: dict[str, int] = field(default_factory=dict)  # tail section -> bytes incl. padding
    scratch_bytes: int = 0       # largest kernel scratch buffer placed in the head
    buffers: list[PlannedBuffer] = field(default_factory=list)
    unknown_ops: list[str] = field(default_factory=list)  # ops whose tail use is a default guess

    @property
    def peak_live_bytes(self) -> int:
        """Lower bound for any planner: the most bytes alive at one op (the head can exceed it by fragmentation)."""
        return max(self.timeline, default=0)


@dataclass(frozen=True)
class _Tensor:
    bytes: int
    constant: bool
    variable: bool
    channels: int       # quantization scale count (0 = not quantized)
    name: str


@dataclass(frozen=True)
class _Model:
    """The graph, with the planner's view of each of its tensors worked out once."""

    graph: Graph
    tensors: tuple[_Tensor, ...]
    offline_offsets: tuple[int, ...] | None


@lru_cache(maxsize=1)
def kernel_table() -> dict[str, dict]:
    """Per-op tail facts from tflm_kernels.toml (see that file for sources)."""
    return tomllib.loads(data_file("profile/tflm_kernels.toml").read_text(encoding="utf-8"))


def _align_up(value: int, alignment: int) -> int:
    return (value + alignment - 1) // alignment * alignment


def _parse(model: bytes | Path) -> _Model:
    return _planner_model(load_graph(model, hint="give a .tflite file"))


def _planner_model(graph: Graph) -> _Model:
    # TFLM sizes a tensor as the product of its stored dimensions (a scalar is one element)
    tensors = tuple(_Tensor(bytes=math.prod(t.shape) * t.dtype.itemsize, constant=t.constant, variable=t.is_variable,
                            channels=len(t.quantization.scale) if t.quantized and t.quantization.zero_point else 0,
                            name=t.name) for t in graph.tensors)
    return _Model(graph=graph, tensors=tensors, offline_offsets=_offline_offsets(graph, len(tensors)))


def _offline_offsets(graph: Graph, tensor_count: int) -> tuple[int, ...] | None:
    """Offsets from the 'OfflineMemoryAllocation' metadata ([version, subgraph, count, offsets...]), -1 = online."""
    raw = graph.metadata_bytes(_OFFLINE_PLAN_METADATA)
    if raw is None:
        return None
    values = np.frombuffer(raw, dtype="<i4")
    if int(values[2]) != tensor_count:
        raise ModelError(f"offline memory plan lists {int(values[2])} tensors but the model has "
                         f"{tensor_count}; TFLM rejects this model")
    return tuple(int(v) for v in values[3:3 + tensor_count])


# ---------------------------------------------------------------------------------------------- head


def _lifetimes(m: _Model) -> list[tuple[str, int, int, int, int, int]]:
    """(name, tensor, bytes, first, last, offline offset) per planned buffer, in TFLM's AllocationInfo order.

    Scope 0 is "before the first op"; op i runs in scope i + 1 (AllocationInfoBuilder::MarkAllocationLifetimes).
    Tensors no op touches keep the lifetime (-1, -1), as in TFLM.
    """
    first = [-1] * len(m.tensors)
    last = [-1] * len(m.tensors)
    for t in m.graph.inputs + m.graph.outputs:
        first[t] = last[t] = 0
    scratch: list[tuple[str, int, int, int]] = []
    for i, op in enumerate(m.graph.ops):
        scope = i + 1
        for t in op.outputs:
            first[t] = last[t] = scope
        for t in op.inputs:
            if t >= 0:
                last[t] = scope
        for t in op.outputs:
            last[t] = scope
        size = _scratch_bytes(m, i)
        if size:
            scratch.append((f"scratch:{op.name}#{i}", size, scope, scope))
    end = len(m.graph.ops)
    for t in m.graph.outputs:
        last[t] = end

    entries = []
    for t, tensor in enumerate(m.tensors):
        if tensor.constant or tensor.variable or tensor.bytes == 0:
            continue
        offline = m.offline_offsets[t] if m.offline_offsets else -1
        entries.append((tensor.name, t, _align_up(tensor.bytes, BUFFER_ALIGNMENT), first[t], last[t], offline))
    for name, size, lo, hi in scratch:
        entries.append((name, -1, _align_up(size, BUFFER_ALIGNMENT), lo, hi, -1))
    return entries


def _scratch_bytes(m: _Model, op_index: int) -> int:
    op = m.graph.ops[op_index]
    if kernel_table().get(op.name, {}).get("scratch") != "output_int32" or not op.outputs or not op.inputs \
            or op.inputs[0] < 0 or m.graph.tensors[op.inputs[0]].dtype.name not in ("uint8", "int16", "int8"):
        return 0
    return math.prod(m.graph.tensors[op.outputs[0]].shape) * 4


def greedy_offsets(sizes: list[int], firsts: list[int], lasts: list[int],
                   offline: list[int] | None = None) -> list[int]:
    """Offsets GreedyMemoryPlanner::CalculateOffsetsIfNeeded gives these buffers (same tie-breaking).

    Online buffers enter the sort list from its tail (so in reverse add order), are bubble-sorted by
    size descending (stable), then each goes in the first gap, scanning placed buffers by offset, that
    is free over its whole lifetime. Offline-planned buffers keep their offsets and are placed first.
    """
    n = len(sizes)
    offline = offline or [-1] * n
    order_head = [i for i in range(n) if offline[i] != -1]
    order_tail = [i for i in reversed(range(n)) if offline[i] == -1]
    order_tail.sort(key=lambda i: -sizes[i])  # Python's sort is stable, like ReverseSortInPlace
    order = order_head + order_tail
    offsets = [-1] * n
    placed: list[tuple[int, int]] = []  # (offset, buffer) kept sorted by offset, insertion after equal offsets
    for i in order:
        if offline[i] != -1:
            offset = offline[i]
        else:
            offset = 0
            for off, j in placed:
                if firsts[j] > lasts[i] or firsts[i] > lasts[j]:
                    continue  # not alive at the same time
                if off - offset >= sizes[i]:
                    break
                offset = max(offset, off + sizes[j])
        offsets[i] = offset
        pos = len(placed)
        for k, (off, _) in enumerate(placed):
            if off > offset:
                pos = k
                break
        placed.insert(pos, (offset, i))
    return offsets


def _plan_head(m: _Model, alignment: int = BUFFER_ALIGNMENT) -> tuple[int, list[PlannedBuffer]]:
    entries = _lifetimes(m)
    sizes = [_align_up(e[2], alignment) for e in entries]
    offsets = greedy_offsets(sizes, [e[3] for e in entries], [e[4] for e in entries], [e[5] for e in entries])
    buffers = [PlannedBuffer(name=e[0], tensor=e[1], bytes=sizes[k], first_op=e[3] - 1, last_op=e[4] - 1,
                             offset=offsets[k]) for k, e in enumerate(entries)]
    head = max((b.offset + b.bytes for b in buffers), default=0)
    return head, buffers


def _timeline(m: _Model, buffers: list[PlannedBuffer]) -> list[int]:
    return [sum(b.bytes for b in buffers if b.first_op <= i <= b.last_op) for i in range(len(m.graph.ops))]


# ---------------------------------------------------------------------------------------------- tail


class _Tail:
    """The persistent allocator: grows down from an aligned arena end; records bytes (with padding) by section."""

    def __init__(self) -> None:
        self.used = 0
        self.sections: dict[str, int] = {}

    def allocate(self, section: str, size: int, alignment: int) -> None:
        before = self.used
        self.used = _align_up(self.used + size, alignment)
        self.sections[section] = self.sections.get(section, 0) + self.used - before


def _plan_tail(m: _Model) -> tuple[_Tail, list[str]]:
    table = kernel_table()
    tail = _Tail()
    unknown: list[str] = []
    # RecordingMicroAllocator::Create
    tail.allocate("runtime objects", _RUNTIME_OBJECTS, 8)
    # MicroAllocator::StartModelAllocation
    tail.allocate("runtime objects", *_BUILTIN_DATA_ALLOCATOR)
    others = m.graph.subgraphs[1:]   # their eval tensors and nodes only
    extra_tensors, extra_ops = sum(len(s.tensors) for s in others), sum(len(s.ops) for s in others)
    tail.allocate("runtime objects", _SUBGRAPH_ALLOCATIONS[0] * len(m.graph.subgraphs), _SUBGRAPH_ALLOCATIONS[1])
    tail.allocate("TfLiteEvalTensor", _EVAL_TENSOR[0] * len(m.tensors), _EVAL_TENSOR[1])
    if extra_tensors:
        tail.allocate("TfLiteEvalTensor", _EVAL_TENSOR[0] * extra_tensors, _EVAL_TENSOR[1])
    tail.allocate("NodeAndRegistration", _NODE_AND_REGISTRATION[0] * len(m.graph.ops), _NODE_AND_REGISTRATION[1])
    if extra_ops:
        tail.allocate("NodeAndRegistration", _NODE_AND_REGISTRATION[0] * extra_ops,
                      _NODE_AND_REGISTRATION[1])

    kernels = []
    for op in m.graph.ops:
        kernel = table.get(op.name)
        if kernel is None:
            unknown.append(op.name)
            kernel = _UNKNOWN_KERNEL
        kernels.append(kernel)
    # MicroInterpreter: parse every op's options, then Init every op, then Prepare every op.
    for kernel in kernels:
        if kernel.get("builtin_bytes"):
            tail.allocate("op options", kernel["builtin_bytes"], kernel.get("builtin_align", 4))
    for kernel in kernels:
        if kernel.get("op_data_bytes"):
            tail.allocate("kernel OpData", kernel["op_data_bytes"], BUFFER_ALIGNMENT)
    scratch_requests = 0
    for i, kernel in enumerate(kernels):
        arrays = kernel.get("per_channel_arrays", 0)
        if arrays:
            inputs = m.graph.ops[i].inputs
            shape = m.graph.tensors[inputs[1]].shape if len(inputs) > 1 and inputs[1] >= 0 else ()
            dim = kernel.get("channel_dim", 0)
            channels = shape[dim] if len(shape) > dim else 0
            for _ in range(arrays):
                tail.allocate("per-channel multipliers/shifts", 4 * channels, BUFFER_ALIGNMENT)
        scratch_requests += 1 if _scratch_bytes(m, i) else 0
    # MicroAllocator::FinishModelAllocation: scratch handles, then variable tensors.
    if scratch_requests:
        tail.allocate("scratch buffer handles", _SCRATCH_HANDLE[0] * scratch_requests, _SCRATCH_HANDLE[1])
    for tensor in m.tensors:
        if tensor.variable:
            tail.allocate("variable tensors", tensor.bytes, BUFFER_ALIGNMENT)
    # MicroInterpreter::AllocateTensors: TfLiteTensor pointer arrays and full tensors for inputs/outputs.
    for ids in (m.graph.inputs, m.graph.outputs):
        tail.allocate("graph I/O TfLiteTensors", _POINTER * len(ids), BUFFER_ALIGNMENT)
        for t in ids:
            tail.allocate("graph I/O TfLiteTensors", *_TFLITE_TENSOR)
            channels = m.tensors[t].channels
            if channels:
                tail.allocate("graph I/O TfLiteTensors", *_AFFINE_QUANTIZATION)
                tail.allocate("graph I/O TfLiteTensors", 4 + 4 * channels, _INT_ARRAY_ALIGN)
    return tail, unknown


def plan_arena(model: bytes | Path) -> ArenaPlan:
    """Plan the arena TFLM would allocate for `model` (.tflite bytes or path)."""
    m = _parse(model)
    head, buffers = _plan_head(m)
    tail, unknown = _plan_tail(m)
    persistent = tail.used
    return ArenaPlan(
        peak_bytes=head + persistent,
        nonpersistent_bytes=head,
        persistent_bytes=persistent,
        timeline=_timeline(m, buffers),
        op_names=[op.name for op in m.graph.ops],
        persistent_breakdown=dict(tail.sections),
        scratch_bytes=max((b.bytes for b in buffers if b.tensor == -1), default=0),
        buffers=buffers,
        unknown_ops=sorted(set(unknown)),
    )


def linux_activation_bytes(model: bytes | Path) -> int:
    """Activation memory a LiteRT (desktop/Linux) arena roughly needs.

    Assumption: LiteRT's ArenaPlanner keeps the same tensor lifetimes and also places tensors greedily
    by size, but aligns each tensor to 64 bytes and has no TFLM-style persistent tail (its op data and
    tensor structs live on the heap, outside the arena). Kernel scratch (im2col, XNNPACK packing) is not
    counted; XNNPACK repacks weights on the heap, which is why the caller adds the model size.
    """
    m = _parse(model)
    entries = _lifetimes(m)
    sizes = [_align_up(e[2], LITERT_TENSOR_ALIGNMENT) for e in entries if e[1] >= 0]
    firsts = [e[3] for e in entries if e[1] >= 0]
    lasts = [e[4] for e in entries if e[1] >= 0]
    offsets = greedy_offsets(sizes, firsts, lasts)
    return max((o + s for o, s in zip(offsets, sizes)), default=0)
