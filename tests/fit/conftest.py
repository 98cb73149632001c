"""Fixtures for the fit and sweep tests: tiny image folders (real ImageNet images copied to a temp folder)."""

from __future__ import annotations

from pathlib import Path

import pytest


def _copy_images(src: Path, dst: Path, count: int) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for image in sorted(src.iterdir())[:count]:
        (dst / image.name).write_bytes(image.read_bytes())
    synsets = src.parent / "imagenet_synsets.txt"
    (dst / synsets.name).write_bytes(synsets.read_bytes())
    return dst


@pytest.fixture(scope="session")
def val3(tmp_path_factory, shared_dir: Path) -> Path:
    """Three labelled validation images."""
    return _copy_images(shared_dir / "data" / "imagenet-val", tmp_path_factory.mktemp("val3"), 3)


@pytest.fixture(scope="session")
def calib4(tmp_path_factory, shared_dir: Path) -> Path:
    """Four calibration images."""
    return _copy_images(shared_dir / "data" / "imagenet-calib", tmp_path_factory.mktemp("calib4"), 4)
