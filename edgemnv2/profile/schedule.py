"""Execution schedules of an int8 .tflite and their exact peak RAM: `tflm`, `inplace`, `patch`.

* ``tflm`` — TensorFlow Lite Micro's own plan (`memory.plan_arena`, exact to the byte against the
  tflite-micro wheel): greedy head of activations + scratch, plus the interpreter's persistent tail.
* ``inplace`` — layer by layer as the static engine runs it: one arena, no interpreter state (weights,
  biases, multipliers and shifts are const arrays in flash), a PAD feeding a VALID conv/depthwise fused
  into that conv's padding, and these ops writing over an input that dies with them (each exact, see
  docs/static-engine.md): ADD, QUANTIZE, RESHAPE (element i read before element i is written),
  DEPTHWISE_CONV_2D with depth multiplier 1 (channel c is copied to a one-plane scratch, then its outputs
  land on the same channel's positions, which only channel c's inputs occupied), and 1x1 stride-1 CONV_2D
  (pixel by pixel through a one-pixel scratch: forwards when it narrows, backwards when it widens).
  Buffers (an in-place chain is one buffer whose size follows its live member) are placed first-fit,
  largest first.
* ``patch`` — the first steps up to a split tensor run tile by tile (MCUNetV2's patch-based inference):
  the split tensor is cut into a grid, each tile's region is propagated back through every conv,
  depthwise, pad and add exactly (stride, dilation, padding, clipping at the borders), overlapping rows are
  recomputed, and one tile workspace is reused by every tile; the rest runs as ``inplace``. The split and
  the grid are chosen for a RAM budget with the fewest extra MACs, or given.

Everything live in RAM is counted: the graph input and output, activations, scratch, persistent state.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

from edgemnv2.errors import InputError, ModelError
from edgemnv2.profile.opgraph import Op, OpGraph, read_opgraph, same_padding

SCHEDULES = ("tflm", "inplace", "patch")
KERNEL_SETS = ("portable", "cmsis-nn")   # the static engine's kernels: its own C, or Arm's CMSIS-NN where one fits
_CH_IN_BLOCK_MVE = 124                   # CMSIS-NN's depthwise channel block with MVE (arm_nnsupportfunctions.h)
ALIGNMENT = 4            # every static-engine buffer starts on a 32-bit word
MAX_TILES_PER_SIDE = 8
DEFAULT_MAX_EXTRA_MACS = 0.15   # `patch` without a budget: the lowest peak within this many extra MACs

# Step kinds that map an output region to input regions (so they can run tile by tile).
SPATIAL_KINDS = frozenset({"conv", "pointwise", "depthwise", "add", "quantize", "pad"})


@dataclass(frozen=True)
class Step:
    """One engine call: a graph op, or a PAD + the conv/depthwise it is fused into."""

    index: int
    kind: str                    # conv | pointwise | depthwise | add | quantize | pad | mean | fully_connected | softmax | reshape | other
    ops: tuple[int, ...]         # graph op indices it executes (a fused PAD first)
    inputs: tuple[int, ...]      # activation tensors read
    output: int
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)
    pad: tuple[int, int] = (0, 0)   # leading padding (top, left) in the step's input coordinates
    macs_per_pixel: int = 0         # MACs per output pixel (all output channels); fully connected: total
    name: str = ""
    kernels: str = "portable"       # portable | cmsis-nn: the kernel library the engine calls
    kernel_scratch: int = 0         # bytes of scratch a CMSIS-NN kernel needs (planned in the arena)


@dataclass(frozen=True)
class Interval:
    lo: int
    hi: int                      # exclusive

    @property
    def size(self) -> int:
        return self.hi - self.lo


@dataclass(frozen=True)
class PatchPlan:
    """The tiled part of a `patch` schedule."""

    split_step: int                      # steps [0, split_step) run per tile
    split_tensor: int
    grid: tuple[int, int]                # tile rows x tile columns of the split tensor
    rows: dict[int, tuple[Interval, ...]]   # tensor -> its row interval for each tile row
    cols: dict[int, tuple[Interval, ...]]   # tensor -> its column interval for each tile column
    workspace_offset: int
    workspace_bytes: int


@dataclass(frozen=True)
class Schedule:
    """One schedule's memory and cost. Offsets are arena offsets (patch tile buffers included)."""

    kind: str
    source: str
    peak_bytes: int                # everything in RAM: arena (activations, I/O, scratch) + persistent state
    arena_bytes: int
    persistent_bytes: int          # TFLM's tail; 0 for the static engine (its constants are in flash)
    input_bytes: int
    output_bytes: int
    scratch_bytes: int             # largest scratch buffer
    lower_bound_bytes: int         # the most bytes live at one step (no placement can do better)
    macs: int
    base_macs: int                 # layer-by-layer MACs
    timeline: tuple[int, ...]      # bytes live while each graph op runs (persistent state included)
    timeline_by_step: tuple[int, ...]   # the same per step (a fused PAD shares its conv's step)
    op_names: tuple[str, ...]
    steps: tuple[Step, ...] = ()
    offsets: dict[int, int] = field(default_factory=dict)            # tensor -> arena offset
    scratch: dict[int, tuple[int, int]] = field(default_factory=dict)  # step -> (offset, bytes)
    inplace_steps: tuple[int, ...] = ()     # steps whose output overwrites their input
    patch: PatchPlan | None = None
    notes: tuple[str, ...] = ()
    stack_bytes: int = 0           # the static engine's stack on `stack_target` (engine_stack.toml); 0 for tflm
    stack_target: str = ""

    @property
    def kernels(self) -> str:
        """The static engine's kernel library the plan was made for."""
        return self.steps[0].kernels if self.steps and self.kind != "tflm" else "portable"

    @property
    def ram_bytes(self) -> int:
        """The planned peak with the engine's stack: what the firmware measures (arena high-water + stack)."""
        return self.peak_bytes + self.stack_bytes

    @property
    def extra_macs(self) -> int:
        return self.macs - self.base_macs

    @property
    def extra_macs_ratio(self) -> float:
        return self.extra_macs / self.base_macs if self.base_macs else 0.0


