"""The static engine: a .tflite + a schedule → C99 with no interpreter and no heap.

Every constant TFLite Micro computes in its kernels' Prepare (per-channel output multipliers and shifts,
ADD's input/output rescaling, MEAN's 1/(h·w) folded into its multiplier, softmax's beta scaling and
diff_min, activation clamps) is computed here at export time with the same double-precision formulas
(`quantize_multiplier` = TFLite's QuantizeMultiplier) and written as const arrays next to the weights.
`se_invoke()` is the schedule's call sequence over one static arena at the planned offsets, with tile
loops for a patch schedule; the kernels are `firmware_templates/static_engine/se_kernels.c`.

`check_bit_exact` builds the engine for the host with gcc and compares its outputs with the
tflite-micro wheel's (run in a child process: TFLM can abort() on odd quantization parameters).
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgemnv2.errors import ModelError, RuntimeUnavailable, ToolMissing
from edgemnv2.profile.opgraph import Op, OpGraph, read_opgraph
from edgemnv2.profile.schedule import DEFAULT_STACK_TARGET, Schedule, Step, plan_schedule
from edgemnv2.runtime import quantize_values

KERNEL_FILES = ("se_kernels.c", "se_kernels.h", "se_host_main.c")
GENERATED_FILES = ("se_model.h", "se_model.c") + KERNEL_FILES
CMSIS_FILES = ("se_cmsis.c", "se_cmsis.h")   # the CMSIS-NN backend, written with --kernels cmsis-nn
_INT8 = (-128, 127)


@dataclass(frozen=True)
class EngineSources:
    """What `generate_engine` wrote."""

    out: Path
    files: tuple[str, ...]
    schedule: str
    arena_bytes: int
    input_offset: int
    input_bytes: int
    output_offset: int
    output_bytes: int
    steps: int


# ---------------------------------------------------------------------------------------------- TFLite math


def _round_half_away(x: float) -> int:
    """TfLiteRound / std::round: halves away from zero."""
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite's QuantizeMultiplier (quantization_util.cc, no TFLITE_SINGLE_ROUNDING): (Q31 significand, shift)."""
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    fixed = _round_half_away(q * (1 << 31))
    if fixed == 1 << 31:
        fixed //= 2
        shift += 1
    if shift < -31:
        shift, fixed = 0, 0
    return fixed, shift


def activation_range(activation: str, scale: float, zero_point: int, lo: int = -128, hi: int = 127) -> tuple[int, int]:
    """CalculateActivationRangeQuantized: the fused activation's clamp in the output's quantized domain (float32 math)."""
    def quantize(f: float) -> int:
        return zero_point + _round_half_away(float(np.float32(f) / np.float32(scale)))

    if activation == "NONE":
        return lo, hi
    if activation == "RELU":
        return max(lo, quantize(0.0)), hi
    if activation == "RELU6":
        return max(lo, quantize(0.0)), min(hi, quantize(6.0))
    if activation == "RELU_N1_TO_1":
        return max(lo, quantize(-1.0)), min(hi, quantize(1.0))
    raise ModelError(f"fused activation {activation} is not supported by the static engine")


# ---------------------------------------------------------------------------------------------- C text


def _array(ctype: str, name: str, values, attr: str = "", declare_only: bool = False) -> str:
    flat = np.asarray(values).reshape(-1)
    if declare_only:
        return f"extern const {ctype} {name}[{max(1, flat.size)}];\n"
    body = ",".join(str(int(v)) for v in flat)
    return f"static const {ctype} {name}[{max(1, flat.size)}]{attr} = {{{body or '0'}}};\n"


