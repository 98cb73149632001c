"""`edgemnv2 flash`: the commands per target, dry-run, fake toolchains on PATH, missing and failing tools."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgemnv2.cli import cli
from edgemnv2.deploy.flash import plan_flash, run_flash
from edgemnv2.errors import DeployError, InputError, ToolMissing


def _project(root: Path, target: str) -> Path:
    """The skeleton of an exported project (the files flash looks at), without a model."""
    root.mkdir(parents=True)
    manifest = {"arduino": {"target": "arduino", "board": "portenta-h7", "fqbn": "arduino:mbed_portenta:envie_m7"},
                "esp-idf": {"target": "esp-idf", "board": "esp32s3", "idf_target": "esp32s3"},
                "pico": {"target": "pico", "board": "pico", "pico_board": "pico"}}.get(target)
    if manifest:
        (root / "edgemnv2_project.json").write_text(json.dumps(manifest))
    if target == "arduino":
        (root / "edgemnv2_fw").mkdir()
        (root / "edgemnv2_fw" / "edgemnv2_fw.ino").write_text("void setup() {}\nvoid loop() {}\n")
    elif target in ("esp-idf", "pico"):
        (root / "CMakeLists.txt").write_text("cmake_minimum_required(VERSION 3.13)\n")
        (root / "main").mkdir()
    else:
        (root / "build").mkdir()
        (root / "build" / "fw.elf").write_bytes(b"\x7fELF")
        (root / "build" / "fw.bin").write_bytes(b"\x00" * 16)
    return root


def _fake_tools(bin_dir: Path, log: Path, names: list[str], fail: str | None = None) -> None:
    """Shell scripts that record their argv (one line each) and succeed, or fail like a broken upload."""
    bin_dir.mkdir(exist_ok=True)
    for name in names:
        script = bin_dir / name
        status = 'echo "upload error: no device found on PORT" ; exit 2' if name == fail else "exit 0"
        script.write_text(f'#!/bin/sh\nprintf "%s" "{name}" >> {log}\nfor a in "$@"; do printf " [%s]" "$a" >> {log}; done\n'
                          f'echo >> {log}\necho "{name} working"\n{status}\n')
        script.chmod(0o755)


EXPECTED = {
    "arduino": ["arduino-cli compile --fqbn arduino:mbed_portenta:envie_m7 {p}/edgemnv2_fw",
                "arduino-cli upload --fqbn arduino:mbed_portenta:envie_m7 --port /dev/ttyACM0 {p}/edgemnv2_fw"],
    "esp-idf": ["idf.py -C {p} set-target esp32s3", "idf.py -C {p} build", "idf.py -C {p} -p /dev/ttyACM0 flash"],
    "pico": ["cmake -S {p} -B {p}/build -DPICO_BOARD=pico", "cmake --build {p}/build --parallel",
             "picotool load -f -x {p}/build/edgemnv2_fw.uf2"],
    "stm32": ["openocd -f interface/stlink.cfg -f target/stm32h7x.cfg -c 'program {p}/build/fw.elf verify reset exit'"],
}


@pytest.mark.parametrize("target", list(EXPECTED))
def test_dry_run_prints_the_commands(tmp_path: Path, target: str) -> None:
    project = _project(tmp_path / "proj", target)
    args = ["flash", "--target", target, "--project", str(project), "--dry-run"]
    if target in ("arduino", "esp-idf"):
        args += ["--port", "/dev/ttyACM0"]
    if target == "stm32":
        args += ["--tool", "openocd"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [c.format(p=project.resolve()) for c in EXPECTED[target]]


def test_dry_run_json_and_st_flash(tmp_path: Path) -> None:
    project = _project(tmp_path / "proj", "stm32")
    result = CliRunner().invoke(cli, ["flash", "--target", "stm32", "--project", str(project), "--tool", "st-flash",
                                      "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["dry_run"] is True and report["completed"] == 0
    assert report["commands"] == [f"st-flash --reset write {project.resolve()}/build/fw.bin 0x08000000"]


@pytest.mark.parametrize("target", list(EXPECTED))
def test_real_run_drives_the_tools_in_order(tmp_path: Path, target: str, monkeypatch: pytest.MonkeyPatch) -> None:
    project = _project(tmp_path / "proj", target)
    log = tmp_path / "calls.log"
    plan = plan_flash(target, project, port="/dev/ttyACM0" if target in ("arduino", "esp-idf") else None,
                      tool="openocd" if target == "stm32" else None)
    _fake_tools(tmp_path / "bin", log, plan.tools)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setenv("PICO_SDK_PATH", str(tmp_path))
    lines: list[str] = []
    result = run_flash(plan, log=lines.append)
    assert result.completed == len(plan.commands)
    # every tool got exactly the argument list the plan shows (no shell in between)
    recorded = log.read_text().splitlines()
    assert recorded == [c.argv[0] + "".join(f" [{a}]" for a in c.argv[1:]) for c in plan.commands]
    assert [c.format(p=project.resolve()) for c in EXPECTED[target]] == [shlex.join(c.argv) for c in plan.commands]
    assert f"$ {plan.commands[0]}" in lines and f"{plan.tools[0]} working" in lines


@pytest.mark.parametrize("target,tool", [("arduino", "arduino-cli"), ("esp-idf", "idf.py"), ("pico", "cmake"),
                                         ("stm32", "openocd")])
def test_missing_tool_is_one_line(tmp_path: Path, target: str, tool: str) -> None:
    project = _project(tmp_path / "proj", target)
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    args = ["flash", "--target", target, "--project", str(project)]
    if target in ("arduino", "esp-idf"):
        args += ["--port", "/dev/ttyACM0"]
    run = subprocess.run([sys.executable, "-m", "edgemnv2", *args], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PATH": str(empty)})
    assert run.returncode == 1
    assert run.stderr.count("\n") == 1, run.stderr
    assert run.stderr.startswith(f"Error: {tool} is not installed (not on PATH): "), run.stderr
    assert run.stdout == ""


def test_failing_upload_names_the_step_and_stops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = _project(tmp_path / "proj", "arduino")
    log = tmp_path / "calls.log"
    _fake_tools(tmp_path / "bin", log, ["arduino-cli"], fail="arduino-cli")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    plan = plan_flash("arduino", project, port="/dev/ttyACM0")
    with pytest.raises(DeployError, match=r"compile failed: `arduino-cli compile .*` exited with 2: "
                                          r"upload error: no device found on PORT"):
        run_flash(plan, log=lambda line: None)
    assert len(log.read_text().splitlines()) == 1  # stopped after the first failure


def test_failing_tool_exit_code_through_the_cli(tmp_path: Path) -> None:
    project = _project(tmp_path / "proj", "esp-idf")
    _fake_tools(tmp_path / "bin", tmp_path / "calls.log", ["idf.py"], fail="idf.py")
    run = subprocess.run([sys.executable, "-m", "edgemnv2", "flash", "--target", "esp-idf", "--project", str(project)],
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin"})
    assert run.returncode == 4
    assert run.stderr.splitlines()[-1].startswith("Error: set-target failed: `idf.py -C ")
    assert "idf.py working" in run.stderr  # the tool's own output streams to stderr


@pytest.mark.parametrize("target,kwargs,message", [
    ("arduino", {}, "needs --port to upload"),
    ("pico", {"port": "/dev/ttyACM0"}, "--port does not apply to pico"),
    ("stm32", {"port": "/dev/ttyACM0"}, "--port does not apply to stm32"),
    ("esp-idf", {"fqbn": "x:y:z"}, "--fqbn applies to the arduino target only"),
    ("arduino", {"board": "esp32s3"}, "unknown board 'esp32s3' for target arduino"),
])
def test_bad_options(tmp_path: Path, target: str, kwargs: dict, message: str) -> None:
    project = _project(tmp_path / "proj", target)
    with pytest.raises(InputError, match=message.replace("-", r"\-")):
        run_flash(plan_flash(target, project, **kwargs))


def test_wrong_project_for_target(tmp_path: Path) -> None:
    project = _project(tmp_path / "proj", "pico")
    with pytest.raises(InputError, match="was exported for pico, not esp-idf"):
        plan_flash("esp-idf", project)
    with pytest.raises(InputError, match="project folder not found"):
        plan_flash("pico", tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match=r"no \.elf"):
        plan_flash("stm32", empty, tool="openocd")


def test_pico_without_sdk_is_tool_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = _project(tmp_path / "proj", "pico")
    _fake_tools(tmp_path / "bin", tmp_path / "calls.log", ["cmake", "picotool"])
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.delenv("PICO_SDK_PATH", raising=False)
    with pytest.raises(ToolMissing, match="set PICO_SDK_PATH"):
        run_flash(plan_flash("pico", project))
