"""The host's end of the link: owns the serial port, turns bytes into checked messages.

The port is opened with `serial.serial_for_url` (so `/dev/ttyACM0`, a pty path, `socket://` and `loop://`
all work) and read by pyserial's own `serial.threaded.ReaderThread`; the framed protocol parser is a
separate `serial.threaded.Protocol`, like pyserial's `Packetizer`. Messages arrive in a queue; the streamer
never touches the port itself.
"""

from __future__ import annotations

import errno
import queue
import threading
from collections import Counter

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
                continue
            try:
                self.inbox.put(p.decode(event))
            except p.ProtocolViolation:
                self.faults["malformed"] += 1

    def connection_lost(self, exc: BaseException | None) -> None:
        self.inbox.put((_DISCONNECTED, exc))


class Transport:
    """An open serial link speaking the edgemnv2 protocol."""

    def __init__(self, port: str, baud: int) -> None:
        self.port_name = port
        self.baud = baud
        self.faults: Counter[str] = Counter()
        self.tx_bytes = 0
        self._inbox: queue.Queue[object] = queue.Queue()
        self._lost: str | None = None
        try:
            self._serial = serial.serial_for_url(port, baudrate=baud, timeout=1, write_timeout=None)
        except serial.SerialException as exc:
            raise _open_error(port, exc) from exc
        except ValueError as exc:
            raise InputError(f"cannot open {port} at {baud} baud: {exc}") from exc
        self._protocol = FramedProtocol(self._inbox, self.faults)
        self._reader = serial.threaded.ReaderThread(self._serial, lambda: self._protocol)
        self._reader.start()
        self._reader.connect()
        self._write_lock = threading.Lock()

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
        except (serial.SerialException, OSError) as exc:
            raise BoardError(f"writing to {self.port_name} failed: {exc} (board unplugged or reset?)") from exc
        self.tx_bytes += len(frame)
        return len(frame)

    def receive(self, timeout: float) -> p.Message | None:
        """The next message, or None after `timeout` seconds; BoardError if the port disconnected."""
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
    if code == errno.EBUSY or "[Errno 16]" in text:
        return InputError(f"serial port {port} is busy: close the serial monitor or other program using it")
    return InputError(f"cannot open serial port {port}: {text}")
