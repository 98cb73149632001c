"""Model sources: spec validation, offline-first weights, resolution reuse, user models."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from edgemnv2 import models
from edgemnv2.errors import ModelError, WeightsUnavailable
from edgemnv2.models import ModelSpec, UserModel, parse_reference, resolve_imagenet_weights


@pytest.fixture
def no_weights_anywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Empty mirror and Keras cache, downloads forbidden: nothing may touch the network."""
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setenv("EDGEMNV2_OFFLINE", "1")
    monkeypatch.delenv("EDGEMNV2_WEIGHTS_DIR", raising=False)
    return empty


@pytest.mark.parametrize("alpha, resolution, message", [
    (0.6, 224, "alpha 0.6 is not supported; choose one of 0.35, 0.5, 0.75, 1, 1.3, 1.4"),
    (1.0, 100, "resolution 100 is not supported; choose one of 96, 128, 160, 192, 224"),
])
def test_unsupported_spec_lists_allowed_values(alpha: float, resolution: int, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        ModelSpec(alpha, resolution)


def test_keras_file_names() -> None:
    assert models.weights_filename(0.5, 96) == "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.5_96.h5"
    assert ModelSpec(1.0, 224).name == "mobilenet_v2_1.0_224"


def test_mirror_exact_file(shared_weights: Path) -> None:
    assert resolve_imagenet_weights(1.0, 224, shared_weights.parent) == shared_weights


def test_other_resolution_reuses_same_alpha_with_a_note(shared_weights: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        assert resolve_imagenet_weights(1.0, 96, shared_weights.parent) == shared_weights
    assert "weights do not depend on the resolution" in caplog.text


def test_env_mirror_then_keras_cache(tmp_path: Path, shared_weights: Path, monkeypatch) -> None:
    monkeypatch.setenv("EDGEMNV2_OFFLINE", "1")
    (tmp_path / "mirror").mkdir()  # an empty mirror: the weights come from the Keras cache after it
    monkeypatch.setenv("EDGEMNV2_WEIGHTS_DIR", str(tmp_path / "mirror"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    (tmp_path / "kh" / "models").mkdir(parents=True)
    cached = tmp_path / "kh" / "models" / shared_weights.name
    cached.symlink_to(shared_weights)
    assert resolve_imagenet_weights(1.0, 160) == cached


def test_weights_unavailable_offline_names_file_and_folder(no_weights_anywhere: Path) -> None:
    with pytest.raises(WeightsUnavailable) as info:
        resolve_imagenet_weights(0.5, 128, no_weights_anywhere)
    message = str(info.value)
    assert "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.5_128.h5" in message
    assert str(no_weights_anywhere) in message and "\n" not in message


def test_other_alpha_cannot_reuse_weights(tmp_path: Path, shared_weights: Path, no_weights_anywhere) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / shared_weights.name).symlink_to(shared_weights)
    with pytest.raises(WeightsUnavailable, match="cannot be shared across alphas"):
        resolve_imagenet_weights(0.35, 224, mirror)


def test_failed_download_is_fast_and_clear(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("EDGEMNV2_OFFLINE", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    monkeypatch.setattr(models, "WEIGHTS_URL", "http://127.0.0.1:9/")  # closed port: refused at once
    with pytest.raises(WeightsUnavailable, match="download failed"):
        resolve_imagenet_weights(1.4, 224, tmp_path)


def test_parse_reference(tmp_path: Path) -> None:
    assert parse_reference("mobilenet_v2_0.35_96") == ModelSpec(0.35, 96)
    (tmp_path / "m.keras").write_bytes(b"x")
    assert parse_reference(str(tmp_path / "m.keras")) == UserModel(tmp_path / "m.keras")
    with pytest.raises(ModelError, match="neither a model spec"):
        parse_reference("resnet50")


@pytest.mark.parametrize("name, content", [("notes.keras", b"hello"), ("weights.h5", b"\x89HDF junk"),
                                           ("model.onnx", b"onnx")])
def test_not_a_keras_model(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ModelError, match=name):
        models.load_keras_model(UserModel(path))


def test_folder_that_is_not_a_savedmodel(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not a SavedModel"):
        models.load_keras_model(UserModel(tmp_path))


def test_user_keras_model_round_trip(tmp_path: Path) -> None:
    keras = models.import_keras()
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 3), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(4, activation="softmax")])
    model.save(tmp_path / "tiny.keras")
    loaded = models.load_keras_model(UserModel(tmp_path / "tiny.keras"))
    assert models.model_resolution(loaded) == 8
    described = models.describe(UserModel(tmp_path / "tiny.keras"))
    assert described["kind"] == "keras" and len(described["sha256"]) == 64


def test_weights_of_another_alpha_do_not_fit(shared_weights: Path) -> None:
    with pytest.raises(ModelError, match="do not fit MobileNetV2 alpha 0.35"):
        models.load_keras_model(ModelSpec(0.35, 96, shared_weights))


def test_describe_spec_hashes_weights(shared_weights: Path) -> None:
    d = models.describe(ModelSpec(1.0, 224, "imagenet", shared_weights.parent))
    assert d["weights_file"] == str(shared_weights) and len(d["weights_sha256"]) == 64
