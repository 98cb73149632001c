"""The static engine inside the real firmware: `export --engine static --target host|mps2-an386` → `build` (no
TensorFlow Lite Micro) → `board-sim --firmware` (native, or QEMU Cortex-M4) → `bench`, every output bit-exact with
host TFLite Micro, on the tiny every-kernel model (a few ms per image)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgemnv2.deploy.export import ExportRequest, export_project
from edgemnv2.deploy.static_engine import EngineOptions
from edgemnv2.errors import InputError
from edgemnv2.firmware.build import BuildRequest, build_project, cmsis_sources
from edgemnv2.firmware.emulator import EmulatorOptions, FirmwareBoard
from edgemnv2.profile.schedule import plan_schedule
from edgemnv2.serial.bench import BenchOptions, run_bench


# a low baud: the emulated UART keeps up under load, and GET_MEMORY's answer gets the ACK timeout of that baud
BAUD = 28800


def _firmware(tmp_path: Path, model: Path, target: str, schedule: str, kernels: str):
    project = tmp_path / f"fw-{target}-{schedule}"
    export_project(ExportRequest(target=target, model=model, out=project, baud=BAUD,
                                 engine=EngineOptions(schedule, kernels=kernels)))
    # portable kernels need no TFLite Micro tree: a folder that is none proves it is never read
    return build_project(BuildRequest(project=project, tflm_dir=tmp_path / "no-tflm" if kernels == "portable" else None,
                                      cache_dir=tmp_path / "cache"))


@pytest.mark.parametrize("target, schedule, kernels", [("host", "inplace", "portable"), ("host", "patch", "portable"),
                                                       ("mps2-an386", "patch", "portable"),
                                                       ("mps2-an386", "inplace", "cmsis-nn")])
def test_static_engine_firmware_through_bench(tiny_mnv2: Path, shared_dir: Path, tmp_path: Path, target: str,
                                              schedule: str, kernels: str) -> None:
    build = _firmware(tmp_path, tiny_mnv2, target, schedule, kernels)
    manifest = json.loads((build.project / "edgemnv2_project.json").read_text())
    assert (manifest["engine"], manifest["schedule"], manifest["ops"]) == ("static", schedule, [])
    src = {p.name for p in (build.project / "src").iterdir()}
    assert {"edgemnv2_static.c", "se_model.c", "se_kernels.c"} <= src and not src & {"edgemnv2_tflm.cpp", "model.tflite"}
    own = sum(1 for name in src if name.endswith((".c", ".cc", ".cpp", ".S")))
    assert build.sources == own + (len(cmsis_sources(build.tflm_dir)) if kernels == "cmsis-nn" else 0)
    with FirmwareBoard(build.project, EmulatorOptions(icount=target != "host")) as board:
        report = run_bench(BenchOptions(port=board.path, model=tiny_mnv2, images=shared_dir / "data" / "imagenet-val", baud=BAUD,
                                        out=tmp_path / "r.jsonl", count=3, timeout=60.0))
    assert report.runtime == f"tflm+static-{schedule}" and report.reference_runtime == "tflm"
    assert report.received == 3 and report.exact_matches == 3, report
    # the firmware measured its own RAM (painted arena and stack): the arena as planned, a small stack
    # and the planner's stack term (gcc's call graph of MobileNetV2 1.0/224's engine) bounds the measured stack
    # (this small graph's se_invoke keeps fewer values on the stack across its tile loop)
    planned = plan_schedule(tiny_mnv2, schedule, stack_target=target, kernels=kernels)
    memory = report.memory
    assert memory is not None and memory.inferences == 3 and memory.arena_bytes == planned.arena_bytes
    assert 0.99 * planned.arena_bytes <= memory.arena_peak <= planned.arena_bytes
    # CMSIS-NN's deepest chain in gcc's graph goes through paths this model's shapes never take
    slack = 256 if kernels == "portable" else 1024
    assert 0 < memory.stack_peak <= planned.stack_bytes <= memory.stack_peak + slack, (memory, planned.stack_bytes)
    assert memory.stack_peak < memory.stack_boot_peak <= memory.stack_region


def test_static_engine_needs_an_edgemnv2_build_target(tiny_mnv2: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="edgemnv2 build"):
        export_project(ExportRequest(target="arduino", model=tiny_mnv2, out=tmp_path / "a", engine=EngineOptions()))
    with pytest.raises(InputError, match="arena-bytes"):
        export_project(ExportRequest(target="host", model=tiny_mnv2, out=tmp_path / "b", arena_bytes=1000,
                                     engine=EngineOptions()))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
