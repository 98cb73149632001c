"""Fixtures of the static-engine tests: a tiny MobileNetV2-like int8 model with every kernel the engine has."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_mnv2(tmp_path_factory, calib_dir: Path) -> Path:
    """A 32x32 MobileNetV2-style int8 model: ZeroPadding(1)+VALID stride-2 conv and depthwise (PADs the
    converter cannot fold into SAME, so the engine fuses them), a SAME depthwise,
    expansion/projection 1x1 convs, a residual ADD, global average pooling (MEAN), Dense and softmax."""
    from edgemnv2 import logs
    from edgemnv2.convert import ConvertOptions, convert
    from edgemnv2.models import UserModel, import_keras

    keras = import_keras()
    keras.utils.set_random_seed(0)
    L = keras.layers
    x = inputs = keras.Input((32, 32, 3))
    x = L.ReLU(6.0)(L.Conv2D(8, 3, strides=2)(L.ZeroPadding2D(((1, 1), (1, 1)))(x)))
    x = L.ReLU(6.0)(L.DepthwiseConv2D(3, padding="same")(x))
    x = L.Conv2D(8, 1)(x)
    x = L.ReLU(6.0)(L.Conv2D(24, 1)(x))
    x = L.ReLU(6.0)(L.DepthwiseConv2D(3, strides=2)(L.ZeroPadding2D(((1, 1), (1, 1)))(x)))
    skip = x = L.Conv2D(8, 1)(x)
    x = L.ReLU(6.0)(L.Conv2D(24, 1)(x))
    x = L.ReLU(6.0)(L.DepthwiseConv2D(3, padding="same")(x))
    x = L.Add()([skip, L.Conv2D(8, 1)(x)])
    # large classifier weights spread the logits, so different images give different softmax outputs
    dense = L.Dense(10, activation="softmax", kernel_initializer=keras.initializers.RandomNormal(stddev=4.0))
    x = dense(L.GlobalAveragePooling2D()(x))
    folder = tmp_path_factory.mktemp("tiny_mnv2")
    keras.Model(inputs, x).save(folder / "tiny.keras")
    logs.configure(0)
    out = folder / "tiny_mnv2_int8.tflite"
    convert(UserModel(folder / "tiny.keras"), ConvertOptions(calibration=calib_dir, num_calibration=4, output=out))
    return out
