"""Each bad condition of docs/errors.md ends in the one line that page documents, and its exit code.

`test_documented_line` runs the page's commands as written (through `edgemnv2.cli.main`, the console script, in
process), so the page cannot drift from what users see; the other tests cover the rows that need more set-up.
"""

from __future__ import annotations

import os
import re
import shlex
import struct
import sys
import zlib
from pathlib import Path

import pytest

from edgemnv2 import cli as cli_module
from edgemnv2.errors import DataError, DeviceProfileError

REPO = Path(__file__).resolve().parents[2]
ERRORS_MD = REPO / "docs" / "errors.md"


def _cell(text: str) -> str:
    """A table cell's text: inline-code backticks removed, escaped pipes restored."""
    text = text.strip().replace("\\|", "|")
    for fence in ("``", "`"):
        if text.startswith(fence) and text.endswith(fence) and len(text) > 2 * len(fence):
            inner = text[len(fence):-len(fence)]
            return inner[1:-1] if fence == "``" and inner.startswith(" ") and inner.endswith(" ") else inner
    return text


def documented_rows() -> list[dict[str, str]]:
    rows = []
    for line in ERRORS_MD.read_text().splitlines():
        cells = [c for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) != 6 or cells[0].strip() in ("id", "---"):
            continue
        rows.append(dict(zip(("id", "condition", "command", "line", "exit", "tests"), map(_cell, cells))))
    return rows


ROWS = documented_rows()
RUNNABLE = [row for row in ROWS if row["command"].startswith(("edgemnv2 ", "EDGEMNV2_", "PICO_"))]


def run_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, command: str) -> tuple[int, str, str]:
    """Run a documented command line through the console-script entry point: (exit code, stdout, stderr)."""
    words = shlex.split(command)
    while "=" in words[0]:
        name, value = words.pop(0).split("=", 1)
        monkeypatch.setenv(name, value)
    assert words[0] == "edgemnv2"
    monkeypatch.setattr(sys, "argv", words)
    capsys.readouterr()
    with pytest.raises(SystemExit) as stopped:
        cli_module.main()
    out, err = capsys.readouterr()
    return stopped.value.code or 0, out, err


