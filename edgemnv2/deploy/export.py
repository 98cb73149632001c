"""`edgemnv2 export`: a model → a ready-to-build project for a board (or a phone package).

For microcontrollers (arduino, esp-idf, pico) and the emulated boards (mps2-an386, host; built
by `edgemnv2 build`, run by `edgemnv2 board-sim --firmware`) the project holds the firmware templates
(`firmware_templates/common` + the target's board code), the model as a 16-byte aligned const C array,
`model_ops.h` registering exactly the ops the model uses, `edgemnv2_config.h` (arena size from the
arena planner plus a margin, tensors, board facts) and a README whose build/flash commands are the
ones `edgemnv2 flash` runs. `linux-agent` copies the Python agent and the model.

Targets are a registry (`TARGETS`: name → renderer taking an `ExportRequest`), so phone targets live
in `edgemnv2.deploy.phone` and plug in with one entry.
"""

from __future__ import annotations

import hashlib
import json
import math
import shlex
import shutil
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgemnv2 import atomic
from edgemnv2.deploy.boards import Board, resolve_board
from edgemnv2.errors import InputError, ModelError
from edgemnv2.resources import data_file, templates_root
from edgemnv2.tflite import Graph, Tensor, load_graph

if TYPE_CHECKING:
    from edgemnv2.deploy.static_engine import EngineOptions

TFLM_OPS_FILE = data_file("deploy/tflm_ops.toml")
MANIFEST_NAME = "edgemnv2_project.json"
ARENA_MARGIN = 0.10           # the planner reproduces TFLM's layout; 10 % covers kernel/library version drift
ARENA_ROUND = 1024
ESP32_INTERNAL_ARENA_MAX = 256 * 1024  # above this the ESP32-S3 arena goes to PSRAM (EXT_RAM_BSS_ATTR)
DEFAULT_BAUD = 921600

# Portable sources: compiled by the host tests with gcc -std=c99 and cross-compiled for Cortex-M4.
PORTABLE_SOURCES = ("edgemnv2_protocol.c", "edgemnv2_app.c", "edgemnv2_firmware.c")
COMMON_FILES = ("edgemnv2_protocol.h", "edgemnv2_protocol.c", "edgemnv2_app.h", "edgemnv2_app.c",
                "edgemnv2_board.h", "edgemnv2_model.h", "edgemnv2_firmware.h", "edgemnv2_firmware.c",
                "edgemnv2_tflm.cpp")
TFLM_RUNNER = "edgemnv2_tflm.cpp"   # behind edgemnv2_model.h; the static engine brings its own runner

# TFLite tensor type → protocol dtype (docs/protocol.md §2); others cannot go over the wire.
_PROTOCOL_DTYPES = {"int8": "EMN_DTYPE_INT8", "uint8": "EMN_DTYPE_UINT8", "int16": "EMN_DTYPE_INT16",
                    "int32": "EMN_DTYPE_INT32", "float32": "EMN_DTYPE_FLOAT32"}


@dataclass(frozen=True)
class ModelFacts:
    """What the firmware needs to know about a .tflite file, read with the `tflite` flatbuffer parser."""

    path: Path
    size_bytes: int
    sha256: str
    ops: tuple[str, ...]          # builtin op names, in order of first use
    operator_count: int           # operators in the graph: the firmware times each one
    custom_ops: tuple[str, ...]
    input: Tensor                 # the graph's own tensors, checked to go over the wire with static shapes
    output: Tensor
    float_ops: tuple[str, ...] = ()  # "OP#index" of ops computing in floating point (not I/O QUANTIZE/DEQUANTIZE)


@dataclass(frozen=True)
class ExportRequest:
    target: str
    model: Path
    out: Path
    arena_bytes: int | None = None  # None: planned from the model
    board: str | None = None        # None: the target's first board (deploy/boards.py)
    labels: Path | None = None      # phone targets
    baud: int = DEFAULT_BAUD
    engine: EngineOptions | None = None  # the static engine in place of TFLite Micro (emulated targets)
    force: bool = False             # export a float model, or an arena below the plan, to a microcontroller anyway
    input_slots: int | None = None  # None: 2 where the firmware can take the next input while computing, else 1


@dataclass
class FirmwareExport:
    """What `export` rendered for a board target."""

    target: str
    board: str | None
    out: Path
    model_sha256: str
    model_bytes: int
    arena_bytes: int | None
    arena_source: str | None      # "planned" (plan peak + margin) or "given"
    ops: list[str]
    files: list[str]
    build_commands: list[str]
    warnings: list[str] = field(default_factory=list)
    input_slots: int = 1
    input_slots_reason: str = ""


# ---------------------------------------------------------------------------------------------- model facts

def _tensor(graph: Graph, index: int, model_path: Path, role: str) -> Tensor:
    tensor = graph.tensors[index]
    if tensor.dtype.name not in _PROTOCOL_DTYPES:
        raise ModelError(f"{model_path}: {role} tensor type {tensor.dtype.name} cannot be sent over the serial "
                         f"protocol (supported: int8, uint8, int16, int32, float32)")
    shape, signature = tensor.shape, list(tensor.shape_signature)
    # a dynamic batch (-1 first) runs as the stored shape's batch of 1; any other dynamic dimension cannot
    if any(d < 0 for d in signature[1:]) or any(d <= 0 for d in shape):
        raise ModelError(f"{model_path}: {role} shape {signature or list(shape)} is dynamic; "
                         "microcontrollers need static shapes (convert with a fixed input size)")
    return tensor


