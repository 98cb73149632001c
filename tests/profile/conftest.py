"""Fixtures for the profile tests: small device-profile files and keras reference counts."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgemnv2.profile.devices import load_device


@pytest.fixture()
def rpi4_toml_text() -> str:
    return load_device("rpi4").path.read_text(encoding="utf-8")


@pytest.fixture()
def edgetpu_model(shared_dir: Path) -> Path:
    """Coral's Edge TPU-compiled MobileNetV1 0.25/128 (one edgetpu-custom-op)."""
    return shared_dir / "models" / "mobilenet_v1_0.25_128_quant_edgetpu.tflite"
