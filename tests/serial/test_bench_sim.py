"""End to end over real ptys with pyserial: host bench ↔ virtual board (TFLM, LiteRT) and the Linux agent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edgemnv2.errors import BoardError
from edgemnv2.serial.bench import BenchOptions, run_bench
from edgemnv2.serial.sim import spawn_board_sim


def _lines(path: Path) -> list[dict]:
    """The results in a bench JSONL (its first line is the header)."""
    header, *records = [json.loads(line) for line in path.read_text().splitlines()]
    assert header["kind"] == "edgemnv2-bench-results"
    return records


def _assert_all_exact(report, out: Path, count: int, runtime: str) -> None:
    assert report.runtime == runtime and report.reference_runtime == runtime
    assert report.received == count and report.missing == 0 and report.errors == 0
    assert report.compared == count and report.exact_matches == count and report.max_abs_diff == 0
    assert report.top1_agreement == 1.0
    records = _lines(out)
    assert sorted(r["id"] for r in records) == list(range(count))
    assert all(r["exact"] and r["status"] == "ok" and r["latency_us"] > 0 for r in records)


@pytest.mark.parametrize("runtime", ["tflm", "litert"])
def test_100_images_bit_exact_with_host(runtime, virtual_board, int8_mnv2_96, calib_dir, tmp_path) -> None:
    board = virtual_board(int8_mnv2_96, runtime=runtime, baud=0)
    out = tmp_path / "results.jsonl"
    report = run_bench(BenchOptions(port=board.path, model=int8_mnv2_96, images=calib_dir, out=out, warmup=1))
    _assert_all_exact(report, out, 100, runtime)
    assert report.sent == 100 and report.retries == 0 and report.crc_errors == 0
    assert 0 < report.overhead < 0.01


def test_fault_injection_loses_nothing(virtual_board, int8_mnv2_96, calib_dir, tmp_path) -> None:
    """1 % of frames corrupted, cut short, stalled or reset: every image answered, none wrong, retries counted."""
    board = virtual_board(int8_mnv2_96, runtime="litert", baud=0, fault_rate=0.01, seed=3, stall_s=(0.1, 1.5))
    out = tmp_path / "faulty.jsonl"
    report = run_bench(BenchOptions(port=board.path, model=int8_mnv2_96, images=calib_dir, out=out))
    _assert_all_exact(report, out, 100, "litert")
    assert sum(board.faults.values()) >= 3
    assert report.retries + report.crc_errors + report.resets > 0


def test_heavy_faults_never_silently_wrong(virtual_board, int8_mnv2_96, calib_dir, tmp_path) -> None:
    """At 10 % per frame some inputs may need many retries, but every result written is exact."""
    board = virtual_board(int8_mnv2_96, runtime="litert", baud=0, fault_rate=0.10, seed=5, stall_s=(0.05, 0.3))
    out = tmp_path / "heavy.jsonl"
    report = run_bench(BenchOptions(port=board.path, model=int8_mnv2_96, images=calib_dir, out=out, count=12))
    _assert_all_exact(report, out, 12, "litert")
    assert report.retries > 0 and board.faults


def test_board_killed_mid_run_then_resume(int8_mnv2_96, calib_dir, tmp_path) -> None:
    proc, port = spawn_board_sim(int8_mnv2_96, "--runtime", "litert", "--baud", "0")
    out = tmp_path / "killed.jsonl"
    killed_at: list[float] = []

    def kill_after_30(record: dict) -> None:
        if len(_lines(out)) == 30 and not killed_at:
            proc.kill()
            killed_at.append(time.monotonic())

    timeout = 4.0
    with pytest.raises(BoardError) as caught:
        run_bench(BenchOptions(port=port, model=int8_mnv2_96, images=calib_dir, out=out, timeout=timeout),
                  on_result=kill_after_30)
    proc.wait()
    assert time.monotonic() - killed_at[0] < timeout + 2
    assert "--resume" in str(caught.value) and caught.value.exit_code == 4
    partial = caught.value.report
    kept = _lines(out)
    assert len(kept) == partial.received >= 30 and partial.missing == 100 - len(kept)
    assert all(r["exact"] for r in kept)

    proc, port = spawn_board_sim(int8_mnv2_96, "--runtime", "litert", "--baud", "0")
    try:
        report = run_bench(BenchOptions(port=port, model=int8_mnv2_96, images=calib_dir, out=out, resume=True))
    finally:
        proc.terminate()
        proc.wait()
    assert report.received_this_run == 100 - len(kept)
    _assert_all_exact(report, out, 100, "litert")


def test_silent_board_exits_4_within_timeout(int8_mnv2_96, calib_dir, tmp_path) -> None:
    """A board that hangs (SIGSTOP: the pty stays, nothing answers): one clear line, exit code 4."""
    proc, port = spawn_board_sim(int8_mnv2_96, "--runtime", "litert", "--baud", "0")
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        start = time.monotonic()
        result = subprocess.run([sys.executable, "-m", "edgemnv2", "bench", "--port", port, "--model",
                                 str(int8_mnv2_96), "--images", str(calib_dir), "--count", "3", "--timeout", "3",
                                 "--out", str(tmp_path / "r.jsonl")], capture_output=True, text=True, timeout=120)
        elapsed = time.monotonic() - start
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert result.returncode == 4, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "no answer from a board" in errors[0]
    assert "Traceback" not in result.stderr
    assert elapsed < 60


def test_linux_agent_gives_the_same_results(null_modem, start_agent, int8_mnv2_96, calib_dir, tmp_path) -> None:
    host_end, board_end = null_modem
    start_agent("--port", board_end, "--model", str(int8_mnv2_96), "--runtime", "litert", "--edgetpu", "off",
                "--name", "pi-test")
    out = tmp_path / "agent.jsonl"
    report = run_bench(BenchOptions(port=host_end, model=int8_mnv2_96, images=calib_dir, out=out))
    assert report.board == "pi-test"
    _assert_all_exact(report, out, 100, "litert")


def test_agent_smoke_prints_one_json_line(agent_dir, agent_command, int8_mnv2_96) -> None:
    result = subprocess.run(agent_command("--model", str(int8_mnv2_96), "--smoke", "3"),
                            cwd=agent_dir, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert data["smoke"] == 3 and data["runtime"] == "litert"
    assert data["input"] == {"dtype": "int8", "shape": [1, 96, 96, 3]}
    assert 0 < data["latency_us"]["min"] <= data["latency_us"]["p50"] <= data["latency_us"]["max"]


def test_agent_bad_model_is_one_line(agent_dir, agent_command) -> None:
    result = subprocess.run(agent_command("--model", "missing.tflite", "--smoke", "1"),
                            cwd=agent_dir, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["Error: model file missing.tflite does not exist"]


def test_tflm_crash_becomes_error_frames(virtual_board, int8_mnv2_96, calib_dir, tmp_path, capfd) -> None:
    """The TFLM child dies: the simulator stays up, says so on stderr, and the host records errors."""
    board = virtual_board(int8_mnv2_96, runtime="tflm", baud=0)
    board.runner._proc.kill()
    out = tmp_path / "crash.jsonl"
    report = run_bench(BenchOptions(port=board.path, model=int8_mnv2_96, images=calib_dir, out=out, count=3))
    assert report.errors == 3 and report.received == 3
    assert all("TFLite Micro process died (signal 9)" in r["error"] for r in _lines(out))
    assert "TFLite Micro process died" in capfd.readouterr().err


@pytest.mark.slow
def test_tflm_at_921600_baud(virtual_board, int8_mnv2_96, calib_dir, tmp_path) -> None:
    """Realistic UART speed: 100 images through TFLM, throughput close to the wire limit."""
    board = virtual_board(int8_mnv2_96, runtime="tflm", baud=921600)
    out = tmp_path / "slow.jsonl"
    report = run_bench(BenchOptions(port=board.path, model=int8_mnv2_96, images=calib_dir, out=out))
    _assert_all_exact(report, out, 100, "tflm")
    assert report.wire_limit_fraction >= 0.9
