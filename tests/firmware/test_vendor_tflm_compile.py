"""Each vendor project's TensorFlow Lite Micro part (edgemnv2_tflm.cpp: interpreter, op resolver, per-layer timer)
compiles against ../shared/tflm with its board's CPU flags. The vendor SDKs are not here, so their own headers
(the Arduino library's root header, ESP-IDF's esp_attr.h) are empty stand-ins; ESP32-S3 (Xtensa, no compiler
here) is compiled for the host."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from edgemnv2.deploy.export import ExportRequest, export_project
from edgemnv2.firmware.build import compile_flags
from edgemnv2.firmware.targets import BuildTarget

CASES = {  # target, board -> compiler, CPU flags (the boards' cores: M4F, M7, M0+; Xtensa built for the host)
    ("arduino", "nano33ble"): ("arm-none-eabi", ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard",
                                                       "-mfpu=fpv4-sp-d16"]),
    ("arduino", "portenta-h7"): ("arm-none-eabi", ["-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=hard",
                                                   "-mfpu=fpv5-d16"]),
    ("pico", "pico"): ("arm-none-eabi", ["-mcpu=cortex-m0plus", "-mthumb", "-mfloat-abi=soft"]),
    ("esp-idf", "esp32-s3"): ("host", []),
}
SOURCE_DIRS = {"arduino": "edgemnv2_fw/src", "esp-idf": "main", "pico": "src"}


@pytest.mark.parametrize("target,board", list(CASES))
def test_tflm_runner_compiles_with_the_boards_flags(target: str, board: str, mcu_model: Path, shared_dir: Path,
                                                    tmp_path: Path) -> None:
    compiler, cpu_flags = CASES[(target, board)]
    project = tmp_path / "fw"
    export_project(ExportRequest(target=target, model=mcu_model, out=project, board=board))
    stand_ins = tmp_path / "sdk"
    stand_ins.mkdir()
    (stand_ins / "Chirale_TensorFlowLite.h").write_text("/* stand-in for the Arduino library's root header */\n")
    (stand_ins / "esp_attr.h").write_text("#define EXT_RAM_BSS_ATTR\n")
    spec = BuildTarget(name=board, title=board, compiler=compiler, cpu_flags=tuple(cpu_flags), board_files=(),
                       kernels_default="reference", source="test")
    src = project / SOURCE_DIRS[target]
    cxx = "arm-none-eabi-g++" if compiler == "arm-none-eabi" else "g++"
    argv = [cxx, "-std=c++17", "-fno-rtti", "-fno-exceptions", "-fno-threadsafe-statics", "-O2", "-Wall", "-Werror",
            f"-I{src}", f"-I{stand_ins}", *compile_flags(spec, shared_dir / "tflm", "reference"),
            "-c", str(src / "edgemnv2_tflm.cpp"), "-o", str(tmp_path / "tflm.o")]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
