"""The static engine: generated C + the kernel library, bit-exact against the tflite-micro wheel."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgemnv2.cli import cli
from edgemnv2.deploy.static_engine import (activation_range, check_bit_exact, generate_engine, image_inputs,
                                           quantize_multiplier, tflm_outputs)
from edgemnv2.errors import ModelError
from edgemnv2.profile.opgraph import read_opgraph
from edgemnv2.profile.schedule import build_steps, plan_schedule, split_points


def test_quantize_multiplier_matches_tflite_by_hand():
    assert quantize_multiplier(0.0) == (0, 0)
    assert quantize_multiplier(0.5) == (1 << 30, 0)          # frexp(0.5) = (0.5, 0)
    assert quantize_multiplier(1.0) == (1 << 30, 1)          # the "same scale" pair TFLM tests for
    assert quantize_multiplier(0.75) == (3 << 29, 0)
    assert quantize_multiplier(2.0 ** -40) == (0, 0)          # shifts below -31 flush to zero
    q, shift = quantize_multiplier(1 - 2.0 ** -33)           # rounds up to 2^31: halved, shift + 1
    assert (q, shift) == (1 << 30, 1)
    assert activation_range("RELU6", 6 / 255, -128) == (-128, 127)
    assert activation_range("RELU", 0.1, 5) == (5, 127)


@pytest.fixture(scope="module")
def tiny_io(tiny_mnv2: Path, shared_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    inputs = image_inputs(tiny_mnv2, shared_dir / "data" / "imagenet-val", 6)
    return inputs, tflm_outputs(tiny_mnv2, inputs)


def test_tiny_model_uses_every_kernel(tiny_mnv2: Path):
    g = read_opgraph(tiny_mnv2)
    steps = build_steps(g)
    assert any(len(s.ops) == 2 for s in steps)       # a PAD fused into its conv
    assert {"conv", "depthwise", "pointwise", "add", "mean", "fully_connected", "softmax"} <= {s.kind for s in steps}


@pytest.mark.parametrize("kernels", ["portable", "cmsis-nn"])
@pytest.mark.parametrize("schedule, options", [
    ("inplace", {}),
    ("patch", {}),
    ("patch", {"split": "last", "grid": (2, 3)}),
    ("patch", {"split": "first", "grid": (4, 4)}),
])
def test_bit_exact_with_tflm(tiny_mnv2: Path, tiny_io, tmp_path: Path, schedule: str, options: dict, kernels: str):
    """Both kernel libraries; CMSIS-NN (its plain-C paths on the host) also in tiles and row by row."""
    inputs, reference = tiny_io
    if "split" in options:
        g = read_opgraph(tiny_mnv2)
        points = split_points(g, build_steps(g))
        options = {**options, "split": points[-1] if options["split"] == "last" else points[0]}
    report = check_bit_exact(tiny_mnv2, inputs, schedule, work=tmp_path, reference=reference, kernels=kernels,
                             **options)
    assert report.inputs == 6 and report.mismatched_inputs == 0 and report.max_abs_diff == 0
    assert len(np.unique(reference, axis=0)) > 1      # the images give different outputs: a real comparison
    assert report.arena_bytes == report.peak_bytes == plan_schedule(tiny_mnv2, schedule, None, options.get("split"),
                                                                    options.get("grid"), kernels=kernels).peak_bytes


def test_generated_sources_are_self_contained(tiny_mnv2: Path, tmp_path: Path):
    sources = generate_engine(tiny_mnv2, tmp_path / "engine", "patch")
    text = (tmp_path / "engine" / "se_model.c").read_text()
    assert "for (int ty = 0;" in text and "malloc" not in text and "se_invoke" in text
    header = (tmp_path / "engine" / "se_model.h").read_text()
    assert f"#define SE_ARENA_BYTES {sources.arena_bytes}" in header
    assert sorted(p.name for p in (tmp_path / "engine").iterdir()) == sorted(sources.files)


def test_export_engine_static_cli(tiny_mnv2: Path, tmp_path: Path):
    result = CliRunner().invoke(cli, ["export", "--engine", "static", "--model", str(tiny_mnv2), "--output",
                                      str(tmp_path / "se"), "--schedule", "inplace", "--json"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["schedule"] == "inplace" and data["arena_bytes"] > 0
    assert (tmp_path / "se" / "se_model.c").is_file()


def test_tflm_schedule_is_not_a_static_engine(tiny_mnv2: Path, tmp_path: Path):
    with pytest.raises(ModelError, match="inplace or patch"):
        generate_engine(tiny_mnv2, tmp_path / "x", "tflm")
    assert not (tmp_path / "x").exists()
