"""The C protocol and the board-side app, built with gcc and run against tests/vectors/protocol_vectors.json."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest


def _make(repo: Path, build: Path, target: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-C", str(repo / "firmware_templates" / "common"), target, f"BUILD={build}"],
                          capture_output=True, text=True, timeout=300)


def test_c_protocol_passes_every_vector(repo: Path, gcc: str, tmp_path: Path) -> None:
    run = _make(repo, tmp_path, "test")
    assert run.returncode == 0, run.stdout + run.stderr
    vectors = json.loads((repo / "tests" / "vectors" / "protocol_vectors.json").read_text())
    counts = re.search(r"protocol vectors: crc (\d+), cobs (\d+), messages (\d+), invalid (\d+), streams (\d+)",
                       run.stdout)
    assert counts, run.stdout
    # the C test saw every vector of the JSON the Python side reads
    assert [int(c) for c in counts.groups()] == [len(vectors[k]) for k in
                                                 ("crc32", "cobs", "messages", "invalid_frames", "streams")]
    results = re.findall(r"(\d+) checks, (\d+) failed", run.stdout)
    assert len(results) == 2, run.stdout  # test_protocol and test_app
    for checks, failed in results:
        assert int(failed) == 0 and int(checks) > 500, run.stdout  # hundreds: every vector's checks ran


def test_c_tests_fail_on_a_wrong_vector(repo: Path, gcc: str, tmp_path: Path) -> None:
    """The C tests are real: one flipped byte in a vector's frame makes them fail."""
    vectors = json.loads((repo / "tests" / "vectors" / "protocol_vectors.json").read_text())
    frame = bytearray.fromhex(vectors["messages"][2]["frame_hex"])
    frame[3] ^= 0x01
    vectors["messages"][2]["frame_hex"] = frame.hex()
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(vectors))
    run = subprocess.run(["make", "-C", str(repo / "firmware_templates" / "common"), f"BUILD={tmp_path / 'b'}",
                          f"VECTORS={broken}", str(tmp_path / "b" / "test_protocol")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    test = subprocess.run([str(tmp_path / "b" / "test_protocol")], capture_output=True, text=True, timeout=60)
    assert test.returncode == 1
    assert f"{vectors['messages'][2]['name']}: encoded frame differs" in test.stdout


def test_c_protocol_cross_compiles_for_cortex_m4(repo: Path, tmp_path: Path) -> None:
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc not installed (.ci/run installs gcc-arm-none-eabi)")
    run = _make(repo, tmp_path, "cross")
    assert run.returncode == 0, run.stdout + run.stderr
    for name in ("cm4_edgemnv2_protocol.o", "cm4_edgemnv2_app.o"):
        header = (tmp_path / name).read_bytes()[:20]
        assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == 40  # EM_ARM


def test_c_two_slot_tests_fail_when_the_service_time_is_counted(repo: Path, gcc: str, tmp_path: Path) -> None:
    """The two-slot checks are real: an app that leaves the time spent answering between layers in the RESULT's
    cycles fails them."""
    common = tmp_path / "common"
    shutil.copytree(repo / "firmware_templates" / "common", common)
    app = common / "edgemnv2_app.c"
    source = app.read_text()
    assert "minus(c1 - c0, app->service_cycles)" in source
    app.write_text(source.replace("minus(c1 - c0, app->service_cycles)", "(c1 - c0)"))
    run = subprocess.run(["make", "-C", str(common), f"BUILD={tmp_path / 'b'}", str(tmp_path / "b" / "test_app")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    test = subprocess.run([str(tmp_path / "b" / "test_app")], capture_output=True, text=True, timeout=60)
    assert test.returncode == 1 and "RESULT of a wrong (output, CRC, or service time counted)" in test.stdout