# ---------------------------------------------------------------------------------------------- stack

DEFAULT_STACK_TARGET = "mps2-an386"   # Cortex-M4: the emulated board the measurements run on
# the kernel functions each step kind may call (se_kernels.c); an in-place depthwise has its own
_STEP_KERNELS = {"conv": ("se_conv",), "depthwise": ("se_depthwise",), "pointwise": ("se_pointwise", "se_conv"),
                 "add": ("se_add",), "quantize": ("se_quantize", "se_quantize_flat"), "mean": ("se_mean_hw",),
                 "fully_connected": ("se_fully_connected",), "softmax": ("se_softmax",)}
# with --kernels cmsis-nn (se_cmsis.c, whose chains include CMSIS-NN's own functions)
_CMSIS_STEP_KERNELS = {"conv": ("se_cmsis_conv",), "depthwise": ("se_cmsis_depthwise",),
                       "pointwise": ("se_cmsis_pointwise", "se_cmsis_conv"), "add": ("se_cmsis_add",)}


@lru_cache(maxsize=None)
def _stack_table() -> dict:
    import tomllib

    from edgemnv2.resources import data_file

    return tomllib.loads(data_file("profile/engine_stack.toml").read_text(encoding="utf-8"))


def engine_stack_bytes(kind: str, steps: tuple[Step, ...], inplace_steps: tuple[int, ...] | list[int],
                       target: str) -> int:
    """Stack of the static engine running `steps` on build target `target`: the runner's and se_invoke's
    frames plus the deepest kernel chain any step calls (gcc's call graph, engine_stack.toml)."""
    table = _stack_table()
    if target not in table:
        raise InputError(f"no engine stack data for target {target!r} (have {', '.join(table)}): "
                         "run benchmarks/engine_stack.py --write")
    kernels = table[target]["kernels"]
    deepest = 0
    cmsis = bool(steps) and steps[0].kernels == "cmsis-nn"
    for step in steps:
        names = (_CMSIS_STEP_KERNELS if cmsis else {}).get(step.kind) or _STEP_KERNELS.get(step.kind, ())
        if step.kind == "depthwise" and step.index in inplace_steps:
            names = ("se_depthwise_inplace",)
        deepest = max([deepest] + [kernels.get(n, 0) for n in names])
    return table[target]["invoke"][stack_key(kind, steps[0].kernels if steps else "portable")] + deepest


def stack_key(kind: str, kernels: str) -> str:
    """engine_stack.toml's `invoke` entry of a schedule kind run with a kernel set."""
    return kind if kernels == "portable" else f"{kind}-{kernels}"


# ---------------------------------------------------------------------------------------------- steps


