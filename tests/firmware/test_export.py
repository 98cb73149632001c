"""`edgemnv2 export`: rendered projects have the right files, and their C parts compile (host gcc, Cortex-M4)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgemnv2.cli import cli
from edgemnv2.deploy.export import ExportRequest, export_project, inspect_model
from edgemnv2.errors import InputError
from edgemnv2.profile.memory import plan_arena

HOST_FLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]
CM4_FLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-Os", "-mcpu=cortex-m4", "-mthumb"]
SOURCE_DIRS = {"arduino": "edgemnv2_fw/src", "esp-idf": "main", "pico": "src"}
BOARD_FILES = {"arduino": ["edgemnv2_fw/edgemnv2_fw.ino", "edgemnv2_fw/sketch.yaml", "edgemnv2_fw/src/board_arduino.cpp",
                           "edgemnv2_fw/src/model_data.cpp"],
               "esp-idf": ["CMakeLists.txt", "sdkconfig.defaults", "main/CMakeLists.txt", "main/idf_component.yml",
                           "main/main.cpp", "main/board_esp32.c", "main/model_data.cc"],
               "pico": ["CMakeLists.txt", "src/main.cpp", "src/board_pico.c", "src/model_data.cc"]}


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgemnv2", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def projects(tmp_path_factory, mcu_model: Path) -> dict[str, Path]:
    """One export per MCU target through the CLI (--json), arena from the planner."""
    out: dict[str, Path] = {}
    for target in SOURCE_DIRS:
        folder = tmp_path_factory.mktemp("export") / target
        result = CliRunner().invoke(cli, ["export", "--target", target, "--model", str(mcu_model), "--out",
                                          str(folder), "--json"])
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert report["target"] == target and Path(report["out"]) == folder
        out[target] = folder
    return out


@pytest.mark.parametrize("target", list(SOURCE_DIRS))
def test_project_layout_and_generated_files(projects: dict[str, Path], mcu_model: Path, target: str) -> None:
    project = projects[target]
    src = project / SOURCE_DIRS[target]
    for name in ("edgemnv2_protocol.c", "edgemnv2_app.c", "edgemnv2_firmware.c", "edgemnv2_tflm.cpp",
                 "edgemnv2_config.h", "model_ops.h", "model_data.h"):
        assert (src / name).is_file(), name
    for name in BOARD_FILES[target]:
        assert (project / name).is_file(), name
    facts = inspect_model(mcu_model)
    manifest = json.loads((project / "edgemnv2_project.json").read_text())
    assert manifest["target"] == target and manifest["model_sha256"] == facts.sha256
    # arena = planned peak + 10 %, rounded up to 1 KiB
    peak = plan_arena(mcu_model).peak_bytes
    assert peak * 1.1 <= manifest["arena_bytes"] < peak * 1.1 + 1024
    config = (src / "edgemnv2_config.h").read_text()
    assert f"#define EDGEMNV2_ARENA_BYTES {manifest['arena_bytes']}u" in config
    assert f"#define EDGEMNV2_INPUT_BYTES {facts.input.nbytes}u" in config
    # exactly the model's ops, no AllOpsResolver
    ops_header = (src / "model_ops.h").read_text()
    assert f"#define EDGEMNV2_OP_COUNT {len(facts.ops)}" in ops_header
    assert ops_header.count("r.Add") == len(facts.ops) == len(set(facts.ops))
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD"} <= set(facts.ops)
    readme = (project / "README.md").read_text()
    assert "## Build and flash" in readme and str(project) not in readme  # commands relative to the project
    assert f"{manifest['arena_bytes']} bytes" in readme


@pytest.mark.parametrize("target", list(SOURCE_DIRS))
def test_portable_parts_compile_with_host_gcc(projects: dict[str, Path], target: str, gcc: str,
                                              tmp_path: Path) -> None:
    src = projects[target] / SOURCE_DIRS[target]
    manifest = json.loads((projects[target] / "edgemnv2_project.json").read_text())
    assert manifest["portable_sources"] == ["edgemnv2_protocol.c", "edgemnv2_app.c", "edgemnv2_firmware.c"]
    for name in manifest["portable_sources"]:
        run = subprocess.run([gcc, *HOST_FLAGS, "-I", str(src), "-c", str(src / name), "-o", str(tmp_path / "o.o")],
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr


@pytest.mark.parametrize("target", list(SOURCE_DIRS))
def test_portable_parts_cross_compile_for_cortex_m4(projects: dict[str, Path], target: str, tmp_path: Path) -> None:
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc not installed (.ci/run installs gcc-arm-none-eabi)")
    src = projects[target] / SOURCE_DIRS[target]
    for name in json.loads((projects[target] / "edgemnv2_project.json").read_text())["portable_sources"]:
        run = subprocess.run(["arm-none-eabi-gcc", *CM4_FLAGS, "-I", str(src), "-c", str(src / name), "-o",
                              str(tmp_path / "o.o")], capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr


def test_model_array_compiles(projects: dict[str, Path], gcc: str, tmp_path: Path, mcu_model: Path) -> None:
    """The generated array (1.7 MB model) compiles as C with gcc -c and holds model-length bytes of rodata."""
    src = projects["pico"] / "src"
    obj = tmp_path / "model_data.o"
    subprocess.run([gcc, *HOST_FLAGS, "-x", "c", "-c", str(src / "model_data.cc"), "-o", str(obj)], check=True,
                   timeout=300)
    symbols = subprocess.run(["nm", "-S", str(obj)], capture_output=True, text=True, check=True).stdout
    line = next(s for s in symbols.splitlines() if s.endswith(" g_model"))
    assert int(line.split()[1], 16) == mcu_model.stat().st_size


def test_linux_agent_copies_the_agent_files(tmp_path: Path, mcu_model: Path) -> None:
    from edgemnv2.serial import agent_files

    result = export_project(ExportRequest(target="linux-agent", model=mcu_model, out=tmp_path / "agent"))
    names = set(agent_files())
    assert {"agent.py", "protocol.py", "board.py"} <= names
    for name, source in agent_files().items():
        assert (tmp_path / "agent" / name).read_bytes() == source.read_bytes()
    assert (tmp_path / "agent" / mcu_model.name).read_bytes() == mcu_model.read_bytes()
    assert set(result.files) == names | {mcu_model.name, "README.md", "edgemnv2_project.json"}


def test_arena_and_board_options(tmp_path: Path, mcu_model: Path) -> None:
    result = export_project(ExportRequest(target="arduino", model=mcu_model, out=tmp_path / "p", arena_bytes=400000,
                                          board="portenta-h7"))
    assert result.arena_bytes == 400000 and result.arena_source == "given" and result.board == "portenta-h7"
    assert "arduino:mbed_portenta:envie_m7" in (tmp_path / "p" / "edgemnv2_fw" / "sketch.yaml").read_text()
    assert not result.warnings  # 1.7 MB model and 400 KB arena fit the Portenta
    small = export_project(ExportRequest(target="arduino", model=mcu_model, out=tmp_path / "n", arena_bytes=400000))
    assert any("flash" in w for w in small.warnings) and any("RAM" in w for w in small.warnings)  # Nano 33 BLE


def test_input_slots_from_the_ram_budget(tmp_path: Path, mcu_model: Path) -> None:
    """Two slots where the receive path keeps bytes during inference and RAM allows, else one; an explicit 2 that
    cannot work is refused."""
    def export(name: str, **options) -> tuple:
        result = export_project(ExportRequest(model=mcu_model, out=tmp_path / name, **options))
        config = next((tmp_path / name).rglob("edgemnv2_config.h")).read_text()
        manifest = json.loads((tmp_path / name / "edgemnv2_project.json").read_text())
        assert f"#define EDGEMNV2_INPUT_SLOTS {result.input_slots} " in config
        assert manifest["input_slots"] == result.input_slots
        return result.input_slots, result.input_slots_reason

    assert export("an386", target="mps2-an386")[0] == 2
    assert export("host", target="host")[0] == 2
    assert export("one", target="host", input_slots=1) == (1, "--input-slots 1")
    assert export("pico", target="pico")[0] == 1
    # an arena that fills SSRAM2&3 (the data region on mps2-an386) leaves no room for a second input
    slots, reason = export("full", target="mps2-an386", arena_bytes=4_100_000)
    assert slots == 1 and "do not fit SSRAM23" in reason
    with pytest.raises(InputError, match="do not fit SSRAM23"):
        export("full2", target="mps2-an386", arena_bytes=4_100_000, input_slots=2)
    with pytest.raises(InputError, match="the pico port"):
        export("pico2", target="pico", input_slots=2)


@pytest.mark.parametrize("args,message", [
    (["--target", "pico", "--model", "{missing}"], "model file not found"),
    (["--target", "pico", "--model", "{edgetpu}"], "custom op(s) edgetpu-custom-op have no TFLite Micro kernel"),
    (["--target", "pico", "--model", "{model}", "--board", "nano33ble"], "unknown board 'nano33ble' for target pico"),
    (["--target", "pico", "--model", "{model}", "--arena-bytes", "0"], "--arena-bytes must be positive"),
    (["--target", "pico", "--model", "{model}", "--out", "{busy}"], "is not empty and was not made by"),
    (["--target", "linux-agent", "--model", "{model}", "--arena-bytes", "1000"], "applies to microcontroller targets"),
])
def test_bad_input_is_one_line(tmp_path: Path, mcu_model: Path, shared_dir: Path, args: list[str],
                               message: str) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    values = {"missing": str(tmp_path / "nope.tflite"), "model": str(mcu_model), "busy": str(busy),
              "edgetpu": str(shared_dir / "models" / "mobilenet_v1_0.25_128_quant_edgetpu.tflite")}
    args = [a.format(**values) for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "out")]
    run = _run("export", *args)
    assert run.returncode == 1
    assert run.stderr.count("\n") == 1 and run.stderr.startswith("Error: ") and message in run.stderr, run.stderr
    assert (busy / "notes.txt").read_text() == "mine"
