"""Empirical bias correction (Nagel et al., ICCV 2019, section 4.2, with measured input means).

Rounding a layer's weights to int8 shifts the mean of its output: E[(Q(W) - W) x] = (Q(W) - W) E[x]
is not zero when the rounding errors of a channel's weights do not cancel against its input's mean
(post-ReLU inputs have large positive means). With per-tensor weights the shift is large for the
channels whose weights span a few steps of the shared grid. Subtracting it from the bias removes it.

E[x] per input channel is measured on the calibration images with the float model; Q(W) is the same symmetric int8 rounding the TFLite
quantizer applies (per output channel, or per tensor).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from edgemnv2_converters.fold import Unit


@dataclasses.dataclass
class BiasCorrectionReport:
    layers: int
    mean_abs_shift: float  # mean |bias change| over every corrected channel
    max_abs_shift: float


def quantize_weights(kernel: np.ndarray, channel_axis: int | None) -> np.ndarray:
    """Symmetric int8 [-127, 127] fake quantization, per channel along `channel_axis` or per tensor (None)."""
    if channel_axis is None:
        peak = np.abs(kernel).max()
        scale = np.float64(peak / 127.0) if peak > 0 else 1.0
    else:
        moved = np.moveaxis(np.abs(kernel), channel_axis, -1)
        peak = moved.reshape(-1, moved.shape[-1]).max(axis=0)
        shape = [1] * kernel.ndim
        shape[channel_axis] = -1
        scale = np.where(peak > 0, peak / 127.0, 1.0).reshape(shape)
    return np.clip(np.round(kernel / scale), -127, 127) * scale


def _channel_axis(unit: Unit) -> int:
    """The output-channel axis TFLite quantizes per channel, in the Keras kernel layout."""
    return 2 if unit.kind == "DepthwiseConv2D" else unit.kernel.ndim - 1


def output_shift(unit: Unit, input_mean: np.ndarray, per_tensor: bool) -> np.ndarray:
    """E[(Q(W) - W) x] per output channel, for inputs with per-channel mean `input_mean`."""
    kernel = unit.kernel.astype(np.float64)
    delta = quantize_weights(kernel, None if per_tensor else _channel_axis(unit)) - kernel
    if unit.kind == "DepthwiseConv2D":
        return delta[..., 0].reshape(-1, delta.shape[2]).sum(axis=0) * input_mean
    if unit.kind == "Dense":
        return input_mean @ delta
    return np.einsum("hwio,i->o", delta, input_mean)


def input_means(model: Any, units: list[Unit], images: np.ndarray, batch: int = 10) -> dict[str, np.ndarray]:
    """Per-channel mean of every unit's input over `images` (the padded tensor for padded convs)."""
    import keras

    probe = keras.Model(model.inputs, [u.conv.input for u in units])
    sums = [np.zeros(u.conv.input.shape[-1], np.float64) for u in units]
    count = 0
    for start in range(0, len(images), batch):
        results = probe([images[start:start + batch]], training=False)
        results = results if isinstance(results, (list, tuple)) else [results]
        for i, r in enumerate(results):
            r = np.asarray(r, np.float64)
            sums[i] += r.reshape(-1, r.shape[-1]).mean(axis=0) * len(r)
        count += len(results[0])
    return {u.name: s / count for u, s in zip(units, sums)}


def correct_biases(model: Any, units: list[Unit], images: np.ndarray, per_tensor: bool) -> BiasCorrectionReport:
    """Subtract each unit's expected weight-rounding shift from its bias, in place."""
    means = input_means(model, units, images)
    shifts = []
    for unit in units:
        shift = output_shift(unit, means[unit.name], per_tensor)
        unit.set(unit.kernel, unit.bias - shift)
        shifts.append(np.abs(shift))
    flat = np.concatenate(shifts) if shifts else np.zeros(1)
    return BiasCorrectionReport(layers=len(units), mean_abs_shift=float(flat.mean()), max_abs_shift=float(flat.max()))
