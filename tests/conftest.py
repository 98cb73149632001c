"""Fixtures shared by every test area: the shared data folder and small real int8 models.

Models are built once per test session with `edgemnv2.convert` (8-15 s each on 2 cores) under a session
temp dir.
Area-specific fixtures live in tests/<area>/conftest.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# ../shared beside the checkout, or $EDGEMNV2_SHARED (as edgemnv2.paths reads it) for a checkout elsewhere
SHARED = Path(os.environ.get("EDGEMNV2_SHARED") or Path(__file__).resolve().parents[1].parent / "shared")


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


def _convert(out: Path, alpha: float, resolution: int, weights: Path | None, calib: Path, count: int,
             **options) -> Path:
    """Convert a MobileNetV2 with `edgemnv2.convert` (the product path), quietly."""
    from edgemnv2 import logs
    from edgemnv2.convert import ConvertOptions, convert
    from edgemnv2.models import ModelSpec

    logs.configure(0)
    spec = ModelSpec(alpha, resolution, str(weights) if weights else "none")
    convert(spec, ConvertOptions(calibration=calib, num_calibration=count, output=out, **options))
    return out


@pytest.fixture(scope="session")
def int8_mnv2_96(tmp_path_factory, shared_weights: Path, calib_dir: Path) -> Path:
    """Real int8 MobileNetV2 1.0/96 from `edgemnv2 convert` defaults (shared ImageNet weights, 20 calibration images)."""
    out = tmp_path_factory.mktemp("models") / "mnv2_1.0_96_int8.tflite"
    return _convert(out, 1.0, 96, shared_weights, calib_dir, 20)


@pytest.fixture(scope="session")
def int8_mnv2_035_128(tmp_path_factory, calib_dir: Path) -> Path:
    """Small int8 MobileNetV2 0.35/128 with random (He-normal) weights, plain converter quantization (outputs
    meaningless)."""
    out = tmp_path_factory.mktemp("models") / "mnv2_0.35_128_int8.tflite"
    return _convert(out, 0.35, 128, None, calib_dir, 8, calibration_method="minmax", bias_correction=False)


@pytest.fixture(scope="session")
def dynamic_mnv2_035_96(tmp_path_factory, calib_dir: Path) -> Path:
    """Dynamic-range quantized MobileNetV2 0.35/96 (float activations, int8 weights)."""
    out = tmp_path_factory.mktemp("models") / "mnv2_0.35_96_dynamic.tflite"
    return _convert(out, 0.35, 96, None, calib_dir, 1, quantize="dynamic")
