"""The static engine in the emulated Cortex-M4 firmware (QEMU mps2-an386, `-icount shift=0`), side by side with
TFLite Micro for the same model: planned and measured peak RAM, bit-exactness, instructions per inference and
code size, for each schedule and kernel set.

    python3 benchmarks/engine_firmware.py --model mobilenet_v2_1.0_96_int8.tflite --images 10
    python3 benchmarks/engine_firmware.py --model m.tflite --images 10 --tflm-images 2 --work-dir /tmp/ef

Every firmware is rendered by `export` (`--engine static --schedule S --kernels K`, or TFLite Micro), built by
`build`, run by `board-sim --firmware` with instruction counting and driven by `bench` with --images images of
../shared/data/imagenet-val, each output compared with host TFLite Micro's. Rows:

- TFLM reference / CMSIS-NN: its arena (planned), instructions per inference (`bench`'s cycles: 1 ns of virtual
  time per instruction), code;
- each static schedule x kernel set: the planner's RAM (arena + stack term) and what the firmware measured
  (painted arena high-water + painted stack depth), their difference, extra MACs, instructions per inference
  and its ratio to TFLM with the matching kernels (portable vs reference, cmsis-nn vs CMSIS-NN), code.

Code is from the linker map (edgemnv2/firmware/mapfile.py): `.text` input sections (code) and `.rodata` (read-only
data without the model: TFLM's model array and the engine's weights/biases/multipliers section are excluded on
both sides) of the runtime's objects only: TFLM = the TFLite Micro (and CMSIS-NN) library objects + its runner
edgemnv2_tflm.cpp; engine = se_model.c (generated), se_kernels.c, se_cmsis.c, CMSIS-NN objects + its runner
edgemnv2_static.c. The firmware's common files (app, protocol, board, startup) and the toolchain's libraries
(libc, libm, libgcc, rdimon: printed separately) are in neither.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from edgemnv2.deploy.export import ExportRequest, export_project  # noqa: E402
from edgemnv2.deploy.static_engine import EngineOptions  # noqa: E402
from edgemnv2.firmware.build import BuildRequest, BuildResult, build_project  # noqa: E402
from edgemnv2.firmware.emulator import EmulatorOptions, FirmwareBoard  # noqa: E402
from edgemnv2.firmware.mapfile import read_map  # noqa: E402
from edgemnv2.paths import shared_dir  # noqa: E402
from edgemnv2.profile.schedule import plan_schedule  # noqa: E402
from edgemnv2.serial.bench import BenchOptions, BenchReport, run_bench  # noqa: E402

TARGET = "mps2-an386"
BAUD = 28800                              # the emulated UART degrades at the default 921600 under load
WEIGHT_SECTIONS = (".rodata.g_model", ".rodata.se_weights")
TFLM_MATCH = {"portable": "reference", "cmsis-nn": "cmsis-nn"}


@dataclass(frozen=True)
class Code:
    code: int        # .text of the runtime's objects
    rodata: int      # .rodata of the runtime's objects, weights excluded
    toolchain: int   # .text + .rodata of libc/libm/libgcc/rdimon members (in neither side's figure)


def runtime_code(build: BuildResult) -> Code:
    """The runtime's code and read-only data in `build`'s ELF, from its linker map."""
    src = build.project / "src"
    common = {p.stem for p in src.iterdir() if p.suffix in (".c", ".cpp", ".S")} - {
        "edgemnv2_tflm", "edgemnv2_static", "se_model", "se_kernels", "se_cmsis", "model_data"}
    sections = [s for s in read_map(build.elf.parent / "firmware.map")
                if not s.name.startswith(WEIGHT_SECTIONS) and s.obj not in common]
    ours = [s for s in sections if "(" not in s.obj]
    libs = [s for s in sections if "(" in s.obj and s.kind in ("code", "rodata")]
    return Code(sum(s.size for s in ours if s.kind == "code"), sum(s.size for s in ours if s.kind == "rodata"),
                sum(s.size for s in libs))


def bench(build: BuildResult, model: Path, count: int, out: Path) -> BenchReport:
    with FirmwareBoard(build.project, EmulatorOptions(icount=True, kernels=build.kernels)) as board:
        return run_bench(BenchOptions(port=board.path, model=model, images=shared_dir() / "data" / "imagenet-val",
                                      out=out, baud=BAUD, count=count, timeout=600.0, force=True))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="an int8 .tflite of the MobileNetV2 family")
    parser.add_argument("--images", type=int, default=10, help="images per static-engine firmware")
    parser.add_argument("--tflm-images", type=int, default=1, help="images per TFLite Micro firmware")
    parser.add_argument("--ram-budget", type=int, default=None, help="patch budget (default: 25%% of TFLM's arena)")
    parser.add_argument("--kernels", nargs="*", default=["portable", "cmsis-nn"], choices=["portable", "cmsis-nn"])
    parser.add_argument("--schedules", nargs="*", default=["inplace", "patch"], choices=["inplace", "patch"])
    parser.add_argument("--work-dir", type=Path, default=None)
    args = parser.parse_args()

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="edgemnv2-engine-fw-"))
    tflm_plan = plan_schedule(args.model, "tflm")
    budget = args.ram_budget or tflm_plan.peak_bytes // 4
    print(f"model: {args.model.name}; target {TARGET} (QEMU, -icount shift=0); TFLM arena planned "
          f"{tflm_plan.peak_bytes:,} B; patch budget {budget:,} B")
    cols = (f"{'runtime':<26} {'planned RAM':>11} {'measured':>9} {'meas/plan':>9} {'extra MACs':>10} "
            f"{'bit-exact':>9} {'instr/inf':>13} {'vs TFLM':>7} {'code B':>8} {'vs TFLM':>7} {'rodata B':>8} {'libs B':>7}")
    print(cols)
    print("-" * len(cols))
    tflm_project = work / "tflm"
    export_project(ExportRequest(target=TARGET, model=args.model, out=tflm_project, baud=BAUD))
    tflm: dict[str, tuple[float, Code]] = {}
    failed = 0
    for kernels in sorted({TFLM_MATCH[k] for k in args.kernels}):
        build = build_project(BuildRequest(project=tflm_project, kernels=kernels))
        report = bench(build, args.model, args.tflm_images, work / f"tflm-{kernels}.jsonl")
        code = runtime_code(build)
        tflm[kernels] = (report.cycles_mean or 0.0, code)
        failed += report.compared - report.exact_matches
        print(f"{'tflm ' + kernels:<26} {tflm_plan.peak_bytes:>11,} {'':>9} {'':>9} {'+0.00%':>10} "
              f"{f'{report.exact_matches}/{report.compared}':>9} {report.cycles_mean or 0:>13,.0f} {'1.00x':>7} "
              f"{code.code:>8,} {'100%':>7} {code.rodata:>8,} {code.toolchain:>7,}", flush=True)
    for schedule in args.schedules:
        for kernels in args.kernels:
            options = EngineOptions(schedule, budget if schedule == "patch" else None, kernels=kernels)
            project = work / f"{schedule}-{kernels}"
            export_project(ExportRequest(target=TARGET, model=args.model, out=project, baud=BAUD, engine=options))
            build = build_project(BuildRequest(project=project))
            plan = plan_schedule(args.model, schedule, options.ram_budget, stack_target=TARGET, kernels=kernels)
            report = bench(build, args.model, args.images, work / f"{schedule}-{kernels}.jsonl")
            code = runtime_code(build)
            mem = report.memory
            measured = mem.arena_peak + mem.stack_peak if mem else 0
            ref_cycles, ref_code = tflm[TFLM_MATCH[kernels]]
            failed += report.compared - report.exact_matches
            tiles = f" {plan.patch.split_step}/{plan.patch.grid[0]}x{plan.patch.grid[1]}" if plan.patch else ""
            print(f"{f'{schedule}{tiles} {kernels}':<26} {plan.ram_bytes:>11,} {measured:>9,} "
                  f"{measured / plan.ram_bytes - 1:>+9.2%} {plan.extra_macs_ratio:>+10.2%} "
                  f"{f'{report.exact_matches}/{report.compared}':>9} {report.cycles_mean or 0:>13,.0f} "
                  f"{(report.cycles_mean or 0) / ref_cycles if ref_cycles else 0:>6.2f}x {code.code:>8,} "
                  f"{code.code / ref_code.code:>7.0%} {code.rodata:>8,} {code.toolchain:>7,}", flush=True)
            if mem:
                print(f"{'':<26}   arena {plan.arena_bytes:,} planned / {mem.arena_peak:,} high-water; stack "
                      f"{plan.stack_bytes:,} planned / {mem.stack_peak:,} painted", flush=True)
    print(f"outputs differing from host TFLite Micro: {failed} (target 0)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
