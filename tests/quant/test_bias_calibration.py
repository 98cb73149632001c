"""Bias correction, activation-range choice and getting ranges into the TFLite model."""

from __future__ import annotations

import numpy as np
import pytest

from edgemnv2_converters import bias_correction, calibration, fold


def test_quantize_weights_matches_tflite_rounding() -> None:
    kernel = np.array([[0.5, -1.0], [0.25, 0.003]])
    per_channel = bias_correction.quantize_weights(kernel, channel_axis=1)
    assert np.allclose(per_channel[:, 1], np.round(kernel[:, 1] / (1.0 / 127)) * (1.0 / 127))
    per_tensor = bias_correction.quantize_weights(kernel, channel_axis=None)
    assert per_tensor[1, 1] == 0.0  # 0.003 is below half a step of 1/127: rounds away


def test_bias_correction_removes_mean_shift_of_a_layer() -> None:
    import keras

    rng = np.random.default_rng(1)
    inp = keras.Input((8,))
    out = keras.layers.Dense(4, name="fc")(keras.layers.ReLU(6.0)(inp))
    model = keras.Model(inp, out)
    model.get_layer("fc").set_weights([rng.normal(0, 1, (8, 4)) * np.array([1, 1, 0.01, 0.01]), np.zeros(4)])
    x = rng.uniform(0, 3, (256, 8)).astype(np.float32)
    folded, units = fold.fold_batch_norm(model)
    fc = units[0]
    w_q = bias_correction.quantize_weights(fc.kernel, None)
    shift_before = np.mean(np.maximum(x, 0) @ (w_q - fc.kernel), axis=0)
    assert np.abs(shift_before).max() > 1e-3
    bias_correction.correct_biases(folded, units, x, per_tensor=True)
    quantized_out = np.minimum(np.maximum(x, 0), 6) @ w_q + fc.bias
    float_out = np.asarray(model(x))
    assert np.abs((quantized_out - float_out).mean(axis=0)).max() < 1e-5


def _histogram(counts: np.ndarray, lo: float, hi: float) -> calibration.GrowingHistogram:
    hist = calibration.GrowingHistogram()
    hist.lo, hist.hi, hist.min, hist.max, hist.counts = lo, hi, lo, hi, counts
    return hist


