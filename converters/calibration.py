"""Activation ranges for full-integer quantization, and getting them into the TFLite model.

TFLite's converter records the min/max of every activation over the calibration images and quantizes
with exactly those ranges. One outlier pixel in one image can stretch a range several-fold and cost
every other value resolution. This module uses the converter's own two halves separately:

1. `calibrate_float_model`: the converter's calibrate-only path (`_experimental_calibrate_only`) gives a
   float TFLite model whose activation tensors carry the recorded min/max.
2. `activation_ranges` + `write_ranges`: run that float model on the same images, histogram every
   recorded activation inside its min/max, choose a range per tensor (minmax | percentile | mse) and
   overwrite the recorded min/max in place (byte patch: the rest of the flatbuffer stays identical).
3. `quantize_calibrated`: the converter's own quantizer (`mlir_quantize`, the same call the converter
   makes after calibrating) for int8 activations, or the calibration wrapper's quantizer for 16-bit
   activations (16x8), which is what the converter itself uses for int16. Nothing falls back to float.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from edgemnv2.tflite import load_graph
from edgemnv2.tflite.writer import patch_ranges

METHODS = ("minmax", "percentile", "mse")
HIST_BINS = 2048
DEFAULT_PERCENTILE = 99.999


@dataclasses.dataclass(frozen=True)
class TensorRange:
    """The range chosen for one activation tensor, next to the one min/max calibration recorded."""

    name: str
    recorded: tuple[float, float]
    chosen: tuple[float, float]

    @property
    def shrink(self) -> float:
        """Recorded width / chosen width (1.0 = unchanged)."""
        width = self.chosen[1] - self.chosen[0]
        return (self.recorded[1] - self.recorded[0]) / width if width > 0 else 1.0


def representative(images: np.ndarray) -> Callable[[], Iterable[list[np.ndarray]]]:
    """The converter's representative-dataset callable over preprocessed images (N, H, W, C)."""

    def gen() -> Iterable[list[np.ndarray]]:
        for image in images:
            yield [np.asarray(image, np.float32)[None]]

    return gen


def calibrate_float_model(keras_model: Any, images: np.ndarray) -> bytes:
    """Float TFLite model whose activations carry min/max recorded on `images` (the converter's calibrate-only path)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(keras_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative(images)
    converter._experimental_calibrate_only = True  # noqa: SLF001 - the documented-in-source debug path
    return bytes(converter.convert())


def _recorded_tensors(model_bytes: bytes) -> dict[int, tuple[str, float, float]]:
    """Subgraph-0 tensor index -> (name, min, max) for every activation that calibration recorded."""
    found = {}
    for tensor in load_graph(model_bytes, what="the calibrated model").tensors:
        quant = tensor.quantization
        if quant is None or len(quant.min) != 1 or len(quant.max) != 1 or tensor.constant:
            continue  # not recorded, or a constant rather than an activation
        found[tensor.index] = (tensor.name, quant.min[0], quant.max[0])
    return found


def recorded_ranges(model_bytes: bytes) -> dict[str, tuple[float, float]]:
    """Tensor name -> the (min, max) stored in a calibrated model."""
    return {name: (lo, hi) for name, lo, hi in _recorded_tensors(model_bytes).values()}


def _histograms(model_bytes: bytes, images: np.ndarray,
                recorded: dict[int, tuple[str, float, float]]) -> dict[int, np.ndarray]:
    """Per recorded tensor, a HIST_BINS histogram of its values over `images`, spanning its recorded min..max."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_content=model_bytes, experimental_preserve_all_tensors=True,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    input_index = interpreter.get_input_details()[0]["index"]
    hists = {i: np.zeros(HIST_BINS, np.int64) for i in recorded}
    for image in images:
        interpreter.set_tensor(input_index, np.asarray(image, np.float32)[None])
        interpreter.invoke()
        for index, (_, lo, hi) in recorded.items():
            values = interpreter.get_tensor(index).ravel()
            if hi <= lo:
                continue
            bins = np.clip(((values - lo) * (HIST_BINS / (hi - lo))).astype(np.int64), 0, HIST_BINS - 1)
            hists[index] += np.bincount(bins, minlength=HIST_BINS)
    return hists


def _percentile_range(hist: np.ndarray, lo: float, hi: float, percentile: float) -> tuple[float, float]:
    """Clip the top (and, for signed tensors, bottom) (100 - percentile)% of values."""
    edges = np.linspace(lo, hi, HIST_BINS + 1)
    cdf = np.cumsum(hist) / max(hist.sum(), 1)
    tail = 1.0 - percentile / 100.0
    new_hi = float(edges[min(np.searchsorted(cdf, 1.0 - tail) + 1, HIST_BINS)])
    new_lo = float(edges[np.searchsorted(cdf, tail)]) if lo < 0 else lo
    return min(new_lo, 0.0) if lo < 0 else lo, max(new_hi, 0.0)


