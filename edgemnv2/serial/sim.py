"""A virtual board on a pseudo-terminal: the firmware's protocol engine, a real interpreter, a UART's speed.

`VirtualBoard` opens a pty, serves the protocol on its master side with `board.BoardEngine`, runs the model
with TFLite Micro (child process) or LiteRT, paces both directions to the simulated baud rate, and can
inject faults: corrupted and dropped bytes, stalls and resets, each with probability `fault_rate` per frame.
The host talks to the slave path with pyserial exactly as it would to /dev/ttyACM0.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import random
import select
import subprocess
import sys
import threading
import time
import tty
from collections import Counter
from pathlib import Path

from edgemnv2.errors import InputError
from edgemnv2.serial import protocol as p
from edgemnv2.serial.board import BoardConfig, BoardEngine, file_sha256
from edgemnv2.serial.runners import ModelRunner, open_runner

FAULT_KINDS = ("corrupt", "drop", "stall", "reset")
FAULT_WEIGHTS = (0.4, 0.3, 0.2, 0.1)
TX_FAULT_KINDS = ("corrupt", "drop", "stall")
RX, TX = "host->board", "board->host"
RESET = object()  # in what `_inject_rx` hands on: the board reboots here
DIRECTIONS = (RX, TX)


@dataclasses.dataclass
class SimOptions:
    runtime: str = "tflm"
    baud: int = 921600  # 0 = as fast as the pty goes
    fault_rate: float = 0.0  # probability per frame, each direction
    seed: int = 0
    max_payload: int = 16384
    window: int = 4
    input_slots: int = 2
    stall_s: tuple[float, float] = (0.2, 2.0)
    board_name: str = "board-sim"


class _Pacer:
    """Holds a byte stream to `baud` (8N1): `wait(n)` returns when n more bytes would have crossed the wire."""

    def __init__(self, baud: int) -> None:
        self.baud = baud
        self._clock = 0.0

    def wait(self, nbytes: int) -> None:
        if not self.baud:
            return
        now = time.monotonic()
        self._clock = max(self._clock, now) + p.wire_seconds(nbytes, self.baud)
        if self._clock > now:
            time.sleep(self._clock - now)


class VirtualBoard:
    """The virtual board; `start()` returns the pty path to give to `edgemnv2 bench --port`."""

    def __init__(self, model: Path, options: SimOptions | None = None, runner: ModelRunner | None = None) -> None:
        self.model = Path(model)
        if not self.model.is_file():
            raise InputError(f"model file {self.model} does not exist")
        if options is not None and not 0.0 <= options.fault_rate <= 1.0:
            raise InputError(f"--fault-rate must be between 0 and 1, got {options.fault_rate}")
        self.options = options or SimOptions()
        self.runner = runner or open_runner(self.options.runtime, self.model)
        self.config = BoardConfig(
            board_name=self.options.board_name, runtime=self.runner.runtime,
            model_sha256=file_sha256(self.model),
            input=self.runner.input, output=self.runner.output, cpu_hz=self.runner.cpu_hz,
            arena_bytes=self.runner.arena_bytes, max_payload=self.options.max_payload,
            window=self.options.window, input_slots=self.options.input_slots)
        self.engine = BoardEngine(self.config, self.runner, self._queue_tx)
        self.faults: Counter[str] = Counter()
        # (direction, frame number, kind, byte offset in the frame, bit): the same seed gives the same list
        self.fault_log: list[tuple[str, int, str, int, int]] = []
        # one generator per direction, each drawn once per frame: threads and timing cannot reorder them
        self._rng = {direction: random.Random(f"{self.options.seed}:{direction}") for direction in DIRECTIONS}
        self._frames = dict.fromkeys(DIRECTIONS, 0)
        self._rx_partial = bytearray()  # host bytes after the last delimiter: a frame not yet complete
        self._tx: queue.Queue[bytes | None] = queue.Queue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._master = self._slave = -1
        self.path = ""

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> str:
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no line editing: a byte pipe like a UART
        os.set_blocking(self._master, False)
        self.path = os.ttyname(self._slave)
        for target, name in ((self._rx_loop, "sim-rx"), (self._tx_loop, "sim-tx")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        self.engine.start()
        return self.path

    def stop(self) -> None:
        self._stop.set()
        self._tx.put(None)
        for thread in self._threads:
            thread.join()
        self.engine.stop()
        self.runner.close()
        for fd in (self._master, self._slave):
            if fd >= 0:
                os.close(fd)
        self._master = self._slave = -1

    def __enter__(self) -> "VirtualBoard":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ faults

    def _fault(self, direction: str, body: bytes) -> tuple[str | None, bytes, float]:
        """Decide this frame's fault from its direction's generator: (kind, the body as sent, stall seconds).

        Every frame draws the same numbers whether or not it is faulted, so frame n of a direction gets the same
        fault in every run with this seed, however the bytes were chunked or the threads scheduled."""
        rng = self._rng[direction]
        number = self._frames[direction]
        self._frames[direction] += 1
        draw, pick, offset, bit = rng.random(), rng.random(), rng.random(), rng.randrange(8)
        stall = rng.uniform(*self.options.stall_s)
        if self.options.fault_rate <= 0 or draw >= self.options.fault_rate:
            return None, body, 0.0
        kinds = FAULT_KINDS if direction == RX else TX_FAULT_KINDS
        weights = FAULT_WEIGHTS[:len(kinds)]
        kind = kinds[-1]
        threshold = 0.0
        for candidate, weight in zip(kinds, weights):
            threshold += weight / sum(weights)
            if pick < threshold:
                kind = candidate
                break
        victim = int(offset * len(body)) if body else 0
        self.faults[kind] += 1
        self.fault_log.append((direction, number, kind, victim, bit))
        if kind == "corrupt" and body:
            body = body[:victim] + bytes((body[victim] ^ (1 << bit),)) + body[victim + 1:]
        elif kind == "drop" and body:
            body = body[:victim] + body[victim + 1:]
        return kind, body, stall if kind == "stall" else 0.0

    # ------------------------------------------------------------------ receive (host -> board)

    def _rx_loop(self) -> None:
        pacer = _Pacer(self.options.baud)
        while not self._stop.is_set():
            ready, _, _ = select.select([self._master], [], [], 0.05)
            if not ready:
                continue
            try:
                data = os.read(self._master, 4096)
            except BlockingIOError:
                continue
            except OSError:
                return
            pacer.wait(len(data))
            for piece in self._inject_rx(data):
                if piece is RESET:
                    self.engine.boot()
                elif piece:
                    self.engine.receive(piece)

    def _inject_rx(self, data: bytes) -> list[bytes | object]:
        """What reaches the engine, in order: bytes, and RESET where the board reboots (losing the frame that
        triggered it). Complete frames only, so a fault hits a whole frame wherever the reads split it."""
        if self.options.fault_rate <= 0:
            return [data]
        buffer = self._rx_partial + data
        pieces: list[bytes | object] = []
        out = bytearray()
        start = 0
        pos = buffer.find(0)
        while pos >= 0:
            if pos > start:  # a delimiter that closes a non-empty frame
                kind, body, stall = self._fault(RX, bytes(buffer[start:pos]))
                if stall:
                    self._stop.wait(stall)
                if kind == "reset":
                    pieces += [bytes(out), RESET]
                    out = bytearray()
                else:
                    out += body
            out.append(0)
            start = pos + 1
            pos = buffer.find(0, start)
        self._rx_partial = bytearray(buffer[start:])
        return pieces + [bytes(out)]

    # ------------------------------------------------------------------ transmit (board -> host)

    def _queue_tx(self, frame: bytes) -> None:
        self._tx.put(frame)

    def _tx_loop(self) -> None:
        pacer = _Pacer(self.options.baud)
        slice_bytes = max(64, self.options.baud // 10 // 200) if self.options.baud else 1 << 16
        while True:
            frame = self._tx.get()
            if frame is None or self._stop.is_set():
                return
            frame = self._inject_tx(frame)
            for offset in range(0, len(frame), slice_bytes):
                chunk = frame[offset:offset + slice_bytes]
                pacer.wait(len(chunk))
                if not self._write_all(chunk):
                    return

    def _inject_tx(self, frame: bytes) -> bytes:
        """A frame as the board sends it (0x00 COBS 0x00): the fault, if any, hits the bytes between delimiters."""
        kind, body, stall = self._fault(TX, frame[1:-1])
        if stall:
            self._stop.wait(stall)
        return frame[:1] + body + frame[-1:] if kind else frame

    def _write_all(self, data: bytes) -> bool:
        view = memoryview(data)
        while view:
            if self._stop.is_set():
                return False
            _, ready, _ = select.select([], [self._master], [], 0.05)
            if not ready:
                continue
            try:
                written = os.write(self._master, view)
            except BlockingIOError:
                continue
            except OSError:
                return False
            view = view[written:]
        return True


def spawn_board_sim(model: Path, *args: str, timeout: float = 60.0) -> tuple[subprocess.Popen, str]:
    """Start `edgemnv2 board-sim` as a child process; returns it and the pty path it printed first."""
    proc = subprocess.Popen([sys.executable, "-m", "edgemnv2", "board-sim", "--model", str(model), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ready: list[str] = []
    reader = threading.Thread(target=lambda: ready.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not ready or not ready[0].strip():
        proc.kill()
        _, err = proc.communicate()
        raise RuntimeError(f"board-sim did not start: {err.strip()[-500:]}")
    return proc, ready[0].strip()
