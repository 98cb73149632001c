"""Image loading: modes, corrupt files, labels, seeded choice, and the one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgemnv2.data import choose_files, list_images, load_images, preprocess_image
from edgemnv2.errors import DataError

from .conftest import write_image


def test_preprocess_matches_mobilenet_scaling(tmp_path: Path) -> None:
    img = Image.new("RGB", (50, 80), (255, 0, 128))
    out = preprocess_image(img, 32)
    assert out.shape == (32, 32, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[0, 0], [1.0, -1.0, 128 / 127.5 - 1.0], atol=1e-6)


def test_center_crop_keeps_the_middle(tmp_path: Path) -> None:
    img = Image.new("RGB", (100, 100), (0, 0, 0))
    img.paste((255, 255, 255), (25, 25, 75, 75))  # white centre square, half the side
    cropped = preprocess_image(img, 16, crop_fraction=0.5)
    whole = preprocess_image(img, 16, crop_fraction=None)
    assert cropped.min() == pytest.approx(1.0)  # only the white centre is left
    assert whole.min() == pytest.approx(-1.0)


def test_every_image_mode_becomes_rgb_and_corrupt_files_are_counted(image_folder: Path) -> None:
    result = load_images(image_folder, 24)
    assert result.images.shape == (6, 24, 24, 3)
    assert result.images.min() >= -1.0 and result.images.max() <= 1.0
    assert [p.name for p, _ in result.skipped] == ["g_corrupt.jpg"]
    assert [p.name for p in result.files][0] == "a_rgb.jpg"
    assert np.all(result.labels == -1) and not result.labelled


def test_sixteen_bit_grayscale_is_scaled_not_saturated(tmp_path: Path) -> None:
    path = write_image(tmp_path / "deep.png", "I;16")
    out = preprocess_image(path, 16)
    assert out.std() > 0.1  # clipping 16-bit values to 255 would give a flat white image


def test_rgba_transparent_pixels_become_white(tmp_path: Path) -> None:
    Image.new("RGBA", (10, 10), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    assert preprocess_image(tmp_path / "clear.png", 8).min() == pytest.approx(1.0)


def test_labels_from_synset_prefixes_and_parent_synset_list(tmp_path: Path) -> None:
    (tmp_path / "imagenet_synsets.txt").write_text("n00000001\nn00000002\nn00000003\n")
    folder = tmp_path / "calib"
    write_image(folder / "n00000003_cat.jpg")
    write_image(folder / "n00000001_dog.png")
    result = load_images(folder, 8)
    assert dict(zip((p.name for p in result.files), result.labels.tolist())) == {
        "n00000001_dog.png": 0, "n00000003_cat.jpg": 2}
    assert result.labelled


def test_labels_from_class_subfolders(tmp_path: Path) -> None:
    write_image(tmp_path / "zebra" / "1.jpg")
    write_image(tmp_path / "apple" / "2.jpg")
    write_image(tmp_path / "apple" / "3.jpg")
    result = load_images(tmp_path, 8)
    assert result.labels.tolist() == [0, 0, 1]


def test_shared_calibration_images_carry_keras_class_indices(calib_dir: Path) -> None:
    result = load_images(calib_dir, 32, limit=3)
    synsets = (calib_dir.parent / "imagenet_synsets.txt").read_text().split()
    for path, label in zip(result.files, result.labels):
        assert synsets[label] == path.name.split("_")[0]


def test_seeded_choice_is_reproducible(tmp_path: Path) -> None:
    files = [tmp_path / f"{i:03d}.jpg" for i in range(50)]
    assert choose_files(files, 10, seed=1) == choose_files(files, 10, seed=1)
    assert choose_files(files, 10, seed=1) != choose_files(files, 10, seed=2)
    assert choose_files(files, 100, seed=1) == files


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing", "does not exist"),
    (lambda d: d, "is empty"),
    (lambda d: (d / "x.txt").write_text("hi") and d, "holds no JPEG/PNG/BMP images"),
])
def test_unusable_folders_raise_one_clear_error(tmp_path: Path, make, message: str) -> None:
    folder = make(tmp_path)
    with pytest.raises(DataError, match=message):
        list_images(folder)


def test_folder_of_only_corrupt_images(tmp_path: Path) -> None:
    (tmp_path / "bad.jpg").write_bytes(b"garbage")
    with pytest.raises(DataError, match="none of the 1 image files"):
        load_images(tmp_path, 8)
