"""More calibration statistics from the same images: mirror images and random crops (for AdaRound).

AdaRound learns each layer's rounding from the second moment of its input over the calibration images; with
100 images that moment is an estimate, and the learned rounding can fit those images' pixels rather than the
layer. Mirror images and crops are images of the same classes that a camera could as well have taken, so they
add samples of the input distribution without adding labels or files. Everything here is numpy on the
preprocessed arrays (N, H, W, C), seeded, and the originals always come first.
"""

from __future__ import annotations

import numpy as np

AUGMENTATIONS = ("flips", "crops")
CROP_SIDE = (0.75, 1.0)  # a crop's side as a share of the image's, drawn uniformly


def parse(text: str | None) -> tuple[str, ...]:
    """'flips,crops' → ('flips', 'crops'); '' / 'none' / None → (). Unknown names raise ValueError."""
    if text is None or text.strip().lower() in ("", "none"):
        return ()
    kinds = tuple(dict.fromkeys(part.strip().lower() for part in text.split(",") if part.strip()))
    unknown = [kind for kind in kinds if kind not in AUGMENTATIONS]
    if unknown:
        raise ValueError(f"unknown augmentation {unknown[0]!r}: choose from {', '.join(AUGMENTATIONS)} "
                         "(comma-separated) or none")
    return kinds


def augmented(images: np.ndarray, kinds: tuple[str, ...], seed: int = 0) -> np.ndarray:
    """The images, then one mirror image of each ('flips'), then one random crop of each resized back ('crops')."""
    parts = [images]
    if "flips" in kinds:
        parts.append(images[:, :, ::-1])
    if "crops" in kinds:
        rng = np.random.default_rng(seed)
        parts.append(np.stack([random_crop(image, rng) for image in images]))
    return np.ascontiguousarray(np.concatenate(parts)) if len(parts) > 1 else images


def random_crop(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A square crop (side uniform in CROP_SIDE of the image's) at a uniform position, resized back bilinearly."""
    height, width = image.shape[:2]
    side = rng.uniform(*CROP_SIDE)
    crop_h, crop_w = side * height, side * width
    top, left = rng.uniform(0, height - crop_h), rng.uniform(0, width - crop_w)
    return resize_bilinear(image, (top, left, crop_h, crop_w), (height, width))


def resize_bilinear(image: np.ndarray, box: tuple[float, float, float, float], size: tuple[int, int]) -> np.ndarray:
    """The region `box` (top, left, height, width in pixels) of an (H, W, C) image sampled at `size`, pixel centres
    aligned as in PIL / tf.image.resize (half-pixel), edges clamped."""
    top, left, box_h, box_w = box
    rows = _taps(top, box_h, size[0], image.shape[0])
    cols = _taps(left, box_w, size[1], image.shape[1])
    (r0, r1, rw), (c0, c1, cw) = rows, cols
    upper = image[r0][:, c0] * (1 - cw)[None, :, None] + image[r0][:, c1] * cw[None, :, None]
    lower = image[r1][:, c0] * (1 - cw)[None, :, None] + image[r1][:, c1] * cw[None, :, None]
    return (upper * (1 - rw)[:, None, None] + lower * rw[:, None, None]).astype(image.dtype)


def _taps(start: float, extent: float, count: int, limit: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For `count` output samples over [start, start + extent): the two source indices and the second's weight."""
    centres = start + (np.arange(count) + 0.5) * extent / count - 0.5
    centres = np.clip(centres, 0, limit - 1)
    low = np.floor(centres).astype(np.int64)
    high = np.minimum(low + 1, limit - 1)
    return low, high, (centres - low).astype(np.float32)
