"""Fixtures shared by every test area: the shared data folder and small real int8 models.

Models are built once per test session (about 8 s each on 2 cores) under a session temp dir.
Area-specific fixtures live in tests/<area>/conftest.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    assert SHARED.is_dir(), f"tests need ../shared beside the checkout (looked in {SHARED})"
    return SHARED


@pytest.fixture(scope="session")
def shared_weights(shared_dir: Path) -> Path:
    return shared_dir / "models" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5"


@pytest.fixture(scope="session")
def calib_dir(shared_dir: Path) -> Path:
    return shared_dir / "data" / "imagenet-calib"


@pytest.fixture(scope="session")
def coral_v2_tflite(shared_dir: Path) -> Path:
    """Coral's published int8 MobileNetV2 1.0/224 (uint8 I/O)."""
    return shared_dir / "models" / "tf2_mobilenet_v2_1.0_224_ptq.tflite"


def _build_int8(out: Path, alpha: float, resolution: int, weights: Path | None, calib: Path, count: int,
                quantize: str = "int8") -> Path:
    """Convert a Keras MobileNetV2 with the plain TFLite converter (fixture-only; the product uses edgemnv2.convert)."""
    import numpy as np
    import tensorflow as tf
    import keras
    from PIL import Image

    model = keras.applications.MobileNetV2(input_shape=(resolution, resolution, 3), alpha=alpha,
                                           weights=str(weights) if weights else None)
    files = sorted(calib.iterdir())[:count]

    def representative():
        for f in files:
            img = Image.open(f).convert("RGB").resize((resolution, resolution), Image.BILINEAR)
            yield [(np.asarray(img, np.float32)[None] / 127.5 - 1.0)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "int8":
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    out.write_bytes(converter.convert())
    return out


@pytest.fixture(scope="session")
def int8_mnv2_96(tmp_path_factory, shared_weights: Path, calib_dir: Path) -> Path:
    """Real int8 MobileNetV2 1.0/96 (shared ImageNet weights, 20 calibration images, int8 I/O)."""
    out = tmp_path_factory.mktemp("models") / "mnv2_1.0_96_int8.tflite"
    return _build_int8(out, 1.0, 96, shared_weights, calib_dir, 20)


@pytest.fixture(scope="session")
def int8_mnv2_035_128(tmp_path_factory, calib_dir: Path) -> Path:
    """Small int8 MobileNetV2 0.35/128 with random weights (fast; outputs meaningless)."""
    out = tmp_path_factory.mktemp("models") / "mnv2_0.35_128_int8.tflite"
    return _build_int8(out, 0.35, 128, None, calib_dir, 8)


@pytest.fixture(scope="session")
def dynamic_mnv2_035_96(tmp_path_factory, calib_dir: Path) -> Path:
    """Dynamic-range quantized MobileNetV2 0.35/96 (float activations, int8 weights)."""
    out = tmp_path_factory.mktemp("models") / "mnv2_0.35_96_dynamic.tflite"
    return _build_int8(out, 0.35, 96, None, calib_dir, 0, quantize="dynamic")