def inspect_model(model_path: Path) -> ModelFacts:
    """Ops and I/O tensors of a single-subgraph model with one input and one output."""
    model_path = Path(model_path)
    if not model_path.is_file():
        raise InputError(f"model file not found: {model_path}")
    graph = load_graph(model_path)
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise ModelError(f"{model_path}: the firmware serves one input and one output tensor, this model has "
                         f"{len(graph.inputs)} and {len(graph.outputs)}")
    names = [op.name for op in graph.ops]
    ops = dict.fromkeys(name for name in names if not name.startswith("CUSTOM:"))  # first-use order
    custom = dict.fromkeys(name.removeprefix("CUSTOM:") for name in names if name.startswith("CUSTOM:"))
    floats = [f"{op.name}#{op.index}" for op in graph.ops if op.name not in ("QUANTIZE", "DEQUANTIZE")
              and any(graph.tensors[t].dtype.name.startswith("float") for t in (*op.inputs, *op.outputs) if t >= 0)]
    return ModelFacts(path=model_path, size_bytes=len(graph.data), sha256=hashlib.sha256(graph.data).hexdigest(),
                      ops=tuple(ops), operator_count=len(names), custom_ops=tuple(custom),
                      input=_tensor(graph, graph.inputs[0], model_path, "input"),
                      output=_tensor(graph, graph.outputs[0], model_path, "output"), float_ops=tuple(floats))


@lru_cache(maxsize=1)
def tflm_resolver_methods() -> dict[str, str]:
    """Builtin op name → MicroMutableOpResolver method (tflm_ops.toml)."""
    return dict(tomllib.loads(TFLM_OPS_FILE.read_text())["resolver"])


def resolver_calls(facts: ModelFacts) -> list[str]:
    """One resolver call per op; an op TFLM has no kernel for is refused by name."""
    if facts.custom_ops:
        raise ModelError(f"{facts.path}: custom op(s) {', '.join(facts.custom_ops)} have no TFLite Micro kernel "
                         "(an *_edgetpu.tflite model runs only on the Edge TPU: export the uncompiled model)")
    methods = tflm_resolver_methods()
    missing = [op for op in facts.ops if op not in methods]
    if missing:
        raise ModelError(f"{facts.path}: op(s) {', '.join(missing)} have no TFLite Micro kernel "
                         f"(see {TFLM_OPS_FILE.name} for the supported ones)")
    return [methods[op] for op in facts.ops]


def arena_for(model_path: Path, given: int | None, force: bool = False) -> tuple[int, str]:
    """The arena the firmware allocates: the user's, or the planned peak plus `ARENA_MARGIN`, in whole KiB.

    A given arena below the planned peak would only fail on the board (AllocateTensors), so it is refused
    unless `force`."""
    if given is not None and given <= 0:
        raise InputError(f"--arena-bytes must be positive, got {given}")
    from edgemnv2.profile.memory import plan_arena

    peak = plan_arena(model_path).peak_bytes
    planned = int(math.ceil(peak * (1 + ARENA_MARGIN) / ARENA_ROUND) * ARENA_ROUND)
    if given is None:
        return planned, "planned"
    if given < peak and not force:
        raise InputError(f"--arena-bytes {given} is below the {peak} bytes TFLite Micro's planner needs for "
                         f"{model_path} (AllocateTensors would fail on the board); give at least {peak} "
                         f"(default {planned}: the plan + {ARENA_MARGIN:.0%}), or --force")
    return given, "given"


# RAM the firmware needs in its data region besides the arena, the stack and the protocol's buffers: TFLite
# Micro's own data and bss, newlib's heap (printf), the interpreter object (measured on 1.0/96 + CMSIS-NN: 46 KB
# of .data + .bss besides the arena), with room to spare.
SLOT_RESERVE_BYTES = 64 * 1024
RESULT_HEADER_BYTES = 31  # RESULT payload before layer_us: id, boot_nonce, input_crc32, cycles, micros, kind, n_layers


@dataclass(frozen=True)
class SlotPlan:
    slots: int
    reason: str


def _frame_bytes(payload: int) -> int:
    """A frame with `payload` bytes, COBS-encoded, delimiters excluded (the C side's EMN_FRAME_MAX_BYTES)."""
    from edgemnv2.serial import protocol as p

    return p.cobs_max_encoded(p.HEADER_BYTES + payload + p.CRC_BYTES) + 2


