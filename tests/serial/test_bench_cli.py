"""The `bench` and `board-sim` commands: JSON summary, bad input → one line and an exit code."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

from click.testing import CliRunner

from edgemnv2.cli import cli
from edgemnv2.serial.sim import spawn_board_sim


def test_bench_json_summary(virtual_board, int8_mnv2_96, calib_dir, tmp_path) -> None:
    board = virtual_board(int8_mnv2_96, runtime="litert", baud=0)
    result = CliRunner().invoke(cli, ["bench", "--port", board.path, "--model", str(int8_mnv2_96), "--images",
                                      str(calib_dir), "--count", "12", "--warmup", "2", "--json",
                                      "--out", str(tmp_path / "r.jsonl")])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    for key in ("sent", "received", "exact_matches", "top1_agreement", "images_per_s"):
        assert key in summary
    assert {"mean", "p50", "p90", "p99"} <= set(summary["latency_us"])
    assert summary["sent"] == summary["received"] == summary["exact_matches"] == 12


def test_bench_counts_the_images_it_skips(virtual_board, int8_mnv2_96, calib_dir, tmp_path, monkeypatch) -> None:
    """An unreadable file and one too large to decode are skipped, never fatal, and named in both reports."""
    from PIL import Image

    images = tmp_path / "imgs"
    images.mkdir()
    for path in sorted(calib_dir.iterdir())[:3]:
        shutil.copy(path, images / path.name)
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    Image.new("RGB", (1000, 1000)).save(images / "wide.png")
    monkeypatch.setattr("edgemnv2.data.MAX_IMAGE_PIXELS", 500_000)  # the calibration images are 500 x ~375
    board = virtual_board(int8_mnv2_96, runtime="litert", baud=0)
    bench = ["bench", "--port", board.path, "--model", str(int8_mnv2_96), "--images", str(images)]
    result = CliRunner().invoke(cli, [*bench, "--json", "--out", str(tmp_path / "r.jsonl")])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["total"] == summary["received"] == 3
    reasons = dict(line.split(": ", 1) for line in summary["skipped"])
    assert sorted(reasons) == ["broken.jpg", "wide.png"]
    assert reasons["wide.png"] == "1000x1000 is too large to decode safely (limit 500,000 pixels)"
    text = CliRunner().invoke(cli, [*bench, "--out", str(tmp_path / "t.jsonl")])
    assert text.exit_code == 0, text.output
    assert "skipped      2 unreadable image files not sent: broken.jpg: " in text.output


def test_board_sim_prints_path_first(int8_mnv2_96) -> None:
    proc, path = spawn_board_sim(int8_mnv2_96, "--runtime", "litert")
    proc.terminate()
    _, err = proc.communicate(timeout=30)
    assert path.startswith("/dev/pts/") and "board-sim: 0 inferences" in err


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgemnv2", *args], capture_output=True, text=True, timeout=120)


def test_missing_port_is_one_line(int8_mnv2_96, calib_dir, tmp_path) -> None:
    result = _run("bench", "--port", "/dev/ttyNOPE0", "--model", str(int8_mnv2_96), "--images", str(calib_dir),
                  "--count", "2", "--out", str(tmp_path / "r.jsonl"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("Error: serial port /dev/ttyNOPE0 does not exist")
    assert "Traceback" not in result.stderr


def test_bad_options_are_one_line(int8_mnv2_96, calib_dir, tmp_path) -> None:
    result = _run("bench", "--port", "/dev/null", "--model", str(int8_mnv2_96), "--images", str(calib_dir),
                  "--count", "0", "--out", str(tmp_path / "r.jsonl"))
    assert result.returncode == 1 and result.stderr.strip() == "Error: --count must be at least 1, got 0"
    result = _run("board-sim", "--model", str(tmp_path / "none.tflite"))
    assert result.returncode == 1 and "does not exist" in result.stderr and "Traceback" not in result.stderr
    result = _run("board-sim", "--model", str(int8_mnv2_96), "--fault-rate", "2")
    assert result.returncode == 1 and "--fault-rate must be between 0 and 1" in result.stderr
