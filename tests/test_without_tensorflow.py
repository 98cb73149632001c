"""The light paths run where TensorFlow is not installed (a Raspberry Pi, a CI box without the tf extra).

Each command runs in a child Python whose import system refuses `tensorflow`, `keras` and `tf_keras`,
as if they were not installed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BLOCKER = """
import importlib.abc, sys
class NoTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "tf_keras"):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
        return None
sys.meta_path.insert(0, NoTensorFlow())
sys.argv = ["edgemnv2", *sys.argv[1:]]
from edgemnv2.cli import main
main()
"""


def edgemnv2_without_tf(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCKER, *args], capture_output=True, text=True, timeout=timeout)


def without_tf_popen(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", BLOCKER, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def test_blocker_really_blocks(tmp_path: Path) -> None:
    """`convert` needs TensorFlow: under the blocker it must fail (proves the blocker works)."""
    proc = edgemnv2_without_tf("convert", "--alpha", "0.35", "--resolution", "96", "--weights", "none",
                               "-o", str(tmp_path / "m.tflite"))
    assert proc.returncode != 0 and "blocked by the test" in proc.stderr + proc.stdout


@pytest.mark.parametrize("args", [
    ["profile", "{model}", "--device", "rpi4", "--json"],
    ["profile", "--alpha", "0.35", "--resolution", "96", "--device", "all", "--json"],
    ["edgetpu", "check", "{model}", "--json"],
    ["devices", "--json"],
    ["fit", "--device", "esp32-s3", "--max-latency-ms", "500", "--json"],
])
def test_light_commands_run_without_tensorflow(args: list[str], coral_v2_tflite: Path) -> None:
    proc = edgemnv2_without_tf(*[a.format(model=coral_v2_tflite) for a in args])
    assert proc.returncode == 0, proc.stderr
    json.loads(proc.stdout)


def test_export_runs_without_tensorflow(tmp_path: Path, coral_v2_tflite: Path) -> None:
    proc = edgemnv2_without_tf("export", "--target", "esp-idf", "--model", str(coral_v2_tflite),
                               "--out", str(tmp_path / "fw"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "fw" / "README.md").is_file()


def test_bench_and_board_sim_run_without_tensorflow(tmp_path: Path, int8_mnv2_96: Path, calib_dir: Path) -> None:
    board = without_tf_popen("board-sim", "--model", str(int8_mnv2_96), "--runtime", "litert", "--baud", "0")
    try:
        port = board.stdout.readline().strip()
        assert port.startswith("/dev/"), board.stderr.read() if board.poll() is not None else port
        proc = edgemnv2_without_tf("bench", "--port", port, "--model", str(int8_mnv2_96), "--images",
                                   str(calib_dir), "--count", "5", "--out", str(tmp_path / "r.jsonl"), "--json")
    finally:
        board.terminate()
        board.communicate(timeout=30)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["received"] == 5 and summary["exact_matches"] == 5