def plan_input_slots(target: str, facts: ModelFacts, board: Board, arena: int, static: bool,
                     given: int | None) -> SlotPlan:
    """How many inputs the firmware holds. Two (the next image uploaded while the current one computes) need a
    receive path that keeps bytes during inference and a runner that serves the link between its layers: the
    emulated targets' TFLite Micro firmware (CMSDK UART RX interrupt into a ring; the host's pty buffer), and
    RAM in the data region for a second input and RESULT beside the arena, stack, receive ring and
    `SLOT_RESERVE_BYTES`. The vendor ports (arduino, esp-idf, pico) and the static engine hold one.
    `given` (1 or 2) overrides; 2 where it cannot work is an error."""
    if given is not None and given not in (1, 2):
        raise InputError(f"--input-slots must be 1 or 2, got {given}")
    if target not in EMULATED_TARGETS or static:
        why = ("the static engine does not serve the link between its steps" if static else
               f"the {target} port is built and run nowhere here, and its receive buffer is not sized for the "
               "window of frames that arrives while a layer computes")
        if given == 2:
            raise InputError(f"--input-slots 2: {why}; use --input-slots 1")
        return SlotPlan(1, why)
    from edgemnv2.firmware.targets import build_target
    from edgemnv2.serial import protocol as p

    spec = build_target(target)
    result_frame = _frame_bytes(RESULT_HEADER_BYTES + facts.output.nbytes + 4 * max(facts.operator_count, 1))
    extra = facts.input.nbytes + result_frame
    if not spec.bare_metal:
        plan = SlotPlan(2, f"a second input and RESULT ({extra} bytes) in the host's RAM")
    else:
        assert spec.data_region is not None
        input_frame = _frame_bytes(p.INPUT_HEADER_BYTES + board.max_payload)
        ring = board.window * input_frame + 256  # cortex-m/cmsdk_uart.h: EMN_UART_RING_BYTES
        arena_here = arena if spec.arena_region == spec.data_region else 0
        free = (spec.region(spec.data_region).length - spec.stack_bytes - arena_here - ring - input_frame
                - result_frame - SLOT_RESERVE_BYTES)
        fits = "fit" if extra <= free else "do not fit"
        plan = SlotPlan(2 if extra <= free else 1, f"a second input and RESULT ({extra} bytes) {fits} "
                                                   f"{spec.data_region} ({max(free, 0)} bytes free)")
    if given == 2 and plan.slots == 1:
        raise InputError(f"--input-slots 2: {plan.reason}")
    if given == 1:
        return SlotPlan(1, "--input-slots 1")
    return plan


# ---------------------------------------------------------------------------------------------- generated files

def _c_float(value: float) -> str:
    return f"{value!r}f" if value else "0.0f"


def render_config(facts: ModelFacts, board: Board, arena_bytes: int, baud: int, extra: list[str]) -> str:
    """edgemnv2_config.h: every fact the portable firmware compiles in."""
    digest = ",".join(f"0x{b:02x}" for b in bytes.fromhex(facts.sha256))

    def tensor_lines(prefix: str, t: Tensor) -> list[str]:
        return [f"#define EDGEMNV2_{prefix}_DTYPE {_PROTOCOL_DTYPES[t.dtype.name]}",
                f"#define EDGEMNV2_{prefix}_DIMS {{{', '.join(f'{d}u' for d in t.shape)}}}",
                f"#define EDGEMNV2_{prefix}_SCALE {_c_float(t.scale)}",
                f"#define EDGEMNV2_{prefix}_ZERO_POINT ({t.zero_point})",
                f"#define EDGEMNV2_{prefix}_BYTES {t.nbytes}u"]

    lines = [f"/* Generated by `edgemnv2 export` for {board.title} from {facts.path.name}: do not edit. */",
             "#ifndef EDGEMNV2_CONFIG_H_", "#define EDGEMNV2_CONFIG_H_", "",
             f'#define EDGEMNV2_BOARD_NAME "{board.name}"',
             f"#define EDGEMNV2_CPU_HZ {board.cpu_hz}u",
             f"#define EDGEMNV2_BAUD {baud}u",
             f"#define EDGEMNV2_ARENA_BYTES {arena_bytes}u",
             f"#define EDGEMNV2_MAX_PAYLOAD {board.max_payload}u",
             f"#define EDGEMNV2_WINDOW {board.window}u",
             f"#define EDGEMNV2_LAYER_COUNT {max(facts.operator_count, 1)}u",
             f"/* sha256 {facts.sha256} */",
             f"#define EDGEMNV2_MODEL_SHA256_BYTES {{{digest}}}", "",
             f"/* input {facts.input.name!r} {list(facts.input.shape)} {facts.input.dtype.name} */",
             *tensor_lines("INPUT", facts.input), "",
             f"/* output {facts.output.name!r} {list(facts.output.shape)} {facts.output.dtype.name} */",
             *tensor_lines("OUTPUT", facts.output), ""]
    lines += extra
    lines += ["", "#endif /* EDGEMNV2_CONFIG_H_ */", ""]
    return "\n".join(lines)


def render_ops_header(facts: ModelFacts, calls: list[str]) -> str:
    """model_ops.h: a resolver sized to the model and filled with its ops only (smaller flash than AllOps)."""
    body = "\n".join(f"  if (r.{call}() != kTfLiteOk) return kTfLiteError;  // {op}"
                     for call, op in zip(calls, facts.ops))
    return f"""// Generated by `edgemnv2 export` from {facts.path.name}: the {len(calls)} ops the model uses.
#ifndef EDGEMNV2_MODEL_OPS_H_
#define EDGEMNV2_MODEL_OPS_H_

#include "tensorflow/lite/c/common.h"

#define EDGEMNV2_OP_COUNT {len(calls)}

template <typename Resolver>
static TfLiteStatus edgemnv2_register_ops(Resolver &r) {{
{body}
  return kTfLiteOk;
}}

#endif  // EDGEMNV2_MODEL_OPS_H_
"""


def render_template(text: str, values: dict[str, str]) -> str:
    """`{{KEY}}` placeholders (CMake's `${...}` stays untouched); an unknown key is a bug in the template."""
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    if "{{" in text:
        raise RuntimeError(f"template placeholder left unfilled near: {text[text.index('{{'):][:40]!r}")
    return text


