"""Activation ranges for full-integer quantization, and getting them into the TFLite model.

TFLite's converter records the min/max of every activation over the calibration images and quantizes
with exactly those ranges. One outlier pixel in one image can stretch a range several-fold and cost
every other value resolution. This module uses the converter's own two halves separately:

1. `calibrate_float_model`: the converter's calibrate-only path (`_experimental_calibrate_only`) gives a
   float TFLite model whose activation tensors carry the recorded min/max.
2. `activation_ranges` + `write_ranges`: one pass of that float model over the calibration images keeps a
   histogram of each recorded activation that grows with its values (`GrowingHistogram`, no pass to find
   the span first); a range is chosen per tensor (minmax | percentile | mse; the search scores every
   candidate at once) and written over the recorded min/max in place (byte patch: the rest of the
   flatbuffer stays identical). (Calibrating the converter on one image and taking min/max from this pass
   instead was tried: for 3 of 66 tensors of MobileNetV2 0.35/96 the two disagree, so the converter's
   min/max stay.)
3. `quantize_calibrated`: the converter's own quantizer (`mlir_quantize`, the same call the converter
   makes after calibrating) for int8 activations, or the calibration wrapper's quantizer for 16-bit
   activations (16x8), which is what the converter itself uses for int16. Nothing falls back to float.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from edgemnv2.tflite import load_graph
from edgemnv2.tflite.writer import patch_ranges, with_outputs

METHODS = ("minmax", "percentile", "mse")
HIST_BINS = 4096  # a power of two: doubling a histogram's span merges bin pairs exactly
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


class GrowingHistogram:
    """A HIST_BINS histogram that doubles its span (merging bin pairs) to hold new values; exact min/max too.

    Non-negative tensors (ReLU outputs) span [0, R], signed ones [-R, R]; R is a power of two times the first
    image's peak, so every merge maps whole old bins onto new ones and no pass is needed to find the range.
    """

    def __init__(self) -> None:
        self.lo = self.hi = 0.0
        self.min, self.max = np.inf, -np.inf
        self.counts = np.zeros(HIST_BINS, np.int64)

    def add(self, values: np.ndarray) -> None:
        low, high = float(values.min()), float(values.max())
        self.min, self.max = min(self.min, low), max(self.max, high)
        if self.hi <= self.lo:  # first values, or only zeros so far
            peak = max(abs(low), abs(high))
            if peak == 0.0:  # moved to the bin of 0 once a span exists (_rebin)
                self.counts[0] += values.size
                return
            self._rebin(-peak if low < 0 else 0.0, peak)
        while low < self.lo or high > self.hi:
            if low < 0 <= self.lo:  # a non-negative histogram meets a negative value: [0, R] -> [-R, R]
                self._rebin(-self.hi, self.hi)
            else:
                self._rebin(self.lo * 2.0, self.hi * 2.0)
        index = (values.ravel() - np.float32(self.lo)) * np.float32(HIST_BINS / (self.hi - self.lo))
        np.clip(index, 0, HIST_BINS - 1, out=index)
        self.counts += np.bincount(index.astype(np.int32), minlength=HIST_BINS)

    def _rebin(self, lo: float, hi: float) -> None:
        if self.hi > self.lo and self.counts.any():
            old_edges = self.lo + np.arange(HIST_BINS) * ((self.hi - self.lo) / HIST_BINS)
            new = np.floor((old_edges - lo) * (HIST_BINS / (hi - lo)) + 1e-6).astype(np.int64)
            counts = np.zeros(HIST_BINS, np.int64)
            np.add.at(counts, np.clip(new, 0, HIST_BINS - 1), self.counts)
            self.counts = counts
        elif self.counts.any():  # only zeros counted so far: they go to the bin holding 0
            zeros = int(self.counts.sum())
            self.counts = np.zeros(HIST_BINS, np.int64)
            self.counts[int(-lo * HIST_BINS / (hi - lo)) if lo < 0 else 0] = zeros
        self.lo, self.hi = lo, hi

    def centers(self) -> np.ndarray:
        return self.lo + (np.arange(HIST_BINS) + 0.5) * ((self.hi - self.lo) / HIST_BINS)


def _add_all(hists: list[GrowingHistogram], values: list[np.ndarray]) -> None:
    """Fill each histogram with its tensor's values of one image (the worker thread's job)."""
    for hist, value in zip(hists, values):
        hist.add(value)


def _statistics(model_bytes: bytes, images: np.ndarray, tensors: Iterable[int]) -> dict[int, GrowingHistogram]:
    """One pass of the float model over `images`: histogram and min/max of every tensor in `tensors`.

    The tensors are made model outputs so XNNPACK can run the graph (`with_outputs`), and one image's
    histograms are filled in a second thread while the interpreter (which releases the GIL) runs the
    next: this pass is what the default adds to the converter's own time.
    """
    from ai_edge_litert.interpreter import Interpreter

    indices = list(dict.fromkeys(tensors))
    interpreter = Interpreter(model_content=with_outputs(model_bytes, indices), num_threads=1)
    interpreter.allocate_tensors()
    input_index = interpreter.get_input_details()[0]["index"]
    hists = [GrowingHistogram() for _ in indices]
    with ThreadPoolExecutor(max_workers=1) as pool:
        filling: Future[None] | None = None
        for image in images:
            interpreter.set_tensor(input_index, np.asarray(image, np.float32)[None])
            interpreter.invoke()
            values = [interpreter.get_tensor(index) for index in indices]  # copies: the next invoke may run
            if filling is not None:
                filling.result()  # at most one image waits; a failure surfaces here
            filling = pool.submit(_add_all, hists, values)
        if filling is not None:
            filling.result()
    return dict(zip(indices, hists))


def _percentile_range(hist: GrowingHistogram, percentile: float) -> tuple[float, float]:
    """Clip the top (and, for signed tensors, bottom) (100 - percentile)% of values."""
    lo, hi = hist.min, hist.max
    edges = np.linspace(hist.lo, hist.hi, HIST_BINS + 1)
    cdf = np.cumsum(hist.counts) / max(hist.counts.sum(), 1)
    tail = 1.0 - percentile / 100.0
    new_hi = min(float(edges[min(np.searchsorted(cdf, 1.0 - tail) + 1, HIST_BINS)]), hi)
    new_lo = max(float(edges[np.searchsorted(cdf, tail)]), lo) if lo < 0 else lo
    return min(new_lo, 0.0) if lo < 0 else lo, max(new_hi, 0.0)


def _mse_range(hist: GrowingHistogram, levels: int = 256) -> tuple[float, float]:
    """The clipping range (a fraction of the recorded min/max) that minimises the expected quantization error.

    Every candidate (91 upper x 19 lower fractions for signed tensors, and the recorded range) is scored at
    once from cumulative sums: clipping error (value − range end)² for the values outside, step²/12
    rounding error for those inside.
    """
    lo, hi = hist.min, hist.max
    centers = hist.centers()
    his = hi * np.linspace(0.1, 1.0, 91)
    los = lo * np.linspace(0.1, 1.0, 19) if lo < 0 else np.array([lo])
    cand_lo, cand_hi = (a.ravel() for a in np.meshgrid(los, his, indexing="ij"))
    cand_lo, cand_hi = np.append(cand_lo, lo), np.append(cand_hi, hi)
    weights = hist.counts.astype(np.float64)
    cum = np.concatenate([[0.0], np.cumsum(weights)])
    cum_x = np.concatenate([[0.0], np.cumsum(weights * centers)])
    cum_x2 = np.concatenate([[0.0], np.cumsum(weights * centers * centers)])
    above = np.searchsorted(centers, cand_hi, side="right")  # bins whose centre lies above the candidate's top
    below = np.searchsorted(centers, cand_lo, side="left")
    n_above, x_above, x2_above = cum[-1] - cum[above], cum_x[-1] - cum_x[above], cum_x2[-1] - cum_x2[above]
    n_below, x_below, x2_below = cum[below], cum_x[below], cum_x2[below]
    clip = (x2_above - 2 * cand_hi * x_above + cand_hi ** 2 * n_above
            + x2_below - 2 * cand_lo * x_below + cand_lo ** 2 * n_below)
    step = (cand_hi - cand_lo) / (levels - 1)
    err = clip + (cum[-1] - n_above - n_below) * step * step / 12.0
    index = len(err) - 1 - int(np.argmin(err[::-1]))  # ties keep the recorded range (the last candidate)
    return float(cand_lo[index]), float(cand_hi[index])


def _input_dependent(graph: Any) -> set[int]:
    """Tensors computed from the model input. The others (e.g. weights the float model derives from
    constants) carry ranges that no image changes: they keep what the converter recorded."""
    reached = set(graph.inputs)
    for op in graph.ops:  # ops are in execution order
        if any(i in reached for i in op.inputs if i >= 0):
            reached.update(o for o in op.outputs if o >= 0)
    return reached


def activation_ranges(model_bytes: bytes, images: np.ndarray, method: str) -> list[TensorRange]:
    """Choose a range for every activation a calibrated model records, from one pass over `images`.

    `recorded` is the min/max the converter's calibration stored; the model input keeps it (its range is
    the preprocessing's, not a statistic).
    """
    if method not in METHODS:
        raise ValueError(f"calibration method must be one of {', '.join(METHODS)}, got {method!r}")
    recorded = _recorded_tensors(model_bytes)
    graph = load_graph(model_bytes, what="the calibrated model")
    fixed = set(graph.inputs)
    varying = _input_dependent(graph)
    if method == "minmax":
        return [TensorRange(n, (lo, hi), (lo, hi)) for n, lo, hi in recorded.values()]
    hists = _statistics(model_bytes, images, [i for i in recorded if i in varying])
    ranges = []
    for index, (name, lo, hi) in recorded.items():
        hist = hists.get(index)
        if hist is not None:  # the histogram's values, within the converter's min/max
            hist.min, hist.max = min(hist.min, lo), max(hist.max, hi)
        if hist is None or method == "minmax" or index in fixed or hi <= lo:
            chosen = (lo, hi)
        elif method == "percentile":
            chosen = _percentile_range(hist, DEFAULT_PERCENTILE)
        else:
            chosen = _mse_range(hist)
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
