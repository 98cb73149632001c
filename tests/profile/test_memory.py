"""TFLM arena plan (edgemnv2.profile.memory) against the tflite-micro wheel, and the planner on its own."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgemnv2.errors import EdgeMNV2Error, ModelError
from edgemnv2.profile.memory import BUFFER_ALIGNMENT, greedy_offsets, linux_activation_bytes, plan_arena
from edgemnv2.profile.tflm_arena import TFLMRejected, measure_arena


def _error_percent(model: Path) -> float:
    plan = plan_arena(model)
    measured = measure_arena(model)
    return 100.0 * abs(plan.peak_bytes - measured.total_bytes) / measured.total_bytes


def test_coral_mnv2_224_matches_tflm_arena(coral_v2_tflite: Path) -> None:
    assert _error_percent(coral_v2_tflite) <= 1.0


def test_converted_int8_96_matches_tflm_arena(int8_mnv2_96: Path) -> None:
    assert _error_percent(int8_mnv2_96) <= 1.0


@pytest.fixture(scope="module")
def mixed_ops_int8(tmp_path_factory) -> Path:
    """A tiny int8 CNN with ops MobileNetV2 lacks (pools, concat, hard-swish, logistic, mul); ~5 s to convert."""
    import numpy as np
    import tensorflow as tf
    import keras
    from keras import layers

    inp = keras.Input((32, 32, 3))
    x = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(inp)
    a = layers.DepthwiseConv2D(3, padding="same", activation="relu")(layers.ZeroPadding2D(1)(x))
    b = layers.MaxPooling2D(3, strides=1, padding="same")(layers.ZeroPadding2D(1)(x))
    x = layers.AveragePooling2D(2)(layers.Concatenate()([a, b]))
    x = layers.Conv2D(24, 1, activation="hard_swish")(x)
    x = layers.Multiply()([x, layers.Activation("sigmoid")(x)])
    out = layers.Dense(10, activation="softmax")(layers.GlobalAveragePooling2D()(x))
    rng = np.random.default_rng(0)
    converter = tf.lite.TFLiteConverter.from_keras_model(keras.Model(inp, out))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([rng.uniform(-1, 1, (1, 32, 32, 3)).astype(np.float32)]
                                                for _ in range(8))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    path = tmp_path_factory.mktemp("models") / "mixed_ops_int8.tflite"
    path.write_bytes(converter.convert())
    return path


def test_other_op_kinds_match_tflm_arena(mixed_ops_int8: Path) -> None:
    plan = plan_arena(mixed_ops_int8)
    assert {"MAX_POOL_2D", "AVERAGE_POOL_2D", "CONCATENATION", "HARD_SWISH", "MUL"} <= set(plan.op_names)
    assert plan.unknown_ops == []
    assert _error_percent(mixed_ops_int8) <= 1.0


def test_head_and_tail_match_separately(int8_mnv2_96: Path) -> None:
    """Not two errors cancelling: the planned activations and the persistent tail each match."""
    plan = plan_arena(int8_mnv2_96)
    measured = measure_arena(int8_mnv2_96)
    assert plan.nonpersistent_bytes == measured.nonpersistent_bytes
    assert abs(plan.persistent_bytes - measured.persistent_bytes) <= 0.01 * measured.persistent_bytes


def test_plan_reads_bytes_or_path_and_has_one_timeline_entry_per_op(coral_v2_tflite: Path) -> None:
    by_path = plan_arena(coral_v2_tflite)
    by_bytes = plan_arena(coral_v2_tflite.read_bytes())
    assert by_path == by_bytes
    assert len(by_path.timeline) == len(by_path.op_names) == 68
    assert by_path.op_names[0] == "QUANTIZE" and by_path.op_names[-1] == "QUANTIZE"
    # first op: uint8 input 224x224x3 and its int8 copy are both alive
    assert by_path.timeline[0] == 2 * 224 * 224 * 3
    assert by_path.peak_live_bytes <= by_path.nonpersistent_bytes
    assert by_path.peak_bytes == by_path.nonpersistent_bytes + by_path.persistent_bytes
    assert sum(by_path.persistent_breakdown.values()) == by_path.persistent_bytes
    assert by_path.unknown_ops == []


def test_uint8_model_gives_one_line_error_not_a_crash(shared_dir: Path) -> None:
    with pytest.raises(TFLMRejected) as info:
        measure_arena(shared_dir / "models" / "mobilenet_v1_0.25_128_quant.tflite")
    message = str(info.value)
    assert "\n" not in message and "uint8" in message and "Traceback" not in message
    assert isinstance(info.value, EdgeMNV2Error)


@pytest.fixture(scope="module")
def narrow_logits_int8(tmp_path_factory, calib_dir: Path) -> Path:
    """Logits within +-1e-6: the softmax input scale is below 2^-26, which TFLite Micro's softmax refuses."""
    import keras

    from edgemnv2.convert import ConvertOptions, convert
    from edgemnv2.models import UserModel

    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(8, 3, strides=2)(inp))
    tiny = keras.initializers.RandomNormal(stddev=1e-7)
    out = keras.layers.Dense(10, activation="softmax", kernel_initializer=tiny, bias_initializer="zeros")(x)
    folder = tmp_path_factory.mktemp("narrow")
    keras.Model(inp, out).save(folder / "narrow.keras")
    path = folder / "narrow_int8.tflite"
    convert(UserModel(folder / "narrow.keras"), ConvertOptions(calibration=calib_dir, num_calibration=2, output=path,
                                                               calibration_method="minmax", bias_correction=False))
    return path


