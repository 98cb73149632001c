"""The interpreter layer: LiteRT first, one-line errors for bad files, and no TensorFlow import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgemnv2.errors import ModelError
from edgemnv2.runtime import open_model


def test_int8_model_io_and_prediction(int8_mnv2_035_128: Path) -> None:
    model = open_model(int8_mnv2_035_128)
    assert model.backend == "litert"
    assert model.input.shape == (1, 128, 128, 3) and model.input.dtype == np.int8 and model.input.quantized
    images = np.random.default_rng(0).uniform(-1, 1, (3, 128, 128, 3)).astype(np.float32)
    raw = model.quantize_input(images)
    assert raw.dtype == np.int8
    # quantize → dequantize returns the image within half a step
    back = (raw.astype(np.float32) - model.input.zero_point) * model.input.scale
    assert np.max(np.abs(back - images)) <= model.input.scale / 2 + 1e-6
    out = model.predict(images)
    assert out.shape == (3, 1000) and out.dtype == np.float32
    # dequantized softmax of random weights: ~0.001 per class, on a 1/256 grid
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert set(np.unique(out / model.output.scale).round(4)) <= set(np.arange(257.0))


def test_uint8_coral_model_dequantizes(coral_v2_tflite: Path) -> None:
    model = open_model(coral_v2_tflite)
    assert model.input.dtype == np.uint8 and model.output.shape == (1, 1001)
    raw = model.quantize_input(np.zeros((1, 224, 224, 3), np.float32))
    assert raw.dtype == np.uint8


@pytest.mark.parametrize("content", [b"", b"not a model at all", b"\x18\x00\x00\x00TFL3" + b"\x00" * 40])
def test_corrupted_tflite_raises_model_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.tflite"
    path.write_bytes(content)
    with pytest.raises(ModelError, match="broken.tflite"):
        open_model(path)


def test_truncated_real_model_raises_model_error(tmp_path: Path, int8_mnv2_035_128: Path) -> None:
    path = tmp_path / "truncated.tflite"
    path.write_bytes(int8_mnv2_035_128.read_bytes()[:5000])
    with pytest.raises(ModelError):
        open_model(path)


def test_runtime_never_imports_tensorflow(int8_mnv2_035_128: Path) -> None:
    code = ("import sys, numpy as np; from edgemnv2.runtime import open_model; "
            f"m = open_model({str(int8_mnv2_035_128)!r}); m.predict(np.zeros((1,128,128,3), np.float32)); "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'; print(m.backend)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "litert"


@pytest.mark.filterwarnings("ignore:.*experimental_preserve_all_tensors:UserWarning")
def test_quantize_values_maps_floats_like_litert_quantize_kernel(tmp_path: Path) -> None:
    """Ties included: [-1, 1] preprocessing puts every pixel on one, so the rounding rule is the integers."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    from edgemnv2.runtime import quantize_values

    inputs = tf.keras.Input((8, 8, 3))
    keras_model = tf.keras.Model(inputs, tf.keras.layers.Conv2D(4, 1)(inputs))
    rng = np.random.default_rng(0)
    converter = tf.lite.TFLiteConverter.from_keras_model(keras_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([rng.uniform(-1, 1, (1, 8, 8, 3)).astype(np.float32)]
                                                for _ in range(4))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    interpreter = Interpreter(model_content=converter.convert(), experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    quantize = next(op for op in interpreter._get_ops_details() if op["op_name"] == "QUANTIZE")
    quantized = interpreter.get_tensor_details()[quantize["outputs"][0]]
    scale, zero_point = quantized["quantization"]
    ties = ((np.arange(192) - 96 + 0.5) * np.float32(scale)).astype(np.float32).reshape(1, 8, 8, 3)
    for values in (ties, rng.uniform(-1.2, 1.2, (1, 8, 8, 3)).astype(np.float32)):
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], values)
        interpreter.invoke()
        np.testing.assert_array_equal(quantize_values(values, scale, zero_point, np.int8),
                                      interpreter.get_tensor(quantize["outputs"][0]))
    halves_away = np.trunc(ties / np.float32(scale)) + np.sign(ties)  # the reference kernel's rule on ties
    assert np.mean(quantize_values(ties, scale, zero_point, np.int8) != halves_away + zero_point) > 0.2
