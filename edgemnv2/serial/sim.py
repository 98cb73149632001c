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
        self._rng = random.Random(self.options.seed)
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

    def _fault(self, kinds: tuple[str, ...]) -> str | None:
        if self.options.fault_rate <= 0 or self._rng.random() >= self.options.fault_rate:
            return None
        kind = self._rng.choices(kinds, weights=FAULT_WEIGHTS[:len(kinds)])[0]
        self.faults[kind] += 1
        return kind

    def _stall(self) -> None:
        self._stop.wait(self._rng.uniform(*self.options.stall_s))

    # ------------------------------------------------------------------ receive (host -> board)

    def _rx_loop(self) -> None:
        pacer = _Pacer(self.options.baud)
        previous = 0  # last byte seen, to find the delimiter that closes a frame
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
            data, reset, previous = self._inject_rx(data, previous)
            if data:
                self.engine.receive(data)
            if reset:
                self.engine.boot()

    def _inject_rx(self, data: bytes, previous: int) -> tuple[bytes, bool, int]:
        """Apply at most one fault per frame closed in this chunk; returns (bytes, reset?, last byte)."""
        if self.options.fault_rate <= 0:
            return data, False, data[-1] if data else previous
        buffer = bytearray(data)
        start = 0
        pos = buffer.find(0)
        while pos >= 0:
            closes_frame = pos > start or (pos == 0 and previous != 0)
            kind = self._fault(FAULT_KINDS) if closes_frame else None
            if kind == "reset":
                return bytes(buffer[:start]), True, 0
            if kind == "stall":
                self._stall()
            elif kind in ("corrupt", "drop") and pos > start:
                victim = self._rng.randrange(start, pos)
                if kind == "corrupt":
                    buffer[victim] ^= 1 << self._rng.randrange(8)
                else:
                    del buffer[victim]
                    pos -= 1
            start = pos + 1
            pos = buffer.find(0, start)
        return bytes(buffer), False, buffer[-1] if buffer else previous

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
            kind = self._fault(TX_FAULT_KINDS)
            if kind == "stall":
                self._stall()
            elif kind in ("corrupt", "drop") and len(frame) > 2:
                buffer = bytearray(frame)
                victim = self._rng.randrange(1, len(buffer) - 1)
                if kind == "corrupt":
                    buffer[victim] ^= 1 << self._rng.randrange(8)
                else:
                    del buffer[victim]
                frame = bytes(buffer)
            for offset in range(0, len(frame), slice_bytes):
                chunk = frame[offset:offset + slice_bytes]
                pacer.wait(len(chunk))
                if not self._write_all(chunk):
                    return

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
