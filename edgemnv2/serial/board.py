"""The board side of the protocol: a state machine that turns received bytes into frames to send.

Used by the virtual board (`edgemnv2 board-sim`) and by the Linux agent, which copies this file and
`protocol.py` next to `agent.py`; so it imports only the stdlib, numpy (lazily) and `protocol` — never
edgemnv2. Inference runs on a worker thread, so the engine keeps acknowledging the next image's chunks
while the current one computes (`input_slots` = 2 in the handshake).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import queue
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Iterator

try:  # inside the edgemnv2 package
    from . import protocol as p
except ImportError:  # copied beside agent.py on a board
    import protocol as p  # type: ignore[no-redef]


@dataclasses.dataclass(frozen=True)
class Inference:
    """What a runner returns for one input: raw output bytes and how long the interpreter took."""

    output: bytes
    micros: int
    cycles: int = 0
    layer_us: tuple[int, ...] = ()


class InferenceFailed(Exception):
    """The interpreter could not run this input; the message goes to the host in ERROR runtime."""


@dataclasses.dataclass(frozen=True)
class BoardConfig:
    """Everything INFO announces except the boot nonce."""

    board_name: str
    runtime: str
    model_sha256: bytes
    input: p.TensorDesc
    output: p.TensorDesc
    cpu_hz: int = 0
    arena_bytes: int = 0
    max_payload: int = 16384
    window: int = 4
    input_slots: int = 2
    flags: int = 0

    def info(self, boot_nonce: int) -> p.Info:
        return p.Info(p.PROTOCOL_VERSION, self.flags, self.input_slots, self.window, self.max_payload, boot_nonce,
                      self.cpu_hz, self.arena_bytes, self.model_sha256, self.board_name, self.runtime,
                      self.input, self.output)


Runner = Callable[[bytes], Inference]


@dataclasses.dataclass
class _Upload:
    id: int
    total: int
    buffer: bytearray
    next_offset: int = 0


class BoardEngine:
    """Protocol state machine of one board (docs/protocol.md §3), thread-safe.

    `receive(bytes)` may be called from a reader thread; frames go out through `send(bytes)`, which the
    engine serialises. `boot()` starts a new life with a fresh nonce (power-on, RESET, a simulated reset).
    """

    def __init__(self, config: BoardConfig, runner: Runner, send: Callable[[bytes], None]) -> None:
        self.config = config
        self._runner = runner
        self._send_raw = send
        self._send_lock = threading.Lock()
        self._lock = threading.RLock()
        self._decoder = p.FrameDecoder(max_frame=p.cobs_max_encoded(
            p.HEADER_BYTES + p.INPUT_HEADER_BYTES + config.max_payload + p.CRC_BYTES) + 16)
        self._jobs: queue.Queue[tuple[int, int, bytes] | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        self.boot_nonce = 0
        self._epoch = 0
        self._upload: _Upload | None = None
        self._unanswered: set[int] = set()  # complete inputs without a RESULT yet
        self._results: OrderedDict[int, bytes] = OrderedDict()  # id -> encoded RESULT frame
        self.inferences = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the inference worker and announce ourselves (INFO with a new nonce)."""
        self._worker = threading.Thread(target=self._work, name="board-infer", daemon=True)
        self._worker.start()
        self.boot()

    def stop(self) -> None:
        self._jobs.put(None)
        if self._worker is not None:
            self._worker.join()

    def boot(self) -> None:
        """Forget everything (as a reset board does), pick a new nonce, send INFO."""
        with self._lock:
            self.boot_nonce = int.from_bytes(os.urandom(4), "little") or 1
            self._new_session()
            self._decoder.reset()
            self.send(p.encode(self.config.info(self.boot_nonce)))

    def _new_session(self) -> None:
        self._epoch += 1
        self._upload = None
        self._unanswered.clear()
        self._results.clear()

    # ------------------------------------------------------------------ I/O

    def send(self, frame: bytes) -> None:
        with self._send_lock:
            self._send_raw(frame)

    def receive(self, data: bytes) -> None:
        for event in self._decoder.feed(data):
            if isinstance(event, p.FrameFault):
                if event.kind == "version":
                    self._error(p.ERR_UNSUPPORTED, 0, event.detail, f"protocol version {event.detail} unsupported")
                else:
                    self._error(p.ERR_BAD_CRC, 0, 0, f"{event.kind} frame dropped")
                continue
            try:
                msg = p.decode(event)
            except p.ProtocolViolation as exc:
                code = p.ERR_UNSUPPORTED if event.type not in p.MESSAGE_TYPES else p.ERR_MALFORMED
                self._error(code, 0, event.type, str(exc))
                continue
            self.handle(msg)

    def _error(self, code: int, ident: int, detail: int, message: str) -> None:
        self.send(p.encode(p.Error(code, self.boot_nonce, ident, detail, message)))

    # ------------------------------------------------------------------ messages

    def handle(self, msg: p.Message) -> None:
        with self._lock:
            if isinstance(msg, p.Input):
                self._on_input(msg)
            elif isinstance(msg, p.Hello):
                self._new_session()
                self.send(p.encode(self.config.info(self.boot_nonce)))
                if any(msg.model_sha256) and msg.model_sha256 != self.config.model_sha256:
                    self._error(p.ERR_MODEL_MISMATCH, 0, 0,
                                f"board runs model sha256 {self.config.model_sha256.hex()[:16]}...")
            elif isinstance(msg, p.Ping):
                self.send(p.encode(p.Pong(msg.token, self.boot_nonce)))
            elif isinstance(msg, p.GetResult):
                self._on_get_result(msg.id)
            elif isinstance(msg, p.Reset):
                self.boot()
            else:  # a board -> host message sent to us
                self._error(p.ERR_UNSUPPORTED, 0, msg.TYPE, f"message type 0x{msg.TYPE:02x} is not for a board")

    def _on_input(self, msg: p.Input) -> None:
        expected_total = self.config.input.nbytes
        if msg.total != expected_total:
            self._error(p.ERR_WRONG_SIZE, msg.id, expected_total, f"input tensor is {expected_total} bytes")
            return
        if len(msg.data) > self.config.max_payload:
            self._error(p.ERR_TOO_LARGE, msg.id, self.config.max_payload, "chunk longer than max_payload")
            return
        if msg.offset + len(msg.data) > msg.total:
            self._error(p.ERR_MALFORMED, msg.id, p.INPUT, "chunk runs past the end of the input")
            return
        upload = self._upload
        if upload is not None and upload.id == msg.id:
            if msg.offset == upload.next_offset:
                upload.buffer[msg.offset:msg.offset + len(msg.data)] = msg.data
                upload.next_offset += len(msg.data)
                if upload.next_offset == upload.total:
                    self._complete(upload)
                self.send(p.encode(p.Ack(msg.id, upload.next_offset)))
            elif msg.offset < upload.next_offset:
                self.send(p.encode(p.Ack(msg.id, upload.next_offset)))
            else:
                self._error(p.ERR_SEQUENCE, msg.id, upload.next_offset, f"expected offset {upload.next_offset}")
            return
        if msg.id in self._unanswered or msg.id in self._results:
            self.send(p.encode(p.Ack(msg.id, msg.total)))
            return
        if msg.offset != 0:
            self._error(p.ERR_SEQUENCE, msg.id, 0, "expected offset 0")
            return
        if len(self._unanswered) >= self.config.input_slots:
            self._error(p.ERR_BUSY, msg.id, 0, "no free input slot")
            return
        upload = _Upload(msg.id, msg.total, bytearray(msg.total))
        self._upload = upload
        self._on_input(msg)

    def _complete(self, upload: _Upload) -> None:
        self._upload = None
        self._unanswered.add(upload.id)
        self._jobs.put((self._epoch, upload.id, bytes(upload.buffer)))

    def _on_get_result(self, ident: int) -> None:
        if ident in self._results:
            self.send(self._results[ident])
        elif ident in self._unanswered or (self._upload is not None and self._upload.id == ident):
            self._error(p.ERR_BUSY, ident, 0, "still working on this input")
        else:
            self._error(p.ERR_UNKNOWN_ID, ident, 0, "no result for this id")

    # ------------------------------------------------------------------ inference worker

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            epoch, ident, data = job
            with self._lock:
                if epoch != self._epoch:
                    continue  # the board was reset or a new session began
            crc = p.crc32(data)
            try:
                result = self._runner(data)
            except InferenceFailed as exc:
                with self._lock:
                    if epoch == self._epoch:
                        self._unanswered.discard(ident)
                        self._error(p.ERR_RUNTIME, ident, 0, str(exc)[:255])
                continue
            with self._lock:
                if epoch != self._epoch:
                    continue
                frame = p.encode(p.Result(ident, self.boot_nonce, crc, result.cycles, result.micros,
                                          result.output, result.layer_us))
                self._unanswered.discard(ident)
                self._results[ident] = frame
                while len(self._results) > max(self.config.input_slots, 2):
                    self._results.popitem(last=False)
                self.inferences += 1
                self.send(frame)


