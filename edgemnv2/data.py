"""Image folders → preprocessed, labelled batches: one loader for calibration and validation.

Calibration and validation must see identical pixels, or the quantization ranges are tuned for
images the validation never shows; so both go through `preprocess_image` here.

Labels come from, in order of preference:
  * `<synset>_<anything>.<ext>` file names + a synset list (one id per line, line number = class
    index; default `imagenet_synsets.txt` in the folder or its parent),
  * one subfolder per class (sorted subfolder names = class indices 0..K-1; folder names that are
    synsets found in the synset list use the list's index instead),
  * none (label -1): agreement metrics still work, accuracy does not.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from edgemnv2.errors import DataError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp"})
SYNSETS_FILENAME = "imagenet_synsets.txt"
_SYNSET_PREFIX = re.compile(r"^(n\d{8})_")
# Larger images are skipped unread: decoding one takes memory in proportion (a small file can claim gigapixels).
# PIL's own default, which it only warns about up to twice this.
MAX_IMAGE_PIXELS = 89_478_485


class ImageTooLarge(ValueError):
    """An image whose header claims more pixels than `MAX_IMAGE_PIXELS` (skipped and counted, never fatal)."""


@dataclass
class ImageSet:
    """Preprocessed images in file order, with labels (-1 when unknown) and the files skipped."""

    images: np.ndarray  # (N, H, W, 3) float32 in [-1, 1]
    labels: np.ndarray  # (N,) int64, -1 = unknown
    files: list[Path]
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def labelled(self) -> bool:
        """True when every image has a known class (accuracy can be computed)."""
        return len(self.labels) > 0 and bool(np.all(self.labels >= 0))

    def file_list_sha256(self) -> str:
        """Hash of the file names used (sorted), so a sidecar pins which images calibrated a model."""
        return file_list_sha256(self.files)


def file_list_sha256(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for name in sorted(f.name for f in files):
        digest.update(name.encode() + b"\n")
    return digest.hexdigest()


def preprocess_image(img: Image.Image | Path, resolution: int, crop_fraction: float | None = 0.875) -> np.ndarray:
    """One image → (resolution, resolution, 3) float32 RGB in [-1, 1] (MobileNetV2's x/127.5 - 1).

    `crop_fraction` keeps a centred square of that fraction of the shorter side before resizing
    (the usual ImageNet evaluation crop); None resizes the whole image, distorting its aspect.
    Raises OSError/UnidentifiedImageError for unreadable files (the loader counts those).
    """
    if isinstance(img, (str, Path)):
        with _open_bounded(Path(img)) as opened:
            opened.load()
            img = _to_rgb(opened)
    else:
        img = _to_rgb(img)
    if crop_fraction is not None:
        if not 0.0 < crop_fraction <= 1.0:
            raise DataError(f"crop fraction must be in (0, 1], got {crop_fraction}")
        width, height = img.size
        side = max(1, round(min(width, height) * crop_fraction))
        left, top = (width - side) // 2, (height - side) // 2
        img = img.crop((left, top, left + side, top + side))
    img = img.resize((resolution, resolution), Image.BILINEAR)
    return np.asarray(img, dtype=np.float32) / 127.5 - 1.0


def _open_bounded(path: Path) -> Image.Image:
    """Open an image, refusing one too large to decode safely before its pixels are read."""
    limit = f"limit {MAX_IMAGE_PIXELS:,} pixels"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the check below replaces PIL's warning
        try:
            opened = Image.open(path)
        except Image.DecompressionBombError:  # PIL refuses over twice its default, before telling the size
            raise ImageTooLarge(f"too large to decode safely ({limit})") from None
    if opened.width * opened.height > MAX_IMAGE_PIXELS:
        opened.close()
        raise ImageTooLarge(f"{opened.width}x{opened.height} is too large to decode safely ({limit})")
    return opened


def _to_rgb(img: Image.Image) -> Image.Image:
    """Grayscale, palette, CMYK and alpha images → plain RGB (alpha composited on white)."""
    if img.mode == "RGB":
        return img
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit grayscale: scale to 8 bits instead of clipping everything to white
        arr = np.asarray(img, dtype=np.float64)
        peak = arr.max() or 1.0
        return Image.fromarray((arr * (255.0 / peak)).astype(np.uint8), "L").convert("RGB")
    return img.convert("RGB")


def list_images(folder: Path) -> list[Path]:
    """Image files under `folder` (recursively, sorted); DataError when the folder is missing or has none."""
    folder = Path(folder)
    if not folder.exists():
        raise DataError(f"image folder {folder} does not exist")
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder (give a folder of JPEG/PNG/BMP images)")
    entries = list(folder.rglob("*"))
    files = sorted(p for p in entries if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        what = "is empty" if not entries else "holds no JPEG/PNG/BMP images"
        raise DataError(f"image folder {folder} {what}")
    return files


def read_synsets(path: Path) -> list[str]:
    lines = [line.strip() for line in Path(path).read_text().splitlines()]
    return [line.split()[0] for line in lines if line]


def _default_synsets(folder: Path) -> Path | None:
    for candidate in (folder / SYNSETS_FILENAME, folder.parent / SYNSETS_FILENAME):
        if candidate.is_file():
            return candidate
    return None


def label_files(folder: Path, files: list[Path], synsets: Path | None = None) -> np.ndarray:
    """Class index per file (-1 unknown): synset file-name prefixes, else class subfolders, else none."""
    folder = Path(folder)
    synsets_path = synsets if synsets is not None else _default_synsets(folder)
    if synsets is not None and not Path(synsets).is_file():
        raise DataError(f"synset list {synsets} does not exist")
    index = {s: i for i, s in enumerate(read_synsets(synsets_path))} if synsets_path else {}
    labels = np.full(len(files), -1, dtype=np.int64)

    prefixes = [_SYNSET_PREFIX.match(f.name) for f in files]
    if index and all(m and m.group(1) in index for m in prefixes):
        return np.array([index[m.group(1)] for m in prefixes], dtype=np.int64)  # type: ignore[union-attr]

    parents = [f.parent for f in files]
    if all(p != folder and p.parent == folder for p in parents):
        classes = sorted({p.name for p in parents})
        if index and all(c in index for c in classes):
            mapping = {c: index[c] for c in classes}
        else:
            mapping = {c: i for i, c in enumerate(classes)}
        labels = np.array([mapping[p.name] for p in parents], dtype=np.int64)
    return labels


def choose_files(files: list[Path], limit: int | None, seed: int) -> list[Path]:
    """A seeded subset of `limit` files, kept in sorted order so runs are reproducible and comparable."""
    if limit is None or limit >= len(files):
        return files
    if limit < 1:
        raise DataError(f"image count must be at least 1, got {limit}")
    rng = np.random.default_rng(seed)
    picked = sorted(rng.choice(len(files), size=limit, replace=False))
    return [files[i] for i in picked]


def iter_images(files: list[Path], resolution: int, crop_fraction: float | None = 0.875,
                skipped: list[tuple[Path, str]] | None = None) -> Iterator[tuple[Path, np.ndarray]]:
    """Stream (file, preprocessed image); unreadable files are appended to `skipped` instead of raised."""
    for path in files:
        try:
            yield path, preprocess_image(path, resolution, crop_fraction)
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
            if skipped is not None:
                skipped.append((path, str(exc).splitlines()[0] if str(exc) else type(exc).__name__))


def relative_name(path: Path, folder: Path) -> str:
    """How `exclude` names a file: its path below the folder, with forward slashes."""
    return Path(path).relative_to(folder).as_posix()


def holdout_split(files: list[Path], fraction: float, seed: int) -> tuple[list[Path], list[Path]]:
    """(calibration files, held-out files): a seeded `fraction` of `files` (at least one) held out, both sorted.

    For a user who gives one folder to both calibration and validation: no image is then validated by a
    model calibrated on it.
    """
    if len(files) < 2:
        raise DataError(f"holding images out of calibration needs at least 2 images, got {len(files)}")
    held = set(choose_files(files, max(1, min(len(files) - 1, round(len(files) * fraction))), seed))
    return [f for f in files if f not in held], [f for f in files if f in held]


def load_images(folder: Path, resolution: int, *, limit: int | None = None, seed: int = 0,
                crop_fraction: float | None = 0.875, synsets: Path | None = None,
                exclude: tuple[str, ...] = (), progress: bool = False) -> ImageSet:
    """Load, preprocess and label the images of `folder` (a seeded subset when `limit` is smaller).

    `exclude`: paths relative to `folder` (`relative_name`) left out before choosing, e.g. the images held
    out of calibration.
    """
    from tqdm import tqdm

    folder = Path(folder)
    all_files = list_images(folder)
    if exclude:
        left_out = set(exclude)
        all_files = [f for f in all_files if relative_name(f, folder) not in left_out]
        if not all_files:
            raise DataError(f"every image in {folder} is excluded; nothing is left to use")
    all_labels = label_files(folder, all_files, synsets)
    label_of = dict(zip(all_files, all_labels))
    chosen = choose_files(all_files, limit, seed)
    skipped: list[tuple[Path, str]] = []
    images, files = [], []
    stream = iter_images(chosen, resolution, crop_fraction, skipped)
    for path, image in tqdm(stream, total=len(chosen), desc="images", unit="img", disable=not progress,
                            leave=False):
        images.append(image)
        files.append(path)
    if not images:
        raise DataError(f"none of the {len(chosen)} image files in {folder} could be read "
                        f"(first error: {skipped[0][0].name}: {skipped[0][1]})")
    return ImageSet(images=np.stack(images), labels=np.array([label_of[f] for f in files], dtype=np.int64),
                    files=files, skipped=skipped)
