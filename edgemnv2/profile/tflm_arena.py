"""Measure the tensor arena the `tflite-micro` wheel really allocates for a model.

The wheel's interpreter records every arena allocation (RecordingMicroAllocator) and prints them from
C++ with `print_allocations()`. It also calls abort() on some quantization parameters and refuses
models TFLM cannot run (uint8 weights, float-weight "hybrid" ops), so the measurement always runs in
a child process: an abort there becomes a one-line `TFLMRejected` here instead of killing the caller
(a CLI run or pytest).
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from edgemnv2.errors import RuntimeUnavailable
from edgemnv2.tflite import read_tflite

_PAGE = 4096
_MIN_ARENA = 8 << 20
_TIMEOUT_S = 120
_TOTALS = re.compile(r"Arena allocation (total|head|tail) (\d+) bytes")
_SECTION = re.compile(r"'(.+?)' used (\d+) bytes with alignment overhead \(requested (\d+) bytes for (\d+)")


class TFLMRejected(RuntimeUnavailable):
    """TFLite Micro refused or aborted on the model; the message carries TFLM's own reason."""


@dataclass(frozen=True)
class MeasuredArena:
    """What RecordingMicroAllocator reported after AllocateTensors() (bytes)."""

    total_bytes: int
    nonpersistent_bytes: int     # "head": planned activations + scratch
    persistent_bytes: int        # "tail"
    arena_size: int              # arena handed to the interpreter (a multiple of 4096, so its end is aligned)
    sections: dict[str, int] = field(default_factory=dict)  # recorded tail sections, bytes incl. alignment


def default_arena_size(model_bytes: int) -> int:
    """An arena comfortably larger than any MobileNet-class plan; page-sized so the tail starts 16-aligned."""
    size = max(10 * model_bytes, _MIN_ARENA)
    return (size + _PAGE - 1) // _PAGE * _PAGE


def measure_arena(model_path: Path | str, arena_size: int | None = None, timeout_s: float = _TIMEOUT_S) -> MeasuredArena:
    """Run the model through the tflite-micro wheel in a subprocess and return its recorded arena."""
    path = Path(model_path)
    size = arena_size or default_arena_size(len(read_tflite(path)))
    cmd = [sys.executable, "-m", "edgemnv2.profile.tflm_arena", str(path), str(size)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise TFLMRejected(f"TFLite Micro did not finish allocating {path.name} within {timeout_s:.0f} s") from None
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise _rejection(path, proc.returncode, output, size)
    return _parse_allocations(output, size, path)


def _rejection(path: Path, returncode: int, output: str, size: int) -> RuntimeUnavailable:
    if "No module named 'tflite_micro'" in output:
        return RuntimeUnavailable("the tflite-micro package is not installed: pip install 'edgemnv2[runtime]'")
    reason = _tflm_reason(output)
    if returncode < 0:
        sig = signal.Signals(-returncode).name if -returncode in signal.Signals._value2member_map_ else str(-returncode)
        return TFLMRejected(f"TFLite Micro aborted ({sig}) while preparing {path.name}"
                            + (f": {reason}" if reason else "")
                            + "; its kernels cannot run this model's quantization parameters")
    if "too small" in output.lower() or "failed to allocate memory" in output.lower():
        return TFLMRejected(f"TFLite Micro needs more than the {size}-byte arena for {path.name}; "
                            "pass a larger arena_size")
    hint = ("; TFLM runs int8 models only and this one has uint8 or float weights (convert with "
            "`edgemnv2 convert`)" if "hybrid" in reason.lower() else "")
    return TFLMRejected(f"TFLite Micro rejected {path.name}: {reason or 'AllocateTensors failed'}{hint}")



def _tflm_reason(output: str) -> str:
    """TFLM's own error lines (kernel message, failing node): what it printed before any Python traceback."""
    before_traceback = output.split("Traceback (most recent call last)", 1)[0]
    lines = [line.strip() for line in before_traceback.splitlines()
             if line.strip() and not line.startswith("[RecordingMicroAllocator]")]
    # "tensorflow/lite/micro/kernels/conv_common.cc Hybrid models are not supported on TFLite Micro."
    cleaned = [re.sub(r"^\S+\.(cc|h)(:\d+)?\s+", "", line).rstrip(".") for line in lines[-3:]]
    return "; ".join(dict.fromkeys(cleaned))


def _parse_allocations(output: str, size: int, path: Path) -> MeasuredArena:
    totals = {name: int(value) for name, value in _TOTALS.findall(output)}
    if set(totals) != {"total", "head", "tail"}:
        raise TFLMRejected(f"TFLite Micro printed no allocation summary for {path.name}: {output.strip()[-200:]}")
    sections = {name: int(used) for name, used, _, _ in _SECTION.findall(output)}
    return MeasuredArena(total_bytes=totals["total"], nonpersistent_bytes=totals["head"],
                         persistent_bytes=totals["tail"], arena_size=size, sections=sections)


def _worker(model_path: str, arena_size: int) -> None:
    """Child process: allocate the model and print RecordingMicroAllocator's summary (C++ writes it)."""
    from tflite_micro import runtime

    data = Path(model_path).read_bytes()
    interpreter = runtime.Interpreter.from_bytes(data, arena_size=arena_size)
    interpreter.print_allocations()


if __name__ == "__main__":
    _worker(sys.argv[1], int(sys.argv[2]))
