"""AdaRound (Nagel et al., ICML 2020): learn whether each int8 weight rounds down or up, layer by layer.

Nearest rounding minimises each weight's own error, not the layer's output error: errors of weights that
read correlated inputs add up. AdaRound chooses, per weight, floor or floor + 1 to minimise the output
error on the calibration images, relaxed to a soft choice h(V) in [0, 1] (rectified sigmoid) and pushed
to 0 or 1 by a regulariser λ Σ (1 − |2h − 1|^β) whose exponent β anneals from 20 to 2.

The layer-wise loss against the float layer on float inputs is quadratic in the weights, so it needs
only the input's second moment G = E[x xᵀ] over every output position of every image (one
`float_stats.collect` pass over the converter's calibrated float model), never the activations themselves:

    E‖(W̃ − W) x‖² = Σ_rows (w̃ − w) G (w̃ − w)ᵀ

Rows (output channels) are independent given G, so every row of a layer is optimised at once with a few
hundred vectorised Adam steps. The weights of the calibrated model are then set to s·q (q the learned
integer, s the converter's own symmetric scale), which the converter's quantizer maps back to exactly q:
the largest weight of each row (per channel) or of the tensor (per tensor) keeps its nearest rounding, so
s does not move. The model that comes out is the converter's int8 graph, fully integer, as without it.

Where the float weights already sit on the int8 grid (the shared MobileNetV2 weights are dequantized int8
values, per channel) nearest rounding is exact, the loss is zero and nothing flips: AdaRound then only
matters for per-tensor weights. Such layers are found before the second-moment pass (`on_grid`), which runs
only for the others, and they keep their bytes.

With bias correction (`edgemnv2.quantization.transform_float_model`), the rounding is learned on the Keras model
instead (`learn_for_units`: learned on its calibrated float TFLite, mapped back to the Keras layers by value), and
the sequential bias correction is measured for the learned rounding: the layer-wise loss sees the float input
only, while the correction sees the shift every earlier rounded layer passes on.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from edgemnv2_converters import float_stats
from edgemnv2_converters.fold import Unit
from edgemnv2.tflite import load_graph

ZETA, GAMMA = 1.1, -0.1  # rectified sigmoid stretch (the paper's values)
QMAX = 127  # TFLite int8 weights: symmetric, narrow range [-127, 127]
ON_GRID = 1e-3  # grid steps: weights this close to integers are int8 values already (float32 round-off)


@dataclasses.dataclass(frozen=True)
class AdaRoundConfig:
    """Tuned on a synthetic quadratic problem: 300 steps leave ~0.55 of nearest's loss (500: ~0.5), every h binary."""

    iterations: int = 300
    learning_rate: float = 0.1
    reg_weight: float = 30.0  # λ: the regulariser's mean over weights, against the loss normalised by nearest's
    beta: tuple[float, float] = (20.0, 2.0)
    warmup: float = 0.2  # share of the iterations without the regulariser


@dataclasses.dataclass(frozen=True)
class LayerResult:
    q: np.ndarray  # integer grid indices, rows × inputs
    scale: np.ndarray  # (rows, 1)
    loss_nearest: float  # E‖(Q(W) − W) x‖², summed over rows
    loss_adaround: float
    flipped: float  # share of weights not rounded to nearest


@dataclasses.dataclass(frozen=True)
class AdaRoundReport:
    layers: int
    images: int
    flipped: float  # share of all weights not rounded to nearest
    loss_ratio: float  # Σ learned loss / Σ nearest loss over layers with a non-zero nearest loss (1.0 when none)
    seconds: float


def weight_scale(rows: np.ndarray, per_tensor: bool) -> np.ndarray:
    """(rows, 1) symmetric int8 scales as the TFLite quantizer computes them (max |w| / 127; 1 for zero rows)."""
    peak = np.abs(rows).max(axis=1, keepdims=True)
    if per_tensor:
        peak = np.full_like(peak, peak.max())
    return np.where(peak > 0, peak / QMAX, 1.0)


