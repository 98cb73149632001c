"""The board engine's protocol rules (docs/protocol.md §3), driven frame by frame without a port."""

from __future__ import annotations

import errno
import random
import threading

import pytest
import serial

from edgemnv2.serial import protocol as p
from edgemnv2.serial.board import BoardConfig, BoardEngine, Inference, InferenceFailed
from edgemnv2.serial.transport import _open_error

T_IN = p.TensorDesc("int8", (1, 4, 4, 2), 0.5, 0)
T_OUT = p.TensorDesc("int8", (1, 3), 0.25, -1)
CONFIG = BoardConfig("test", "fake", bytes(range(32)), T_IN, T_OUT, max_payload=16, window=2, input_slots=2)


class Harness:
    """An engine whose runner waits for `release` and whose frames are decoded into `sent`."""

    def __init__(self, fail: bool = False) -> None:
        self.release = threading.Event()
        self.sent: list[p.Message] = []
        self.arrived = threading.Condition()
        self._decoder = p.FrameDecoder()
        self.fail = fail
        self.engine = BoardEngine(CONFIG, self._run, self._send)
        self.engine.start()

    def _run(self, data: bytes) -> Inference:
        self.release.wait()
        if self.fail:
            raise InferenceFailed("kernel said no")
        return Inference(bytes([sum(data) & 0x7F, 1, 2]), 42, 4200)

    def _send(self, frame: bytes) -> None:
        with self.arrived:
            self.sent += [p.decode(f) for f in self._decoder.feed(frame)]
            self.arrived.notify_all()

    def feed(self, *msgs: p.Message) -> None:
        self.engine.receive(b"".join(p.encode(m) for m in msgs))

    def wait_for(self, kind: type, count: int = 1) -> list:
        with self.arrived:
            assert self.arrived.wait_for(lambda: sum(isinstance(m, kind) for m in self.sent) >= count, timeout=10)
            return [m for m in self.sent if isinstance(m, kind)]

    def last(self) -> p.Message:
        return self.sent[-1]


@pytest.fixture
def board():
    harness = Harness()
    yield harness
    harness.release.set()
    harness.engine.stop()


DATA = bytes(range(32))


def test_boot_sends_info_with_nonce(board) -> None:
    info = board.wait_for(p.Info)[0]
    assert info.boot_nonce == board.engine.boot_nonce and info.input == T_IN and info.window == 2


def test_chunked_upload_acks_and_result_echoes_crc(board) -> None:
    board.feed(p.Input(5, 0, 32, DATA[:16]))
    assert board.last() == p.Ack(5, 16)
    board.feed(p.Input(5, 16, 32, DATA[16:]))
    assert board.last() == p.Ack(5, 32)
    board.release.set()
    result = board.wait_for(p.Result)[0]
    assert result.id == 5 and result.input_crc32 == p.crc32(DATA) and result.micros == 42 and result.cycles == 4200
    assert result.boot_nonce == board.engine.boot_nonce
    board.feed(p.GetResult(5))
    assert board.wait_for(p.Result, 2)[1] == result


def test_sequence_duplicate_wrong_size_and_too_large(board) -> None:
    board.feed(p.Input(1, 16, 32, DATA[16:]))
    assert board.last() == p.Error(p.ERR_SEQUENCE, board.engine.boot_nonce, 1, 0, "expected offset 0")
    board.feed(p.Input(1, 0, 32, DATA[:16]), p.Input(1, 0, 32, DATA[:16]))
    assert board.last() == p.Ack(1, 16)  # a retransmission is acknowledged, not stored twice
    board.feed(p.Input(2, 0, 31, DATA[:16]))
    assert board.last().code == p.ERR_WRONG_SIZE and board.last().detail == 32
    board.feed(p.Input(1, 16, 32, DATA[15:]))  # 17 bytes > max_payload 16
    assert board.last().code == p.ERR_TOO_LARGE


def test_busy_when_both_slots_are_taken(board) -> None:
    for ident in (1, 2):
        board.feed(p.Input(ident, 0, 32, DATA[:16]), p.Input(ident, 16, 32, DATA[16:]))
    board.feed(p.Input(3, 0, 32, DATA[:16]))
    assert board.last().code == p.ERR_BUSY and board.last().id == 3
    board.feed(p.GetResult(2))
    assert board.last().code == p.ERR_BUSY
    board.feed(p.GetResult(99))
    assert board.last().code == p.ERR_UNKNOWN_ID


def test_bad_frames_model_mismatch_ping_reset(board) -> None:
    nonce = board.engine.boot_nonce
    board.engine.receive(b"\x00\x05\x11\x22\x00")
    assert board.last().code == p.ERR_BAD_CRC
    board.engine.receive(p.encode_frame(0x7E, b""))
    assert board.last().code == p.ERR_UNSUPPORTED and board.last().detail == 0x7E
    board.feed(p.Hello(1, b"\xff" * 32))
    assert isinstance(board.sent[-2], p.Info) and board.last().code == p.ERR_MODEL_MISMATCH
    board.feed(p.Ping(7))
    assert board.last() == p.Pong(7, nonce)
    board.feed(p.Reset())
    assert isinstance(board.last(), p.Info) and board.last().boot_nonce != nonce


def test_runtime_failure_is_an_error_frame() -> None:
    harness = Harness(fail=True)
    harness.release.set()
    harness.feed(p.Input(9, 0, 32, DATA[:16]), p.Input(9, 16, 32, DATA[16:]))
    error = harness.wait_for(p.Error)[0]
    harness.engine.stop()
    assert error.code == p.ERR_RUNTIME and error.id == 9 and "kernel said no" in error.message


def test_engine_survives_random_bytes(board) -> None:
    rng = random.Random(7)
    for _ in range(2000):
        board.engine.receive(bytes(rng.randrange(256) for _ in range(rng.randint(1, 40))))
    board.feed(p.Ping(1))
    assert board.last() == p.Pong(1, board.engine.boot_nonce)


@pytest.mark.parametrize("code, text, expected", [
    (errno.ENOENT, "[Errno 2] could not open port /dev/ttyX: No such file or directory", "does not exist"),
    (errno.EACCES, "[Errno 13] could not open port /dev/ttyX: Permission denied", "dialout"),
    (errno.EBUSY, "[Errno 16] could not open port /dev/ttyX: Device or resource busy", "busy"),
])
def test_port_open_errors_are_actionable(code, text, expected) -> None:
    exc = serial.SerialException(code, text)
    assert expected in str(_open_error("/dev/ttyX", exc))
