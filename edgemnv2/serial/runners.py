"""Host-side model runners for the virtual board and for the bench's reference outputs.

`tflm` runs the TensorFlow Lite Micro kernels (the `tflite_micro` wheel) in a child process: that wheel
aborts the whole process on some models, and an abort must become an error the user sees, not a silently
vanished simulator. `litert` runs LiteRT in-process through the same `InterpreterRunner` the Linux agent
uses, so the sim, the agent and the bench reference execute identical code.

The child is this module run as a script; it talks over its stdin/stdout with length-prefixed messages.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO

from edgemnv2.errors import RuntimeUnavailable
from edgemnv2.serial import protocol as p
from edgemnv2.serial.board import Inference, InferenceFailed, InterpreterRunner, cpu_hz, load_interpreter

RUNTIMES = ("tflm", "litert")


class ModelRunner:
    """A runner (bytes -> Inference) plus the tensors and arena it reports in INFO."""

    runtime: str
    input: p.TensorDesc
    output: p.TensorDesc
    arena_bytes: int = 0
    cpu_hz: int = 0

    def __call__(self, data: bytes) -> Inference:
        raise NotImplementedError

    def close(self) -> None:
        """Release the interpreter (and its child process)."""


class LiteRTRunner(ModelRunner):
    runtime = "litert"

    def __init__(self, model: Path) -> None:
        try:
            interpreter, _ = load_interpreter(model, backend="litert", edgetpu="off")
        except InferenceFailed as exc:
            raise RuntimeUnavailable(str(exc)) from exc
        except (ValueError, RuntimeError) as exc:
            raise RuntimeUnavailable(f"LiteRT cannot load {model}: {str(exc).strip().splitlines()[0]}") from exc
        self.cpu_hz = cpu_hz()
        self._runner = InterpreterRunner(interpreter, self.cpu_hz)
        self.input, self.output = self._runner.input, self._runner.output

    def __call__(self, data: bytes) -> Inference:
        return self._runner(data)


def _read_exact(stream: BinaryIO, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = stream.read(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return bytes(data)


def _send_msg(stream: BinaryIO, payload: bytes) -> None:
    stream.write(struct.pack("<I", len(payload)) + payload)
    stream.flush()


def _recv_msg(stream: BinaryIO) -> bytes:
    (length,) = struct.unpack("<I", _read_exact(stream, 4))
    return _read_exact(stream, length)


class TflmRunner(ModelRunner):
    """TensorFlow Lite Micro in a child process; a crash becomes InferenceFailed with the child's stderr."""

    runtime = "tflm"

    def __init__(self, model: Path) -> None:
        if importlib.util.find_spec("tflite_micro") is None:   # say which extra before a child dies of it
            raise RuntimeUnavailable("TFLite Micro (tflite_micro) is not installed: pip install 'edgemnv2[runtime]'")
        self._stderr = tempfile.TemporaryFile()
        self._lock = threading.Lock()
        self._reported = False
        self._proc = subprocess.Popen([sys.executable, "-m", "edgemnv2.serial.runners", str(model)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr)
        try:
            hello = json.loads(_recv_msg(self._proc.stdout))
        except EOFError:
            raise RuntimeUnavailable(f"TFLite Micro cannot load {model}: {self._death()}") from None
        if "error" in hello:
            self.close()
            raise RuntimeUnavailable(f"TFLite Micro cannot load {model}: {hello['error']}")
        self.input = p.TensorDesc(**{**hello["input"], "shape": tuple(hello["input"]["shape"])})
        self.output = p.TensorDesc(**{**hello["output"], "shape": tuple(hello["output"]["shape"])})
        self.arena_bytes = hello["arena_bytes"]
        self.cpu_hz = cpu_hz()

    def _failed(self) -> InferenceFailed:
        """The child is gone: say so once on stderr (the simulator keeps serving), fail this input."""
        message = self._death()
        if not self._reported:
            self._reported = True
            print(f"board-sim: {message}; every further input gets ERROR runtime", file=sys.stderr, flush=True)
        return InferenceFailed(message)

    def _death(self) -> str:
        """Why the child is gone: its exit status and the last line it wrote on stderr."""
        code = self._proc.wait()
        self._stderr.seek(0)
        lines = [line for line in self._stderr.read().decode("utf-8", "replace").splitlines() if line.strip()]
        status = f"signal {-code}" if code < 0 else f"exit code {code}"
        return f"the TFLite Micro process died ({status})" + (f": {lines[-1].strip()}" if lines else "")

    def __call__(self, data: bytes) -> Inference:
        with self._lock:
            if self._proc.poll() is not None:
                raise self._failed()
            try:
                _send_msg(self._proc.stdin, data)
                reply = _recv_msg(self._proc.stdout)
            except (EOFError, BrokenPipeError):
                raise self._failed() from None
        status, micros = struct.unpack_from("<BQ", reply)
        body = reply[9:]
        if status != 0:
            raise InferenceFailed(body.decode("utf-8", "replace"))
        return Inference(body, micros, micros * self.cpu_hz // 1_000_000)

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._stderr.close()


def open_runner(runtime: str, model: Path) -> ModelRunner:
    """The runner for a runtime name as a board reports it in INFO (`litert+edgetpu` compares as litert)."""
    base = runtime.split("+")[0]
    if base == "tflm":
        return TflmRunner(model)
    if base in ("litert", "tflite_runtime"):
        return LiteRTRunner(model)
    raise RuntimeUnavailable(f"no host runner for runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")


# ---------------------------------------------------------------------- the child process

def _tflm_detail(detail: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    quant = detail.get("quantization_parameters") or {}
    scales, zeros = quant.get("scales", []), quant.get("zero_points", [])
    return {"dtype": np.dtype(detail["dtype"]).name, "shape": [int(d) for d in detail["shape"]],
            "scale": float(scales[0]) if len(scales) else 0.0, "zero_point": int(zeros[0]) if len(zeros) else 0}


def _arena_bytes(interpreter: Any) -> int:
    """Parse `print_allocations()` (C code writing to fd 1) for the arena total."""
    with tempfile.TemporaryFile() as capture:
        saved = os.dup(1)
        os.dup2(capture.fileno(), 1)
        try:
            interpreter.print_allocations()
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        capture.seek(0)
        match = re.search(rb"Arena allocation total (\d+) bytes", capture.read())
    return int(match.group(1)) if match else 0


def _child(model: str) -> None:
    import numpy as np

    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything the C++ side prints must not corrupt our replies
    stdin = sys.stdin.buffer
    try:
        from tflite_micro import runtime

        interpreter = runtime.Interpreter.from_file(model)
        details_in, details_out = interpreter.get_input_details(0), interpreter.get_output_details(0)
        hello = {"input": _tflm_detail(details_in), "output": _tflm_detail(details_out),
                 "arena_bytes": _arena_bytes(interpreter)}
    except Exception as exc:  # report any load failure to the parent as data
        _send_msg(out, json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode())
        return
    _send_msg(out, json.dumps(hello).encode())
    dtype, shape = np.dtype(details_in["dtype"]), tuple(details_in["shape"])
    while True:
        try:
            data = _recv_msg(stdin)
        except EOFError:
            return
        try:
            interpreter.set_input(np.frombuffer(data, dtype=dtype).reshape(shape), 0)
            start = time.perf_counter_ns()
            interpreter.invoke()
            elapsed = time.perf_counter_ns() - start
            output = interpreter.get_output(0)
            _send_msg(out, struct.pack("<BQ", 0, elapsed // 1000) + output.tobytes())
        except Exception as exc:  # the parent turns this into ERROR runtime
            _send_msg(out, struct.pack("<BQ", 1, 0) + f"{type(exc).__name__}: {exc}".encode())


if __name__ == "__main__":
    _child(sys.argv[1])
