"""The main job, as a user runs it: convert MobileNetV2 1.0/224 to int8 with the shared weights and
calibration images, then validate it against the float model (slow: about a minute on 2 cores)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgemnv2.convert import summarize_tflite

from .conftest import run_cli


@pytest.mark.slow
def test_convert_then_validate_1_0_224(tmp_path: Path, shared_weights: Path, calib_dir: Path) -> None:
    model = tmp_path / "mnv2_int8.tflite"
    proc = run_cli("convert", "--quantize", "int8", "--weights-dir", str(shared_weights.parent),
                   "--calibration", str(calib_dir), "-o", str(model))
    assert proc.returncode == 0, proc.stderr
    summary = summarize_tflite(model.read_bytes())
    assert summary.non_integer_ops == () and summary.input.dtype == summary.output.dtype == "int8"
    sidecar = json.loads((tmp_path / "mnv2_int8.tflite.json").read_text())
    assert sidecar["fully_integer"] and sidecar["calibration"]["count"] == 100
    assert sidecar["source"]["weights_sha256"] and sidecar["ops"]["CONV_2D"] == 35

    report_path = tmp_path / "report.json"
    proc = run_cli("validate", str(model), "--data", str(calib_dir), "--weights-dir", str(shared_weights.parent),
                   "--min-agreement", "97", "--output", str(report_path))  # reference from the sidecar
    assert proc.returncode == 0, proc.stderr + proc.stdout
    report = json.loads(report_path.read_text())
    assert report["images"] == 100 and report["top1_agreement"] >= 97.0
    assert report["float_top1"] > 75.0
