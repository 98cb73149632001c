"""Model sources: Keras MobileNetV2 specs with offline-first ImageNet weights, and users' Keras models.

Weights resolution order for `weights="imagenet"`: a mirror folder holding Keras's own file names
(`weights_dir`, else `$EDGEMNV2_WEIGHTS_DIR`, else the shared models folder), then Keras's cache
(`$KERAS_HOME/models`, default `~/.keras/models`), then a download into that cache (skipped when
`$EDGEMNV2_OFFLINE=1`). MobileNetV2's weight shapes depend on alpha only (global pooling removes the
resolution), so a file for the same alpha at another resolution is accepted, with a note on stderr.

TensorFlow/Keras are imported inside the functions that need them.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import urllib.error
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgemnv2 import atomic
from edgemnv2.errors import ModelError, WeightsUnavailable

log = logging.getLogger(__name__)

ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
RESOLUTIONS = (96, 128, 160, 192, 224)
WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"
DOWNLOAD_TIMEOUT_S = 20.0
_notes_given: set[str] = set()  # say each substitution once per process, not once per lookup
_SPEC_NAME = re.compile(r"^mobilenet_?v2_(?P<alpha>\d+(?:\.\d+)?)_(?P<res>\d+)$", re.IGNORECASE)


@dataclass(frozen=True)
class ModelSpec:
    """A Keras MobileNetV2 to build: weights is "imagenet", "none" or a path to a weights file."""

    alpha: float = 1.0
    resolution: int = 224
    weights: str | Path = "imagenet"
    weights_dir: Path | None = None  # mirror folder for "imagenet" (else env var / shared / cache)

    def __post_init__(self) -> None:
        if not any(abs(self.alpha - a) < 1e-9 for a in ALPHAS):
            raise ModelError(f"alpha {self.alpha:g} is not supported; choose one of "
                             + ", ".join(f"{a:g}" for a in ALPHAS))
        if self.resolution not in RESOLUTIONS:
            raise ModelError(f"resolution {self.resolution} is not supported; choose one of "
                             + ", ".join(str(r) for r in RESOLUTIONS))
        if isinstance(self.weights, str) and self.weights.lower() in ("imagenet", "none"):
            object.__setattr__(self, "weights", self.weights.lower())
        else:
            object.__setattr__(self, "weights", Path(self.weights))

    @property
    def name(self) -> str:
        """Keras-style name, e.g. mobilenet_v2_1.0_224 (used for default output names)."""
        return f"mobilenet_v2_{float(self.alpha)}_{self.resolution}"


@dataclass(frozen=True)
class UserModel:
    """A user's Keras model: a `.keras` file, a legacy `.h5` file, or a SavedModel folder."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def name(self) -> str:
        return self.path.stem if self.path.suffix else self.path.name


ModelSource = ModelSpec | UserModel


def parse_reference(text: str, weights_dir: Path | None = None) -> ModelSource:
    """`mobilenet_v2_1.0_224` → ModelSpec with ImageNet weights; an existing path → UserModel."""
    match = _SPEC_NAME.match(text.strip())
    if match:
        return ModelSpec(float(match["alpha"]), int(match["res"]), "imagenet", weights_dir)
    path = Path(text)
    if path.exists():
        return UserModel(path)
    raise ModelError(f"reference {text!r} is neither a model spec like mobilenet_v2_1.0_224 nor an existing path")


def weights_filename(alpha: float, resolution: int) -> str:
    """The file name Keras itself uses for MobileNetV2 ImageNet weights (with the classifier)."""
    return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_{resolution}.h5"


