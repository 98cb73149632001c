"""Every bad input ends in one `Error: ...` line on stderr and a non-zero exit (via `python -m edgemnv2`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import error_line, run_cli


@pytest.fixture
def folders(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "empty").mkdir()
    (tmp_path / "noimages").mkdir()
    (tmp_path / "noimages" / "labels.csv").write_text("a,b\n")
    (tmp_path / "corrupt.tflite").write_bytes(b"\x00" * 64)
    (tmp_path / "notkeras.h5").write_text("plain text")
    (tmp_path / "afile").write_text("x")
    (tmp_path / "weights_empty").mkdir()
    return {p.name.replace(".", "_"): p for p in tmp_path.iterdir()} | {"missing": tmp_path / "missing", "tmp": tmp_path}


@pytest.mark.parametrize("args, expected", [
    (["convert", "--calibration", "{missing}"], "image folder {missing} does not exist"),
    (["convert", "--calibration", "{empty}"], "image folder {empty} is empty"),
    (["convert", "--calibration", "{noimages}"], "image folder {noimages} holds no JPEG/PNG/BMP images"),
    (["validate", "{corrupt_tflite}", "--reference", "mobilenet_v2_1.0_224"], "is not a TFLite model"),
    (["validate", "{missing}", "--reference", "mobilenet_v2_1.0_224"], "does not exist"),
    (["convert", "--alpha", "0.6"], "alpha 0.6 is not supported; choose one of 0.35, 0.5, 0.75, 1, 1.3, 1.4"),
    (["convert", "--resolution", "100"], "resolution 100 is not supported; choose one of 96, 128, 160, 192, 224"),
    (["convert", "--alpha", "0.5", "--weights-dir", "{weights_empty}", "-o", "{tmp}/m.tflite"],
     "ImageNet weights mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.5_224.h5 not found offline"),
    (["convert", "-o", "{afile}/m.tflite"], "cannot write output {afile}/m.tflite"),
    (["convert", "--model", "{notkeras_h5}", "-o", "{tmp}/m.tflite"], "is not a loadable Keras model"),
    (["convert", "--model", "{notkeras_h5}", "--alpha", "0.5"], "--model cannot be combined"),
    (["convert", "--adaround", "--adaround-augment", "rotations"],
     "--adaround-augment: unknown augmentation 'rotations': choose from flips, crops (comma-separated) or none"),
    (["convert", "--adaround-augment", "flips"], "--adaround-augment adds images to AdaRound's statistics: "
                                                 "it needs --adaround"),
], ids=["calib-missing", "calib-empty", "calib-no-images", "corrupt-tflite", "missing-tflite", "alpha",
        "resolution", "weights-offline", "unwritable-output", "not-keras", "model-and-alpha", "augment-unknown",
        "augment-without-adaround"])
def test_one_line_error(folders: dict[str, Path], args: list[str], expected: str) -> None:
    fmt = {k: str(v) for k, v in folders.items()}
    proc = run_cli(*(a.format(**fmt) for a in args),
                   env={"EDGEMNV2_OFFLINE": "1", "KERAS_HOME": str(folders["tmp"] / "keras_home")})
    assert proc.returncode == 1, proc.stderr
    assert expected.format(**fmt) in error_line(proc)
    assert proc.stdout == ""


@pytest.mark.parametrize("command", ["convert", "validate"])
def test_help(command: str) -> None:
    proc = run_cli(command, "--help")
    assert proc.returncode == 0 and "--json" in proc.stdout
