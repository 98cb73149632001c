"""A user's own Keras model through convert and validate (.keras file and SavedModel folder)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgemnv2.convert import ConvertOptions, convert
from edgemnv2.errors import InputError
from edgemnv2.models import UserModel, import_keras
from edgemnv2.validate import validate


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """A 10-class 32x32 classifier saved as .keras and exported as a SavedModel."""
    keras = import_keras()
    folder = tmp_path_factory.mktemp("user_models")
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(8, 3, activation="relu"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10, activation="softmax")])
    model.save(folder / "tiny.keras")
    model.export(str(folder / "tiny_savedmodel"), verbose=False)
    return {"keras": folder / "tiny.keras", "savedmodel": folder / "tiny_savedmodel"}


@pytest.mark.parametrize("kind", ["keras", "savedmodel"])
def test_user_model_converts_fully_integer_and_validates(tiny_models, kind: str, tmp_path: Path,
                                                         small_calib: Path) -> None:
    result = convert(UserModel(tiny_models[kind]), ConvertOptions(calibration=small_calib, num_calibration=4,
                                                                  output=tmp_path / "tiny.tflite"))
    assert result.sidecar.fully_integer and result.sidecar.resolution == 32
    assert result.sidecar.source["kind"] == "keras" and len(result.sidecar.source["sha256"]) == 64

    report = validate(result.output, data=small_calib)  # reference found through the sidecar
    assert report.classes == 10 and report.images == 4
    assert not report.labelled  # ImageNet labels cannot score a 10-class model
    assert report.max_abs_diff < 0.05  # random weights: near-uniform outputs, so compare values, not argmax
    with pytest.raises(InputError, match="model has 10 classes"):
        validate(result.output, data=small_calib, max_top1_drop=1.0)


@pytest.mark.parametrize("kind", ["keras", "savedmodel"])
def test_per_tensor_defaults_apply_or_step_aside_for_user_models(tiny_models, kind: str, tmp_path: Path,
                                                                 small_calib: Path, caplog) -> None:
    """--per-tensor turns equalization and bias correction on; a model they cannot rebuild (a SavedModel
    wrapped in a TFSMLayer) still converts, without them, and says so."""
    result = convert(UserModel(tiny_models[kind]), ConvertOptions(calibration=small_calib, num_calibration=4,
                                                                  per_tensor=True, output=tmp_path / "pt.tflite"))
    quantization = result.sidecar.quantization
    assert result.sidecar.fully_integer and quantization["weights"] == "per-tensor"
    if kind == "keras":
        assert "equalize" in quantization and "bias_correction" in quantization
    else:
        assert set(quantization) >= {"equalize_skipped", "bias_correction_skipped"}
        assert "default equalize and bias correction skipped" in caplog.text
