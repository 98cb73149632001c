"""Batch-norm folding and cross-layer equalization keep the float model's outputs."""

from __future__ import annotations

import numpy as np
import pytest

from edgemnv2_converters import equalize, fold


def test_fold_keeps_outputs_and_finds_every_conv(small_model, small_images) -> None:
    folded, units = fold.fold_batch_norm(small_model)
    before = np.asarray(small_model(small_images, training=False))
    after = np.asarray(folded(small_images, training=False))
    assert np.abs(before - after).max() < 1e-5
    kinds = [u.kind for u in units]
    assert kinds.count("DepthwiseConv2D") == 17 and kinds.count("Conv2D") == 35 and kinds.count("Dense") == 1
    first = units[0]
    assert first.name == "Conv1" and first.clip == 6.0 and first.consumers == ["expanded_conv_depthwise"]
    # folded BN is "add bias": unit bias is BN beta and the kernel carries the BN scale
    assert np.allclose(first.bias, first.bn.beta.numpy())


@pytest.mark.filterwarnings("ignore:The structure of `inputs`:UserWarning")
def test_a_sequential_model_is_walked_like_a_functional_one() -> None:
    """A Sequential config lists no inbound nodes: without the functional view its BN would stay unfolded."""
    import keras

    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, use_bias=False),
                              keras.layers.BatchNormalization(), keras.layers.ReLU(6.0),
                              keras.layers.DepthwiseConv2D(3), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(5)])
    rng = np.random.default_rng(0)
    bn = model.layers[1]
    bn.set_weights([rng.uniform(0.5, 2, 4), rng.normal(0, 1, 4), rng.normal(0, 1, 4), rng.uniform(0.5, 2, 4)])
    images = rng.uniform(-1, 1, (4, 8, 8, 3)).astype(np.float32)
    folded, units = fold.fold_batch_norm(model)
    assert [u.kind for u in units] == ["Conv2D", "DepthwiseConv2D", "Dense"]
    assert units[0].bn is not None and units[0].clip == 6.0 and units[0].consumers == [units[1].name]
    np.testing.assert_allclose(np.asarray(folded(images, training=False)), np.asarray(model(images, training=False)),
                               atol=1e-5)


def test_equalize_is_exact_on_calibration_images(real_model_96, small_images) -> None:
    model, report = equalize.equalize(real_model_96, small_images, mode="weights", margin=1.0)
    assert report.pairs >= 30 and report.scaled_channels > 0 and report.clipping_channels > 0
    before = np.asarray(real_model_96(small_images, training=False))
    after = np.asarray(model(small_images, training=False))
    assert np.abs(before - after).max() < 1e-4


def test_equalize_shrinks_depthwise_channel_spread(real_model_96, small_images) -> None:
    """The per-tensor failure: depthwise channels differing 35-56x in range; equalization narrows it."""
    _, units_before = fold.fold_batch_norm(real_model_96)
    model, _ = equalize.equalize(real_model_96, small_images, mode="weights")
    _, units_after = fold.fold_batch_norm(model)

    def spread(unit: fold.Unit) -> float:
        ranges = np.abs(unit.out_channel_kernel()).reshape(-1, unit.kernel.shape[2]).max(axis=0)
        live = ranges[ranges > 0]
        return float(live.max() / live.min())

    name = "expanded_conv_depthwise"
    before = next(spread(u) for u in units_before if u.name == name)
    after = next(spread(u) for u in units_after if u.name == name)
    assert after < before / 2


def test_dead_channels_are_zeroed(real_model_96, small_images) -> None:
    model, report = equalize.equalize(real_model_96, small_images)
    # 10 channels nobody reads (measured while planning), then the 10 channels that fed only those
    assert report.dead_channels == 20
    _, units = fold.fold_batch_norm(model)
    pairs = equalize.find_pairs(units)
    for a, b in pairs:
        unread = np.abs(np.moveaxis(b.kernel, 0 if b.kind == "Dense" else 2, -1)).reshape(-1, len(a.bias)).max(0) == 0
        assert np.all(a.bias[unread] == 0) and np.all(a.out_channel_kernel()[..., unread] == 0)


def test_activation_mode_fills_relu6_range(real_model_96, small_images) -> None:
    model, _ = equalize.equalize(real_model_96, small_images, mode="activations", margin=1.0, max_growth=1e9)
    folded, units = fold.fold_batch_norm(model)
    peaks = equalize.preactivation_max(folded, units, small_images)
    expand = next(u for u in units if u.name == "block_1_expand")
    live = peaks[expand.name][peaks[expand.name] > 0]
    # every channel that was positive now peaks at the clip (6) unless it already clipped
    assert np.all(live >= 6.0 - 1e-3)