def write_png_header(path: Path, width: int, height: int) -> Path:
    """A PNG that claims width x height pixels in a few bytes (what a decompression bomb looks like)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) +
                     chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def host_project(tmp_path_factory, coral_v2_tflite: Path) -> Path:
    from edgemnv2.deploy.export import ExportRequest, export_project

    out = tmp_path_factory.mktemp("host") / "fw"
    export_project(ExportRequest(target="host", model=coral_v2_tflite, out=out))
    return out


@pytest.fixture
def places(tmp_path: Path, coral_v2_tflite: Path, image_folder: Path, host_project: Path,
           request: pytest.FixtureRequest) -> dict[str, str]:
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("not what was asked for")
    os.mkfifo(tmp_path / "fifo")
    values = {"model": coral_v2_tflite, "images": image_folder, "project": host_project, "tmp": tmp_path,
              "missing": tmp_path / "missing", "dir": tmp_path / "dir", "file": tmp_path / "file",
              "fifo": tmp_path / "fifo"}
    if "{float}" in request.node.callspec.params["row"]["command"]:
        values["float"] = request.getfixturevalue("dynamic_mnv2_035_96")
    return {key: str(value) for key, value in values.items()}


def _pattern(line: str, places: dict[str, str]) -> str:
    parts = [re.escape(part.format(**places)) for part in line.split("{*}")]
    return ".*".join(parts)


@pytest.mark.parametrize("row", RUNNABLE, ids=[row["id"] for row in RUNNABLE])
def test_documented_line(row: dict[str, str], places: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                         capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(places["tmp"])  # a default output lands in the scratch folder, never in the checkout
    code, out, err = run_main(monkeypatch, capsys, row["command"].format(**places))
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert re.fullmatch(_pattern(row["line"], places), lines[0]), f"\n{lines[0]}\n{row['line']}"
    assert code == int(row["exit"]) and out == ""


def test_every_row_names_tests_that_exist() -> None:
    assert len({row["id"] for row in ROWS}) == len(ROWS) > 50
    sources = {path.name: path.read_text() for path in (REPO / "tests").rglob("test_*.py")}
    for row in ROWS:
        for name in (n.strip() for n in row["tests"].split(",")):
            file, _, test = name.rpartition("::") if "::" in name else (Path(__file__).name, "", name)
            if test.endswith(".py"):
                assert test in sources, f"{row['id']}: no {test}"
                continue
            assert f"def {test}(" in sources[file], f"{row['id']}: no {test} in {file}"


def test_force_exports_what_the_checks_refuse(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
                                              tmp_path: Path, coral_v2_tflite: Path,
                                              dynamic_mnv2_035_96: Path) -> None:
    for model, extra in ((coral_v2_tflite, "--arena-bytes 100000"), (dynamic_mnv2_035_96, "")):
        out = tmp_path / model.stem
        code, stdout, err = run_main(monkeypatch, capsys,
                                     f"edgemnv2 export --target pico --model {model} -o {out} {extra} --force")
        assert code == 0 and "pico project in" in stdout, err
        assert (out / "src" / "edgemnv2_config.h").is_file()
    assert "EDGEMNV2_ARENA_BYTES 100000u" in (tmp_path / coral_v2_tflite.stem / "src" / "edgemnv2_config.h").read_text()


def test_run_checks_device_and_data_before_converting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from edgemnv2 import pipeline
    from edgemnv2.models import ModelSpec

    def no_conversion(*_args, **_kwargs):
        raise AssertionError("converted before the inputs were checked")

    monkeypatch.setattr(pipeline, "convert", no_conversion)
    spec = ModelSpec(0.35, 96, "none")
    with pytest.raises(DeviceProfileError, match="unknown device 'nosuch'"):
        pipeline.run_pipeline(spec, out_dir=tmp_path, device="nosuch")
    with pytest.raises(DataError, match="does not exist"):
        pipeline.run_pipeline(spec, out_dir=tmp_path, data=tmp_path / "missing")
    assert list(tmp_path.iterdir()) == []


def test_pico_sdk_path_to_a_missing_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                           coral_v2_tflite: Path) -> None:
    from edgemnv2.deploy import flash
    from edgemnv2.deploy.export import ExportRequest, export_project
    from edgemnv2.errors import InputError

    project = tmp_path / "pico"
    export_project(ExportRequest(target="pico", model=coral_v2_tflite, out=project))
    monkeypatch.setattr(flash, "missing_tools", lambda plan: [])  # as if cmake and picotool were installed
    monkeypatch.setenv("PICO_SDK_PATH", str(tmp_path / "missing"))
    with pytest.raises(InputError) as caught:
        flash.run_flash(flash.plan_flash("pico", project))
    row = next(r for r in ROWS if r["id"] == "env-pico")
    assert f"Error: {caught.value}" == row["line"].format(missing=tmp_path / "missing")


def test_image_too_large_is_skipped_and_counted(tmp_path: Path, image_folder: Path) -> None:
    from edgemnv2.data import load_images

    write_png_header(image_folder / "big.png", 10_000, 10_000)       # over the limit: refused by our check
    write_png_header(image_folder / "huge.png", 40_000, 40_000)      # over twice it: refused by PIL at open
    images = load_images(image_folder, 32)
    reasons = dict((path.name, why) for path, why in images.skipped)
    assert reasons["big.png"] == "10000x10000 is too large to decode safely (limit 89,478,485 pixels)"
    assert reasons["huge.png"] == "too large to decode safely (limit 89,478,485 pixels)"
    assert len(images.files) == 6 and "g_corrupt.jpg" in reasons  # counted like the unreadable file
    row = next(r for r in ROWS if r["id"] == "image-too-large")
    assert reasons["big.png"] in row["line"]


def test_unexpected_exception_is_one_line_and_debug_shows_it(monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture) -> None:
    from edgemnv2.profile import devices

    def broken() -> list:
        raise RuntimeError("boom")

    monkeypatch.setattr(devices, "load_all", broken)
    line = next(r for r in ROWS if r["id"] == "bug")["line"]
    code, out, err = run_main(monkeypatch, capsys, "edgemnv2 devices")
    assert (code, err.strip(), out) == (1, line, "")
    for command in ("edgemnv2 devices --debug", "edgemnv2 --debug devices"):
        code, out, err = run_main(monkeypatch, capsys, command)
        assert code == 1 and "Traceback" in err and 'raise RuntimeError("boom")' in err, command
        assert err.strip().splitlines()[-1] == line


def test_verbose_and_debug_work_after_the_subcommand(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture) -> None:
    for command in ("edgemnv2 devices -v", "edgemnv2 devices --debug", "edgemnv2 -v devices"):
        code, out, _ = run_main(monkeypatch, capsys, command)
        assert code == 0 and "rpi4" in out, command


def test_every_command_has_help() -> None:
    from click.testing import CliRunner

    from edgemnv2.cli import COMMANDS, cli

    for name in COMMANDS:
        result = CliRunner().invoke(cli, [name, "--help"])
        assert result.exit_code == 0 and "--debug" in result.output, (name, result.output)
