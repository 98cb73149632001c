"""Bench against bad boards and bad results files: each condition ends in one `Error:` line, never a hang.

Also the summary arithmetic on synthetic results and the reproducibility of the simulator's fault injection.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from edgemnv2.cli import cli
from edgemnv2.cli.options import handle_errors
from edgemnv2.serial import protocol as p
from edgemnv2.serial.bench import BenchOptions, _report
from edgemnv2.serial.board import Inference
from edgemnv2.serial.sim import RESET, RX, TX, SimOptions, VirtualBoard
from edgemnv2.serial.transport import port_lock

IMAGE = p.TensorDesc("int8", (1, 96, 96, 3), 0.0078125, -1)


class StubRunner:
    """Answers every input with zeros at once: a board whose interpreter does not matter to the test."""

    cpu_hz = 0
    arena_bytes = 0

    runtime = "litert"

    def __init__(self) -> None:
        self.input, self.output = IMAGE, p.TensorDesc("int8", (1, 1000), 0.00390625, -128)

    def __call__(self, data: bytes) -> Inference:
        return Inference(bytes(self.output.nbytes), 100)

    def close(self) -> None:
        pass


@pytest.fixture
def stub_board(virtual_board, int8_mnv2_96):
    """Factory: a VirtualBoard serving `int8_mnv2_96`'s hash with a stub runner; `announce`: BoardConfig fields
    its INFO carries instead of the real ones."""

    def start(prepare=None, **announce) -> VirtualBoard:
        def configure(board: VirtualBoard) -> None:
            board.engine.config = dataclasses.replace(board.engine.config, **announce)
            if prepare:
                prepare(board)

        return virtual_board(int8_mnv2_96, runner=StubRunner(), prepare=configure, baud=0)

    return start


def bench_error(capsys, *args: str) -> tuple[int, str]:
    """Run `edgemnv2 bench ARGS` as the console script does; (exit code, its one `Error:` line)."""
    with pytest.raises(SystemExit) as caught, handle_errors(debug=False):
        cli.main(["bench", *args], standalone_mode=True)
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, errors
    return caught.value.code, errors[0]


def _args(port: str, model: Path, images: Path, out: Path, *extra: str) -> list[str]:
    return ["--port", port, "--model", str(model), "--images", str(images), "--output", str(out), *extra]


# ---------------------------------------------------------------------------------------------- summary arithmetic

def test_summary_arithmetic_matches_hand_computed_values(tmp_path: Path) -> None:
    latencies = [100, 200, 300, 400, 1000]
    records = {i: {"id": i, "status": "ok", "latency_us": us, "cycles": us * 10, "top1": i % 2, "host_top1": 0,
                   "exact": i != 4, "max_abs_diff": 0 if i != 4 else 3} for i, us in enumerate(latencies)}
    records[5] = {"id": 5, "status": "error", "error": "runtime"}
    options = BenchOptions(port="p", model=tmp_path / "m", images=tmp_path, out=tmp_path / "r.jsonl", baud=115200)
    streamer = SimpleNamespace(payload_bytes=5 * 1152, uploaded={0, 1, 2, 3, 4, 5, 0xFFFF0000}, retries=2, resets=1)
    transport = SimpleNamespace(tx_bytes=6000, rx_bytes=900, faults={"crc": 1, "cobs": 2})
    report = _report(options, None, records, 8, [0.1, 0.2, 0.3, 0.2, 0.2, 0.2], 10.0, 13.0, streamer, transport,
                     "litert", None, 4.0, 1152, b"\x01" * 32)
    lat = report.latency_us
    # mean 2000/5; p50 the middle value; numpy's linear percentiles: p90 at index 3.6, p99 at 3.96
    assert (lat.mean, lat.p50, lat.p90, lat.p99) == (400.0, 300.0, 400 + 0.6 * 600, 400 + 0.96 * 600)
    assert lat.std == round((100000) ** 0.5, 1) == 316.2  # population std: sqrt((9+4+1+0+36) * 1e4 / 5)
    assert (lat.min, lat.max, report.cycles_mean) == (100.0, 1000.0, 4000.0)
    assert (report.received, report.errors, report.missing, report.sent) == (6, 1, 2, 6)
    assert (report.compared, report.exact_matches, report.max_abs_diff, report.top1_agreement) == (5, 4, 3, 0.6)
    assert report.images_per_s == 2.0  # 6 results this run between the first upload (10 s) and the last (13 s)
    assert report.wire_limit_images_per_s == 10.0  # 115200 baud / 10 bits / 1152 bytes
    assert report.wire_limit_fraction == 0.2 and report.wire_efficiency == 0.16  # 2 × 1152 × 8 / 115200
    assert report.overhead == round((6000 - 5760) / 5760, 5) == 0.04167
    assert report.transfer_s == 0.2 and report.crc_errors == 3 and not report.complete


# ---------------------------------------------------------------------------------------------- fault injection

def test_one_seed_gives_the_same_faults_whatever_the_chunking(int8_mnv2_96) -> None:
    """Each direction has its own generator drawn once per frame: the bytes' chunking and the interleaving of
    the two directions (thread timing) do not change which frame gets which fault."""
    frames = [p.encode(p.Input(i, 0, 64, bytes((i + k) % 256 for k in range(64)))) for i in range(300)]
    replies = [p.encode(p.Ack(i, 64)) for i in range(300)]
    stream = b"".join(frames)

    def run(chunk: int, tx_first: bool) -> tuple[list, bytes, list[bytes]]:
        board = VirtualBoard(int8_mnv2_96, SimOptions(baud=0, fault_rate=0.2, seed=7, stall_s=(0.0, 0.0)),
                             runner=StubRunner())
        sent = [board._inject_tx(frame) for frame in replies] if tx_first else []
        received = bytearray()
        for start in range(0, len(stream), chunk):
            for piece in board._inject_rx(stream[start:start + chunk]):
                received += b"<reset>" if piece is RESET else piece
        sent = sent or [board._inject_tx(frame) for frame in replies]
        return sorted(board.fault_log), bytes(received), sent

    first, second = run(4096, tx_first=False), run(7, tx_first=True)
    assert first == second
    log = first[0]
    assert {d for d, *_ in log} == {RX, TX} and len(log) > 60
    assert {kind for _, _, kind, _, _ in log if _ == TX} <= {"corrupt", "drop", "stall"}
    other = VirtualBoard(int8_mnv2_96, SimOptions(baud=0, fault_rate=0.2, seed=8, stall_s=(0.0, 0.0)),
                         runner=StubRunner())
    for frame in replies:
        other._inject_tx(frame)
    assert [e for e in log if e[0] == TX] != other.fault_log  # another seed, other faults


# ---------------------------------------------------------------------------------------------- handshake

HANDSHAKES = {
    "window_zero": ({"window": 0}, "the board's handshake announces window 0 (must be 1..255): the firmware is "
                                   "broken or not edgemnv2's; re-export and flash it"),
    "slots_zero": ({"input_slots": 0}, "the board's handshake announces input_slots 0 (must be 1..16): the firmware "
                                       "is broken or not edgemnv2's; re-export and flash it"),
    "payload_zero": ({"max_payload": 0}, "the board's handshake announces max_payload 0 (must be 64..16777216): the "
                                         "firmware is broken or not edgemnv2's; re-export and flash it"),
    "payload_absurd": ({"max_payload": 1 << 30}, "the board's handshake announces max_payload 1073741824 (must be "
                                                 "64..16777216): the firmware is broken or not edgemnv2's; re-export "
                                                 "and flash it"),
    "unknown_runtime": ({"runtime": "coreml"}, "the board names an unknown runtime 'coreml' (known: tflm, litert, "
                                               "tflite_runtime): update edgemnv2 or the firmware"),
}


@pytest.mark.parametrize("case", sorted(HANDSHAKES))
def test_bad_handshake_is_one_line(case, stub_board, int8_mnv2_96, calib_dir, tmp_path, capsys) -> None:
    options, line = HANDSHAKES[case]
    board = stub_board(**options)
    out = tmp_path / "r.jsonl"
    code, error = bench_error(capsys, *_args(board.path, int8_mnv2_96, calib_dir, out, "--count", "2",
                                             "--timeout", "5"))
    assert (code, error) == (4, f"Error: {line}")
    assert not out.exists()


def _speak_version_2(board: VirtualBoard) -> None:
    send = board.engine._send_raw

    def as_version_2(frame: bytes) -> None:
        body = p.cobs_decode(frame[1:-1])
        send(p.encode_frame(body[1], body[2:-4], version=2))

    board.engine._send_raw = as_version_2


def test_other_protocol_version_is_one_line(stub_board, int8_mnv2_96, calib_dir, tmp_path, capsys) -> None:
    board = stub_board(prepare=_speak_version_2)
    started = time.monotonic()
    code, error = bench_error(capsys, *_args(board.path, int8_mnv2_96, calib_dir, tmp_path / "r.jsonl",
                                             "--count", "2", "--timeout", "20"))
    assert (code, error) == (4, "Error: the board speaks protocol version 2, this host 1: update the firmware or "
                                "edgemnv2")
    assert time.monotonic() - started < 20  # said at the first frame, not after the timeout


def test_board_chattering_info_forever_cannot_hang_bench(virtual_board, int8_mnv2_96, calib_dir, tmp_path,
                                                         capsys) -> None:
    """The board answers the handshake, then swallows every input and sends INFO without end."""
    board = virtual_board(int8_mnv2_96, runtime="litert", baud=0)
    board.engine._on_input = lambda msg: None
    stop = threading.Event()

    def chatter() -> None:
        while not stop.wait(0.005):
            board.engine.send(p.encode(board.config.info(board.engine.boot_nonce)))

    thread = threading.Thread(target=chatter, daemon=True)
    thread.start()
    timeout = 2.0
    started = time.monotonic()
    try:
        code, error = bench_error(capsys, *_args(board.path, int8_mnv2_96, calib_dir, tmp_path / "r.jsonl",
                                                 "--count", "3", "--timeout", str(timeout)))
    finally:
        stop.set()
        thread.join()
    assert time.monotonic() - started < timeout + 5
    assert code == 4
    assert re.fullmatch(rf"Error: the board made no progress for 2\.0 s on {re.escape(board.path)}: it sent \d+ INFO "
                        rf"but no ACK or RESULT; 0 of 3 results saved in {re.escape(str(tmp_path))}/r\.jsonl "
                        r"\(rerun with --resume to finish\)", error), error


# ---------------------------------------------------------------------------------------------- the port

def test_port_in_use_by_another_bench_is_refused(virtual_board, int8_mnv2_96, calib_dir, tmp_path, capsys) -> None:
    board = virtual_board(int8_mnv2_96, runtime="litert", baud=0)
    alias = tmp_path / "ttyBOARD"
    alias.symlink_to(board.path)  # another path to the same device is the same port
    with port_lock(board.path):
        for port in (board.path, str(alias)):
            code, error = bench_error(capsys, *_args(port, int8_mnv2_96, calib_dir, tmp_path / "r.jsonl",
                                                     "--count", "2"))
            assert (code, error) == (1, f"Error: serial port {port} is in use by another edgemnv2 bench "
                                        f"(pid {os.getpid()}): wait for it to finish or stop it")
    assert not (tmp_path / "r.jsonl").exists()


# ---------------------------------------------------------------------------------------------- results files

def _records(path: Path) -> tuple[dict, list[dict]]:
    header, *records = [json.loads(line) for line in path.read_text().splitlines()]
    return header, records


def _edit_header(path: Path, **changes) -> None:
    lines = path.read_text().splitlines(keepends=True)
    header = json.loads(lines[0])
    header.update(changes)
    path.write_text(json.dumps(header) + "\n" + "".join(lines[1:]))


def test_results_file_header_resume_and_refusals(virtual_board, int8_mnv2_96, calib_dir, tmp_path, capsys) -> None:
    board = virtual_board(int8_mnv2_96, runtime="litert", baud=0)
    out = tmp_path / "r.jsonl"
    args = _args(board.path, int8_mnv2_96, calib_dir, out, "--count", "3")
    with handle_errors(debug=False):
        cli.main(["bench", *args, "--json"], standalone_mode=False)
    header, records = _records(out)
    assert header["kind"] == "edgemnv2-bench-results" and header["schema_version"] == 1
    assert header["runtime"] == "litert" and header["images"]["count"] == 3 and len(header["images"]["sha256"]) == 64
    assert header["model_sha256"] == __import__("hashlib").sha256(int8_mnv2_96.read_bytes()).hexdigest()
    assert header["options"] == {"baud": 921600, "count": 3, "warmup": 0, "timeout": None}
    assert [r["id"] for r in records] == [0, 1, 2]
    capsys.readouterr()
    kept = out.read_bytes()

    # an existing results file is never overwritten silently
    assert bench_error(capsys, *args) == (1, f"Error: {out} already holds bench results: add --resume to finish "
                                             "them, or --force to replace them")
    assert out.read_bytes() == kept

    # a torn last line (a write cut short) is cut and that image sent again
    out.write_bytes(kept[:-25])
    with handle_errors(debug=False):
        cli.main(["bench", *args, "--resume", "--json"], standalone_mode=False)
    summary = json.loads(capsys.readouterr().out)
    assert summary["received_this_run"] == 1 and summary["received"] == 3 and summary["exact_matches"] == 3
    assert [r["id"] for r in _records(out)[1]] == [0, 1, 2]
    kept = out.read_bytes()

    replace = "use another --output, or --force to replace it"
    code, error = bench_error(capsys, *_args(board.path, int8_mnv2_96, calib_dir, out, "--count", "2", "--resume"))
    assert code == 1 and re.fullmatch(
        rf"Error: {re.escape(str(out))} was written for another image list \(3 images, sha256 "
        rf"{header['images']['sha256'][:12]}… there; 2 images, [0-9a-f]{{12}}… now\): {replace}", error), error

    _edit_header(out, model_sha256="ab" * 32)
    code, error = bench_error(capsys, *args, "--resume")
    assert (code, error) == (1, f"Error: {out} was written for another model (sha256 abababababab… there, "
                                f"{header['model_sha256'][:12]}… now): {replace}")

    _edit_header(out, model_sha256=header["model_sha256"], runtime="tflm")
    code, error = bench_error(capsys, *args, "--resume")
    assert (code, error) == (1, f"Error: {out} was written for runtime tflm and the board runs litert: {replace}")

    out.write_text('{"id": 0, "file": "a.jpg"}\n')  # an older edgemnv2's file: no header
    code, error = bench_error(capsys, *args, "--resume")
    assert (code, error) == (1, f"Error: {out} has no bench results header (another program or an older edgemnv2 "
                                f"wrote it): {replace}")
    assert bench_error(capsys, *args, "--resume", "--force") == (
        1, "Error: --resume and --force exclude each other: --resume keeps the results, --force drops them")

    with handle_errors(debug=False):
        cli.main(["bench", *args, "--force", "--json"], standalone_mode=False)
    assert [r["id"] for r in _records(out)[1]] == [0, 1, 2]


def test_disk_full_mid_run_is_one_line_and_resumable(virtual_board, int8_mnv2_96, calib_dir, tmp_path, capsys,
                                                     monkeypatch) -> None:
    """ENOSPC when a result line is made durable: one line, exit 1, the port freed, --resume finishes the file."""
    import errno

    from edgemnv2 import atomic

    board = virtual_board(int8_mnv2_96, runtime="litert", baud=0)
    out = tmp_path / "r.jsonl"
    args = _args(board.path, int8_mnv2_96, calib_dir, out, "--count", "4")
    real_fsync, calls = os.fsync, []

    def fsync_until_full(fd: int) -> None:
        calls.append(fd)
        if len(calls) > 4:  # the header file, its folder, then two results
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", fsync_until_full)
    assert bench_error(capsys, *args) == (1, f"Error: cannot write {out}: no space left on device; the results "
                                             "before this one are kept")
    monkeypatch.undo()
    assert len(_records(out)[1]) >= 2
    with handle_errors(debug=False):
        cli.main(["bench", *args, "--resume", "--json"], standalone_mode=False)
    summary = json.loads(capsys.readouterr().out)
    assert summary["received"] == 4 and summary["exact_matches"] == 4
    assert [r["id"] for r in _records(out)[1]] == [0, 1, 2, 3]
