"""Fixtures for the core pipeline tests: tiny image folders made with PIL, and a small converted model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `python -m edgemnv2 ...` the way a user does (main() turns errors into one line + exit code)."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    return subprocess.run([sys.executable, "-m", "edgemnv2", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout)


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The single 'Error: ...' line on stderr (fails the test when there is a traceback or several lines)."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in lines if line.startswith("Error: ")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


def write_image(path: Path, mode: str = "RGB", size: tuple[int, int] = (40, 30), seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    rgb = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")
    if mode == "P":
        img = rgb.convert("P", palette=Image.ADAPTIVE)
    elif mode in ("L", "CMYK", "RGBA", "LA"):
        img = rgb.convert(mode)
    elif mode == "I;16":
        img = Image.fromarray(rng.integers(0, 65535, (size[1], size[0]), dtype=np.uint16))
    else:
        img = rgb
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """Six readable images of mixed modes/formats plus one corrupt JPEG and a text file."""
    folder = tmp_path / "imgs"
    write_image(folder / "a_rgb.jpg", "RGB", seed=1)
    write_image(folder / "b_gray.png", "L", seed=2)
    write_image(folder / "c_palette.png", "P", seed=3)
    write_image(folder / "d_cmyk.jpg", "CMYK", seed=4)
    write_image(folder / "e_rgba.png", "RGBA", seed=5)
    write_image(folder / "f_bmp.bmp", "RGB", seed=6)
    (folder / "g_corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture(scope="session")
def small_calib(tmp_path_factory, calib_dir: Path) -> Path:
    """Four real ImageNet calibration images with their synset list (copied to a temp folder, not the repo)."""
    folder = tmp_path_factory.mktemp("calib4")
    for src in sorted(calib_dir.iterdir())[:4]:
        (folder / src.name).write_bytes(src.read_bytes())
    synsets = calib_dir.parent / "imagenet_synsets.txt"
    (folder / synsets.name).write_bytes(synsets.read_bytes())
    return folder