def _align(n: int) -> int:
    return (n + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


def _fusable_pad(g: OpGraph, op: Op, consumers: list[int]) -> bool:
    """A PAD whose zero-point padding a VALID conv/depthwise can do itself (skipped taps == zero point)."""
    if op.name not in ("PAD", "PADV2") or len(op.pads) != 4 or len(consumers) != 1:
        return False
    if op.pads[0] != (0, 0) or op.pads[3] != (0, 0) or op.outputs[0] in g.outputs:
        return False
    consumer = g.ops[consumers[0]]
    if consumer.name not in ("CONV_2D", "DEPTHWISE_CONV_2D") or consumer.padding != "VALID" \
            or consumer.inputs[0] != op.outputs[0]:
        return False
    src, dst = g.tensors[op.inputs[0]], g.tensors[op.outputs[0]]
    if src.dtype != "int8" or (src.scale, src.zero_point) != (dst.scale, dst.zero_point) or not dst.zero_point:
        return False
    if op.name == "PADV2" and len(op.inputs) > 2 and op.inputs[2] >= 0:
        return int(g.tensor_data(op.inputs[2]).reshape(-1)[0]) == dst.zero_point[0]
    return True


# which CMSIS-NN code path each build target compiles (arm_nn_math_types.h: ARM_MATH_DSP on Cortex-M4,
# ARM_MATH_MVEI on Cortex-M55, plain C on the host): the kernels' scratch depends on it
CMSIS_PATHS = {"mps2-an386": "dsp", "mps3-an547": "mve", "host": "c"}


def cmsis_scratch(kind: str, kernel: tuple[int, int], dilation: tuple[int, int], pad: tuple[int, int], in_c: int,
                  out_c: int, target: str) -> int:
    """Bytes of the buffer CMSIS-NN's conv/depthwise wrapper asks for on `target` (its *_get_buffer_size with
    that target's code path; gcc builds, so the 1x1 fast conv needs none)."""
    path = CMSIS_PATHS.get(target)
    if path is None:
        raise InputError(f"no CMSIS-NN code path known for target {target!r} (have {', '.join(CMSIS_PATHS)})")
    kh, kw = kernel
    cols = kh * kw * in_c
    if kind == "conv":
        return 4 * (-(-cols // 16)) * 16 if path == "mve" else 2 * (-(-cols // 4) * 4) * 2
    if kind != "depthwise" or in_c != out_c or dilation != (1, 1):
        return 0
    if path == "mve":
        return 4 * _CH_IN_BLOCK_MVE * kh * kw
    if path == "c" or ((kh, kw) == (3, 3) and max(pad) <= 1):
        return 0
    return in_c * kh * kw * 2


def build_steps(g: OpGraph, kernels: str = "portable", target: str = DEFAULT_STACK_TARGET) -> tuple[Step, ...]:
    """The static engine's call sequence, in graph order, with PADs fused where exact; `kernels` says which
    kernel library runs it (CMSIS-NN conv kernels need `target`'s scratch and never run in place)."""
    if kernels not in KERNEL_SETS:
        raise InputError(f"unknown kernel set {kernels!r}: choose {', '.join(KERNEL_SETS)}")
    fused: dict[int, Op] = {}      # consumer op -> the PAD fused into it
    skip: set[int] = set()
    for op in g.ops:
        consumers = g.consumers(op.outputs[0]) if op.outputs else []
        if _fusable_pad(g, op, consumers):
            fused[consumers[0]] = op
            skip.add(op.index)
    steps: list[Step] = []
    for op in g.ops:
        if op.index in skip:
            continue
        pad_op = fused.get(op.index)
        ins = g.activation_inputs(op)
        if pad_op is not None:
            ins = [pad_op.inputs[0]] + ins[1:]
        out = op.outputs[0]
        out_t = g.tensors[out]
        name = out_t.name.split(";", 1)[0]
        ops = (pad_op.index, op.index) if pad_op is not None else (op.index,)
        kind = {"ADD": "add", "QUANTIZE": "quantize", "MEAN": "mean", "FULLY_CONNECTED": "fully_connected",
                "SOFTMAX": "softmax", "RESHAPE": "reshape", "SQUEEZE": "reshape", "PAD": "pad",
                "PADV2": "pad"}.get(op.name, "other")
        common = dict(index=len(steps), ops=ops, inputs=tuple(ins), output=out, name=name, kernels=kernels)
        if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            in_shape = g.tensors[ins[0]].shape
            kh, kw = op.kernel
            if pad_op is not None:
                pad = (pad_op.pads[1][0], pad_op.pads[2][0])
            elif op.padding == "SAME":
                pad = (same_padding(in_shape[1], kh, op.stride[0], op.dilation[0]),
                       same_padding(in_shape[2], kw, op.stride[1], op.dilation[1]))
            else:
                pad = (0, 0)
            if op.name == "DEPTHWISE_CONV_2D":
                kind, mpp = "depthwise", out_t.shape[3] * kh * kw
            else:
                mpp = out_t.shape[3] * kh * kw * in_shape[3]
                pointwise = (kh, kw) == (1, 1) and op.stride == (1, 1) and pad == (0, 0)
                kind = "pointwise" if pointwise else "conv"
            scratch = (cmsis_scratch(kind, op.kernel, op.dilation, pad, in_shape[3], out_t.shape[3], target)
                       if kernels == "cmsis-nn" else 0)
            steps.append(Step(kind=kind, kernel=op.kernel, stride=op.stride, dilation=op.dilation, pad=pad,
                              macs_per_pixel=mpp, kernel_scratch=scratch, **common))
        elif op.name == "FULLY_CONNECTED":
            w = g.tensors[op.inputs[1]].shape
            batch = out_t.elements // max(1, w[0])
            steps.append(Step(kind=kind, macs_per_pixel=batch * w[0] * w[1], **common))
        elif kind == "pad":
            steps.append(Step(kind=kind, pad=(op.pads[1][0], op.pads[2][0]) if len(op.pads) == 4 else (0, 0),
                              **common))
        else:
            steps.append(Step(kind=kind, **common))
    return tuple(steps)


def step_macs(g: OpGraph, step: Step) -> int:
    """Layer-by-layer MACs of a step (the seed's formulas, as `edgemnv2 profile` counts them)."""
    if step.kind == "fully_connected":
        return step.macs_per_pixel
    shape = g.tensors[step.output].shape
    return shape[1] * shape[2] * step.macs_per_pixel if step.macs_per_pixel else 0


# ---------------------------------------------------------------------------------------------- placement


@dataclass
class _Group:
    """Tensors sharing one buffer (an in-place chain) or one scratch buffer; footprint per step."""

    name: str
    tensors: list[int]
    footprint: dict[int, int]    # step -> bytes in use

    def add(self, first: int, last: int, size: int) -> None:
        for t in range(first, last + 1):
            self.footprint[t] = max(self.footprint.get(t, 0), size)

    @property
    def peak(self) -> int:
        return max(self.footprint.values(), default=0)

    @property
    def first(self) -> int:
        return min(self.footprint)


def _first_fit(groups: list[_Group], order: list[int]) -> list[int]:
    offsets = [0] * len(groups)
    placed: list[int] = []
    for i in order:
        g = groups[i]
        common = {j: g.footprint.keys() & groups[j].footprint.keys() for j in placed}
        common = {j: steps for j, steps in common.items() if steps}
        candidates = sorted({0} | {offsets[j] + _align(groups[j].footprint[t]) for j, steps in common.items()
                                   for t in steps})
        for offset in candidates:
            if all(offset + _align(g.footprint[t]) <= offsets[j] or offsets[j] + _align(groups[j].footprint[t]) <= offset
                   for j, steps in common.items() for t in steps if g.footprint[t] and groups[j].footprint[t]):
                offsets[i] = offset
                break
        placed.append(i)
    return offsets


def place(groups: list[_Group]) -> list[int]:
    """Offsets for the groups: first fit (the lowest offset where a group overlaps no placed group at any
    step both are live) in three orders — largest first, longest-lived first, earliest first — keeping the
    smallest arena."""
    n = range(len(groups))
    orders = [sorted(n, key=lambda i: (-groups[i].peak, groups[i].first, i)),
              sorted(n, key=lambda i: (-len(groups[i].footprint), -groups[i].peak, i)),
              sorted(n, key=lambda i: (groups[i].first, -groups[i].peak, i))]
    best: list[int] | None = None
    for order in orders:
        offsets = _first_fit(groups, order)
        if best is None or _arena_end(groups, offsets) < _arena_end(groups, best):
            best = offsets
    return best or []


def _arena_end(groups: list[_Group], offsets: list[int]) -> int:
    return max((o + _align(g.peak) for g, o in zip(groups, offsets)), default=0)


# ---------------------------------------------------------------------------------------------- in place


def _lifetimes(g: OpGraph, steps: tuple[Step, ...]) -> tuple[dict[int, int], dict[int, int]]:
    first: dict[int, int] = {t: -1 for t in g.inputs}
    last: dict[int, int] = {t: -1 for t in g.inputs}
    for s in steps:
        for t in s.inputs:
            last[t] = s.index
        first.setdefault(s.output, s.index)
        last[s.output] = max(last.get(s.output, s.index), s.index)
    for t in g.outputs:
        last[t] = len(steps) - 1
    return first, last


def inplace_kind(g: OpGraph, step: Step, last: dict[int, int]) -> tuple[int, int] | None:
    """(input tensor the output overwrites, scratch bytes) when `step` can run in place, else None."""
    out = g.tensors[step.output]
    dying = [t for t in step.inputs if last.get(t) == step.index and t not in g.outputs]
    if not dying or (step.kernels == "cmsis-nn" and step.kind in ("depthwise", "pointwise")):
        return None   # CMSIS-NN's conv kernels write a dense output buffer of their own
    if step.kind == "depthwise" and step.inputs[0] in dying:
        src = g.tensors[step.inputs[0]]
        if src.shape[3] == out.shape[3] and src.itemsize == out.itemsize:
            return step.inputs[0], src.shape[1] * src.shape[2] * src.itemsize
    if step.kind == "pointwise" and step.inputs[0] in dying:
        src = g.tensors[step.inputs[0]]
        if src.itemsize == out.itemsize:
            return step.inputs[0], src.shape[3] * src.itemsize
    if step.kind in ("add", "quantize", "reshape"):
        for t in dying:
            if g.tensors[t].bytes == out.bytes and g.tensors[t].itemsize == out.itemsize:
                return t, 0
    return None


def _input_groups(g: OpGraph, last: dict[int, int], until: int) -> tuple[list[_Group], dict[int, int]]:
    """One buffer per graph input, live from before the first step to its last reader (at least `until`)."""
    groups = [_Group(g.tensors[t].name, [t], {}) for t in g.inputs]
    for group, t in zip(groups, g.inputs):
        group.add(-1, max(last[t], until), g.tensors[t].bytes)
    return groups, {t: k for k, t in enumerate(g.inputs)}


def _add_output(groups: list[_Group], group_of: dict[int, int], scratch_of: dict[int, int], inplace: list[int],
                step: Step, name: str, size: int, last: int, src: int | None, scratch: int) -> None:
    """Add a step's output buffer: into `src`'s chain when it runs in place (plus its scratch), else a new one."""
    out = step.output
    if src is None:
        group_of[out] = len(groups)
        groups.append(_Group(name, [out], {}))
        groups[-1].add(step.index, last, size)
        if step.kernel_scratch:
            scratch_of[step.index] = len(groups)
            groups.append(_Group(f"scratch:{step.name}", [], {step.index: step.kernel_scratch}))
        return
    k = group_of[src]
    groups[k].tensors.append(out)
    groups[k].add(step.index, last, size)
    group_of[out] = k
    inplace.append(step.index)
    if scratch:
        scratch_of[step.index] = len(groups)
        groups.append(_Group(f"scratch:{step.name}", [], {step.index: scratch}))


def _layer_groups(g: OpGraph, steps: tuple[Step, ...], begin: int, first: dict[int, int], last: dict[int, int],
                  groups: list[_Group], group_of: dict[int, int], scratch_of: dict[int, int],
                  inplace: list[int]) -> None:
    """Add the buffers of steps[begin:] run layer by layer (in place where exact) to `groups`."""
    for s in steps[begin:]:
        out = s.output
        size = g.tensors[out].bytes
        hit = inplace_kind(g, s, last)
        in_place = hit is not None and hit[0] in group_of
        _add_output(groups, group_of, scratch_of, inplace, s, g.tensors[out].name, size, last[out],
                    hit[0] if in_place else None, hit[1] if in_place else 0)


def _schedule_from_groups(kind: str, g: OpGraph, steps: tuple[Step, ...], groups: list[_Group],
                          group_of: dict[int, int], scratch_of: dict[int, int], inplace: list[int],
                          macs: int, base_macs: int, step_live: list[int] | None = None,
                          patch: PatchPlan | None = None, tile_offsets: dict[int, int] | None = None,
                          tile_scratch: dict[int, tuple[int, int]] | None = None) -> Schedule:
    offsets = place(groups)
    arena = _align(_arena_end(groups, offsets))
    tensor_offsets = {t: offsets[k] for t, k in group_of.items()}
    scratch = {s: (offsets[k], groups[k].peak) for s, k in scratch_of.items()}
    if patch is not None:
        ws = offsets[group_of[-1]]
        patch = PatchPlan(patch.split_step, patch.split_tensor, patch.grid, patch.rows, patch.cols, ws,
                          patch.workspace_bytes)
        tensor_offsets.pop(-1)
        tensor_offsets.update({t: ws + o for t, o in (tile_offsets or {}).items()})
        scratch.update({s: (ws + o, b) for s, (o, b) in (tile_scratch or {}).items()})
    live = step_live or [sum(gr.footprint.get(s.index, 0) for gr in groups) for s in steps]
    op_live = [0] * len(g.ops)
    for s in steps:
        for o in s.ops:
            op_live[o] = live[s.index]
    return Schedule(
        kind=kind, source=g.source, peak_bytes=arena, arena_bytes=arena, persistent_bytes=0,
        input_bytes=sum(g.tensors[t].bytes for t in g.inputs), output_bytes=sum(g.tensors[t].bytes for t in g.outputs),
        scratch_bytes=max([b for _, b in scratch.values()], default=0), lower_bound_bytes=max(live, default=0),
        macs=macs, base_macs=base_macs, timeline=tuple(op_live), timeline_by_step=tuple(live),
        op_names=tuple(op.name for op in g.ops),
        steps=steps, offsets=tensor_offsets, scratch=scratch, inplace_steps=tuple(inplace), patch=patch)


def plan_inplace(g: OpGraph, steps: tuple[Step, ...] | None = None) -> Schedule:
    """Layer by layer with in-place ops and first-fit buffer reuse."""
    steps = steps or build_steps(g)
    first, last = _lifetimes(g, steps)
    groups, group_of = _input_groups(g, last, -1)
    scratch_of: dict[int, int] = {}
    inplace: list[int] = []
    _layer_groups(g, steps, 0, first, last, groups, group_of, scratch_of, inplace)
    base = sum(step_macs(g, s) for s in steps)
    live = [sum(gr.footprint.get(s.index, 0) for gr in groups) for s in steps]
    return _schedule_from_groups("inplace", g, steps, groups, group_of, scratch_of, inplace, base, base, live)


def plan_tflm(model: bytes | Path, g: OpGraph) -> Schedule:
    """TFLite Micro's arena (head + persistent tail), from the exact replay in memory.py."""
    from edgemnv2.profile.memory import plan_arena

    plan = plan_arena(model)
    steps = build_steps(g)
    base = sum(step_macs(g, s) for s in steps)
    return Schedule(
        kind="tflm", source=g.source, peak_bytes=plan.peak_bytes, arena_bytes=plan.nonpersistent_bytes,
        persistent_bytes=plan.persistent_bytes, input_bytes=sum(g.tensors[t].bytes for t in g.inputs),
        output_bytes=sum(g.tensors[t].bytes for t in g.outputs), scratch_bytes=plan.scratch_bytes,
        lower_bound_bytes=plan.peak_live_bytes + plan.persistent_bytes, macs=base, base_macs=base,
        timeline=tuple(b + plan.persistent_bytes for b in plan.timeline),
        timeline_by_step=tuple(max(plan.timeline[o] for o in s.ops) + plan.persistent_bytes for s in steps),
        op_names=tuple(plan.op_names),
        steps=steps, offsets={b.tensor: b.offset for b in plan.buffers if b.tensor >= 0})


# ---------------------------------------------------------------------------------------------- patch


def split_points(g: OpGraph, steps: tuple[Step, ...]) -> list[int]:
    """Step counts S such that steps [0, S) can run per tile: all spatial, and only the output of step S-1
    (a 4-D tensor) is needed after them."""
    first, last = _lifetimes(g, steps)
    points = []
    for s in range(1, len(steps)):
        if steps[s - 1].kind not in SPATIAL_KINDS:
            break
        out = steps[s - 1].output
        crossing = {t for t in list(first) if first[t] < s and last[t] >= s}
        if crossing == {out} and len(g.tensors[out].shape) == 4 and out not in g.outputs:
            points.append(s)
    return points


def _split(size: int, parts: int) -> tuple[Interval, ...]:
    edges = [round(i * size / parts) for i in range(parts + 1)]
    return tuple(Interval(edges[i], edges[i + 1]) for i in range(parts))


def _back(step: Step, axis: int, out: Interval, in_size: int) -> Interval:
    """Input interval (along axis 0 = rows, 1 = columns) a step reads to produce `out`."""
    if step.kind in ("conv", "pointwise", "depthwise"):
        s, k, d, p = step.stride[axis], step.kernel[axis], step.dilation[axis], step.pad[axis]
        lo, hi = out.lo * s - p, (out.hi - 1) * s - p + (k - 1) * d + 1
    elif step.kind == "pad":
        lo, hi = out.lo - step.pad[axis], out.hi - step.pad[axis]
    else:
        lo, hi = out.lo, out.hi
    return Interval(max(0, lo), max(max(0, lo), min(in_size, hi)))


def tile_intervals(g: OpGraph, steps: tuple[Step, ...], split: int, parts: int, axis: int) -> dict[int, tuple[Interval, ...]]:
    """Per tensor of the tiled part, its interval along `axis` for each of `parts` tiles of the split tensor."""
    split_tensor = steps[split - 1].output
    size = g.tensors[split_tensor].shape[1 + axis]
    result: dict[int, list[Interval]] = {}
    for tile in _split(size, parts):
        need: dict[int, Interval] = {split_tensor: tile}
        for step in reversed(steps[:split]):
            out = need.get(step.output)
            if out is None or out.size == 0:
                continue
            for t in step.inputs:
                iv = _back(step, axis, out, g.tensors[t].shape[1 + axis])
                have = need.get(t)
                need[t] = iv if have is None else Interval(min(have.lo, iv.lo), max(have.hi, iv.hi))
        for t, iv in need.items():
            result.setdefault(t, []).append(iv)
    return {t: tuple(v) for t, v in result.items()}


def _tile_macs(g: OpGraph, steps: tuple[Step, ...], split: int, rows, cols) -> int:
    total = 0
    for s in steps[:split]:
        if s.macs_per_pixel:
            total += sum(r.size for r in rows[s.output]) * sum(c.size for c in cols[s.output]) * s.macs_per_pixel
    return total


@dataclass(frozen=True)
class _TilePlan:
    split: int
    grid: tuple[int, int]
    rows: dict[int, tuple[Interval, ...]]
    cols: dict[int, tuple[Interval, ...]]
    macs: int
    workspace: int
    live: list[int]                   # tile buffers live at each tiled step
    offsets: dict[int, int]           # tensor -> offset in the workspace
    scratch: dict[int, tuple[int, int]]
    inplace: list[int]


def _check_split(g: OpGraph, steps: tuple[Step, ...], split: int, grid: tuple[int, int]) -> None:
    points = split_points(g, steps)
    if split not in points:
        raise InputError(f"cannot split {Path(g.source).name} after step {split}: valid split points are "
                         f"{', '.join(map(str, points)) or 'none'} (steps before it must be conv/depthwise/add/pad/"
                         "quantize and only the last one's output may be used after it)")
    h, w = g.tensors[steps[split - 1].output].shape[1:3]
    if not (1 <= grid[0] <= h and 1 <= grid[1] <= w):
        raise InputError(f"a {grid[0]}x{grid[1]} grid does not fit the {h}x{w} split tensor")


def _tile_plan(g: OpGraph, steps: tuple[Step, ...], split: int, grid: tuple[int, int],
               last: dict[int, int], intervals: dict | None = None, layout: bool = True) -> _TilePlan:
    """Regions, MACs and the workspace layout of the tiled steps [0, split) for one grid.

    `layout=False` skips placing the workspace (its size is then the exact lower bound, the most tile
    bytes live at one step): the search's cheap pass. `intervals` caches `tile_intervals` by (split, parts, axis).
    """
    intervals = {} if intervals is None else intervals
    for parts, axis in ((grid[0], 0), (grid[1], 1)):
        if (split, parts, axis) not in intervals:
            intervals[split, parts, axis] = tile_intervals(g, steps, split, parts, axis)
    rows, cols = intervals[split, grid[0], 0], intervals[split, grid[1], 1]
    split_tensor = steps[split - 1].output
    external = set(g.inputs) | {split_tensor}
    groups: list[_Group] = []
    group_of: dict[int, int] = {}
    scratch_of: dict[int, int] = {}
    inplace: list[int] = []

    def tile_bytes(t: int) -> int:
        tensor = g.tensors[t]
        return max(r.size for r in rows[t]) * max(c.size for c in cols[t]) * tensor.shape[3] * tensor.itemsize

    for s in steps[:split]:
        out = s.output
        if out in external:   # written in place into the split tensor; a CMSIS-NN kernel still needs its scratch
            if s.kernel_scratch:
                scratch_of[s.index] = len(groups)
                groups.append(_Group(f"scratch:{s.name}", [], {s.index: s.kernel_scratch}))
            continue
        hit = inplace_kind(g, s, last)
        if hit is not None and hit[0] in group_of and (
                s.kind == "depthwise" or (rows[hit[0]] == rows[out] and cols[hit[0]] == cols[out])):
            src = g.tensors[hit[0]]
            scratch = (max(r.size for r in rows[hit[0]]) * max(c.size for c in cols[hit[0]]) * src.itemsize
                       if s.kind == "depthwise" else src.shape[3] * src.itemsize if s.kind == "pointwise" else 0)
            _add_output(groups, group_of, scratch_of, inplace, s, "", tile_bytes(out), last[out], hit[0], scratch)
        else:
            _add_output(groups, group_of, scratch_of, inplace, s, g.tensors[out].name, tile_bytes(out),
                        min(last[out], split - 1), None, 0)
    live = [sum(gr.footprint.get(s.index, 0) for gr in groups) for s in steps[:split]]
    offsets = place(groups) if layout else [0] * len(groups)
    workspace = _align(_arena_end(groups, offsets)) if layout else max(live, default=0)
    return _TilePlan(split, grid, rows, cols, _tile_macs(g, steps, split, rows, cols), workspace, live,
                     {t: offsets[k] for t, k in group_of.items()},
                     {s: (offsets[k], groups[k].peak) for s, k in scratch_of.items()}, inplace)


def _assemble_patch(g: OpGraph, steps: tuple[Step, ...], tile: _TilePlan) -> Schedule:
    """The whole arena: graph input, tile workspace and split tensor while tiling, then layer by layer."""
    split = tile.split
    split_tensor = steps[split - 1].output
    first, last = _lifetimes(g, steps)
    groups, group_of = _input_groups(g, last, split - 1)
    group_of[-1] = len(groups)
    groups.append(_Group("tile workspace", [], {}))
    groups[-1].add(0, split - 1, tile.workspace)
    group_of[split_tensor] = len(groups)
    groups.append(_Group(g.tensors[split_tensor].name, [split_tensor], {}))
    groups[-1].add(0, last[split_tensor], g.tensors[split_tensor].bytes)
    scratch_of: dict[int, int] = {}
    inplace = list(tile.inplace)
    _layer_groups(g, steps, split, first, last, groups, group_of, scratch_of, inplace)
    live = []
    for s in steps:
        outside = sum(gr.footprint.get(s.index, 0) for k, gr in enumerate(groups) if k != group_of[-1])
        live.append(outside + (tile.live[s.index] if s.index < split else 0))
    base = sum(step_macs(g, s) for s in steps)
    macs = base - sum(step_macs(g, s) for s in steps[:split]) + tile.macs
    plan = PatchPlan(split, split_tensor, tile.grid, tile.rows, tile.cols, 0, tile.workspace)
    return _schedule_from_groups("patch", g, steps, groups, group_of, scratch_of, inplace, macs, base, live,
                                 plan, tile.offsets, tile.scratch)


def plan_patch_at(g: OpGraph, split: int, grid: tuple[int, int], steps: tuple[Step, ...] | None = None) -> Schedule:
    """The patch schedule with the given split (steps [0, split) tiled) and tile grid (rows, columns)."""
    steps = steps or build_steps(g)
    _check_split(g, steps, split, grid)
    return _assemble_patch(g, steps, _tile_plan(g, steps, split, grid, _lifetimes(g, steps)[1]))


def grids(max_side: int = MAX_TILES_PER_SIDE) -> list[tuple[int, int]]:
    """Tile grids searched: square and one-off-square, up to max_side per side."""
    out = []
    for n in range(1, max_side + 1):
        out += [(n, n)] + ([(n, n + 1), (n + 1, n)] if n < max_side else [])
    return [grid for grid in out if grid != (1, 1)]


def plan_patch(g: OpGraph, ram_budget: int | None = None, steps: tuple[Step, ...] | None = None,
               max_extra_macs: float = DEFAULT_MAX_EXTRA_MACS) -> Schedule:
    """The patch schedule with the fewest extra MACs within `ram_budget` (or, without a budget, the lowest
    peak within `max_extra_macs`); if nothing fits the budget, the lowest peak found.

    Every split point x grid is costed cheaply (regions, MACs, tile bytes live) with a lower bound of its
    peak: max(input + split tensor + the most tile bytes live at one step, the layer-by-layer live bytes
    after the split). Full placements are computed in bound order and the search stops once no bound can win.
    """
    steps = steps or build_steps(g)
    points = split_points(g, steps)
    if not points:
        raise ModelError(f"{Path(g.source).name} has no point where a patch schedule can split it")
    _, last = _lifetimes(g, steps)
    layer_live = plan_inplace(g, steps).timeline_by_step
    base = sum(step_macs(g, s) for s in steps)
    input_bytes = sum(g.tensors[t].bytes for t in g.inputs)
    costed = []
    intervals: dict = {}
    for split in points:
        split_tensor = steps[split - 1].output
        h, w = g.tensors[split_tensor].shape[1:3]
        after = max(layer_live[split:], default=0)
        for grid in grids():
            if grid[0] <= h and grid[1] <= w:
                tile = _tile_plan(g, steps, split, grid, last, intervals, layout=False)
                bound = max(input_bytes + g.tensors[split_tensor].bytes + tile.workspace, after)
                macs = base - sum(step_macs(g, s) for s in steps[:split]) + tile.macs
                costed.append((tile, bound, macs))

    def lowest_peak(pool: list) -> Schedule:
        best: Schedule | None = None
        for tile, bound, macs in sorted(pool, key=lambda c: (c[1], c[2])):
            if best is not None and bound > best.peak_bytes:
                break
            s = _assemble_patch(g, steps, _tile_plan(g, steps, tile.split, tile.grid, last, intervals))
            if best is None or (s.peak_bytes, s.macs) < (best.peak_bytes, best.macs):
                best = s
        assert best is not None
        return best

    if ram_budget is not None:
        for tile, bound, macs in sorted(costed, key=lambda c: (c[2], c[1])):
            if bound <= ram_budget:
                s = _assemble_patch(g, steps, _tile_plan(g, steps, tile.split, tile.grid, last, intervals))
                if s.peak_bytes <= ram_budget:
                    return s
        return lowest_peak(costed)
    within = [c for c in costed if c[2] - base <= max_extra_macs * base]
    return lowest_peak(within or costed)


def parse_grid(text: str) -> tuple[int, int]:
    """"4x4" -> (4, 4): a tile grid as the CLI takes it."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise InputError(f"--tiles {text!r}: give ROWSxCOLS, e.g. 4x4")
    return int(parts[0]), int(parts[1])


def plan_schedule(model: bytes | Path | str, kind: str, ram_budget: int | None = None,
                  split: int | None = None, grid: tuple[int, int] | None = None,
                  graph: OpGraph | None = None, stack_target: str = DEFAULT_STACK_TARGET,
                  kernels: str = "portable", with_stack: bool = True) -> Schedule:
    """One schedule of `model`: "tflm", "inplace", "patch" (auto split/grid unless both given) or "auto"
    (the first of tflm, inplace, patch whose peak fits `ram_budget`; without a budget, the lowest peak).
    A static schedule's `stack_bytes` is the engine's stack on build target `stack_target`; `kernels` is the
    static engine's kernel library (CMSIS-NN: no in-place conv kernels, their scratch in the arena);
    `with_stack` False leaves the stack term 0 (what engine_stack.py measures it from)."""
    s = _plan(model, kind, ram_budget, split, grid, graph, kernels, stack_target)
    if s.kind != "tflm" and with_stack:
        s = replace(s, stack_bytes=engine_stack_bytes(s.kind, s.steps, s.inplace_steps, stack_target), stack_target=stack_target)
    return s


def _plan(model: bytes | Path | str, kind: str, ram_budget: int | None, split: int | None,
          grid: tuple[int, int] | None, graph: OpGraph | None, kernels: str, target: str) -> Schedule:
    g = graph or read_opgraph(model)
    data = model if isinstance(model, bytes) else Path(model).read_bytes()
    if kind == "tflm":
        return plan_tflm(data, g)
    steps = build_steps(g, kernels, target)
    if kind == "inplace":
        return plan_inplace(g, steps)
    if kind == "patch":
        if (split is None) != (grid is None):
            raise InputError("give both the split step and the tile grid, or neither (chosen automatically)")
        if split is not None and grid is not None:
            return plan_patch_at(g, split, grid, steps)
        return plan_patch(g, ram_budget, steps)
    if kind == "auto":
        options = [plan_tflm(data, g), plan_inplace(g, steps), plan_patch(g, ram_budget, steps)]
        if ram_budget is not None:
            for s in options:
                if s.peak_bytes <= ram_budget:
                    return s
        return min(options, key=lambda s: (s.peak_bytes, s.macs))
    raise InputError(f"unknown schedule {kind!r}: choose {', '.join(SCHEDULES)} or auto")
