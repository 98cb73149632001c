"""Cross-layer equalization (Nagel et al., ICCV 2019) that keeps a ReLU6 network's float outputs exact.

For a pair conv A → conv B (A's output channel c is B's input channel c, as in MobileNetV2's
expand → depthwise and depthwise → project), multiplying A's channel c (weights and bias) by a > 0 and
dividing B's input channel c by a leaves the network unchanged as long as the activation between them
commutes with the scaling. ReLU does; ReLU6 does only when the channel never reaches 6:

* a channel that reaches 6 on the calibration images (it clips) keeps a = 1;
* one that does not may be shrunk freely (a < 1) but grown only until its calibrated maximum reaches 6.

Two goals, one per weight-quantization mode:

* ``weights`` (for per-tensor weights): a = sqrt(range_B(c) / range_A(c)) so every channel of both
  layers spans a similar weight range, iterated over the chain of pairs; the remedy for depthwise
  layers whose channels differ in range by 35-56x.
* ``activations`` (for per-channel weights, where a per-channel scale absorbs A's change for free): grow
  every non-clipping channel until its calibrated maximum reaches the clip, so the int8 activation
  grid between A and B is used by every channel, only for pairs whose B is depthwise (also per channel).

Dead channels (every weight of B reading them is exactly zero) are zeroed in A first, repeatedly (a
zeroed depthwise channel makes the expand channel feeding it dead too): their outputs are never used,
but their weights can dominate a per-tensor range that no scaling can shrink.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from edgemnv2_converters.fold import Unit, fold_batch_norm

MODES = ("weights", "activations")
# Safety band per mode (see `equalize`). Weights: 1.75 beat 1.5 and 2.0 on both 2-fold splits of the shared
# images with per-tensor weights (mean agreement 96.5% vs 94.5%/96.5%, KL 0.096 vs 0.099/0.101,
# docs/quantization.md); activations mode keeps the hand-chosen 1.5 (not re-measured).
MARGINS = {"weights": 1.75, "activations": 1.5}


@dataclasses.dataclass
class EqualizeReport:
    pairs: int
    dead_channels: int
    clipping_channels: int  # channels that reach the clip and so keep their scale
    scaled_channels: int  # channels whose final scale differs from 1 by more than 1%
    max_scale: float
    min_scale: float


def _input_axis(unit: Unit) -> int:
    """Axis of B's kernel that indexes its input channels."""
    return 0 if unit.kind == "Dense" else 2


def _out_kernel_ranges(unit: Unit) -> np.ndarray:
    k = unit.out_channel_kernel()
    return np.abs(k).reshape(-1, k.shape[-1]).max(axis=0)


def _in_kernel_ranges(unit: Unit) -> np.ndarray:
    k = np.moveaxis(unit.kernel, _input_axis(unit), -1)
    return np.abs(k).reshape(-1, k.shape[-1]).max(axis=0)


def _scale_pair(a_unit: Unit, b_unit: Unit, scale: np.ndarray) -> None:
    """A's output channels *= scale, B's input channels /= scale."""
    a_kernel = a_unit.kernel
    if a_unit.kind == "DepthwiseConv2D":
        a_kernel = a_kernel * scale.reshape(1, 1, -1, 1)
    else:
        a_kernel = a_kernel * scale
    a_unit.set(a_kernel, a_unit.bias * scale)
    shape = [1] * b_unit.kernel.ndim
    shape[_input_axis(b_unit)] = -1
    b_unit.set(b_unit.kernel / scale.reshape(shape), b_unit.bias)


def find_pairs(units: list[Unit]) -> list[tuple[Unit, Unit]]:
    """(A, B) where B is the only reader of A and both are per-channel-linear convolutions."""
    by_name = {u.name: u for u in units}
    pairs = []
    for a in units:
        if len(a.consumers) != 1 or a.consumers[0] not in by_name:
            continue
        b = by_name[a.consumers[0]]
        if b.kind == "Dense" and a.kind != "Dense":
            continue
        pairs.append((a, b))
    return pairs


