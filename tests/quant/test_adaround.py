"""AdaRound: learned rounding lowers the layer loss, stays on the converter's grid, and survives quantization."""

from __future__ import annotations

import numpy as np
import pytest

from edgemnv2.errors import InputError
from edgemnv2_converters import adaround, calibration


def _layer(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Weights (rows × inputs) and the second moment of correlated post-ReLU inputs."""
    rng = np.random.default_rng(seed)
    x = np.maximum(rng.normal(size=(2000, 48)) @ (np.eye(48) + 0.3 * rng.normal(size=(48, 48))), 0)
    rows = rng.normal(size=(12, 48)) * np.linspace(0.2, 2.0, 12)[:, None]
    return rows, x.T @ x / len(x)


@pytest.mark.parametrize("per_tensor", [False, True])
def test_learned_rounding_beats_nearest_and_keeps_the_grid(per_tensor: bool) -> None:
    rows, gram = _layer()
    result = adaround.round_layer(rows, gram, per_tensor=per_tensor)
    scale = adaround.weight_scale(rows, per_tensor)
    nearest = np.round(rows / scale)
    assert result.loss_adaround < 0.8 * result.loss_nearest
    assert 0 < result.flipped < 0.5
    assert set(np.unique(result.q - nearest)) <= {-1.0, 0.0, 1.0}  # floor or ceil, never further
    assert np.abs(result.q).max() <= 127
    # the weight that sets the converter's scale keeps its rounding, so the scale does not move
    assert np.allclose(np.abs(result.q * scale).max(axis=None if per_tensor else 1), np.abs(rows).max(
        axis=None if per_tensor else 1), rtol=1e-9)


def test_weights_on_the_grid_are_left_alone() -> None:
    rows, gram = _layer(1)
    scale = adaround.weight_scale(rows, False)
    on_grid = np.round(rows / scale) * scale + 1e-7 * scale  # int8 values, float32-style round-off
    result = adaround.round_layer(on_grid, gram)
    assert result.flipped == 0.0 and np.array_equal(result.q, np.round(rows / scale))


def _tiny_model():
    """Conv 3x3 → ReLU6 → depthwise → ReLU6 → 1x1 → pool → dense: one op of each kind AdaRound rounds."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((24, 24, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu6")(inputs)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu6")(x)
    x = keras.layers.Conv2D(6, 1)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(5)(x))


@pytest.mark.parametrize("per_tensor", [False, True])
def test_apply_writes_weights_the_quantizer_maps_back_to_the_learned_integers(per_tensor: bool) -> None:
    from edgemnv2.tflite import load_graph

    images = np.random.default_rng(0).uniform(-1, 1, (6, 24, 24, 3)).astype(np.float32)
    calibrated = calibration.calibrate_float_model(_tiny_model(), images)
    rounded, report = adaround.apply(calibrated, images, per_tensor=per_tensor)
    assert report.layers == 4 and report.images == 6 and report.flipped > 0 and report.loss_ratio < 1.0
    plain = load_graph(calibration.quantize_calibrated(calibrated, per_tensor=per_tensor))
    learned = load_graph(calibration.quantize_calibrated(rounded, per_tensor=per_tensor))
    changed = total = 0
    for a, b in zip(plain.ops, learned.ops):
        if a.kind in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            wa, wb = plain.tensors[a.inputs[1]], learned.tensors[b.inputs[1]]
            assert wa.quantization.scale == pytest.approx(wb.quantization.scale, rel=1e-6)
            step = np.abs(wa.values().astype(int) - wb.values().astype(int))
            assert step.max() <= 1
            changed, total = changed + int(step.sum()), total + step.size
    assert changed / total == pytest.approx(report.flipped, abs=1e-6)


def test_apply_leaves_a_model_on_the_grid_untouched(monkeypatch: pytest.MonkeyPatch) -> None:
    """Weights that are int8 values already: no second-moment pass, the same bytes, nothing flipped."""
    from edgemnv2.tflite import load_graph
    from edgemnv2_converters import float_stats

    images = np.random.default_rng(0).uniform(-1, 1, (6, 24, 24, 3)).astype(np.float32)
    calibrated = calibration.calibrate_float_model(_tiny_model(), images)
    graph = load_graph(calibrated)
    snapped = bytearray(calibrated)
    for op in float_stats.weighted_ops(graph):
        tensor = graph.tensors[op.weights]
        weights = tensor.values().astype(np.float64)
        rows = adaround._rows(weights, op)  # noqa: SLF001
        grid = np.round(rows / adaround.weight_scale(rows, False)) * adaround.weight_scale(rows, False)
        new = (grid.T if op.depthwise else grid).reshape(weights.shape).astype(np.float32)
        snapped[tensor.buffer.start:tensor.buffer.start + tensor.buffer.size] = new.tobytes()
        assert adaround.on_grid(adaround._rows(new.astype(np.float64), op), False)  # noqa: SLF001
        assert not adaround.on_grid(rows, True)  # the per-tensor grid is coarser
    monkeypatch.setattr(float_stats, "collect", lambda *a, **k: pytest.fail("second-moment pass on a gridded model"))
    rounded, report = adaround.apply(bytes(snapped), images, per_tensor=False)
    assert rounded == bytes(snapped)
    assert (report.layers, report.images, report.flipped, report.loss_ratio) == (4, 6, 0.0, 1.0)