def _quant_mse(hist: np.ndarray, centers: np.ndarray, lo: float, hi: float, levels: int) -> float:
    """Expected squared error of fake-quantizing the histogrammed values to `levels` steps over [lo, hi]."""
    step = (hi - lo) / (levels - 1)
    clipped = np.clip(centers, lo, hi)
    inside = (centers >= lo) & (centers <= hi)
    err = (centers - clipped) ** 2 + np.where(inside, step * step / 12.0, 0.0)
    return float((hist * err).sum())


def _mse_range(hist: np.ndarray, lo: float, hi: float, levels: int = 256) -> tuple[float, float]:
    """The clipping range (a fraction of the recorded one) that minimises the expected quantization error."""
    edges = np.linspace(lo, hi, HIST_BINS + 1)
    centers = (edges[:-1] + edges[1:]) / 2
    best, best_err = (lo, hi), _quant_mse(hist, centers, lo, hi, levels)
    for frac_hi in np.linspace(0.1, 1.0, 91):
        lo_fracs = np.linspace(0.1, 1.0, 19) if lo < 0 else [1.0]
        for frac_lo in lo_fracs:
            cand = (lo * frac_lo, hi * frac_hi)
            err = _quant_mse(hist, centers, *cand, levels)
            if err < best_err:
                best, best_err = cand, err
    return float(best[0]), float(best[1])


def activation_ranges(model_bytes: bytes, images: np.ndarray, method: str) -> list[TensorRange]:
    """Choose a range for every activation a calibrated model recorded.

    The model input keeps its recorded min/max (its range is the preprocessing's, not a statistic).
    """
    if method not in METHODS:
        raise ValueError(f"calibration method must be one of {', '.join(METHODS)}, got {method!r}")
    recorded = _recorded_tensors(model_bytes)
    fixed = set(load_graph(model_bytes, what="the calibrated model").inputs)
    if method == "minmax":
        return [TensorRange(n, (lo, hi), (lo, hi)) for n, lo, hi in recorded.values()]
    hists = _histograms(model_bytes, images, recorded)
    ranges = []
    for index, (name, lo, hi) in recorded.items():
        if index in fixed or hi <= lo:
            chosen = (lo, hi)
        elif method == "percentile":
            chosen = _percentile_range(hists[index], lo, hi, DEFAULT_PERCENTILE)
        else:
            chosen = _mse_range(hists[index], lo, hi)
        ranges.append(TensorRange(name, (lo, hi), chosen))
    return ranges


def write_ranges(model_bytes: bytes, ranges: Iterable[TensorRange]) -> bytes:
    """A copy of a calibrated model with the recorded min/max of the named tensors replaced (in place, same layout)."""
    chosen = {r.name: r.chosen for r in ranges}
    recorded = _recorded_tensors(model_bytes)
    return patch_ranges(model_bytes, {index: chosen[name] for index, (name, _, _) in recorded.items() if name in chosen})


def quantize_calibrated(calibrated: bytes, *, per_tensor: bool = False, activations: str = "int8",
                        io_type: str = "int8") -> bytes:
    """Full-integer model from a calibrated float model, using the ranges stored in it.

    `activations="int16"` is TFLite's 16x8 mode (int16 activations, int8 weights, int64 biases): the
    whole graph, because neither of TFLite's quantizers mixes int8 and int16 activations per layer.
    """
    import tensorflow as tf
    from tensorflow.lite.python import convert as tfl_convert
    from tensorflow.lite.python import util as tfl_util

    io_dtype = {"int8": tf.int8, "uint8": tf.uint8, "float32": tf.float32, "int16": tf.int16}[io_type]
    if activations == "int8":
        quantized = tfl_convert.mlir_quantize(calibrated, disable_per_channel=per_tensor,
                                              input_data_type=tf.float32, output_data_type=tf.float32)
    elif activations == "int16":
        from tensorflow.lite.python.optimize import calibrator

        wrapper = calibrator.Calibrator(calibrated)._calibrator  # noqa: SLF001 - the converter's own 16x8 path
        quantized = wrapper.QuantizeModel(np.dtype(np.float32).num, np.dtype(np.float32).num, False,
                                          np.dtype(np.int16).num, np.dtype(np.int64).num, per_tensor, False)
    else:
        raise ValueError(f"activations must be int8 or int16, got {activations!r}")
    if io_dtype != tf.float32:
        quantized = tfl_util.modify_model_io_type(quantized, io_dtype, io_dtype)
    return bytes(quantized)