def preactivation_max(model: Any, units: list[Unit], images: np.ndarray, batch: int = 10) -> dict[str, np.ndarray]:
    """Per-channel maximum, over `images`, of each ReLU unit's pre-activation output (its BN output)."""
    import keras

    relu_units = [u for u in units if u.relu]
    if not relu_units:
        return {}
    outputs = [(u.bn if u.bn is not None else u.conv).output for u in relu_units]
    probe = keras.Model(model.inputs, outputs)
    maxima = [np.full(o.shape[-1], -np.inf, np.float64) for o in outputs]
    for start in range(0, len(images), batch):
        results = probe([images[start:start + batch]], training=False)
        results = results if isinstance(results, (list, tuple)) else [results]
        for i, r in enumerate(results):
            r = np.asarray(r)
            maxima[i] = np.maximum(maxima[i], r.reshape(-1, r.shape[-1]).max(axis=0))
    return {u.name: m for u, m in zip(relu_units, maxima)}


def zero_dead_channels(pairs: list[tuple[Unit, Unit]]) -> int:
    """Zero A's weights and bias for channels B never reads (exact in float). Returns how many.

    Repeated until nothing changes: zeroing a depthwise channel makes the channel feeding it unread too.
    """
    count = 0
    changed = True
    while changed:
        changed = False
        for a, b in reversed(pairs):
            dead = (_in_kernel_ranges(b) == 0.0) & ((_out_kernel_ranges(a) != 0.0) | (a.bias != 0.0))
            if not dead.any():
                continue
            _zero_channels(a, dead)
            count += int(dead.sum())
            changed = True
    return count


def _zero_channels(a: Unit, dead: np.ndarray) -> None:
    kernel = a.kernel.copy()
    if a.kind == "DepthwiseConv2D":
        kernel[:, :, dead, :] = 0.0
    else:
        kernel[..., dead] = 0.0
    bias = a.bias.copy()
    bias[dead] = 0.0
    a.set(kernel, bias)


def equalize(model: Any, images: np.ndarray, mode: str = "weights", iterations: int = 4,
             margin: float | None = None, max_growth: float = 4.0) -> tuple[Any, EqualizeReport]:
    """A float-equivalent copy of `model` (batch norm folded) with equalized channel scales.

    `margin` > 1 is a safety band for images that drive a channel higher than the calibration set did:
    a channel whose calibrated maximum exceeds clip / margin is treated as clipping (kept), and a grown
    channel stops at clip / margin (1.0: exact on the calibration images only) and at `max_growth`
    times its original scale. None: the mode's measured default (`MARGINS`).
    """
    if mode not in MODES:
        raise ValueError(f"equalization mode must be one of {MODES}, got {mode!r}")
    if margin is None:
        margin = MARGINS[mode]
    folded, units = fold_batch_norm(model)
    pairs = find_pairs(units)
    dead = zero_dead_channels(pairs)
    maxima = preactivation_max(folded, units, images)
    total = {a.name: np.ones(len(a.bias)) for a, _ in pairs}
    clipping = 0
    for a, _ in pairs:
        if a.clip is not None and a.name in maxima:
            clipping += int((maxima[a.name] >= a.clip).sum())
    for _ in range(iterations if mode == "weights" else 1):
        for a, b in pairs:
            if mode == "activations" and b.kind != "DepthwiseConv2D":
                continue
            r1, r2 = _out_kernel_ranges(a), _in_kernel_ranges(b)
            if mode == "weights":
                with np.errstate(divide="ignore", invalid="ignore"):
                    scale = np.where((r1 > 0) & (r2 > 0), np.sqrt(r2 / r1), 1.0)
            else:
                scale = np.full_like(r1, np.inf, dtype=np.float64)
            if a.clip is not None:
                peak = maxima.get(a.name)
                if peak is None:
                    continue  # no statistics for this unit: leave it exact
                # kept: channels that reach the clip (or the safety band below it), and channels never
                # positive on the calibration images (no measurement says how far they go elsewhere)
                clips = (peak * margin >= a.clip) | (peak <= 0)
                ceiling = a.clip / (margin * np.maximum(peak, 1e-30))
                # a rarely active channel's calibrated maximum says little about unseen images: cap growth
                scale = np.where(clips, 1.0, np.minimum(scale, np.minimum(ceiling, max_growth / total[a.name])))
            scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
            _scale_pair(a, b, scale)
            if a.name in maxima:
                maxima[a.name] = maxima[a.name] * scale
            total[a.name] *= scale
    scales = np.concatenate(list(total.values())) if total else np.ones(1)
    report = EqualizeReport(pairs=len(pairs), dead_channels=dead, clipping_channels=clipping,
                            scaled_channels=int((np.abs(scales - 1.0) > 0.01).sum()),
                            max_scale=float(scales.max()), min_scale=float(scales.min()))
    return folded, report