def test_percentile_and_mse_clip_an_outlier() -> None:
    counts = np.zeros(calibration.HIST_BINS, np.int64)
    counts[: calibration.HIST_BINS // 10] = 100_000  # the bulk in the first tenth of [0, 100]
    counts[-1] = 1  # one outlier at the top: MSE clips it once the bulk's rounding error outweighs it
    lo, hi = calibration._percentile_range(_histogram(counts, 0.0, 100.0), 99.99)
    assert lo == 0.0 and hi < 15
    lo, hi = calibration._mse_range(_histogram(counts, 0.0, 100.0))
    assert lo == 0.0 and 8 < hi < 30


def test_mse_keeps_a_uniform_range() -> None:
    lo, hi = calibration._mse_range(_histogram(np.full(calibration.HIST_BINS, 100, np.int64), -4.0, 4.0))
    assert hi > 3.5 and lo < -3.5


def test_growing_histogram_equals_one_histogram_of_all_values() -> None:
    rng = np.random.default_rng(2)
    batches = [np.abs(rng.normal(0, 0.5, 1000)), np.abs(rng.normal(0, 3, 1000)), rng.normal(0, 9, 1000),
               np.zeros(10)]
    hist = calibration.GrowingHistogram()
    hist.add(np.zeros(5))  # zeros before any span exists
    for batch in batches:
        hist.add(batch.astype(np.float32))
    everything = np.concatenate([np.zeros(5), *batches]).astype(np.float32)
    assert (hist.min, hist.max) == (float(everything.min()), float(everything.max()))
    assert hist.lo < 0 < hist.hi and hist.lo <= hist.min and hist.max <= hist.hi and hist.hi == -hist.lo
    index = np.clip(((everything - hist.lo) * (calibration.HIST_BINS / (hist.hi - hist.lo))).astype(int), 0,
                    calibration.HIST_BINS - 1)
    expected = np.bincount(index, minlength=calibration.HIST_BINS)
    # merging bin pairs is exact; a value on a bin edge may land one bin off after float32 scaling
    assert hist.counts.sum() == len(everything)
    assert np.abs(np.cumsum(hist.counts) - np.cumsum(expected)).max() <= 3


@pytest.fixture(scope="module")
def calibrated(small_model, small_images) -> bytes:
    return calibration.calibrate_float_model(small_model, small_images)


def test_ranges_are_written_into_the_model(calibrated, small_images) -> None:
    ranges = calibration.activation_ranges(calibrated, small_images, "mse")
    patched = calibration.write_ranges(calibrated, ranges)
    assert len(patched) == len(calibrated)
    stored = calibration.recorded_ranges(patched)
    for r in ranges:
        assert stored[r.name] == pytest.approx(r.chosen, rel=1e-6, abs=1e-6)
    assert any(r.shrink > 1.01 for r in ranges)
    assert calibration.recorded_ranges(calibrated)[ranges[0].name] == pytest.approx(ranges[0].recorded)


def test_statistics_pass_sees_what_the_builtin_kernels_see(calibrated, small_images) -> None:
    """The XNNPACK pass over tensors made outputs (histograms filled in a second thread) records the same
    min/max and histograms as the builtin kernels with every tensor preserved, up to float rounding."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from edgemnv2.tflite import load_graph
    from edgemnv2.tflite.writer import with_outputs

    recorded = calibration.recorded_ranges(calibrated)
    graph = load_graph(calibrated)
    tensors = [t.index for t in graph.tensors if t.name in recorded and not t.constant][1:]  # not the input
    exposed = load_graph(with_outputs(calibrated, tensors + tensors[:3]))
    assert list(exposed.outputs) == list(graph.outputs) + [i for i in tensors if i not in graph.outputs]

    hists = calibration._statistics(calibrated, small_images, tensors)  # noqa: SLF001
    reference = Interpreter(model_content=calibrated, experimental_preserve_all_tensors=True,
                            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    reference.allocate_tensors()
    expected = {i: calibration.GrowingHistogram() for i in tensors}
    for image in small_images:
        reference.set_tensor(reference.get_input_details()[0]["index"], image[None].astype(np.float32))
        reference.invoke()
        for i, hist in expected.items():
            hist.add(reference.get_tensor(i))
    assert sorted(hists) == sorted(tensors)
    for i in tensors:
        got, want = hists[i], expected[i]
        scale = max(1.0, abs(want.min), abs(want.max))
        assert abs(got.min - want.min) <= 1e-4 * scale and abs(got.max - want.max) <= 1e-4 * scale
        assert got.counts.sum() == want.counts.sum()
        # the spans may differ by one doubling (a value on the boundary), so compare what is chosen from them
        assert calibration._mse_range(got) == pytest.approx(  # noqa: SLF001
            calibration._mse_range(want), rel=1e-3, abs=1e-4 * scale)  # noqa: SLF001
        assert calibration._percentile_range(got, 99.9) == pytest.approx(  # noqa: SLF001
            calibration._percentile_range(want, 99.9), rel=2e-3, abs=1e-3 * scale)  # noqa: SLF001


@pytest.mark.parametrize("per_tensor,activations,io", [(False, "int8", "int8"), (True, "int8", "uint8"),
                                                       (False, "int16", "float32")])
def test_quantized_model_is_fully_integer(calibrated, per_tensor, activations, io) -> None:
    from edgemnv2.convert import summarize_tflite

    model = calibration.quantize_calibrated(calibrated, per_tensor=per_tensor, activations=activations,
                                            io_type=io)
    allowed = ("int8", "int16", "int32", "int64") if activations == "int16" else ("int8", "int32")
    summary = summarize_tflite(model, allowed)
    assert summary.non_integer_ops == ()
    assert summary.input.dtype == io
    if activations == "int16":
        from edgemnv2.tflite import load_graph

        types = {t.dtype.name for t in load_graph(model).tensors}
        assert {"int16", "int64"} <= types


def test_unknown_method_is_refused(calibrated, small_images) -> None:
    with pytest.raises(ValueError, match="minmax, percentile, mse"):
        calibration.activation_ranges(calibrated, small_images, "kl")


def test_sequential_bias_correction_matches_output_means_after_rounded_layers() -> None:
    """Rounding layer 1 shifts what ReLU6 passes to layer 2; only the sequential walk sees it."""
    import keras

    rng = np.random.default_rng(2)
    inp = keras.Input((8,))
    hidden = keras.layers.ReLU(6.0)(keras.layers.Dense(6, name="fc1")(inp))
    model = keras.Model(inp, keras.layers.Dense(3, name="fc2")(hidden))
    model.get_layer("fc1").set_weights([rng.normal(0, 1, (8, 6)) * np.array([1, 1, 1, 0.02, 0.02, 0.02]),
                                        np.array([0.0, 0.0, 0.0, 0.01, -0.01, 0.005])])
    model.get_layer("fc2").set_weights([rng.normal(0, 1, (6, 3)), np.zeros(3)])
    x = rng.normal(0, 2, (512, 8)).astype(np.float32)
    float_mean = np.asarray(model(x)).mean(axis=0)

    def rounded_mean_error(sequential: bool) -> float:
        folded, units = fold.fold_batch_norm(model)
        bias_correction.correct_biases(folded, units, x, per_tensor=True, sequential=sequential)
        for unit in units:
            unit.set(bias_correction.quantize_weights(unit.kernel, None), unit.bias)
        return float(np.abs(np.asarray(folded(x)).mean(axis=0) - float_mean).max())

    assert rounded_mean_error(sequential=True) < 1e-4 < rounded_mean_error(sequential=False)