def keras_cache_dir() -> Path:
    """Where keras.utils.get_file caches downloads: $KERAS_HOME/models or ~/.keras/models."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models"


def _mirror_dirs(weights_dir: Path | None) -> list[Path]:
    if weights_dir is not None:
        return [Path(weights_dir)]
    from edgemnv2.paths import env_folder, shared_dir

    given = env_folder("EDGEMNV2_WEIGHTS_DIR")
    if given is not None:
        return [given]

    shared = shared_dir(required=False)
    return [shared / "models"] if shared else []


def _find_in(folder: Path, alpha: float, resolution: int) -> Path | None:
    """The exact file, else the same alpha at another resolution (identical weight shapes)."""
    exact = folder / weights_filename(alpha, resolution)
    if exact.is_file():
        return exact
    for other in sorted(RESOLUTIONS, key=lambda r: abs(r - resolution)):
        candidate = folder / weights_filename(alpha, other)
        if candidate.is_file():
            note = (f"note: using {candidate} for MobileNetV2 {float(alpha)}/{resolution} "
                    "(weights do not depend on the resolution)")
            if note not in _notes_given:
                _notes_given.add(note)
                log.warning(note)
            return candidate
    return None


def _download(alpha: float, resolution: int, cache: Path) -> Path:
    import urllib.request  # http.client + email: only when weights must be fetched

    name = weights_filename(alpha, resolution)
    target = cache / name
    with urllib.request.urlopen(WEIGHTS_URL + name, timeout=DOWNLOAD_TIMEOUT_S) as response:
        with atomic.replacing(target) as handle:
            shutil.copyfileobj(response, handle)
    return target


def find_imagenet_weights(alpha: float, resolution: int, weights_dir: Path | None = None) -> Path | None:
    """The ImageNet weights file already on disk (mirror folders, then Keras's cache), never downloading."""
    ModelSpec(alpha, resolution)  # validates alpha/resolution with a one-line error
    for folder in [*_mirror_dirs(weights_dir), keras_cache_dir()]:
        found = _find_in(folder, alpha, resolution)
        if found:
            return found
    return None


def resolve_imagenet_weights(alpha: float, resolution: int, weights_dir: Path | None = None) -> Path:
    """Find (or download) the ImageNet weights file; WeightsUnavailable says which file to put where."""
    found = find_imagenet_weights(alpha, resolution, weights_dir)
    if found:
        return found
    mirrors = _mirror_dirs(weights_dir)
    cache = keras_cache_dir()
    name = weights_filename(alpha, resolution)
    where = mirrors[0] if mirrors else cache
    other_alpha = [m for m in [*mirrors, cache] if any(m.glob("mobilenet_v2_weights_tf_dim_ordering_tf_kernels_*.h5"))]
    alpha_note = (f" ({other_alpha[0]} has MobileNetV2 weights for another alpha only; weights cannot be "
                  f"shared across alphas)") if other_alpha else ""
    if os.environ.get("EDGEMNV2_OFFLINE") == "1":
        raise WeightsUnavailable(f"ImageNet weights {name} not found offline{alpha_note}: put the file in "
                                 f"{where} (or point --weights-dir / EDGEMNV2_WEIGHTS_DIR at a folder holding it)")
    try:
        return _download(alpha, resolution, cache)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise WeightsUnavailable(f"ImageNet weights {name} not found offline and download failed ({reason})"
                                 f"{alpha_note}: put the file in {where} (or point --weights-dir / "
                                 f"EDGEMNV2_WEIGHTS_DIR at a folder holding it)") from exc


def weights_file(spec: ModelSpec) -> Path | None:
    """The weights file a spec loads (resolving ImageNet weights), or None for random weights."""
    if spec.weights == "none":
        return None
    if spec.weights == "imagenet":
        return resolve_imagenet_weights(spec.alpha, spec.resolution, spec.weights_dir)
    path = Path(spec.weights)
    if not path.is_file():
        raise ModelError(f"weights file {path} does not exist")
    return path


def import_keras() -> Any:
    """Import Keras (and TensorFlow) with their native start-up log lines silenced unless -v was given.

    TensorFlow prints "All log messages before absl::InitializeLog()..." and CUDA/oneDNN notes from C++
    whatever TF_CPP_MIN_LOG_LEVEL says, so the file descriptors are redirected for the import.
    """
    import sys

    if "keras" in sys.modules:
        return sys.modules["keras"]
    from edgemnv2.runtime import silenced_output

    with silenced_output(not logging.getLogger().isEnabledFor(logging.INFO)):
        import keras
        import tensorflow  # noqa: F401  (keras imports it lazily; its noise comes now, silenced)
    return keras


def load_keras_model(source: ModelSource) -> Any:
    """Build the MobileNetV2 of a spec or load a user's model (safe mode: no arbitrary code)."""
    if isinstance(source, ModelSpec):
        return _build_mobilenet(source)
    return _load_user_model(source.path)


def _build_mobilenet(spec: ModelSpec) -> Any:
    path = weights_file(spec)
    keras = import_keras()

    model = keras.applications.MobileNetV2(input_shape=(spec.resolution, spec.resolution, 3),
                                           alpha=spec.alpha, weights=None)
    if path is None:
        _he_normal(model)
    else:
        try:
            model.load_weights(str(path))
        except (ValueError, OSError, KeyError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"weights {path} do not fit MobileNetV2 alpha {spec.alpha:g} "
                             f"(weights are per alpha; resolution does not matter): {first[:200]}") from exc
    return model


def _he_normal(model: Any, seed: int = 0) -> None:
    """Random weights drawn He-normal (variance 2 / fan-in, seeded): Keras' default Glorot draws shrink the
    activations layer by layer until the logits' range is too narrow for TFLite Micro's int8 softmax
    (beta x input scale x 2^26 < 1 halts it)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        kernel = getattr(layer, "kernel", None)
        if kernel is None or len(kernel.shape) not in (2, 4):
            continue
        shape = tuple(kernel.shape)
        depthwise = type(layer).__name__ == "DepthwiseConv2D"
        fan_in = shape[0] * shape[1] if depthwise else int(np.prod(shape[:-1]))
        kernel.assign(rng.normal(0.0, (2.0 / fan_in) ** 0.5, shape).astype("float32"))


def _load_user_model(path: Path) -> Any:
    if not path.exists():
        raise ModelError(f"model {path} does not exist")
    keras = import_keras()

    try:
        if path.is_dir():
            if not (path / "saved_model.pb").is_file():
                raise ModelError(f"{path} is a folder but not a SavedModel (no saved_model.pb)")
            return _load_saved_model(path)
        if path.suffix not in (".keras", ".h5", ".hdf5"):
            raise ModelError(f"{path} is not a Keras model: give a .keras or .h5 file or a SavedModel folder")
        model = keras.models.load_model(str(path), safe_mode=True, compile=False)
    except ModelError:
        raise
    except Exception as exc:  # Keras raises many unrelated types for a bad file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path} is not a loadable Keras model: {first[:200]}") from exc
    return model


def _load_saved_model(path: Path) -> Any:
    """Keras 3 cannot load_model() a SavedModel; wrap its serving signature in a functional model."""
    import keras
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    signature = loaded.signatures.get("serving_default")
    if signature is None:
        raise ModelError(f"SavedModel {path} has no serving_default signature")
    (input_name, spec), = signature.structured_input_signature[1].items()
    layer = keras.layers.TFSMLayer(str(path), call_endpoint="serving_default")
    inputs = keras.Input(shape=tuple(spec.shape[1:]), name=input_name, dtype=spec.dtype.name)
    outputs = layer(inputs)
    if isinstance(outputs, dict):
        if len(outputs) != 1:
            raise ModelError(f"SavedModel {path} has {len(outputs)} outputs; edgemnv2 needs one")
        outputs = next(iter(outputs.values()))
    return keras.Model(inputs, outputs, name=path.name)


def model_resolution(model: Any) -> int:
    """Square input size of a Keras image model; ModelError when it is not (N, R, R, 3)."""
    shape = tuple(model.input_shape)
    if len(shape) != 4 or shape[1] is None or shape[1] != shape[2] or shape[3] != 3:
        raise ModelError(f"model input shape {shape} is not a fixed square RGB image (None, R, R, 3)")
    return int(shape[1])


def sha256_of(path: Path) -> str:
    """sha256 of a file, or of a folder's files (names + contents, sorted) for SavedModels."""
    digest = hashlib.sha256()
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with file.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def describe(source: ModelSource) -> dict[str, Any]:
    """What a converted model came from, for the sidecar (resolves weights, hashes files)."""
    if isinstance(source, ModelSpec):
        path = weights_file(source)
        return {
            "kind": "mobilenet_v2",
            "name": source.name,
            "alpha": float(source.alpha),
            "resolution": source.resolution,
            "weights": source.weights if isinstance(source.weights, str) else "file",
            "weights_file": str(path) if path else None,
            "weights_sha256": sha256_of(path) if path else None,
        }
    return {"kind": "keras", "name": source.name, "path": str(source.path.resolve()),
            "sha256": sha256_of(source.path)}


def source_from_description(desc: dict[str, Any], weights_dir: Path | None = None) -> ModelSource:
    """Rebuild the source recorded in a sidecar, so validate can find its float reference by itself."""
    if desc.get("kind") == "mobilenet_v2":
        weights: str | Path = desc["weights"]
        if weights == "file":
            weights = Path(desc["weights_file"])
        return ModelSpec(desc["alpha"], desc["resolution"], weights, weights_dir)
    if desc.get("kind") == "keras":
        return UserModel(Path(desc["path"]))
    raise ModelError(f"sidecar source {desc!r} is not recognised; pass --reference")