# ---------------------------------------------------------------------------------------------- project writer

def _previous_export(out: Path) -> list[str]:
    """Top-level names a previous export wrote in `out` (replaced by the new one; the user's files stay).

    Refuses a folder with other files unless it is a previous export."""
    if out.exists() and not out.is_dir():
        raise InputError(f"output folder {out} exists and is not a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return []
    try:
        manifest = json.loads((out / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        raise InputError(f"output folder {out} is not empty and was not made by `edgemnv2 export`; "
                         "choose a new folder") from None
    files = manifest.get("files", []) if isinstance(manifest, dict) else []
    return sorted({MANIFEST_NAME, *(str(f).split("/")[0] for f in files)})


def _manifest_files(written: list[Path], root: Path) -> list[str]:
    """Everything the export writes: the files so far, the manifest and the README written after it."""
    return sorted({str(p.relative_to(root)) for p in written} | {MANIFEST_NAME, "README.md"})


def _copy(src: Path, dst: Path, written: list[Path]) -> None:
    if not src.is_file():
        raise InputError(f"firmware template file missing: {src} (reinstall edgemnv2)")
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    written.append(dst)


def _write(path: Path, text: str, written: list[Path]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    written.append(path)


@dataclass(frozen=True)
class _Layout:
    """Where a target keeps its sources, and what it adds beside the common files."""

    source_dir: str                       # relative to the project root
    model_ext: str                        # .cc for CMake, .cpp for Arduino
    board_files: dict[str, str]           # template path (under firmware_templates/<target>) → project path
    extra_config: Callable[[Board, int], list[str]]


def _arduino_config(board: Board, arena: int) -> list[str]:
    return ["/* arduino-cli finds the TFLite Micro library through its root header */",
            "#define EDGEMNV2_TFLM_PRELUDE <Chirale_TensorFlowLite.h>"]


def _esp_config(board: Board, arena: int) -> list[str]:
    if arena <= ESP32_INTERNAL_ARENA_MAX:
        return ["/* the arena fits internal SRAM */"]
    return [f"/* {arena} bytes > {ESP32_INTERNAL_ARENA_MAX}: the arena goes to PSRAM */",
            "#ifdef __cplusplus", '#include "esp_attr.h"', "#define EDGEMNV2_ARENA_ATTR EXT_RAM_BSS_ATTR", "#endif"]


def _no_config(board: Board, arena: int) -> list[str]:
    return []


LAYOUTS: dict[str, _Layout] = {
    "arduino": _Layout("edgemnv2_fw/src", ".cpp",
                       {"edgemnv2_fw.ino": "edgemnv2_fw/edgemnv2_fw.ino",
                        "board_arduino.cpp": "edgemnv2_fw/src/board_arduino.cpp"}, _arduino_config),
    "esp-idf": _Layout("main", ".cc",
                       {"CMakeLists.txt": "CMakeLists.txt", "sdkconfig.defaults": "sdkconfig.defaults",
                        "main/CMakeLists.txt": "main/CMakeLists.txt",
                        "main/idf_component.yml": "main/idf_component.yml",
                        "main/main.cpp": "main/main.cpp", "main/board_esp32.c": "main/board_esp32.c"}, _esp_config),
    "pico": _Layout("src", ".cc",
                    {"CMakeLists.txt": "CMakeLists.txt", "main.cpp": "src/main.cpp",
                     "board_pico.c": "src/board_pico.c"}, _no_config),
}


def _bare_metal_config(board: Board, arena: int) -> list[str]:
    return ["/* the linker script places the arena (.arena) where it fits */",
            '#define EDGEMNV2_ARENA_ATTR __attribute__((section(".arena")))']


def _emulated_layout(target: str) -> _Layout:
    """The emulated boards and the host build: common files + the target's board files, all under src/."""
    from edgemnv2.firmware.targets import build_target

    spec = build_target(target)
    return _Layout("src", ".cc", {name: f"src/{Path(name).name}" for name in spec.board_files},
                   _bare_metal_config if spec.bare_metal else _no_config)


EMULATED_TARGETS = ("mps2-an386", "mps3-an547", "host")
STATIC_KERNELS = "reference"   # the static engine's portable C kernels, built as `edgemnv2 build --kernels reference`
_ARENA_SOURCES = {"planned": "planned peak + 10 %", "given": "given"}
LINKER_SCRIPT = "firmware.ld"


def _write_model_incbin(facts: ModelFacts, src: Path) -> list[Path]:
    """The model for `edgemnv2 build`: the .tflite beside an assembler file that `.incbin`s it (assembles in
    milliseconds, where a 4 MB C array takes minutes to compile), declared by the same header as the C array."""
    from edgemnv2_converters.tflite_to_c import render_header

    data = facts.path.read_bytes()
    model, source, header = src / "model.tflite", src / "model_data.S", src / "model_data.h"
    model.write_bytes(data)
    source.write_text(f"""/* Generated by `edgemnv2 export` from {facts.path.name}: the model, 16-byte aligned, read-only. */
  .section .rodata.g_model, "a"
  .balign 16
  .global g_model
  .type g_model, %object
g_model:
  .incbin "model.tflite"
  .size g_model, . - g_model

  .section .rodata.g_model_len, "a"
  .balign 4
  .global g_model_len
  .type g_model_len, %object
g_model_len:
  .long {len(data)}
  .size g_model_len, 4
#if defined(__linux__) && defined(__ELF__)
  .section .note.GNU-stack, "", %progbits
#endif
""")
    header.write_text(render_header("g_model", len(data), facts.sha256, source.name))
    return [model, source, header]


def render_linker_script(target: str, facts: ModelFacts, arena: int,
                         model_bytes: int | None = None) -> tuple[str, dict[str, str], list[str]]:
    """The linker script for a bare-metal target: regions from targets.toml; the model (`model_bytes` of it: the
    static engine's constants, else the .tflite) in `model_region` when it fits there beside the code, else in
    `model_fallback`. Returns (script, placement, warnings)."""
    from edgemnv2.firmware.targets import build_target

    spec = build_target(target)
    assert spec.model_region and spec.model_fallback and spec.code_region and spec.data_region and spec.arena_region
    size = facts.size_bytes if model_bytes is None else model_bytes
    model_region = spec.model_region
    if spec.model_region == spec.code_region and size + spec.code_reserve_bytes > spec.region(spec.model_region).length:
        model_region = spec.model_fallback
    warnings = []
    if size > spec.region(model_region).length:
        warnings.append(f"the model ({size} bytes) does not fit {target}'s {model_region} "
                        f"({spec.region(model_region).length} bytes): the link will fail")
    if arena > spec.region(spec.arena_region).length:
        warnings.append(f"the arena ({arena} bytes) does not fit {target}'s {spec.arena_region} "
                        f"({spec.region(spec.arena_region).length} bytes): the link will fail")
    memory = "\n".join(f"  {r.name} ({r.attrs}) : ORIGIN = 0x{r.origin:08X}, LENGTH = 0x{r.length:08X}  /* {r.what} */"
                        for r in spec.memory)
    placement = {"code": spec.code_region, "data": spec.data_region, "arena": spec.arena_region,
                 "model": model_region}
    text = render_template((templates_root() / "cortex-m" / "firmware.ld.tmpl").read_text(), {
        "TARGET": target, "MEMORY": memory, "STACK_BYTES": str(spec.stack_bytes), "MODEL_REGION": model_region,
        "CODE_REGION": spec.code_region, "DATA_REGION": spec.data_region, "ARENA_REGION": spec.arena_region})
    return text, placement, warnings


def _check_fit(facts: ModelFacts, board: Board, arena: int) -> list[str]:
    warnings = []
    if facts.size_bytes > board.flash_bytes:
        warnings.append(f"the model ({facts.size_bytes} bytes) is larger than {board.title}'s flash "
                        f"({board.flash_bytes} bytes): pick a smaller alpha or resolution")
    ram = board.ram_bytes + board.psram_bytes
    if arena > ram:
        warnings.append(f"the arena ({arena} bytes) exceeds {board.title}'s RAM ({ram} bytes)")
    return warnings


def render_firmware(request: ExportRequest) -> FirmwareExport:
    """arduino / esp-idf / pico: templates + model array + ops + config + README + manifest."""
    from edgemnv2.deploy import flash
    from edgemnv2_converters.tflite_to_c import write_c_array

    emulated = request.target in EMULATED_TARGETS
    if request.engine is not None and not emulated:
        raise InputError(f"--engine static builds with `edgemnv2 build`: choose --target {'|'.join(EMULATED_TARGETS)}")
    layout = _emulated_layout(request.target) if emulated else LAYOUTS[request.target]
    board = resolve_board(request.target, request.board)
    facts = inspect_model(request.model)
    if facts.float_ops and not request.force:
        raise ModelError(f"{facts.path} computes in floating point ({len(facts.float_ops)} of "
                         f"{facts.operator_count} ops, first {facts.float_ops[0]}); {request.target} needs a "
                         "full-integer model: `edgemnv2 convert --quantize int8` (or --force to export it anyway)")
    static = None
    if request.engine is None:
        calls = resolver_calls(facts)
        arena, arena_source = arena_for(facts.path, request.arena_bytes, request.force)
    elif request.arena_bytes is not None:
        raise InputError("--arena-bytes is for TFLite Micro: the static engine's arena is its schedule's plan")
    out = Path(request.out)
    written: list[Path] = []
    templates = templates_root()
    with atomic.staged_dir(out, generated=_previous_export(out)) as stage:
        src = stage / layout.source_dir
        src.mkdir(parents=True, exist_ok=True)
        if request.engine is not None:
            from edgemnv2.deploy.static_engine import write_firmware_engine

            from edgemnv2.firmware.targets import build_target

            static = write_firmware_engine(facts.path, src, request.engine, build_target(request.target).bare_metal,
                                           stack_target=request.target)
            written += static.files
            calls, arena, arena_source = [], static.arena_bytes, f"{static.schedule} schedule"
        for name in COMMON_FILES:
            if static is not None and name == TFLM_RUNNER:
                continue
            _copy(templates / "common" / name, src / name, written)
        board_templates = templates if emulated else templates / request.target  # emulated: shared folders
        for template, dest in layout.board_files.items():
            _copy(board_templates / template, stage / dest, written)
        if request.target == "arduino":
            text = (templates / "arduino" / "sketch.yaml.tmpl").read_text()
            _write(stage / "edgemnv2_fw" / "sketch.yaml", render_template(text, {"FQBN": board.fqbn or ""}),
                   written)
        if emulated and static is None:
            written += _write_model_incbin(facts, src)
        elif not emulated:
            array = write_c_array(facts.path.read_bytes(), src, symbol="g_model", basename="model_data",
                                  source_ext=layout.model_ext)
            written += [array.source, array.header]
        slots = plan_input_slots(request.target, facts, board, arena, static is not None, request.input_slots)
        extra = layout.extra_config(board, arena) + (list(static.config) if static else [])
        extra.append(f"#define EDGEMNV2_INPUT_SLOTS {slots.slots} /* {slots.reason} */")
        _write(src / "edgemnv2_config.h", render_config(facts, board, arena, request.baud, extra), written)
        if static is None:
            _write(src / "model_ops.h", render_ops_header(facts, calls), written)
        warnings = _check_fit(facts, board, arena)
        if emulated:
            commands, warnings = _finish_emulated(request, board, facts, calls, arena, arena_source, stage, written,
                                                  warnings, slots, static)
        else:
            manifest = {"target": request.target, "board": board.name, "fqbn": board.fqbn,
                        "idf_target": board.idf_target, "pico_board": board.pico_board, "model": facts.path.name,
                        "model_sha256": facts.sha256, "arena_bytes": arena, "baud": request.baud,
                        "input_slots": slots.slots, "source_dir": layout.source_dir,
                        "portable_sources": list(PORTABLE_SOURCES),
                        "files": _manifest_files(written, stage)}
            _write(stage / MANIFEST_NAME, json.dumps(manifest, indent=2) + "\n", written)
            plan = flash.plan_flash(request.target, stage, port=None)
            commands = [_relative_command(c.argv, plan.project) for c in plan.commands]
            _write(stage / "README.md", _firmware_readme(request, board, facts, arena, arena_source, calls,
                                                         plan, warnings), written)
        files = sorted(str(p.relative_to(stage)) for p in written)
    return FirmwareExport(target=request.target, board=board.name, out=out, model_sha256=facts.sha256,
                          model_bytes=facts.size_bytes, arena_bytes=arena, arena_source=arena_source,
                          ops=list(facts.ops), files=files, build_commands=commands, warnings=warnings,
                          input_slots=slots.slots, input_slots_reason=slots.reason)


def _finish_emulated(request: ExportRequest, board: Board, facts: ModelFacts, calls: list[str], arena: int,
                     arena_source: str, out: Path, written: list[Path], warnings: list[str], slots: SlotPlan,
                     static: Any = None) -> tuple[list[str], list[str]]:
    """Linker script (bare metal), manifest and README of an `edgemnv2 build` project, written into the staged
    folder `out`; returns (build commands, warnings). `static`: the static engine's FirmwareEngine, if it runs
    the model instead of TFLite Micro."""
    from edgemnv2.firmware.targets import build_target

    spec = build_target(request.target)
    placement: dict[str, str] = {}
    if spec.bare_metal:
        script, placement, more = render_linker_script(request.target, facts, arena,
                                                       static.weights_bytes if static else None)
        warnings = warnings + more
        _write(out / "src" / LINKER_SCRIPT, script, written)
    manifest = {"target": request.target, "board": board.name, "model": facts.path.name,
                "model_sha256": facts.sha256, "model_bytes": facts.size_bytes, "arena_bytes": arena,
                "baud": request.baud, "input_slots": slots.slots, "source_dir": "src",
                "ops": [] if static else list(facts.ops),
                "operator_count": facts.operator_count,
                "kernels_default": ((STATIC_KERNELS if static.kernels == "portable" else static.kernels) if static
                                    else spec.kernels_default),
                "engine": "static" if static else "tflm", "schedule": static.schedule if static else None,
                "planned_stack_bytes": static.stack_bytes if static else None,
                "linker_script": f"src/{LINKER_SCRIPT}" if spec.bare_metal else None, "placement": placement,
                "portable_sources": list(PORTABLE_SOURCES), "files": _manifest_files(written, out)}
    _write(out / MANIFEST_NAME, json.dumps(manifest, indent=2) + "\n", written)
    commands = ["edgemnv2 build .", "edgemnv2 board-sim --firmware .   # prints the pty for edgemnv2 bench --port"]
    where = "".join(f"\n| {what} | {region} (0x{spec.region(region).origin:08x}) |" for what, region in placement.items())
    lines = [f"# edgemnv2 firmware: {facts.path.name} on {spec.title}", "",
             f"Rendered by `{_export_command(request, board)}`. The firmware answers the edgemnv2 serial "
             "protocol (docs/protocol.md) on its UART; `edgemnv2 board-sim --firmware .` runs it "
             + ("in QEMU" if spec.bare_metal else "natively") + " with the UART on a pseudo-terminal, and "
             f"`{_bench_command('PTY', facts.path.name)}` streams images to it (PTY: the pseudo-terminal "
             "board-sim prints).", "",
             "| | |", "| --- | --- |",
             f"| model | `{facts.path.name}`, {facts.size_bytes} bytes, sha256 `{facts.sha256[:16]}…` |",
             f"| input | {facts.input.dtype.name} {list(facts.input.shape)} |",
             f"| output | {facts.output.dtype.name} {list(facts.output.shape)} |",
             f"| tensor arena | {arena} bytes ({_ARENA_SOURCES.get(arena_source, arena_source)}) |",
             f"| input slots | {slots.slots}: {slots.reason} |"]
    if static:
        lines += [f"| engine | the static engine (`--engine static`), {static.schedule} schedule: {static.steps} steps, "
                  f"{static.macs} MACs, {static.weights_bytes} bytes of constants; runtime `{static.runtime}` |",
                  f"| kernels | portable C (`se_kernels.c`), built as `--kernels {STATIC_KERNELS}` |" + where, ""]
    else:
        lines += [f"| ops ({len(calls)}) | {', '.join(facts.ops)}; {facts.operator_count} operators, each timed |",
                  f"| kernels | {spec.kernels_default} by default (`edgemnv2 build . --kernels cmsis-nn` or "
                  "`edgemnv2 build . --kernels reference`) |"
                  + where, ""]
    if warnings:
        lines += ["**Warnings**", ""] + [f"- {w}" for w in warnings] + [""]
    lines += ["## Build and run", "", "```", *commands, "```", "",
              "`edgemnv2 build .` compiles the generated engine and its kernels (no TensorFlow Lite Micro) and prints the "
              "ELF's text/data/bss." if static else
              "`edgemnv2 build .` compiles the TensorFlow Lite Micro core and only the kernels this model registers "
              "from `../shared/tflm` (`--tflm-dir`, `EDGEMNV2_TFLM_DIR`), caching object files, and prints the "
              "ELF's text/data/bss.", ""]
    _write(out / "README.md", "\n".join(lines), written)
    return commands, warnings


def _export_command(request: ExportRequest, board: Board) -> str:
    """The `edgemnv2 export` line that renders this project again (model and folder by name, as typed beside them)."""
    argv = ["edgemnv2", "export", "--target", request.target]
    engine = request.engine
    if engine is not None:
        argv += ["--engine", "static", "--schedule", engine.schedule]
        argv += ["--ram-budget", str(engine.ram_budget)] if engine.ram_budget is not None else []
        if engine.split is not None and engine.grid is not None:
            argv += ["--patch-split", str(engine.split), "--tiles", f"{engine.grid[0]}x{engine.grid[1]}"]
    argv += ["--board", board.name] if request.board is not None else []
    argv += ["--model", Path(request.model).name, "-o", Path(request.out).name]
    argv += ["--arena-bytes", str(request.arena_bytes)] if request.arena_bytes is not None else []
    argv += ["--baud", str(request.baud)] if request.baud != DEFAULT_BAUD else []
    return shlex.join(argv)


def _bench_command(port: str, model: str) -> str:
    """The `edgemnv2 bench` line every project README shows (tests parse it with the real CLI)."""
    return f"edgemnv2 bench --port {port} --model {shlex.quote(model)} --images IMAGES_DIR -o bench.jsonl"


def _relative_command(argv: list[str], root: Path) -> str:
    """The command as typed from inside the project folder, so the README stays right when it moves."""
    prefix = str(root)
    return shlex.join(("." + a[len(prefix):]) if a == prefix or a.startswith(prefix + "/") else a for a in argv)


def _firmware_readme(request: ExportRequest, board: Board, facts: ModelFacts, arena: int, arena_source: str,
                     calls: list[str], plan: Any, warnings: list[str]) -> str:
    target = request.target
    setup = {
        "arduino": ["Install arduino-cli (https://arduino.github.io/arduino-cli/latest/installation/), then the core "
                    "and the TFLite Micro library:",
                    "", "```", f"arduino-cli core install {':'.join((board.fqbn or '').split(':')[:2])}",
                    "arduino-cli lib install Chirale_TensorFlowLite", "```"],
        "esp-idf": ["Install ESP-IDF 5.1 or newer (https://docs.espressif.com/projects/esp-idf/en/stable/esp32s3/"
                    "get-started/) and run `. $IDF_PATH/export.sh`. The first build fetches `espressif/esp-tflite-micro` "
                    "through the component manager (main/idf_component.yml). The protocol runs on UART0 (the DevKit's "
                    "USB-UART port); logs go to the native USB port."],
        "pico": ["Check out pico-sdk and pico-tflmicro, install cmake, arm-none-eabi-gcc and picotool:",
                 "", "```", "git clone --recursive https://github.com/raspberrypi/pico-sdk",
                 "git clone https://github.com/raspberrypi/pico-tflmicro",
                 "export PICO_SDK_PATH=$PWD/pico-sdk PICO_TFLMICRO_PATH=$PWD/pico-tflmicro", "```",
                 "", "The protocol runs on UART0: GP0 = TX, GP1 = RX, 3.3 V levels (use a USB-UART adapter)."],
    }[target]
    commands = "\n".join(_relative_command(c.argv, plan.project) for c in plan.commands)
    ops = ", ".join(facts.ops)
    lines = [f"# edgemnv2 firmware: {facts.path.name} on {board.title}", "",
             f"Rendered by `{_export_command(request, board)}`. The board answers the edgemnv2 serial protocol "
             f"(docs/protocol.md): `{_bench_command('PORT', facts.path.name)}` streams images to it and "
             "compares every output with a host run.", "",
             "| | |", "| --- | --- |",
             f"| model | `{facts.path.name}`, {facts.size_bytes} bytes, sha256 `{facts.sha256[:16]}…` |",
             f"| input | {facts.input.dtype.name} {list(facts.input.shape)}, scale {facts.input.scale:.6g}, "
             f"zero point {facts.input.zero_point} |",
             f"| output | {facts.output.dtype.name} {list(facts.output.shape)} |",
             f"| tensor arena | {arena} bytes ({'planned peak + 10 %' if arena_source == 'planned' else 'given with --arena-bytes'}) |",
             f"| ops ({len(calls)}) | {ops} |",
             f"| board | {board.title}: {board.mcu} {board.core} at {board.cpu_hz / 1e6:g} MHz, "
             f"{board.ram_bytes // 1024} KB RAM, {board.flash_bytes // 1024} KB flash |",
             f"| link | max_payload {board.max_payload} bytes, window {board.window} |", ""]
    if warnings:
        lines += ["**Warnings**", ""] + [f"- {w}" for w in warnings] + [""]
    lines += ["## Set up", "", *setup, "", "## Build and flash", "",
              "`edgemnv2 flash --target " + target + " --project . --port PORT` runs exactly these "
              "(`--dry-run` prints them):", "", "```", commands, "```", "",
              "## Layout", "",
              "- `edgemnv2_protocol.*`, `edgemnv2_app.*`, `edgemnv2_firmware.*`: the protocol and the firmware "
              "loop, portable C99 (host-tested).",
              "- `board_*`: UART and cycle counter for this board; `edgemnv2_tflm.cpp`: TensorFlow Lite Micro.",
              "- `model_data.*`: the model as a 16-byte aligned const array; `model_ops.h`: its op resolver; "
              "`edgemnv2_config.h`: arena, tensors, board facts.", ""]
    return "\n".join(lines)


def render_linux_agent(request: ExportRequest) -> FirmwareExport:
    """linux-agent: the Python agent files (engineer C's `agent_files()`), the model and a README."""
    from edgemnv2.serial import agent_files

    facts = inspect_model(request.model)
    if request.arena_bytes is not None:
        raise InputError("--arena-bytes applies to microcontroller targets; the Linux agent allocates its own")
    out = Path(request.out)
    run = f"python3 agent.py --model {facts.path.name} --port /dev/ttyGS0 --baud {request.baud}"
    written: list[Path] = []
    with atomic.staged_dir(out, generated=_previous_export(out)) as stage:
        for name, path in agent_files().items():
            _copy(path, stage / name, written)
        _copy(facts.path, stage / facts.path.name, written)
        manifest = {"target": "linux-agent", "model": facts.path.name, "model_sha256": facts.sha256,
                    "agent_files": sorted(agent_files()), "files": _manifest_files(written, stage)}
        _write(stage / MANIFEST_NAME, json.dumps(manifest, indent=2) + "\n", written)
        _write(stage / "README.md", _agent_readme(facts, run), written)
        files = sorted(str(p.relative_to(stage)) for p in written)
    return FirmwareExport(target="linux-agent", board=None, out=out, model_sha256=facts.sha256,
                          model_bytes=facts.size_bytes, arena_bytes=None, arena_source=None, ops=list(facts.ops),
                          files=files, build_commands=[run])


def _agent_readme(facts: ModelFacts, run: str) -> str:
    return "\n".join([
        f"# edgemnv2 Linux agent: {facts.path.name}", "",
        "Serves the edgemnv2 serial protocol (docs/protocol.md) on a Linux board (Raspberry Pi, Coral Dev Board) "
        "with ai-edge-litert or tflite-runtime, and the Edge TPU delegate when present.", "",
        "Copy this folder to the board, then run the agent as below; or let "
        f"`edgemnv2 deploy --target rpi4 --host pi@raspberrypi.local --model {shlex.quote(facts.path.name)}` copy "
        "it over ssh, install the runtime and run one inference (`--target` takes `rpi`, `coral-devboard` or a "
        "board key of `edgemnv2 devices`):", "",
        "```", "python3 -m pip install numpy pyserial ai-edge-litert   # or tflite-runtime", run, "```", "",
        "`python3 agent.py --help` lists the options (serial device, baud, runtime).",
        f"Model: {facts.size_bytes} bytes, sha256 `{facts.sha256}`, input {facts.input.dtype.name} "
        f"{list(facts.input.shape)}, output {facts.output.dtype.name} {list(facts.output.shape)}.", ""])


def _render_phone(request: ExportRequest) -> Any:
    from edgemnv2.deploy.phone import render_phone

    return render_phone(request.target, request.model, request.out, labels=request.labels)


# target → renderer; add a target by adding a function here
TARGETS: dict[str, Callable[[ExportRequest], Any]] = {
    "arduino": render_firmware,
    "esp-idf": render_firmware,
    "pico": render_firmware,
    "mps2-an386": render_firmware,
    "mps3-an547": render_firmware,
    "host": render_firmware,
    "linux-agent": render_linux_agent,
    "android": _render_phone,
    "ios": _render_phone,
}


def export_project(request: ExportRequest) -> Any:
    """Render the project for `request.target`; a board must belong to that target."""
    renderer = TARGETS.get(request.target)
    if renderer is None:
        raise InputError(f"unknown export target {request.target!r}; choose one of: {', '.join(TARGETS)}")
    if request.board is not None and request.target not in LAYOUTS and request.target not in EMULATED_TARGETS:
        raise InputError(f"--board applies to {', '.join(LAYOUTS)}; target {request.target} has no boards")
    return renderer(request)