def test_adaround_goes_with_bias_correction_and_augment_needs_it() -> None:
    from edgemnv2.convert import ConvertOptions

    assert ConvertOptions(adaround=True).bias_correction is False  # per channel: the default stays off
    assert ConvertOptions(adaround=True, per_tensor=True).bias_correction is True  # measured for the learned rounding
    assert ConvertOptions(adaround=True, bias_correction=True).bias_correction is True
    assert ConvertOptions(adaround=True, adaround_augment="Flips, crops").adaround_augment == ("flips", "crops")
    assert ConvertOptions(adaround=True, adaround_augment="none").adaround_augment == ()
    with pytest.raises(InputError, match="needs --adaround"):
        ConvertOptions(adaround_augment="flips")
    with pytest.raises(InputError, match="unknown augmentation 'rotations'"):
        ConvertOptions(adaround=True, adaround_augment="flips,rotations")


def test_learned_kernels_reach_the_keras_layers_they_came_from() -> None:
    """learn_for_units maps each op's learned weights to its Keras unit by value and back into Keras layout: the
    kernels are the learned integers on the converter's per-tensor grid, at most one step from nearest."""
    import keras

    from edgemnv2_converters import fold

    images = np.random.default_rng(0).uniform(-1, 1, (6, 24, 24, 3)).astype(np.float32)
    with pytest.raises(ValueError, match="op 0 .CONV_2D. is not one"):  # its ReLU6 is fused into the layer
        fused, fused_units = fold.fold_batch_norm(_tiny_model())
        adaround.learn_for_units(calibration.calibrate_float_model(fused, images), fused_units, images, True)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((24, 24, 3))
    x = keras.layers.ReLU(6.0)(keras.layers.Conv2D(8, 3, strides=2, padding="same")(inputs))
    x = keras.layers.ReLU(6.0)(keras.layers.BatchNormalization()(keras.layers.DepthwiseConv2D(3, padding="same")(x)))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(6, 1)(x))
    model, units = fold.fold_batch_norm(keras.Model(inputs, keras.layers.Dense(5)(x)))
    assert [u.kind for u in units] == ["Conv2D", "DepthwiseConv2D", "Conv2D", "Dense"]
    units = units[::-1]  # matching is by value, not position
    calibrated = calibration.calibrate_float_model(model, images)
    kernels, report = adaround.learn_for_units(calibrated, units, images, per_tensor=True)
    assert report.flipped > 0 and set(kernels) <= {u.name for u in units} and kernels
    moved = 0
    for unit in units:
        if unit.name not in kernels:
            continue
        learned, original = kernels[unit.name], unit.kernel.astype(np.float64)
        assert learned.shape == original.shape
        scale = np.abs(original).max() / 127
        q = learned / scale
        assert np.abs(q - np.round(q)).max() < 1e-4  # on the grid (float32 round-off)
        assert np.abs(np.round(q) - np.round(original / scale)).max() <= 1  # floor or ceil
        moved += int((np.round(q) != np.round(original / scale)).sum())
    assert moved == round(report.flipped * sum(u.kernel.size for u in units))


def test_bias_correction_measures_the_rounding_it_is_given() -> None:
    """With AdaRound's kernels given, the corrected bias cancels their mean shift, not nearest rounding's."""
    import keras

    from edgemnv2_converters import bias_correction, fold

    rng = np.random.default_rng(2)
    inputs = keras.Input((8,))
    model = keras.Model(inputs, keras.layers.Dense(4, name="fc")(keras.layers.ReLU(6.0)(inputs)))
    model.get_layer("fc").set_weights([rng.normal(0, 1, (8, 4)), np.zeros(4)])
    x = rng.uniform(0, 3, (256, 8)).astype(np.float32)
    for sequential in (False, True):
        folded, units = fold.fold_batch_norm(model)
        scale = np.abs(units[0].kernel).max() / 127
        learned = (np.floor(units[0].kernel / scale) * scale).astype(np.float64)  # every weight rounded down
        bias_correction.correct_biases(folded, units, x, per_tensor=True, sequential=sequential,
                                       rounded={"fc": learned})
        assert np.array_equal(units[0].kernel, model.get_layer("fc").kernel.numpy())  # the kernel is left alone
        shift = np.mean(np.minimum(x, 6) @ learned + units[0].bias - np.asarray(model(x)), axis=0)
        assert np.abs(shift).max() < 1e-5


def test_vectorised_mse_search_matches_scoring_each_candidate() -> None:
    rng = np.random.default_rng(3)
    hist = calibration.GrowingHistogram()
    hist.add(np.clip(rng.standard_t(3, 100_000) * 3.0, -30, 45).astype(np.float32))
    lo, hi, centers = hist.min, hist.max, hist.centers()

    def score(a: float, b: float) -> float:
        inside = (centers >= a) & (centers <= b)
        step = (b - a) / 255
        return float((hist.counts * ((centers - np.clip(centers, a, b)) ** 2
                                     + np.where(inside, step * step / 12, 0))).sum())

    candidates = [(lo * f, hi * g) for g in np.linspace(0.1, 1.0, 91) for f in np.linspace(0.1, 1.0, 19)]
    best = min(candidates, key=lambda c: score(*c))
    assert calibration._mse_range(hist) == pytest.approx(best, rel=1e-9)
