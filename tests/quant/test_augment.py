"""AdaRound's augmentations: mirror images and seeded crops resized back as PIL resizes them."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from edgemnv2_converters import augment


def _images(n: int = 3, size: int = 32) -> np.ndarray:
    return np.random.default_rng(0).uniform(-1, 1, (n, size, size, 3)).astype(np.float32)


def test_originals_first_then_mirrors_then_crops() -> None:
    images = _images()
    out = augment.augmented(images, ("flips", "crops"))
    assert out.shape == (9, 32, 32, 3) and out.dtype == np.float32
    assert np.array_equal(out[:3], images)
    assert np.array_equal(out[3:6], images[:, :, ::-1])
    assert not np.array_equal(out[6:], images)  # cropped and resized
    assert np.array_equal(out, augment.augmented(images, ("flips", "crops")))  # seeded
    assert augment.augmented(images, ()) is images


def test_resize_matches_pil_and_keeps_a_full_box() -> None:
    image = _images(1, 40)[0]
    assert np.array_equal(augment.resize_bilinear(image, (0, 0, 40, 40), (40, 40)), image)
    box = (3.0, 5.0, 31.0, 31.0)  # top, left, height, width
    ours = augment.resize_bilinear(image, box, (40, 40))
    theirs = np.stack([np.asarray(Image.fromarray(image[..., c], "F").resize(
        (40, 40), Image.BILINEAR, box=(5, 3, 36, 34))) for c in range(3)], axis=-1)
    assert np.abs(ours - theirs).max() < 1e-5


def test_a_crop_stays_inside_the_image() -> None:
    image = np.arange(64 * 64, dtype=np.float32).reshape(64, 64, 1)
    crops = np.stack([augment.random_crop(image, np.random.default_rng(seed)) for seed in range(20)])
    assert crops.min() >= image.min() and crops.max() <= image.max()


@pytest.mark.parametrize("text, kinds", [("none", ()), ("", ()), (None, ()), ("flips", ("flips",)),
                                         (" Crops , flips,crops", ("crops", "flips"))])
def test_parse(text: str | None, kinds: tuple[str, ...]) -> None:
    assert augment.parse(text) == kinds


def test_parse_names_the_choices() -> None:
    with pytest.raises(ValueError, match="unknown augmentation 'rotate': choose from flips, crops"):
        augment.parse("flips,rotate")
