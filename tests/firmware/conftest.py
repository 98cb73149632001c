"""Fixtures for the firmware tests: the repo paths and a small real int8 model to export."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COMMON = REPO / "firmware_templates" / "common"


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def gcc() -> str:
    path = shutil.which("gcc")
    if path is None:
        pytest.fail("gcc is required for the C firmware tests (.ci/run installs it)")
    return path


@pytest.fixture(scope="session")
def mcu_model(int8_mnv2_035_128: Path) -> Path:
    """Int8 MobileNetV2 0.35/128 (random weights): real ops, real tensors, 1.7 MB."""
    return int8_mnv2_035_128