def test_tflm_abort_is_caught(narrow_logits_int8: Path) -> None:
    """A model whose softmax TFLM cannot quantize makes it call abort(); only the child process dies."""
    with pytest.raises(TFLMRejected, match="aborted"):
        measure_arena(narrow_logits_int8)


def test_not_tflite_is_a_model_error(tmp_path: Path) -> None:
    junk = tmp_path / "notes.tflite"
    junk.write_text("not a model at all")
    with pytest.raises(ModelError, match="not a TFLite model"):
        plan_arena(junk)
    with pytest.raises(ModelError, match="not a TFLite model"):
        measure_arena(junk)
    with pytest.raises(ModelError, match="does not exist"):
        measure_arena(tmp_path / "missing.tflite")


def test_unknown_ops_are_flagged_not_fatal(shared_dir: Path) -> None:
    plan = plan_arena(shared_dir / "models" / "mobilenet_v1_0.25_128_quant_edgetpu.tflite")
    assert plan.unknown_ops == ["CUSTOM:edgetpu-custom-op"]
    assert plan.peak_bytes > 0


def test_linux_activation_bytes_bounds(coral_v2_tflite: Path) -> None:
    plan = plan_arena(coral_v2_tflite)
    linux = linux_activation_bytes(coral_v2_tflite)
    assert plan.peak_live_bytes <= linux <= sum(b.bytes for b in plan.buffers) + 64 * len(plan.buffers)
    assert linux % 64 == 0


def test_greedy_places_largest_first_and_reuses_dead_space() -> None:
    # a: 0..1, b: 1..2, c: 2..3 (sizes 100, 50, 80): a at 0; c does not meet a, so 0; b meets both -> after a (100)
    offsets = greedy_offsets([100, 50, 80], [0, 1, 2], [1, 2, 3])
    assert offsets == [0, 100, 0]


def test_greedy_equal_sizes_follow_tflm_tie_order() -> None:
    # TFLM fills its sort list from the tail, so among equal sizes the LAST added buffer is placed first.
    assert greedy_offsets([32, 32], [0, 0], [1, 1]) == [32, 0]


def test_greedy_keeps_offline_offsets() -> None:
    assert greedy_offsets([64, 64], [0, 0], [1, 1], offline=[128, -1]) == [128, 0]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 64), st.integers(0, 10), st.integers(0, 5)), min_size=1, max_size=25))
def test_greedy_never_overlaps_live_buffers(specs: list[tuple[int, int, int]]) -> None:
    sizes = [s * BUFFER_ALIGNMENT for s, _, _ in specs]
    firsts = [f for _, f, _ in specs]
    lasts = [f + d for _, f, d in specs]
    offsets = greedy_offsets(sizes, firsts, lasts)
    for i in range(len(sizes)):
        for j in range(i + 1, len(sizes)):
            if firsts[i] <= lasts[j] and firsts[j] <= lasts[i]:
                assert offsets[i] + sizes[i] <= offsets[j] or offsets[j] + sizes[j] <= offsets[i]
    peak_live = max(sum(s for s, f, l in zip(sizes, firsts, lasts) if f <= t <= l) for t in range(16))
    assert max(o + s for o, s in zip(offsets, sizes)) >= peak_live
