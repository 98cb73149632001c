"""The wheel works outside the checkout: built from the sources, installed in a fresh venv with only the
light-core dependencies (no extras, no system site-packages), the light commands run and `convert` names the
extra it needs.

Offline and fast: the wheel is built with the installed setuptools (no build isolation), and the light-core
dependencies the wheel declares (Requires-Dist, resolved recursively) are linked into the venv from the
distributions this Python already has — exactly those and nothing else; `pip check` then confirms the
declared requirements are met.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from email.parser import Parser
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "setup.py", "README.md", "edgemnv2", "converters", "firmware_templates")


def _build_wheel(dest: Path) -> Path:
    src = dest / "src"
    src.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "build"))
        else:
            shutil.copy2(REPO / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "-w", str(dest / "dist"), str(src)],
                   check=True, capture_output=True, text=True)
    (wheel,) = (dest / "dist").glob("edgemnv2-*.whl")
    return wheel


def _requirements(wheel: Path) -> list[Requirement]:
    """The wheel's run-time requirements without extras (what `pip install edgemnv2` pulls in)."""
    with zipfile.ZipFile(wheel) as zf:
        (meta,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        message = Parser().parsestr(zf.read(meta).decode())
    reqs = [Requirement(r) for r in message.get_all("Requires-Dist") or []]
    return [r for r in reqs if r.marker is None or r.marker.evaluate({"extra": ""})]


def _link_dependencies(requirements: list[Requirement], site_packages: Path) -> list[str]:
    """Link each required distribution (and what it requires) from this Python into the venv."""
    todo, done = list(requirements), set()
    while todo:
        req = todo.pop()
        key = req.name.lower().replace("_", "-")
        if key in done:
            continue
        done.add(key)
        try:
            dist = distribution(req.name)
        except PackageNotFoundError:
            pytest.fail(f"light-core dependency {req.name} is not installed here (run .ci/install)")
        assert dist.version in req.specifier, f"{req.name} {dist.version} does not satisfy {req}"
        assert dist.files, f"{req.name} has no RECORD to link from"
        tops = {f.parts[0] for f in dist.files if f.parts[0] not in ("..", "__pycache__")}
        for top in tops:
            target = site_packages / top
            if not target.exists():
                target.symlink_to(Path(dist.locate_file(top)).resolve())
        todo += [Requirement(r) for r in dist.requires or []]
        todo = [r for r in todo if r.marker is None or r.marker.evaluate({"extra": ""})]
    return sorted(done)


@pytest.fixture(scope="module")
def light_install(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., subprocess.CompletedProcess]:
    """A fresh venv holding the wheel and only its light-core dependencies; returns a command runner."""
    root = tmp_path_factory.mktemp("wheel")
    wheel = _build_wheel(root)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python), "--disable-pip-version-check"]
    subprocess.run([*pip, "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True)
    site_packages = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                        check=True, capture_output=True, text=True).stdout.strip())
    _link_dependencies(_requirements(wheel), site_packages)
    check = subprocess.run([*pip, "check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    work = root / "work"  # outside the checkout: nothing may be found through it
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}

    def run(*args: str, program: str = "edgemnv2") -> subprocess.CompletedProcess:
        return subprocess.run([str(venv / "bin" / program), *args], cwd=work, env=env, capture_output=True,
                              text=True, timeout=120)

    return run


def test_light_install_has_no_extras(light_install: Callable[..., subprocess.CompletedProcess]) -> None:
    probe = ("import importlib.util, sys; mods = ('tensorflow', 'keras', 'ai_edge_litert', 'tflite_micro', "
             "'matplotlib', 'edgemnv2'); print(*[m for m in mods if importlib.util.find_spec(m)]); "
             "import edgemnv2; print(edgemnv2.__file__)")
    proc = light_install("-c", probe, program="python")
    assert proc.returncode == 0, proc.stderr
    found, location = proc.stdout.splitlines()
    assert found == "edgemnv2"
    assert "/venv/lib/" in location and str(REPO) not in location


def test_light_commands_run_from_the_wheel(light_install: Callable[..., subprocess.CompletedProcess],
                                           coral_v2_tflite: Path, tmp_path: Path) -> None:
    model = str(coral_v2_tflite)
    commands = {
        "devices": (["devices"], "rpi4"),
        "profile": (["profile", model, "--device", "rpi4"], "FITS rpi4"),
        "edgetpu check": (["edgetpu", "check", model], "Verdict:"),
        "export": (["export", "--target", "pico", "--model", model, "-o", str(tmp_path / "pico")],
                   "pico project in"),
        "flash": (["flash", "--target", "pico", "--project", str(tmp_path / "pico"), "--dry-run"], "picotool"),
        "deploy": (["deploy", "--target", "rpi4", "--host", "pi@raspberrypi.local", "--model", model, "--dry-run"],
                   "scp"),
    }
    for name, (args, expected) in commands.items():
        proc = light_install(*args)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, f"{name}: {proc.stderr}"
        assert expected in proc.stdout, f"{name}: {proc.stdout}"
        print(f"\nlight install, {shlex.join(['edgemnv2', *args])}: exit 0, {expected!r} in its output")
    assert (tmp_path / "pico" / "src" / "edgemnv2_protocol.c").is_file()


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1 and len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr
    return lines[0]


def test_convert_names_the_extra(light_install: Callable[..., subprocess.CompletedProcess]) -> None:
    line = _one_error_line(light_install("convert", "--alpha", "0.35", "--resolution", "96"))
    print(f"\nlight install, convert: {line}")
    assert "pip install 'edgemnv2[tf]'" in line


def test_board_sim_names_the_runtime_extra(light_install: Callable[..., subprocess.CompletedProcess],
                                           coral_v2_tflite: Path) -> None:
    line = _one_error_line(light_install("board-sim", "--model", str(coral_v2_tflite)))
    print(f"\nlight install, board-sim: {line}")
    assert "pip install 'edgemnv2[runtime]'" in line


def test_bench_names_the_runtime_extra(light_install: Callable[..., subprocess.CompletedProcess],
                                       coral_v2_tflite: Path, shared_dir: Path, tmp_path: Path) -> None:
    """bench starts and checks its inputs; it compares every output with a host run, so without a TFLite
    interpreter it ends in one line naming the extra (before it touches the port)."""
    line = _one_error_line(light_install("bench", "--port", str(tmp_path / "no-such-tty"), "--model",
                                         str(coral_v2_tflite), "--images", str(shared_dir / "data" / "images"),
                                         "-o", str(tmp_path / "r.jsonl")))
    print(f"\nlight install, bench: {line}")
    assert "pip install 'edgemnv2[runtime]'" in line and "unexpected" not in line
