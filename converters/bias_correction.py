"""Empirical bias correction (Nagel et al., ICCV 2019, section 4.2, with measured input means).

Rounding a layer's weights to int8 shifts the mean of its output: E[(Q(W) - W) x] = (Q(W) - W) E[x]
is not zero when the rounding errors of a channel's weights do not cancel against its input's mean
(post-ReLU inputs have large positive means). With per-tensor weights the shift is large for the
channels whose weights span a few steps of the shared grid. Subtracting it from the bias removes it.

E[x] per input channel is measured on the calibration images with the float model; Q(W) is the same symmetric int8 rounding the TFLite
quantizer applies (per output channel, or per tensor).

`sequential=True` corrects what each layer's output mean actually becomes once every earlier layer's weights
are rounded (and their biases corrected): the float model and a copy with rounded weights run side by side,
layer by layer, and at each unit's bias the copy's per-channel output mean is set to the float one. Through
ReLU6 and residual adds the rounding of earlier layers shifts means that the float E[x] does not see. With
per-tensor weights, together with equalization margin 1.75, it gained 1-2 held-out images and 4-5% KL on two
2-fold splits (alone it was mixed; docs/quantization.md); with per-channel weights, whose rounding errors are small, it did not help, so there
the float E[x] stays the default.

`rounded` gives the rounding the converter will apply where it is not nearest (AdaRound's learned integers):
both corrections then measure the shift of that rounding.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from edgemnv2_converters.fold import Unit, inbound_layer_names, fold_batch_norm

# The side-by-side walk keeps whole activation tensors of every image it uses: bound them to 100 images at 224 px
SEQUENTIAL_MAX_INPUT_VALUES = 100 * 224 * 224 * 3


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


def rounded_kernel(unit: Unit, per_tensor: bool, rounded: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
    """Q(W) of a unit: the kernel `rounded` gives for it (AdaRound's learned rounding, on the converter's grid),
    else the converter's nearest rounding."""
    if rounded is not None and unit.name in rounded:
        return np.asarray(rounded[unit.name], np.float64)
    return quantize_weights(unit.kernel.astype(np.float64), None if per_tensor else _channel_axis(unit))


def output_shift(unit: Unit, input_mean: np.ndarray, per_tensor: bool,
                 rounded: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
    """E[(Q(W) - W) x] per output channel, for inputs with per-channel mean `input_mean`."""
    kernel = unit.kernel.astype(np.float64)
    delta = rounded_kernel(unit, per_tensor, rounded) - kernel
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


def correct_biases(model: Any, units: list[Unit], images: np.ndarray, per_tensor: bool,
                   sequential: bool | None = None,
                   rounded: Mapping[str, np.ndarray] | None = None) -> BiasCorrectionReport:
    """Subtract each unit's expected weight-rounding shift from its bias, in place.

    `sequential` None: sequential with per-tensor weights, the float E[x] with per-channel weights (there
    sequential lowered the KL only 1% and cost one held-out image). `rounded` (unit name → kernel) is the
    rounding the converter will apply when it is not nearest (AdaRound's): the shifts are measured for it.
    The kernels themselves are left as they are.
    """
    if sequential is None:
        sequential = per_tensor
    if sequential:
        limit = max(1, SEQUENTIAL_MAX_INPUT_VALUES // int(np.prod(images.shape[1:])))
        return _correct_sequentially(model, units, images[:limit], per_tensor, rounded)
    means = input_means(model, units, images)
    shifts = []
    for unit in units:
        shift = output_shift(unit, means[unit.name], per_tensor, rounded)
        unit.set(unit.kernel, unit.bias - shift)
        shifts.append(np.abs(shift))
    flat = np.concatenate(shifts) if shifts else np.zeros(1)
    return BiasCorrectionReport(layers=len(units), mean_abs_shift=float(flat.mean()), max_abs_shift=float(flat.max()))


def _correct_sequentially(model: Any, units: list[Unit], images: np.ndarray, per_tensor: bool,
                          rounded: Mapping[str, np.ndarray] | None) -> BiasCorrectionReport:
    """Walk `model` and a copy with rounded weights layer by layer; match the copy's output means at each bias."""
    twin, twin_units = fold_batch_norm(model)  # `model` is folded already: this only copies it
    at_bias: dict[str, tuple[Unit, Unit]] = {}  # the layer that adds the unit's bias -> (unit, its twin)
    for unit, twin_unit in zip(units, twin_units):
        twin_unit.set(rounded_kernel(unit, per_tensor, rounded), twin_unit.bias)
        at_bias[(unit.bn if unit.bn is not None else unit.conv).name] = (unit, twin_unit)
    configs = model.get_config()["layers"]
    sources = {c["name"]: inbound_layer_names(c) for c in configs}
    readers_left: dict[str, int] = {}
    for name in sources:
        for source in sources[name]:
            readers_left[source] = readers_left.get(source, 0) + 1
    float_layers = {layer.name: layer for layer in model.layers}
    twin_layers = {layer.name: layer for layer in twin.layers}
    float_values: dict[str, Any] = {}
    twin_values: dict[str, Any] = {}
    shifts: list[tuple[Unit, np.ndarray]] = []
    for config in configs:
        name = config["name"]
        if not sources[name]:  # an input layer
            float_values[name] = twin_values[name] = np.asarray(images, np.float32)
            continue
        float_in = [float_values[s] for s in sources[name]]
        twin_in = [twin_values[s] for s in sources[name]]
        float_in = float_in[0] if len(float_in) == 1 else float_in
        twin_in = twin_in[0] if len(twin_in) == 1 else twin_in
        if name in at_bias:
            unit, twin_unit = at_bias[name]
            if unit.kind == "Dense" and unit.bn is None:  # a classifier: its bias sits before the fused softmax, so use linearity
                float_mean = _channel_mean(float_in) @ unit.kernel.astype(np.float64)
                twin_mean = _channel_mean(twin_in) @ twin_unit.kernel.astype(np.float64)
            else:
                float_mean = _channel_mean(float_layers[name](float_in, training=False))
                twin_mean = _channel_mean(twin_layers[name](twin_in, training=False))
            shift = twin_mean - float_mean
            twin_unit.set(twin_unit.kernel, twin_unit.bias - shift)
            shifts.append((unit, shift))  # applied to `model` after the walk: its float outputs are the reference
        float_values[name] = np.asarray(float_layers[name](float_in, training=False))
        twin_values[name] = np.asarray(twin_layers[name](twin_in, training=False))
        for source in sources[name]:
            readers_left[source] -= 1
            if readers_left[source] == 0:
                del float_values[source], twin_values[source]
    for unit, shift in shifts:
        unit.set(unit.kernel, unit.bias - shift)
    flat = np.abs(np.concatenate([shift for _, shift in shifts])) if shifts else np.zeros(1)
    return BiasCorrectionReport(layers=len(shifts), mean_abs_shift=float(flat.mean()), max_abs_shift=float(flat.max()))


def _channel_mean(values: Any) -> np.ndarray:
    values = np.asarray(values, np.float64)
    return values.reshape(-1, values.shape[-1]).mean(axis=0)
