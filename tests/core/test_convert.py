"""The convert stage: full-integer verification, sidecar contents, and early failures."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from edgemnv2.convert import ConvertOptions, convert, default_output, summarize_tflite
from edgemnv2.errors import ConversionError, DataError, InputError, ModelError
from edgemnv2.models import ModelSpec, UserModel
from edgemnv2.runtime import open_model

SIDECAR_KEYS = {"source", "resolution", "alpha", "options", "calibration", "file_size", "sha256", "ops",
                "fully_integer", "input", "output", "versions", "wall_time_s", "stage_seconds"}


@pytest.fixture(scope="module")
def converted(tmp_path_factory, small_calib: Path):
    out = tmp_path_factory.mktemp("convert") / "nested" / "small.tflite"
    return convert(ModelSpec(0.35, 96, "none"), ConvertOptions(calibration=small_calib, num_calibration=3, output=out))


def test_int8_is_fully_integer_with_int8_io(converted) -> None:
    summary = summarize_tflite(converted.output.read_bytes())
    assert summary.non_integer_ops == ()
    assert summary.input.dtype == "int8" and summary.output.dtype == "int8"
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "FULLY_CONNECTED", "SOFTMAX"} <= set(summary.ops)
    assert open_model(converted.output).predict(np.zeros((1, 96, 96, 3), np.float32)).shape == (1, 1000)


def test_sidecar_is_complete(converted) -> None:
    sidecar = json.loads(converted.sidecar_path.read_text())
    assert converted.sidecar_path.name == "small.tflite.json"
    assert SIDECAR_KEYS <= set(sidecar)
    assert sidecar["file_size"] == converted.output.stat().st_size
    assert sidecar["calibration"]["count"] == 3 and sidecar["calibration"]["available"] == 4
    assert len(sidecar["calibration"]["files_sha256"]) == 64
    assert sidecar["source"] == {"kind": "mobilenet_v2", "name": "mobilenet_v2_0.35_96", "alpha": 0.35,
                                 "resolution": 96, "weights": "none", "weights_file": None, "weights_sha256": None}
    assert sidecar["input"]["scale"] > 0 and isinstance(sidecar["input"]["zero_point"], int)
    assert sidecar["versions"]["tensorflow"].startswith("2.")
    assert sidecar["options"]["quantize"] == "int8" and sidecar["options"]["io"] == "int8"


def test_uint8_io_keeps_integer_kernels(tmp_path: Path, small_calib: Path) -> None:
    result = convert(ModelSpec(0.35, 96, "none"),
                     ConvertOptions(io="uint8", calibration=small_calib, num_calibration=2, output=tmp_path / "u8.tflite"))
    assert result.sidecar.input["dtype"] == "uint8" and result.sidecar.output["dtype"] == "uint8"
    assert result.sidecar.fully_integer and result.sidecar.ops["QUANTIZE"] >= 1


def test_verifier_flags_float_ops(dynamic_mnv2_035_96: Path) -> None:
    summary = summarize_tflite(dynamic_mnv2_035_96.read_bytes())
    assert summary.non_integer_ops and "float32" in summary.non_integer_ops[0]


def test_default_output_name(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert default_output(ModelSpec(1.0, 224), ConvertOptions()) == tmp_path / "mobilenet_v2_1.0_224_int8.tflite"
    assert default_output(ModelSpec(0.5, 96), ConvertOptions(io="uint8")).name == "mobilenet_v2_0.5_96_int8_iouint8.tflite"
    assert default_output(UserModel(Path("my.keras")), ConvertOptions(quantize="float16")).name == "my_float16.tflite"


def test_option_combinations_are_checked() -> None:
    with pytest.raises(InputError, match="--io uint8 needs --quantize int8"):
        ConvertOptions(quantize="dynamic", io="uint8")
    with pytest.raises(InputError, match="choose one of int8, float16, dynamic, none"):
        ConvertOptions(quantize="int4")
    assert ConvertOptions(quantize="float16").io == "float32"


@pytest.mark.parametrize("case", ["missing", "empty", "no_images"])
def test_bad_calibration_folder_fails_before_building(tmp_path: Path, case: str) -> None:
    folder = tmp_path / "calib"
    if case != "missing":
        folder.mkdir()
    if case == "no_images":
        (folder / "readme.txt").write_text("x")
    start = time.perf_counter()
    with pytest.raises(DataError, match=str(folder)):
        convert(ModelSpec(0.35, 96, "none"), ConvertOptions(calibration=folder, output=tmp_path / "m.tflite"))
    assert time.perf_counter() - start < 5  # no model was built


def test_unwritable_output_fails_before_building(tmp_path: Path, small_calib: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="cannot write output"):
        convert(ModelSpec(0.35, 96, "none"), ConvertOptions(calibration=small_calib, output=blocker / "m.tflite"))
    with pytest.raises(InputError, match="is a folder"):
        convert(ModelSpec(0.35, 96, "none"), ConvertOptions(calibration=small_calib, output=tmp_path))


def test_not_a_keras_model(tmp_path: Path, small_calib: Path) -> None:
    bogus = tmp_path / "model.keras"
    bogus.write_text("definitely not a zip")
    with pytest.raises(ModelError, match="not a loadable Keras model"):
        convert(UserModel(bogus), ConvertOptions(calibration=small_calib, output=tmp_path / "m.tflite"))


def test_verify_rejects_non_integer_result(monkeypatch, tmp_path: Path, small_calib: Path,
                                           dynamic_mnv2_035_96: Path) -> None:
    """If the converter ever fell back to float, convert must refuse to write the model."""
    import edgemnv2_converters.keras_to_tflite as backend

    monkeypatch.setattr(backend, "convert_keras", lambda *a, **k: dynamic_mnv2_035_96.read_bytes())
    with pytest.raises(ConversionError, match="not fully integer"):
        convert(ModelSpec(0.35, 96, "none"), ConvertOptions(calibration=small_calib, num_calibration=1,
                                                            output=tmp_path / "m.tflite",
                                                            calibration_method="minmax", bias_correction=False))
    assert not (tmp_path / "m.tflite").exists()