def _factor(gram: np.ndarray) -> np.ndarray:
    """F with F Fᵀ ≈ G (the eigenvectors holding all but 1e-7 of its trace), float32: e G eᵀ = ‖e F‖².

    A layer's G often has low rank (a classifier's: at most one row per image), and ‖e F‖² costs rows·K·rank
    per step instead of rows·K²: that keeps the 1000 × 1280 classifier cheap.
    """
    if gram.ndim == 3:  # depthwise: one small taps × taps G per channel, factored exactly
        values, vectors = np.linalg.eigh(gram)
        return (vectors * np.sqrt(np.clip(values, 0, None))[:, None, :]).astype(np.float32)
    values, vectors = np.linalg.eigh(gram)
    values = np.clip(values, 0, None)[::-1]
    vectors = vectors[:, ::-1]
    kept = int(np.searchsorted(np.cumsum(values), values.sum() * (1 - 1e-7))) + 1
    return (vectors[:, :kept] * np.sqrt(values[:kept])).astype(np.float32)


def _project(err: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """e F per row (factor (K, r) shared, or (rows, K, r) per row)."""
    return err @ factor if factor.ndim == 2 else np.einsum("rk,rkl->rl", err, factor)


def _back(projected: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """(e F) Fᵀ = e G per row."""
    return projected @ factor.T if factor.ndim == 2 else np.einsum("rl,rkl->rk", projected, factor)


def _quadratic(err: np.ndarray, factor: np.ndarray) -> np.ndarray:
    return np.square(_project(err.astype(np.float32), factor), dtype=np.float64).sum(axis=1)


def round_layer(rows: np.ndarray, gram: np.ndarray, per_tensor: bool = False,
                config: AdaRoundConfig = AdaRoundConfig()) -> LayerResult:
    """Learned rounding of `rows` (output channels × inputs, float) against the input second moment `gram`."""
    rows = rows.astype(np.float64)
    factor = _factor(gram.astype(np.float64))
    scale = weight_scale(rows, per_tensor)
    ratio = rows / scale
    floor = np.floor(ratio)
    nearest = np.clip(np.round(ratio), -QMAX, QMAX)
    # the scale's own weight keeps its rounding (the converter derives s from it), and nothing leaves [-127, 127]
    frozen = (np.abs(ratio) >= QMAX - 0.5) | (floor + 1 > QMAX) | (floor < -QMAX)
    weight = scale[:, 0] ** 2  # row r's error is s_r (q − ratio): its loss scales with s_r²
    loss_nearest = float((weight * _quadratic(nearest - ratio, factor)).sum())
    if loss_nearest <= 0.0 or on_grid(rows, per_tensor):  # nearest rounding is exact
        return LayerResult(nearest.astype(np.int32), scale, 0.0, 0.0, 0.0)
    f32 = np.float32
    floor32, ratio32, nearest32 = floor.astype(f32), ratio.astype(f32), nearest.astype(f32)
    start = np.clip((ratio - floor - GAMMA) / (ZETA - GAMMA), 1e-3, 1 - 1e-3)  # h(V) = the float weight
    v = np.log(start / (1 - start)).astype(f32)
    m, s2 = np.zeros_like(v), np.zeros_like(v)
    row_weight = (2.0 * weight / loss_nearest).astype(f32)[:, None]
    movable = ~frozen
    warm = int(config.warmup * config.iterations)
    for step in range(config.iterations):
        sig = 1.0 / (1.0 + np.exp(-v))
        h_raw = sig * f32(ZETA - GAMMA) + f32(GAMMA)
        h = np.clip(h_raw, 0.0, 1.0)
        err = np.where(frozen, nearest32, floor32 + h) - ratio32
        grad_h = row_weight * _back(_project(err, factor), factor)
        if step >= warm:
            progress = (step - warm) / max(config.iterations - warm - 1, 1)
            beta = config.beta[0] + (config.beta[1] - config.beta[0]) * progress
            centred = 2.0 * h - 1.0
            grad_h -= f32(config.reg_weight / rows.size * beta * 2.0) * np.abs(centred) ** f32(beta - 1) * np.sign(centred)
        grad = np.where((h_raw > 0) & (h_raw < 1) & movable, grad_h * sig * (1 - sig) * f32(ZETA - GAMMA), f32(0))
        m = f32(0.9) * m + f32(0.1) * grad
        s2 = f32(0.999) * s2 + f32(0.001) * grad * grad
        v -= f32(config.learning_rate / (1 - 0.9 ** (step + 1))) * m / (np.sqrt(s2 / f32(1 - 0.999 ** (step + 1))) + f32(1e-12))
    h_end = (1.0 / (1.0 + np.exp(-v))) * (ZETA - GAMMA) + GAMMA
    hard = np.where(frozen, nearest, floor + (h_end >= 0.5))
    loss = float((weight * _quadratic(hard - ratio, factor)).sum())
    if loss >= loss_nearest:  # never worse than the converter's own rounding
        hard, loss = nearest, loss_nearest
    return LayerResult(hard.astype(np.int32), scale, loss_nearest, loss, float(np.mean(hard != nearest)))


def _rows(weights: np.ndarray, op: float_stats.WeightedOp) -> np.ndarray:
    """TFLite weights as output channels × (taps·inputs), in the order `float_stats.patches` flattens inputs."""
    if op.depthwise:  # 1HWC → C × taps
        return weights.reshape(-1, weights.shape[-1]).T
    return weights.reshape(weights.shape[0], -1)


def on_grid(rows: np.ndarray, per_tensor: bool) -> bool:
    """Whether the weights are int8 values of the converter's own scale already (nearest rounding is exact)."""
    ratio = rows / weight_scale(rows, per_tensor)
    return bool(np.abs(ratio - np.round(ratio)).max() < ON_GRID)


@dataclasses.dataclass(frozen=True)
class Learned:
    """AdaRound's weights (s·q, float, in each op's TFLite layout) for the ops where a weight flipped."""

    weights: dict[int, np.ndarray]  # weighted op index -> new weights
    report: AdaRoundReport


def learn(calibrated: bytes, images: np.ndarray, per_tensor: bool,
          config: AdaRoundConfig = AdaRoundConfig()) -> Learned:
    """Learned rounding of every weighted op of a calibrated float model, against its float layer inputs on
    `images` (the calibration images, augmented or not: `edgemnv2_converters.augment`).

    Layers whose weights are on the grid already, or where nothing flips, are left out: the converter rounds
    them to the same integers. The second-moment pass runs only for the other layers, and not at all when there
    are none.
    """
    started = time.perf_counter()
    graph = load_graph(calibrated, what="the calibrated model")
    layers = [(op, graph.tensors[op.weights]) for op in float_stats.weighted_ops(graph)]
    weights = {op.index: t.values().astype(np.float64) for op, t in layers
               if t.dtype.numpy == "float32" and t.buffer is not None}
    rows = {op.index: _rows(weights[op.index], op) for op, _ in layers if op.index in weights}
    learnable = {index for index, r in rows.items() if not on_grid(r, per_tensor)}
    stats = float_stats.collect(calibrated, images, only=learnable) if learnable else None
    learned: dict[int, np.ndarray] = {}
    flipped = 0
    total = sum(w.size for w in weights.values())
    loss_nearest = loss_learned = 0.0
    for op, _ in layers:
        if stats is None or op.index not in learnable:
            continue
        result = round_layer(rows[op.index], stats.inputs[op.index].second_moment, per_tensor, config)
        loss_nearest += result.loss_nearest
        loss_learned += result.loss_adaround
        if result.flipped == 0.0:
            continue
        rounded = result.q * result.scale
        learned[op.index] = (rounded.T if op.depthwise else rounded).reshape(weights[op.index].shape).astype(np.float32)
        flipped += int(round(result.flipped * rounded.size))
    report = AdaRoundReport(layers=len(weights), images=len(images), flipped=flipped / max(total, 1),
                            loss_ratio=loss_learned / loss_nearest if loss_nearest > 0 else 1.0,
                            seconds=round(time.perf_counter() - started, 2))
    return Learned(weights=learned, report=report)


def apply(calibrated: bytes, images: np.ndarray, per_tensor: bool,
          config: AdaRoundConfig = AdaRoundConfig()) -> tuple[bytes, AdaRoundReport]:
    """The calibrated float model with every weighted op's float weights replaced by s·q (learned q), in place;
    layers left out by `learn` keep their bytes, so the model (and the ranges measured on it) stays the one
    without AdaRound where it changes nothing."""
    result = learn(calibrated, images, per_tensor, config)
    graph = load_graph(calibrated, what="the calibrated model")
    patched = bytearray(calibrated)
    for op in float_stats.weighted_ops(graph):
        if op.index in result.weights:
            buffer = graph.tensors[op.weights].buffer
            patched[buffer.start:buffer.start + buffer.size] = result.weights[op.index].tobytes()
    return bytes(patched), result.report


def learn_for_units(calibrated: bytes, units: list[Unit], images: np.ndarray, per_tensor: bool,
                    config: AdaRoundConfig = AdaRoundConfig()) -> tuple[dict[str, np.ndarray], AdaRoundReport]:
    """AdaRound's kernels for the Keras units (batch norm folded) of the model `calibrated` was converted from,
    in Keras layout, by unit name (units where nothing flipped are left out): what bias correction measures its
    shifts for, and what the units get before the converter runs (it maps s·q back to q).

    Each op is matched to the unit whose kernel holds the same float weights (not by position). Every weighted op
    needs one: an op outside the units (e.g. a convolution with its activation fused into the Keras layer) would
    be rounded without the bias correction knowing how, so it is an error, raised before any learning.
    """
    graph = load_graph(calibrated, what="the calibrated model")
    ops = {op.index: op for op in float_stats.weighted_ops(graph)}
    unmatched = {unit.name: (unit, _unit_rows(unit)) for unit in units}
    owner: dict[int, Unit] = {}
    for op in ops.values():
        weights = _rows(graph.tensors[op.weights].values().astype(np.float64), op)
        match = next((name for name, (_, rows) in unmatched.items() if _same_rows(rows, weights)), None)
        if match is None:
            raise ValueError(f"AdaRound with bias correction needs each convolution as a conv [→ batch norm] "
                             f"[→ ReLU] unit; op {op.index} ({op.kind}) is not one (an activation fused into its "
                             "layer?): use --no-bias-correction")
        owner[op.index] = unmatched.pop(match)[0]
    result = learn(calibrated, images, per_tensor, config)
    kernels = {owner[index].name: _keras_kernel(_rows(new.astype(np.float64), ops[index]), owner[index])
               for index, new in result.weights.items()}
    return kernels, result.report


def _unit_rows(unit: Unit) -> np.ndarray:
    """A Keras unit's folded kernel as output channels × (taps·inputs), the order `_rows` gives TFLite weights."""
    kernel = unit.kernel.astype(np.float64)
    if unit.kind == "DepthwiseConv2D":  # HWC1 → C × taps
        return kernel[..., 0].reshape(-1, kernel.shape[2]).T
    if unit.kind == "Dense":  # IO → O × I
        return kernel.T
    return np.moveaxis(kernel, 3, 0).reshape(kernel.shape[3], -1)  # HWIO → O × (H·W·I)


def _keras_kernel(rows: np.ndarray, unit: Unit) -> np.ndarray:
    """The inverse of `_unit_rows`: rows back in the unit's kernel layout."""
    shape = unit.kernel.shape
    if unit.kind == "DepthwiseConv2D":
        return rows.T.reshape(shape)
    if unit.kind == "Dense":
        return rows.T.copy()
    return np.moveaxis(rows.reshape(shape[3], shape[0], shape[1], shape[2]), 0, 3)


def _same_rows(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to float32 round-off (the converter stores the Keras kernel in float32)."""
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=0, atol=1e-6 * max(float(np.abs(b).max()), 1e-12)))
