"""Fixtures for quantization tests: a small MobileNetV2 with non-trivial batch norm and a few real images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def small_images(calib_dir: Path) -> np.ndarray:
    """Eight real ImageNet images at 96 px, preprocessed as convert does."""
    from edgemnv2 import data

    return data.load_images(calib_dir, 96, limit=8, seed=0).images


@pytest.fixture(scope="session")
def small_model():
    """MobileNetV2 0.35/96 with random weights and random (non-identity) batch-norm statistics."""
    import keras

    model = keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, weights=None)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            n = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, n), rng.normal(0, 0.3, n), rng.normal(0, 0.2, n),
                               rng.uniform(0.3, 2.0, n)])
    return model


@pytest.fixture(scope="session")
def real_model_96(shared_weights: Path):
    """MobileNetV2 1.0/96 with the shared ImageNet weights."""
    import keras

    return keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=1.0, weights=str(shared_weights))
