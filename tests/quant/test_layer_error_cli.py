"""Per-layer errors, the convert/validate options of issue 6, and their one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgemnv2 import layer_error


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "edgemnv2", *args], capture_output=True, text=True, env=env,
                          timeout=600, cwd=cwd)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


def test_compare_layers_ranks_worst_first(small_model, small_images) -> None:
    from edgemnv2_converters import calibration

    calibrated = calibration.calibrate_float_model(small_model, small_images)
    quant = calibration.quantize_calibrated(calibrated, per_tensor=True)
    report = layer_error.compare_layers(calibrated, quant, small_images[:3])
    assert len(report.layers) >= 60  # every conv, add, pool, fc, softmax output
    worst = report.worst()
    assert [w.sqnr_lost_db for w in worst] == sorted((w.sqnr_lost_db for w in worst), reverse=True)
    assert all(np.isfinite(w.sqnr_db) and w.relative_error >= 0 for w in worst)
    assert report.layers[0].op == "CONV_2D" and report.layers[0].short_name.startswith("Conv1")
    text = layer_error.render_table(report, count=5)
    assert len(text.splitlines()) == 7


def test_compare_layers_needs_matching_names(small_images, int8_mnv2_035_128, coral_v2_tflite) -> None:
    with pytest.raises(layer_error.ModelError, match="float twin"):
        layer_error.compare_layers(coral_v2_tflite.read_bytes(), int8_mnv2_035_128.read_bytes(), small_images[:1])


@pytest.fixture(scope="module")
def converted(tmp_path_factory, calib_dir: Path) -> Path:
    """convert --per-tensor --equalize --bias-correction --calibration-method mse on a small random model."""
    out = tmp_path_factory.mktemp("quant") / "small.tflite"
    proc = run_cli("convert", "--alpha", "0.35", "--resolution", "96", "--weights", "none", "--per-tensor",
                   "--equalize", "--bias-correction", "--calibration-method", "mse", "--num-calibration", "8",
                   "--calibration", str(calib_dir), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "per-tensor weights, int8 activations, mse ranges" in proc.stdout
    return out


def test_convert_records_quantization_in_sidecar(converted: Path) -> None:
    sidecar = json.loads(converted.with_name(converted.name + ".json").read_text())
    assert sidecar["fully_integer"] and sidecar["input"]["dtype"] == "int8"
    options = sidecar["options"]
    assert options["per_tensor"] and options["equalize"] and options["bias_correction"]
    assert options["calibration_method"] == "mse"
    q = sidecar["quantization"]
    assert q["weights"] == "per-tensor" and q["equalize"]["mode"] == "weights" and "bias_correction" in q
    assert (converted.parent / q["float_twin"]).is_file()


def test_validate_per_layer_with_plot(converted: Path, calib_dir: Path, tmp_path: Path) -> None:
    plot = tmp_path / "layers.png"
    proc = run_cli("validate", str(converted), "--data", str(calib_dir), "--limit", "4", "--per-layer",
                   "--per-layer-images", "2", "--plot", str(plot), "--json")
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout)
    worst = payload["per_layer"]["worst_first"]
    assert payload["per_layer"]["float_model"].endswith(".float.tflite")
    assert worst[0]["sqnr_lost_db"] >= worst[-1]["sqnr_lost_db"]
    assert plot.stat().st_size > 1000


@pytest.mark.parametrize("args,expected", [
    (["--int16-activations", " , "], "give 'all' (whole graph), 'auto'"),
    (["--int16-activations", "all"], "use --io float32"),
    (["--quantize", "float16", "--per-tensor"], "need --quantize int8"),
])
def test_convert_option_errors(args: list[str], expected: str, tmp_path: Path) -> None:
    proc = run_cli("convert", "--alpha", "0.35", "--resolution", "96", "--weights", "none", "-o",
                   str(tmp_path / "m.tflite"), *args)
    assert proc.returncode == 1
    assert expected in one_error_line(proc)


def test_unknown_calibration_method_is_a_usage_error(tmp_path: Path) -> None:
    proc = run_cli("convert", "--calibration-method", "kl", "-o", str(tmp_path / "m.tflite"))
    assert proc.returncode == 2 and "minmax" in proc.stderr


def test_plot_needs_per_layer(converted: Path, tmp_path: Path) -> None:
    proc = run_cli("validate", str(converted), "--plot", str(tmp_path / "x.png"))
    assert proc.returncode == 1 and "--per-layer" in one_error_line(proc)