def serve_port(port: Any, engine: BoardEngine, stop: threading.Event) -> None:
    """Feed bytes from a pyserial-like port (`read`, `in_waiting`) to the engine until `stop` is set."""
    while not stop.is_set():
        data = port.read(port.in_waiting or 1)
        if data:
            engine.receive(data)


# ---------------------------------------------------------------------- interpreter helpers (LiteRT family)

def file_sha256(path: str | Path) -> bytes:
    return hashlib.sha256(Path(path).read_bytes()).digest()


def tensor_desc(detail: dict) -> p.TensorDesc:
    """A LiteRT/tflite_runtime tensor detail dict → protocol TensorDesc."""
    import numpy as np

    dtype = np.dtype(detail["dtype"]).name
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return p.TensorDesc(dtype, tuple(int(d) for d in detail["shape"]), float(scale), int(zero_point))


def load_interpreter(model_path: str | Path, backend: str = "auto", edgetpu: str = "auto") -> tuple[Any, str]:
    """A LiteRT or tflite_runtime interpreter with tensors allocated, and the runtime name for INFO.

    `edgetpu`: "auto" uses the Edge TPU delegate when libedgetpu loads, "off" never, "on" requires it.
    """
    modules = {"litert": "ai_edge_litert.interpreter", "tflite_runtime": "tflite_runtime.interpreter"}
    names = list(modules) if backend == "auto" else [backend]
    module = None
    name = ""
    for name in names:
        try:
            module = __import__(modules[name], fromlist=["Interpreter"])
            break
        except (ImportError, KeyError):
            continue
    if module is None:
        raise InferenceFailed(f"no TFLite runtime ({' or '.join(modules[n] for n in names if n in modules)}); "
                              "pip install ai-edge-litert (or tflite-runtime)")
    delegates = []
    if edgetpu != "off":
        import ctypes

        try:
            ctypes.CDLL("libedgetpu.so.1")  # probe first: a failed load_delegate prints a traceback on exit
            delegates = [module.load_delegate("libedgetpu.so.1")]
        except (ValueError, OSError, AttributeError) as exc:
            if edgetpu == "on":
                raise InferenceFailed(f"Edge TPU delegate unavailable: {exc}") from exc
    with _native_stderr_silenced():  # LiteRT's C++ "INFO: Created TensorFlow Lite XNNPACK delegate" line
        interpreter = module.Interpreter(model_path=str(model_path), experimental_delegates=delegates or None)
        interpreter.allocate_tensors()
    return interpreter, name + ("+edgetpu" if delegates else "")


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Point fd 2 at /dev/null while native code logs; Python exceptions still propagate."""
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class InterpreterRunner:
    """Runs raw input bytes through a LiteRT-family interpreter; times `invoke()` alone."""

    def __init__(self, interpreter: Any, cpu_hz: int = 0) -> None:
        import numpy as np

        self._np = np
        self._interpreter = interpreter
        self.cpu_hz = cpu_hz
        details_in, details_out = interpreter.get_input_details(), interpreter.get_output_details()
        if len(details_in) != 1 or len(details_out) != 1:
            raise InferenceFailed("the protocol serves single-input, single-output models")
        self._in, self._out = details_in[0], details_out[0]
        self.input, self.output = tensor_desc(self._in), tensor_desc(self._out)

    def __call__(self, data: bytes) -> Inference:
        np = self._np
        if len(data) != self.input.nbytes:
            raise InferenceFailed(f"input is {len(data)} bytes, the model takes {self.input.nbytes}")
        array = np.frombuffer(data, dtype=self._in["dtype"]).reshape(self._in["shape"])
        try:
            self._interpreter.set_tensor(self._in["index"], array)
            start = time.perf_counter_ns()
            self._interpreter.invoke()
            elapsed_ns = time.perf_counter_ns() - start
            output = self._interpreter.get_tensor(self._out["index"])
        except (RuntimeError, ValueError) as exc:
            raise InferenceFailed(f"invoke failed: {exc}") from exc
        return Inference(output.tobytes(), elapsed_ns // 1000, elapsed_ns * self.cpu_hz // 1_000_000_000)


def cpu_hz() -> int:
    """Nominal core clock from /sys or /proc (0 when the OS does not say)."""
    try:
        return int(Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text()) * 1000
    except (OSError, ValueError):
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("cpu mhz"):
                return int(float(line.split(":")[1]) * 1e6)
    except (OSError, ValueError, IndexError):
        pass
    return 0
