"""One small interpreter interface over LiteRT, tflite-runtime and TensorFlow Lite.

The same inference code must run on a Raspberry Pi that has only `ai-edge-litert` (or the older
`tflite-runtime`) and numpy, so nothing here imports TensorFlow unless it is the last backend left.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgemnv2.errors import ModelError, RuntimeUnavailable
from edgemnv2.tflite import read_tflite

# backend name -> module holding `Interpreter`, tried in this order for "auto"
BACKENDS: dict[str, str] = {
    "litert": "ai_edge_litert.interpreter",
    "tflite_runtime": "tflite_runtime.interpreter",
    "tensorflow": "tensorflow.lite",
}


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    scale: float  # 0.0 when the tensor is not quantized
    zero_point: int

    @property
    def quantized(self) -> bool:
        return self.scale != 0.0 and np.issubdtype(self.dtype, np.integer)


@contextlib.contextmanager
def silenced_output(enabled: bool = True) -> Iterator[None]:
    """Send fd 1 and 2 to /dev/null while native code runs: TensorFlow, Keras's export, MLIR and LiteRT
    print start-up and progress lines from C++ that no log level turns off. Python exceptions still
    propagate (they are printed after the descriptors are restored)."""
    if not enabled:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        # Python-level prints too, for when sys.stdout is not fd 1 (click's test runner, notebooks)
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def _interpreter_class(backend: str) -> tuple[str, Any]:
    names = list(BACKENDS) if backend == "auto" else [backend]
    if backend != "auto" and backend not in BACKENDS:
        raise RuntimeUnavailable(f"unknown runtime backend {backend!r}; choose auto, " + ", ".join(BACKENDS))
    for name in names:
        try:
            module = importlib.import_module(BACKENDS[name])
        except ImportError:
            continue
        return name, module.Interpreter
    raise RuntimeUnavailable(
        "no TFLite interpreter found: pip install 'edgemnv2[runtime]' (LiteRT; tflite-runtime or tensorflow also do)"
        if backend == "auto" else f"runtime backend {backend!r} is not installed ({BACKENDS[backend]})")


def check_tflite_file(path: Path) -> bytes:
    """Read a .tflite file, raising ModelError with one line when it is missing or not a TFLite flatbuffer."""
    return read_tflite(path)


def quantize_values(values: np.ndarray, scale: float, zero_point: int, dtype: np.dtype) -> np.ndarray:
    """Floats → `dtype` integers as LiteRT's optimized QUANTIZE kernel maps them: times the float32
    reciprocal of the scale, rounded half to even, plus the zero point, clamped.

    Why that kernel's rule, bit for bit: with [-1, 1] preprocessing and the converter's 2/255 input scale
    every pixel sits on a rounding tie, so the rule decides the integers a model sees (and which near-tie
    images its top-1 flips on, benchmarks/agreement_noise.py). This way an int8-input model fed from here
    and a float-input model (its own QUANTIZE op) see the same integers. TFLite Micro's reference kernel
    divides and rounds half away from zero instead.
    """
    limits = np.iinfo(dtype)
    q = np.multiply(values, np.float32(1.0 / float(scale)), dtype=np.float32)  # one new buffer,
    np.rint(q, out=q)                                                          # then in place
    q += zero_point
    np.clip(q, limits.min, limits.max, out=q)
    return q.astype(dtype)


class TFLiteModel:
    """A loaded TFLite model with one input and one output (classification), run one image at a time."""

    def __init__(self, interpreter: Any, backend: str, path: Path):
        self._interpreter = interpreter
        self.backend = backend
        self.path = path
        inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(f"{path} has {len(inputs)} inputs and {len(outputs)} outputs; "
                             "edgemnv2 runs single-input single-output classifiers")
        self.input = _tensor_info(inputs[0])
        self.output = _tensor_info(outputs[0])
        self._input_index = inputs[0]["index"]
        self._output_index = outputs[0]["index"]

    def quantize_input(self, float_images: np.ndarray) -> np.ndarray:
        """Float images → the input tensor's dtype using its scale/zero point (a cast for float inputs)."""
        info = self.input
        if not info.quantized:
            return np.asarray(float_images, dtype=info.dtype)
        return quantize_values(float_images, info.scale, info.zero_point, info.dtype)

    def dequantize_output(self, raw: np.ndarray) -> np.ndarray:
        info = self.output
        if not info.quantized:
            return np.asarray(raw, dtype=np.float32)
        return ((raw.astype(np.float32) - info.zero_point) * info.scale).astype(np.float32)

    def invoke(self, raw_input: np.ndarray) -> np.ndarray:
        """Run one batch-of-1 input already in the input dtype; returns a copy of the raw output."""
        self._interpreter.set_tensor(self._input_index, raw_input)
        self._interpreter.invoke()
        return self._interpreter.get_tensor(self._output_index)

    def warm_up(self) -> None:
        """One throw-away invoke: XNNPACK packs weights on the first call, which would skew timings."""
        self.invoke(np.zeros(self.input.shape, dtype=self.input.dtype))

    def run_raw(self, raw_inputs: np.ndarray, progress: bool = False) -> np.ndarray:
        """(N, H, W, 3) inputs already in the input dtype → (N, classes) raw outputs, one invoke per image."""
        outputs = np.empty((len(raw_inputs), int(np.prod(self.output.shape[1:]))), dtype=self.output.dtype)
        indices: Any = range(len(raw_inputs))
        if progress:  # tqdm only when asked: a board may have nothing but a runtime and numpy
            from tqdm import tqdm

            indices = tqdm(indices, desc="tflite", unit="img", leave=False)
        for i in indices:
            outputs[i] = self.invoke(raw_inputs[i:i + 1]).reshape(-1)
        return outputs

    def predict(self, float_images: np.ndarray, progress: bool = False) -> np.ndarray:
        """(N, H, W, 3) float images → (N, classes) float32 outputs."""
        return self.dequantize_output(self.run_raw(self.quantize_input(float_images), progress))


def _tensor_info(detail: dict) -> TensorInfo:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return TensorInfo(name=detail["name"], shape=tuple(int(d) for d in detail["shape"]),
                      dtype=np.dtype(detail["dtype"]), scale=float(scale), zero_point=int(zero_point))


def open_model(path: Path, backend: str = "auto", num_threads: int | None = None) -> TFLiteModel:
    """Load a .tflite file with the first available backend; ModelError (one line) if it is not a valid model."""
    path = Path(path)
    content = check_tflite_file(path)
    name, interpreter_cls = _interpreter_class(backend)
    try:
        # LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate" from C++; keep it for -v only
        with silenced_output(not logging.getLogger().isEnabledFor(logging.INFO)):
            interpreter = interpreter_cls(model_content=content, num_threads=num_threads)
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path} cannot be loaded by {name}: {first}") from exc
    return TFLiteModel(interpreter, name, path)
