"""The host's end of the link: owns the serial port, turns bytes into checked messages.

The port is opened with `serial.serial_for_url` (so `/dev/ttyACM0`, a pty path, `socket://` and `loop://`
all work) and read by pyserial's own `serial.threaded.ReaderThread`; the framed protocol parser is a
separate `serial.threaded.Protocol`, like pyserial's `Packetizer`. Messages arrive in a queue; the streamer
never touches the port itself.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import queue
import tempfile
import threading
from collections import Counter
from pathlib import Path
from typing import Iterator

import serial
import serial.threaded

from edgemnv2.errors import BoardError, InputError
from edgemnv2.serial import protocol as p

_DISCONNECTED = object()


class FramedProtocol(serial.threaded.Protocol):
    """COBS frames in, decoded messages out to a queue; anything undecodable is counted and dropped."""

    def __init__(self, inbox: "queue.Queue[object]", faults: Counter) -> None:
        self.inbox = inbox
        self.faults = faults
        self.decoder = p.FrameDecoder()
        self.rx_bytes = 0

    def data_received(self, data: bytes) -> None:
        self.rx_bytes += len(data)
        for event in self.decoder.feed(data):
            if isinstance(event, p.FrameFault):
                self.faults[event.kind] += 1
                if event.kind == "version":  # the handshake says so in one line instead of timing out
                    self.inbox.put(event)
                continue
            try:
                self.inbox.put(p.decode(event))
            except p.ProtocolViolation:
                self.faults["malformed"] += 1

    def connection_lost(self, exc: BaseException | None) -> None:
        self.inbox.put((_DISCONNECTED, exc))


class Transport:
    """An open serial link speaking the edgemnv2 protocol."""

    def __init__(self, port: str, baud: int, write_timeout: float = 10.0) -> None:
        """`write_timeout`: how long one write may block (a board that stops reading fills the buffers)."""
        self.port_name = port
        self.baud = baud
        self.write_timeout = write_timeout
        self.faults: Counter[str] = Counter()
        self.tx_bytes = 0
        self._inbox: queue.Queue[object] = queue.Queue()
        self._lost: str | None = None
        local = "://" not in port
        # exclusive: pyserial's flock on a local port, refused if another program holds one, released with the
        # file however we end. Not TIOCEXCL: it outlives us while anyone else (board-sim) keeps the tty open.
        try:
            self._serial = serial.serial_for_url(port, baudrate=baud, timeout=1, write_timeout=write_timeout,
                                                 **({"exclusive": True} if local else {}))
        except serial.SerialException as exc:
            raise _open_error(port, exc) from exc
        except ValueError as exc:
            raise InputError(f"cannot open {port} at {baud} baud: {exc}") from exc
        self._protocol = FramedProtocol(self._inbox, self.faults)
        self._reader = serial.threaded.ReaderThread(self._serial, lambda: self._protocol)
        self._reader.start()
        self._reader.connect()
        self._write_lock = threading.Lock()

    def set_write_timeout(self, seconds: float) -> None:
        """Once the handshake told the largest frame: enough for it to cross the wire, and the margin."""
        self.write_timeout = seconds
        self._serial.write_timeout = seconds

    @property
    def rx_bytes(self) -> int:
        return self._protocol.rx_bytes

    def send(self, msg: p.Message) -> int:
        """Write one message; BoardError if the port went away."""
        frame = p.encode(msg)
        if self._lost:
            raise BoardError(self._lost)
        try:
            with self._write_lock:
                self._serial.write(frame)
        except serial.SerialTimeoutException:
            self._lost = (f"the board stopped reading: a write to {self.port_name} blocked for "
                          f"{self.write_timeout:.1f} s")
            raise BoardError(self._lost) from None
        except (serial.SerialException, OSError) as exc:
            raise BoardError(f"writing to {self.port_name} failed: {exc} (board unplugged or reset?)") from exc
        self.tx_bytes += len(frame)
        return len(frame)

    def receive(self, timeout: float) -> p.Message | p.FrameFault | None:
        """The next message (or a frame of another protocol version), None after `timeout` seconds;
        BoardError if the port disconnected."""
        if self._lost:
            raise BoardError(self._lost)
        try:
            item = self._inbox.get(timeout=max(timeout, 0.0))
        except queue.Empty:
            return None
        if isinstance(item, tuple) and item and item[0] is _DISCONNECTED:
            self._lost = f"{self.port_name} disconnected" + (f": {item[1]}" if item[1] else "")
            raise BoardError(self._lost)
        return item  # type: ignore[return-value]

    def close(self) -> None:
        try:
            self._reader.close()
        except (serial.SerialException, OSError):
            pass

    def __enter__(self) -> "Transport":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def port_lock(port: str) -> Iterator[None]:
    """Hold the port for this bench: a second `bench` on the same port (by any path to it) is refused.

    An flock on a lock file named after the port's resolved path: released by the kernel when the process
    ends, however it ends, so a crashed bench never leaves the port locked."""
    key = port if "://" in port else os.path.realpath(port)
    path = Path(tempfile.gettempdir()) / f"edgemnv2-bench-{hashlib.sha256(key.encode()).hexdigest()[:16]}.lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise InputError(f"cannot create the port lock {path}: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise InputError(f"serial port {port} is in use by another edgemnv2 bench (pid {holder}): "
                             "wait for it to finish or stop it") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def _open_error(port: str, exc: serial.SerialException) -> InputError:
    """One actionable line for the usual reasons a port does not open."""
    code = getattr(exc, "errno", None)
    text = str(exc)
    if code == errno.ENOENT or "No such file" in text or "could not open port" in text and "[Errno 2]" in text:
        return InputError(f"serial port {port} does not exist: is the board plugged in? "
                          "(list ports with `python -m serial.tools.list_ports`)")
    if code == errno.EACCES or "Permission denied" in text or "[Errno 13]" in text:
        return InputError(f"permission denied opening {port}: add your user to the 'dialout' group "
                          "(sudo usermod -aG dialout $USER, then log in again)")
    if code in (errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK) or "[Errno 16]" in text or "exclusively lock" in text:
        return InputError(f"serial port {port} is busy: close the serial monitor or other program using it")
    return InputError(f"cannot open serial port {port}: {text}")
