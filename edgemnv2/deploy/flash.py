"""`edgemnv2 flash`: build and flash a rendered firmware project with the vendor's own tool.

arduino → arduino-cli, esp-idf → idf.py, pico → cmake + picotool, stm32 → openocd or st-flash. The plan
(argument lists, never shell strings) is computed first, so `--dry-run` and the exported README show
exactly what a real run executes; a missing tool is one line naming how to install it.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edgemnv2.deploy.boards import Board, resolve_board
from edgemnv2.errors import DeployError, InputError, ToolMissing

TARGETS = ("arduino", "esp-idf", "pico", "stm32")
MANIFEST_NAME = "edgemnv2_project.json"
PORT_PLACEHOLDER = "PORT"
STM32_FLASH_BASE = "0x08000000"
TAIL_LINES = 20  # output lines kept to explain a failure

INSTALL_HINTS = {
    "arduino-cli": "curl -fsSL https://raw.githubusercontent.com/arduino/arduino-cli/master/install.sh | sh "
                   "(https://arduino.github.io/arduino-cli/latest/installation/)",
    "idf.py": "install ESP-IDF and run `. $IDF_PATH/export.sh` "
              "(https://docs.espressif.com/projects/esp-idf/en/stable/esp32s3/get-started/)",
    "cmake": "apt-get install cmake",
    "picotool": "build it from https://github.com/raspberrypi/picotool or apt-get install picotool",
    "openocd": "apt-get install openocd",
    "st-flash": "apt-get install stlink-tools",
}


@dataclass(frozen=True)
class Command:
    argv: list[str]
    step: str                     # what it does, for the log: "compile", "upload", ...
    env: dict[str, str] | None = None

    def __str__(self) -> str:
        return shlex.join(self.argv)


@dataclass(frozen=True)
class FlashPlan:
    target: str
    project: Path
    board: str | None
    commands: list[Command]

    @property
    def tools(self) -> list[str]:
        return list(dict.fromkeys(c.argv[0] for c in self.commands))


@dataclass
class FlashResult:
    target: str
    project: Path
    board: str | None
    dry_run: bool
    commands: list[str]
    completed: int = 0
    missing_tools: list[str] = field(default_factory=list)


def _manifest(project: Path) -> dict:
    path = project / MANIFEST_NAME
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise InputError(f"{path} is not valid JSON ({exc}); re-run `edgemnv2 export`") from exc


def _board(target: str, manifest: dict, name: str | None) -> Board:
    if name is None and manifest.get("target") == target:
        name = manifest.get("board")
    return resolve_board(target, name)


def _arduino(project: Path, manifest: dict, board: Board, port: str | None, fqbn: str | None) -> list[Command]:
    sketch = project / "edgemnv2_fw" if (project / "edgemnv2_fw").is_dir() else project
    if not any(sketch.glob("*.ino")):
        raise InputError(f"no Arduino sketch (*.ino) in {sketch}: pass the folder `edgemnv2 export --target arduino` made")
    fqbn = fqbn or manifest.get("fqbn") or board.fqbn
    port = port or PORT_PLACEHOLDER
    return [Command(["arduino-cli", "compile", "--fqbn", fqbn, str(sketch)], "compile"),
            Command(["arduino-cli", "upload", "--fqbn", fqbn, "--port", port, str(sketch)], "upload")]


def _esp_idf(project: Path, manifest: dict, board: Board, port: str | None) -> list[Command]:
    if not (project / "CMakeLists.txt").is_file() or not (project / "main").is_dir():
        raise InputError(f"{project} is not an ESP-IDF project (no CMakeLists.txt and main/): "
                         "pass the folder `edgemnv2 export --target esp-idf` made")
    idf = ["idf.py", "-C", str(project)]
    commands = []
    if not (project / "sdkconfig").is_file():
        commands.append(Command(idf + ["set-target", manifest.get("idf_target") or board.idf_target or "esp32s3"],
                                "set-target"))
    commands.append(Command(idf + ["build"], "build"))
    commands.append(Command(idf + (["-p", port] if port else []) + ["flash"], "flash"))
    return commands


def _pico(project: Path, manifest: dict, board: Board, port: str | None) -> list[Command]:
    if port:
        raise InputError("--port does not apply to pico: picotool finds the board over USB (hold BOOTSEL, or "
                         "picotool reboots a running board with -f)")
    if not (project / "CMakeLists.txt").is_file():
        raise InputError(f"{project} has no CMakeLists.txt: pass the folder `edgemnv2 export --target pico` made")
    build = project / "build"
    pico_board = manifest.get("pico_board") or board.pico_board or "pico"
    return [Command(["cmake", "-S", str(project), "-B", str(build), f"-DPICO_BOARD={pico_board}"], "configure"),
            Command(["cmake", "--build", str(build), "--parallel"], "build"),
            Command(["picotool", "load", "-f", "-x", str(build / "edgemnv2_fw.uf2")], "load")]


def _find_image(project: Path, suffix: str) -> Path | None:
    for folder in (project, project / "build", project / "Release", project / "Debug"):
        found = sorted(folder.glob(f"*{suffix}")) if folder.is_dir() else []
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise InputError(f"several {suffix} files in {folder} ({', '.join(f.name for f in found)}): "
                             "keep one, or pass the folder holding it")
    return None


def _stm32(project: Path, board: Board, port: str | None, tool: str | None) -> list[Command]:
    if port:
        raise InputError("--port does not apply to stm32: openocd and st-flash reach the board through its ST-LINK")
    if tool not in (None, "openocd", "st-flash"):
        raise InputError(f"--tool {tool!r} for stm32: use openocd or st-flash")
    if tool is None:
        tool = "openocd" if shutil.which("openocd") or not shutil.which("st-flash") else "st-flash"
    if tool == "openocd":
        image = _find_image(project, ".elf")
        if image is None:
            raise InputError(f"no .elf in {project} (or build/, Release/, Debug/): build the STM32 project first")
        return [Command(["openocd", "-f", "interface/stlink.cfg", "-f", board.openocd_target or "target/stm32h7x.cfg",
                         "-c", f"program {image} verify reset exit"], "program")]
    image = _find_image(project, ".bin")
    if image is None:
        raise InputError(f"no .bin in {project} (or build/, Release/, Debug/): build the STM32 project first")
    return [Command(["st-flash", "--reset", "write", str(image), STM32_FLASH_BASE], "write")]


def plan_flash(target: str, project: Path, port: str | None = None, fqbn: str | None = None,
               board: str | None = None, tool: str | None = None) -> FlashPlan:
    """The commands that build and flash `project`; `port` None leaves a PORT placeholder where one is needed."""
    if target not in TARGETS:
        raise InputError(f"unknown flash target {target!r}; choose one of: {', '.join(TARGETS)}")
    project = Path(project).resolve()
    if not project.is_dir():
        raise InputError(f"project folder not found: {project}")
    manifest = _manifest(project)
    if manifest.get("target") not in (None, target):
        raise InputError(f"{project} was exported for {manifest['target']}, not {target}")
    if fqbn is not None and target != "arduino":
        raise InputError("--fqbn applies to the arduino target only")
    if tool is not None and target != "stm32":
        raise InputError("--tool applies to the stm32 target only")
    facts = _board(target, manifest, board)
    if target == "arduino":
        commands = _arduino(project, manifest, facts, port, fqbn)
    elif target == "esp-idf":
        commands = _esp_idf(project, manifest, facts, port)
    elif target == "pico":
        commands = _pico(project, manifest, facts, port)
    else:
        commands = _stm32(project, facts, port, tool)
    return FlashPlan(target=target, project=project, board=facts.name, commands=commands)


def missing_tools(plan: FlashPlan) -> list[str]:
    return [tool for tool in plan.tools if shutil.which(tool) is None]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run_flash(plan: FlashPlan, dry_run: bool = False, log: Callable[[str], None] = _stderr) -> FlashResult:
    """Run the plan's commands in order, their output streamed to `log`; stop at the first failure."""
    result = FlashResult(target=plan.target, project=plan.project, board=plan.board, dry_run=dry_run,
                         commands=[str(c) for c in plan.commands], missing_tools=missing_tools(plan))
    if dry_run:
        return result
    if any(PORT_PLACEHOLDER in c.argv for c in plan.commands):
        raise InputError(f"{plan.target} needs --port to upload (`arduino-cli board list` shows connected boards)")
    if result.missing_tools:
        tool = result.missing_tools[0]
        raise ToolMissing(f"{tool} is not installed (not on PATH): {INSTALL_HINTS[tool]}")
    from edgemnv2.paths import env_folder

    if plan.target == "pico" and env_folder("PICO_SDK_PATH") is None:
        raise ToolMissing("pico-sdk not found: clone https://github.com/raspberrypi/pico-sdk and set PICO_SDK_PATH "
                          "(and PICO_TFLMICRO_PATH to https://github.com/raspberrypi/pico-tflmicro)")
    for command in plan.commands:
        log(f"$ {command}")
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        try:
            proc = subprocess.Popen(command.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    errors="replace", env={**os.environ, **(command.env or {})})
        except OSError as exc:
            raise ToolMissing(f"cannot run {command.argv[0]}: {exc.strerror}; {INSTALL_HINTS[command.argv[0]]}") from exc
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            tail.append(line)
            log(line)
        code = proc.wait()
        if code != 0:
            last = next((t for t in reversed(tail) if t.strip()), "no output")
            raise DeployError(f"{command.step} failed: `{command}` exited with {code}: {last.strip()}")
        result.completed += 1
    return result