class _Writer:
    def __init__(self, g: OpGraph, s: Schedule, weights_attr: str = "", declare_only: bool = False) -> None:
        self.g, self.s = g, s
        self.weights_attr = weights_attr
        self.declare_only = declare_only
        self.consts: list[str] = []
        self.code: list[str] = []
        self.weights_bytes = 0

    # -- tensors ---------------------------------------------------------------------------------

    def t(self, index: int):
        return self.g.tensors[index]

    def zp(self, index: int) -> int:
        return self.t(index).zero_point[0] if self.t(index).zero_point else 0

    def scale(self, index: int) -> float:
        return self.t(index).scale[0]

    def ptr(self, tensor: int) -> str:
        return f"(se_arena + {self.s.offsets[tensor]})"

    def full_view(self, tensor: int) -> str:
        shape = self.t(tensor).shape
        h, w, c = (shape[1], shape[2], shape[3]) if len(shape) == 4 else (1, 1, shape[-1])
        return f"SE_VIEW({self.ptr(tensor)}, {h}, {w}, {c}, 0, 0)"

    def tiled(self, tensor: int) -> bool:
        p = self.s.patch
        return p is not None and tensor in p.rows and tensor not in self.g.inputs and tensor != p.split_tensor

    def view(self, tensor: int, in_tile: bool) -> str:
        if not in_tile or not self.tiled(tensor):
            return self.full_view(tensor)
        c = self.t(tensor).shape[3]
        return (f"SE_VIEW({self.ptr(tensor)}, R{tensor}[ty][1] - R{tensor}[ty][0], C{tensor}[tx][1] - C{tensor}[tx][0], "
                f"{c}, R{tensor}[ty][0], C{tensor}[tx][0])")

    def region(self, tensor: int, in_tile: bool) -> str:
        if in_tile:
            return f"SE_REGION(R{tensor}[ty][0], R{tensor}[ty][1], C{tensor}[tx][0], C{tensor}[tx][1])"
        shape = self.t(tensor).shape
        return f"SE_REGION(0, {shape[1]}, 0, {shape[2]})"

    def scratch(self, step: Step) -> str:
        return f"(int8_t *)(se_arena + {self.s.scratch[step.index][0]})"

    # -- ops ---------------------------------------------------------------------------------------

    def constants(self, n: int, weights, bias: int, pairs: list[tuple[int, int]]) -> str:
        """Emit step n's weights, bias (tensor index, -1 = none), multipliers and shifts; the bias's C name."""
        a, d = self.weights_attr, self.declare_only
        self.consts.append(_array("int8_t", f"w{n}", weights, a, d))
        self.weights_bytes += int(np.asarray(weights).size) + 8 * len(pairs)
        if bias >= 0:
            self.consts.append(_array("int32_t", f"b{n}", self.g.tensor_data(bias), a, d))
            self.weights_bytes += 4 * int(self.g.tensor_data(bias).size)
        self.consts.append(_array("int32_t", f"m{n}", [p[0] for p in pairs], a))
        self.consts.append(_array("int32_t", f"s{n}", [p[1] for p in pairs], a))
        return f"b{n}" if bias >= 0 else "NULL"

    def conv_params(self, step: Step, op: Op) -> str:
        g = self.g
        x, w, b = op.inputs[0], op.inputs[1], op.inputs[2] if len(op.inputs) > 2 else -1
        src, out = step.inputs[0], step.output
        wt = g.tensors[w]
        weights = g.tensor_data(w)
        out_c = g.tensors[out].shape[3]
        in_scale = float(self.scale(x))
        filter_scales = wt.scale if len(wt.scale) > 1 else wt.scale * out_c
        pairs = [quantize_multiplier(in_scale * float(fs) / float(self.scale(out))) for fs in filter_scales]
        lo, hi = activation_range(op.activation, self.scale(out), self.zp(out))
        n = step.index
        bias = self.constants(n, weights, b, pairs)
        in_shape = g.tensors[src].shape
        dm = op.depth_multiplier if op.name == "DEPTHWISE_CONV_2D" else 1
        if op.name == "CONV_2D" and weights.shape[3] != in_shape[3]:
            raise ModelError(f"grouped convolution at op {op.index} is not supported by the static engine")
        self.consts.append(
            f"static const se_conv_params p{n} = {{w{n}, {bias}, m{n}, s{n}, {out_c}, {step.kernel[0]}, {step.kernel[1]}, "
            f"{step.stride[0]}, {step.stride[1]}, {step.dilation[0]}, {step.dilation[1]}, {step.pad[0]}, {step.pad[1]}, "
            f"{in_shape[1]}, {in_shape[2]}, {dm}, {-self.zp(x)}, {self.zp(out)}, {lo}, {hi}}};\n")
        return f"&p{n}"

    def emit(self, step: Step, in_tile: bool, indent: str) -> None:
        g, s = self.g, self.s
        op = g.ops[step.ops[-1]]
        n, out = step.index, step.output
        inplace = n in s.inplace_steps
        line = None
        cmsis = step.kernels == "cmsis-nn"
        if step.kind in ("conv", "depthwise", "pointwise"):
            p = self.conv_params(step, op)
            src = step.inputs[0]
            same_region = not in_tile or (self.tiled(src) and self.tiled(out)
                                          and s.patch.rows[src] == s.patch.rows[out] and s.patch.cols[src] == s.patch.cols[out])
            if cmsis and step.kind == "pointwise" and same_region:
                npix = (f"(R{out}[ty][1] - R{out}[ty][0]) * (C{out}[tx][1] - C{out}[tx][0])" if in_tile
                        else str(g.tensors[out].shape[1] * g.tensors[out].shape[2]))
                line = (f"se_cmsis_pointwise({p}, (const int8_t *){self.ptr(src)}, (int8_t *){self.ptr(out)}, {npix}, "
                        f"{g.tensors[src].shape[3]});")
            elif cmsis:
                buf = (f"{self.scratch(step)}, {s.scratch[n][1]}" if n in s.scratch else "NULL, 0")
                fn = "se_cmsis_depthwise" if step.kind == "depthwise" else "se_cmsis_conv"
                line = (f"{fn}({p}, {self.view(src, in_tile)}, {self.view(out, in_tile)}, {self.region(out, in_tile)}, "
                        f"{buf});")
            elif step.kind == "pointwise" and (inplace or same_region):
                npix = (f"(R{out}[ty][1] - R{out}[ty][0]) * (C{out}[tx][1] - C{out}[tx][0])" if in_tile
                        else str(g.tensors[out].shape[1] * g.tensors[out].shape[2]))
                line = (f"se_pointwise({p}, (const int8_t *){self.ptr(src)}, (int8_t *){self.ptr(out)}, {npix}, "
                        f"{g.tensors[src].shape[3]}, {self.scratch(step) if inplace else 'NULL'});")
            elif step.kind == "depthwise" and inplace:
                line = (f"se_depthwise_inplace({p}, {self.view(src, in_tile)}, {self.view(out, in_tile)}, "
                        f"{self.region(out, in_tile)}, {self.scratch(step)});")
            else:
                fn = "se_depthwise" if step.kind == "depthwise" else "se_conv"
                line = f"{fn}({p}, {self.view(src, in_tile)}, {self.view(out, in_tile)}, {self.region(out, in_tile)});"
        elif step.kind == "add":
            a, b = op.inputs[0], op.inputs[1]
            if g.tensors[a].shape != g.tensors[b].shape:
                raise ModelError(f"broadcasting ADD at op {op.index} is not supported by the static engine")
            s1, s2, so = self.scale(a), self.scale(b), self.scale(out)
            twice_max = 2 * float(max(np.float32(s1), np.float32(s2)))
            m1, sh1 = quantize_multiplier(float(s1) / twice_max)
            m2, sh2 = quantize_multiplier(float(s2) / twice_max)
            mo, sho = quantize_multiplier(twice_max / ((1 << 20) * float(so)))
            lo, hi = activation_range(op.activation, so, self.zp(out))
            self.consts.append(f"static const se_add_params p{n} = {{{-self.zp(a)}, {-self.zp(b)}, {self.zp(out)}, "
                               f"{m1}, {m2}, {mo}, {sh1}, {sh2}, {sho}, 20, {lo}, {hi}}};\n")
            line = (f"{'se_cmsis_add' if cmsis else 'se_add'}(&p{n}, {self.view(a, in_tile)}, {self.view(b, in_tile)}, "
                    f"{self.view(out, in_tile)}, {self.region(out, in_tile)});")
        elif step.kind == "quantize":
            src = step.inputs[0]
            ti, to = g.tensors[src], g.tensors[out]
            if {ti.dtype, to.dtype} - {"int8", "uint8"}:
                raise ModelError(f"QUANTIZE {ti.dtype} -> {to.dtype} at op {op.index} is not supported by the static engine")
            m, sh = quantize_multiplier(float(self.scale(src)) / float(self.scale(out)))
            self.consts.append(f"static const se_quantize_params p{n} = {{{self.zp(src)}, {self.zp(out)}, {m}, {sh}, "
                               f"{int(ti.dtype == 'uint8')}, {int(to.dtype == 'uint8')}}};\n")
            if len(to.shape) == 4:
                line = f"se_quantize(&p{n}, {self.view(src, in_tile)}, {self.view(out, in_tile)}, {self.region(out, in_tile)});"
            else:
                line = f"se_quantize_flat(&p{n}, {self.ptr(src)}, {self.ptr(out)}, {to.elements});"
        elif step.kind == "mean":
            src = step.inputs[0]
            axes = sorted(int(a) % 4 for a in g.tensor_data(op.inputs[1]).reshape(-1))
            shape = g.tensors[src].shape
            if axes != [1, 2] or len(shape) != 4:
                raise ModelError(f"MEAN over axes {axes} at op {op.index} is not supported by the static engine")
            m, sh = quantize_multiplier(float(self.scale(src)) / float(self.scale(out)))
            count = shape[1] * shape[2]
            extra = min(count.bit_length() - 1, 32, 31 + sh)
            m, sh = ((m << extra) // count), sh - extra
            self.consts.append(f"static const se_mean_params p{n} = {{{self.zp(src)}, {self.zp(out)}, {m}, {sh}}};\n")
            line = (f"se_mean_hw(&p{n}, (const int8_t *){self.ptr(src)}, (int8_t *){self.ptr(out)}, "
                    f"{shape[1]}, {shape[2]}, {shape[3]});")
        elif step.kind == "fully_connected":
            x, w = op.inputs[0], op.inputs[1]
            b = op.inputs[2] if len(op.inputs) > 2 else -1
            wt = g.tensors[w]
            out_f, in_f = wt.shape
            if len(wt.scale) > 1:
                pairs = [quantize_multiplier(float(self.scale(x)) * float(fs) / float(self.scale(out))) for fs in wt.scale]
            else:   # per tensor: the product is taken in float32 (GetQuantizedConvolutionMultipler)
                product = float(np.float32(self.scale(x)) * np.float32(wt.scale[0]))
                pairs = [quantize_multiplier(product / float(self.scale(out)))] * out_f
            lo, hi = activation_range(op.activation, self.scale(out), self.zp(out))
            bias = self.constants(n, g.tensor_data(w), b, pairs)
            batches = g.tensors[out].elements // out_f
            self.consts.append(f"static const se_fc_params p{n} = {{w{n}, {bias}, m{n}, s{n}, {in_f}, {out_f}, {batches}, "
                               f"{-self.zp(x)}, {self.zp(out)}, {lo}, {hi}}};\n")
            line = f"se_fully_connected(&p{n}, (const int8_t *){self.ptr(step.inputs[0])}, (int8_t *){self.ptr(out)});"
        elif step.kind == "softmax":
            src = step.inputs[0]
            if self.zp(out) != -128 or np.float32(self.scale(out)) != np.float32(1 / 256):
                raise ModelError(f"SOFTMAX at op {op.index} needs an int8 output with scale 1/256 and zero point -128 "
                                 "(TFLite Micro requires it too)")
            real = min(op.beta * float(self.scale(src)) * (1 << 26), (1 << 31) - 1.0)
            m, sh = quantize_multiplier(real)
            diff_min = -int(math.floor(31 * (1 << 26) / (1 << sh)))
            depth = g.tensors[src].shape[-1]
            self.consts.append(f"static const se_softmax_params p{n} = {{{m}, {sh}, {diff_min}, "
                               f"{g.tensors[src].elements // depth}, {depth}}};\n")
            line = f"se_softmax(&p{n}, (const int8_t *){self.ptr(src)}, (int8_t *){self.ptr(out)});"
        elif step.kind == "reshape":
            src = step.inputs[0]
            if s.offsets[src] == s.offsets[out]:
                line = "/* a view of its input */"
            else:
                line = f"memcpy({self.ptr(out)}, {self.ptr(src)}, {g.tensors[out].bytes});"
        if line is None:
            raise ModelError(f"{op.name} (op {op.index}) is not supported by the static engine")
        # each call in its own block: the views and regions it passes (compound literals) live only there, so
        # the compiler reuses one small frame for all steps instead of giving every step its own stack slots
        self.code.append(f"{indent}/* step {n}: {op.name} {step.name} */\n{indent}{{ {line} }}\n")


def _check_int8(g: OpGraph) -> None:
    for op in g.ops:
        for t in op.inputs[:1] + op.outputs:
            if t >= 0 and g.tensors[t].dtype not in ("int8", "uint8") and op.name != "QUANTIZE":
                raise ModelError(f"{g.source} is not an int8 model ({op.name} has {g.tensors[t].dtype} tensors); "
                                 "convert with `edgemnv2 convert`")


@dataclass(frozen=True)
class EngineText:
    """The generated pair, and how many bytes of constants (weights, biases, multipliers, shifts) it holds."""

    header: str
    source: str
    weights_bytes: int


def render_engine(g: OpGraph, s: Schedule, arena_attr: str = "", weights_attr: str = "",
                  declare_only: bool = False) -> EngineText:
    """se_model.h and se_model.c for graph `g` run with schedule `s` (inplace or patch). `arena_attr` and
    `weights_attr` are C attributes a firmware's linker script needs (sections for the arena and the weights).
    `declare_only` declares the weight and bias arrays extern instead of defining them: the same code in a
    file that compiles in a second (for its call graph), which does not link."""
    if s.kind == "tflm":
        raise ModelError("the static engine runs the inplace or patch schedule; tflm is TFLite Micro's own")
    _check_int8(g)
    w = _Writer(g, s, weights_attr, declare_only)
    p = s.patch
    split = p.split_step if p else 0
    if p is not None:
        w.code.append(f"  for (int ty = 0; ty < {p.grid[0]}; ++ty) {{\n    for (int tx = 0; tx < {p.grid[1]}; ++tx) {{\n")
        tables = []
        for t in sorted(set(p.rows) - set(g.inputs)):   # the graph input is read through a full view
            for axis, intervals in (("R", p.rows[t]), ("C", p.cols[t])):
                body = ", ".join(f"{{{iv.lo}, {iv.hi}}}" for iv in intervals)
                tables.append(f"static const int16_t {axis}{t}[{len(intervals)}][2] = {{{body}}};\n")
        w.consts += tables
        for step in s.steps[:split]:
            w.emit(step, True, "      ")
        w.code.append("    }\n  }\n")
    for step in s.steps[split:]:
        w.emit(step, False, "  ")
    (inp,), (outp,) = g.inputs[:1], g.outputs[:1]
    header = (
        "/* Generated by edgemnv2 export --engine static: do not edit. */\n#ifndef SE_MODEL_H\n#define SE_MODEL_H\n"
        "#include <stdint.h>\n\n"
        f"#define SE_SCHEDULE \"{s.kind}\"\n#define SE_ARENA_BYTES {s.arena_bytes}\n"
        f"#define SE_INPUT_OFFSET {s.offsets[inp]}\n#define SE_INPUT_BYTES {g.tensors[inp].bytes}\n"
        f"#define SE_OUTPUT_OFFSET {s.offsets[outp]}\n#define SE_OUTPUT_BYTES {g.tensors[outp].bytes}\n\n"
        "#ifdef __cplusplus\nextern \"C\" {\n#endif\n"
        "extern uint8_t se_arena[SE_ARENA_BYTES];\n/* Runs the model on the input at se_arena + SE_INPUT_OFFSET; the output is at SE_OUTPUT_OFFSET. */\n"
        "void se_invoke(void);\n#ifdef __cplusplus\n}\n#endif\n#endif\n")
    source = (
        f"/* Generated by edgemnv2 export --engine static from {Path(g.source).name}: do not edit.\n"
        f" * Schedule {s.kind}: peak RAM {s.peak_bytes} bytes (arena), {s.macs} MACs. */\n"
        "#include <string.h>\n#include \"se_kernels.h\"\n#include \"se_model.h\"\n"
        + ("#include \"se_cmsis.h\"\n" if s.kernels == "cmsis-nn" else "") + "\n"
        "#define SE_VIEW(p, h, w, c, y0, x0) ((se_view){(void *)(p), (h), (w), (c), (y0), (x0)})\n"
        "#define SE_REGION(y0, y1, x0, x1) ((se_region){(y0), (y1), (x0), (x1)})\n\n"
        f"uint8_t se_arena[SE_ARENA_BYTES] __attribute__((aligned(16))){arena_attr};\n\n"
        + "".join(w.consts) + "\nvoid se_invoke(void) {\n" + "".join(w.code) + "}\n")
    return EngineText(header, source, w.weights_bytes)


def generate_engine(model: Path, out: Path, schedule: str = "inplace", ram_budget: int | None = None,
                    split: int | None = None, grid: tuple[int, int] | None = None,
                    kernels: str = "portable") -> EngineSources:
    """Write se_model.{c,h} and the kernel library for `model` run with `schedule` into `out`."""
    from edgemnv2.atomic import staged_dir

    g = read_opgraph(model)
    s = plan_schedule(model, schedule, ram_budget, split, grid, graph=g, kernels=kernels)
    text = render_engine(g, s)
    files = GENERATED_FILES + (CMSIS_FILES if kernels == "cmsis-nn" else ())
    with staged_dir(Path(out), generated=files) as stage:
        (stage / "se_model.h").write_text(text.header, encoding="utf-8")
        (stage / "se_model.c").write_text(text.source, encoding="utf-8")
        for name in files[2:]:
            (stage / name).write_text(kernel_source(name), encoding="utf-8")
    inp, outp = g.inputs[0], g.outputs[0]
    return EngineSources(Path(out), files, s.kind, s.arena_bytes,
                         s.offsets[inp], g.tensors[inp].bytes, s.offsets[outp], g.tensors[outp].bytes, len(s.steps))


# ---------------------------------------------------------------------------------------------- in a firmware

FIRMWARE_RUNNER = "edgemnv2_static.c"   # edgemnv2_model.h over se_invoke(), with the RAM it measures
FIRMWARE_FILES = ("se_model.h", "se_model.c", "se_kernels.c", "se_kernels.h", FIRMWARE_RUNNER)
WEIGHTS_SECTION = ".rodata.se_weights"   # firmware.ld puts it with the model (the region where it fits)


@dataclass(frozen=True)
class EngineOptions:
    """`export --engine static`'s schedule choice."""

    schedule: str = "inplace"
    ram_budget: int | None = None
    split: int | None = None
    grid: tuple[int, int] | None = None
    kernels: str = "portable"   # portable | cmsis-nn


@dataclass(frozen=True)
class FirmwareEngine:
    """What the static engine wrote into a firmware project's source folder."""

    schedule: str
    kernels: str            # portable | cmsis-nn
    runtime: str            # INFO's runtime: compared with TFLite Micro on the host, which it is bit-exact with
    arena_bytes: int
    stack_bytes: int        # the planner's stack term for the target (engine_stack.toml)
    weights_bytes: int
    steps: int
    macs: int
    files: tuple[Path, ...]
    config: tuple[str, ...]   # lines for edgemnv2_config.h


def write_firmware_engine(model: Path, src: Path, options: EngineOptions, bare_metal: bool,
                          stack_target: str = DEFAULT_STACK_TARGET) -> FirmwareEngine:
    """The generated engine, its kernels and its runner (edgemnv2_static.c) into a firmware's `src`: the runner
    takes edgemnv2_tflm.cpp's place behind edgemnv2_model.h, so protocol, board code and bench stay the same."""
    g = read_opgraph(model)
    s = plan_schedule(model, options.schedule, options.ram_budget, options.split, options.grid, graph=g,
                      stack_target=stack_target, kernels=options.kernels)
    if bare_metal:
        text = render_engine(g, s, ' __attribute__((section(".arena")))',
                             f' __attribute__((section("{WEIGHTS_SECTION}")))')
    else:
        text = render_engine(g, s)
    files = []
    for name, content in (("se_model.h", text.header), ("se_model.c", text.source),
                          *((n, kernel_source(n)) for n in FIRMWARE_FILES[2:]
                            + (CMSIS_FILES if options.kernels == "cmsis-nn" else ()))):
        (src / name).write_text(content, encoding="utf-8")
        files.append(src / name)
    config = [f"/* the static engine, {s.kind} schedule, {s.kernels} kernels: {len(s.steps)} steps, {s.macs} MACs */",
              f'#define EDGEMNV2_RUNTIME "tflm+static-{s.kind}"', "#define EDGEMNV2_MEASURES_RAM 1"]
    if bare_metal:
        config.append("#define EDGEMNV2_STACK_LIMIT 1 /* the linker script's __stack_limit__ / __stack_top__ */")
    return FirmwareEngine(s.kind, s.kernels, f"tflm+static-{s.kind}", s.arena_bytes, s.stack_bytes, text.weights_bytes, len(s.steps), s.macs,
                          tuple(files), tuple(config))


def kernel_source(name: str) -> str:
    """Text of one kernel-library file shipped under firmware_templates/static_engine/."""
    from edgemnv2.resources import templates_root

    return (templates_root() / "static_engine" / name).read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------------- checking


@dataclass(frozen=True)
class BitExactReport:
    model: str
    schedule: str
    inputs: int
    mismatched_inputs: int          # inputs whose output differs in any byte
    max_abs_diff: int
    arena_bytes: int
    peak_bytes: int


def _host_cmsis_library(tflm: Path) -> Path:
    """CMSIS-NN compiled once for the host (its plain-C paths), cached by source content and compiler, as a
    static library, so the link takes only the objects the engine calls."""
    import hashlib

    from edgemnv2.firmware.build import cmsis_flags, cmsis_sources

    version = subprocess.run(["gcc", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    objects = []
    cache = Path(tempfile.gettempdir()) / "edgemnv2-cmsis-host"
    cache.mkdir(parents=True, exist_ok=True)
    for source in cmsis_sources(tflm):
        key = hashlib.sha256(source.read_bytes() + version.encode() + str(source).encode()).hexdigest()[:20]
        obj = cache / f"{source.stem}-{key}.o"
        if not obj.is_file():
            tmp = obj.with_suffix(f".{os.getpid()}.tmp")
            proc = subprocess.run(["gcc", "-std=c17", "-O2", *cmsis_flags(tflm), "-c", str(source), "-o", str(tmp)],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeUnavailable(f"gcc failed on {source.name}: {proc.stderr.strip()[-300:]}")
            os.replace(tmp, obj)
        objects.append(obj)
    library = cache / f"libcmsisnn-{hashlib.sha256(' '.join(map(str, objects)).encode()).hexdigest()[:20]}.a"
    if not library.is_file():
        tmp = library.with_suffix(f".{os.getpid()}.tmp")
        subprocess.run(["ar", "rcs", str(tmp), *map(str, objects)], check=True, capture_output=True)
        os.replace(tmp, library)
    return library


def build_host(sources: Path, out: Path, harness: Path | None = None, tflm: Path | None = None) -> Path:
    """Compile the generated engine with the host gcc and a stdin→stdout harness; returns the binary. An engine
    with the CMSIS-NN backend links CMSIS-NN from `tflm` (default: the shared tree)."""
    if shutil.which("gcc") is None:
        raise ToolMissing("gcc is not installed (apt install gcc)")
    harness = harness or sources / "se_host_main.c"
    extra: list[str] = []
    if (sources / "se_cmsis.c").is_file():
        from edgemnv2.firmware.build import cmsis_flags, resolve_tflm_dir

        tflm = resolve_tflm_dir(tflm)
        extra = [*cmsis_flags(tflm), str(sources / "se_cmsis.c"), str(_host_cmsis_library(tflm))]
    cmd = ["gcc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", f"-I{sources}", str(sources / "se_kernels.c"),
           str(sources / "se_model.c"), str(harness), *extra, "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeUnavailable(f"gcc failed on the generated engine: {proc.stderr.strip()[-400:]}")
    return out


def run_host(binary: Path, inputs: np.ndarray, output_bytes: int) -> np.ndarray:
    """Run the host engine on a batch of raw inputs (N x input bytes) → N x output bytes."""
    proc = subprocess.run([str(binary)], input=np.ascontiguousarray(inputs).tobytes(), capture_output=True)
    if proc.returncode != 0:
        raise RuntimeUnavailable(f"the host engine exited with {proc.returncode}: {proc.stderr.decode()[-200:]}")
    return np.frombuffer(proc.stdout, dtype=np.uint8).reshape(len(inputs), output_bytes)


def tflm_outputs(model: Path, inputs: np.ndarray, timeout_s: float = 3600) -> np.ndarray:
    """Outputs of the tflite-micro wheel (reference kernels) for raw inputs, run in a child process."""
    with tempfile.TemporaryDirectory(prefix="edgemnv2-tflm-") as tmp:
        src, dst = Path(tmp) / "in.npy", Path(tmp) / "out.npy"
        np.save(src, inputs)
        proc = subprocess.run([sys.executable, "-m", "edgemnv2.deploy.static_engine", str(model), str(src), str(dst)],
                              capture_output=True, text=True, timeout=timeout_s)
        if proc.returncode != 0:
            from edgemnv2.profile.tflm_arena import TFLMRejected

            raise TFLMRejected(f"TFLite Micro could not run {Path(model).name} (exit {proc.returncode}): "
                               f"{(proc.stderr or proc.stdout).strip()[-300:]}")
        return np.load(dst)


def _tflm_worker(model: str, inputs: str, outputs: str) -> None:
    """Child process: run every input through TFLM and save the raw outputs."""
    from tflite_micro import runtime

    from edgemnv2.profile.tflm_arena import default_arena_size

    data = Path(model).read_bytes()
    interpreter = runtime.Interpreter.from_bytes(data, arena_size=default_arena_size(len(data)))
    detail = interpreter.get_input_details(0)
    batch = np.load(inputs)
    results = []
    for raw in batch:
        interpreter.set_input(raw.view(detail["dtype"]).reshape(detail["shape"]), 0)
        interpreter.invoke()
        results.append(np.asarray(interpreter.get_output(0)).reshape(-1).view(np.uint8).copy())
    np.save(outputs, np.stack(results))


def image_inputs(model: Path, folder: Path, count: int, seed: int = 0) -> np.ndarray:
    """`count` images of `folder`, preprocessed for the model and quantized to its input type (N x bytes)."""
    from edgemnv2.data import load_images

    g = read_opgraph(model)
    t = g.tensors[g.inputs[0]]
    images = load_images(Path(folder), t.shape[1], limit=count, seed=seed).images
    q = quantize_values(images, t.scale[0], t.zero_point[0], t.dtype)  # as validate and bench feed the model
    return q.reshape(len(q), -1).view(np.uint8)


def check_bit_exact(model: Path, inputs: np.ndarray, schedule: str = "inplace", work: Path | None = None,
                    ram_budget: int | None = None, split: int | None = None,
                    grid: tuple[int, int] | None = None, reference: np.ndarray | None = None,
                    kernels: str = "portable") -> BitExactReport:
    """Generate + build the engine for `schedule`, run it on `inputs` (N x input bytes, uint8 view) and compare
    with TFLM's outputs (`reference`, computed when not given)."""
    with tempfile.TemporaryDirectory(prefix="edgemnv2-se-", dir=work) as tmp:
        sources = generate_engine(model, Path(tmp) / "engine", schedule, ram_budget, split, grid, kernels)
        binary = build_host(sources.out, Path(tmp) / "engine.bin")
        ours = run_host(binary, inputs, sources.output_bytes)
    theirs = reference if reference is not None else tflm_outputs(model, inputs)
    diff = np.abs(ours.view(np.int8).astype(np.int16) - theirs.reshape(ours.shape).view(np.int8).astype(np.int16))
    peak = plan_schedule(model, schedule, ram_budget, split, grid, kernels=kernels).peak_bytes
    return BitExactReport(str(model), sources.schedule, len(inputs), int((diff.max(axis=1) > 0).sum()),
                          int(diff.max(initial=0)), sources.arena_bytes, peak)


if __name__ == "__main__":
    _tflm_worker(sys.argv[1], sys.argv[2], sys.argv[3])
