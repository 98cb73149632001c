"""The validate stage: a TFLite model against its float Keras reference on the same preprocessed images.

Both models see the pixels `edgemnv2.data` produces for the TFLite model's input size. The report
is computed first (a dataclass) and rendered by the CLI; gates are checked separately by
`ValidationReport.raise_for_gates()` so the report is always printed and written before a
failed gate ends the command with exit code 3.

Models with 1001 classes (background at index 0, e.g. Coral's exports) are compared with a
1000-class reference by dropping index 0 and renormalising.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgemnv2 import data as data_mod
from edgemnv2 import models, runtime
from edgemnv2.errors import GateFailed, InputError, ModelError
from edgemnv2.models import ModelSource

FLOAT_BATCH = 32
_EPS = 1e-7


@dataclass
class GateResult:
    name: str  # "max_top1_drop" | "min_agreement"
    threshold: float  # percentage points / percent
    value: float
    passed: bool


@dataclass
class ImageRow:
    file: str
    label: int
    float_top1: int
    tflite_top1: int
    kl: float
    max_abs_diff: float


@dataclass
class ValidationReport:
    """Float vs TFLite on the same images. Accuracies and agreement are percentages."""

    model: str
    reference: dict[str, Any]
    data: str
    backend: str
    images: int
    skipped: list[str]
    labelled: bool
    classes: int
    dropped_background: bool
    input: dict[str, Any]
    top1_agreement: float
    mean_kl: float
    mean_abs_diff: float
    max_abs_diff: float
    float_top1: float | None = None
    float_top5: float | None = None
    tflite_top1: float | None = None
    tflite_top5: float | None = None
    top1_drop: float | None = None
    float_seconds: float = 0.0
    tflite_seconds: float = 0.0
    tflite_images_per_second: float = 0.0
    gates: list[GateResult] = field(default_factory=list)
    rows: list[ImageRow] | None = None

    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.gates)

    def raise_for_gates(self) -> None:
        """GateFailed (exit 3) naming every missed gate; call after the report is shown."""
        failed = [g for g in self.gates if not g.passed]
        if failed:
            raise GateFailed("; ".join(_gate_text(g) for g in failed))


def _gate_text(gate: GateResult) -> str:
    if gate.name == "max_top1_drop":
        return f"top-1 dropped {gate.value:.2f} points, more than the allowed {gate.threshold:g}"
    return f"top-1 agreement {gate.value:.2f}% is below the required {gate.threshold:g}%"


def to_probabilities(outputs: np.ndarray) -> np.ndarray:
    """Outputs in [0, 1] are (quantized) probabilities and are renormalised; anything else gets a softmax.

    Range, not the row sum, decides: an int8 softmax rounds the long tail to zero, so its rows can sum
    to well below 1 while still being probabilities.
    """
    outputs = np.asarray(outputs, dtype=np.float64)
    sums = outputs.sum(axis=1, keepdims=True)
    if outputs.min() >= -1e-6 and outputs.max() <= 1.0 + 1e-6 and np.all(sums > 0):
        return np.clip(outputs, 0.0, None) / np.clip(sums, _EPS, None)
    shifted = np.exp(outputs - outputs.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def kl_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """KL(p || q) per row, natural log, both clipped at a tiny epsilon."""
    p, q = np.clip(p, _EPS, None), np.clip(q, _EPS, None)
    return np.sum(p * (np.log(p) - np.log(q)), axis=1)


def fill_rounded_tail(probs: np.ndarray, step: float) -> np.ndarray:
    """Share the mass a quantized softmax rounded away among its zero entries (each below half a step).

    Without this, every tail class the float model gives 1e-4 and int8 rounds to 0 adds p·log(p/eps)
    to the KL, and the metric measures the output format rather than the model's error.
    """
    if not np.all((probs >= 0) & (probs <= 1.0 + 1e-6)):
        return probs  # logits: nothing was rounded to a probability grid
    filled = np.array(probs, dtype=np.float64)
    for row in filled:
        zeros = row <= 0
        missing = 1.0 - row.sum()
        if zeros.any() and missing > 0:
            row[zeros] = min(missing / zeros.sum(), step / 2)
    return filled


def align_classes(tflite_out: np.ndarray, float_classes: int) -> tuple[np.ndarray, bool]:
    """Drop the background class of 1001-class models so indices match a 1000-class reference."""
    classes = tflite_out.shape[1]
    if classes == float_classes:
        return tflite_out, False
    if classes == float_classes + 1:
        return tflite_out[:, 1:], True
    raise ModelError(f"TFLite model has {classes} classes but the reference has {float_classes}; "
                     "they cannot be compared")


def topk_hits(probs: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    top = np.argpartition(-probs, kth=min(k, probs.shape[1]) - 1, axis=1)[:, :k]
    return np.any(top == labels[:, None], axis=1)


def run_float(model: Any, images: np.ndarray, progress: bool = False) -> np.ndarray:
    """Keras predictions in batches (one compiled call per batch, no Keras progress noise)."""
    from tqdm import tqdm

    outputs = []
    for start in tqdm(range(0, len(images), FLOAT_BATCH), desc="float", unit="batch", disable=not progress,
                      leave=False):
        outputs.append(np.asarray(model.predict_on_batch(images[start:start + FLOAT_BATCH])))
    return np.concatenate(outputs).reshape(len(images), -1).astype(np.float32)


def resolve_reference(model_path: Path, reference: ModelSource | str | None,
                      weights_dir: Path | None = None) -> ModelSource:
    """The float model to compare with: given, or the source recorded in the model's sidecar."""
    if isinstance(reference, (models.ModelSpec, models.UserModel)):
        return reference
    if isinstance(reference, str):
        return models.parse_reference(reference, weights_dir)
    from edgemnv2.convert import read_sidecar

    sidecar = read_sidecar(model_path)
    if sidecar is None or "source" not in sidecar:
        raise InputError(f"no --reference given and {model_path} has no edgemnv2 sidecar naming its float model; "
                         "pass --reference mobilenet_v2_<alpha>_<resolution> or a Keras model path")
    return models.source_from_description(sidecar["source"], weights_dir)


def validate(model_path: Path, reference: ModelSource | str | None = None, data: Path | None = None, *,
             limit: int | None = None, seed: int = 0, max_top1_drop: float | None = None,
             min_agreement: float | None = None, per_image: bool = False, crop_fraction: float | None = 0.875,
             synsets: Path | None = None, weights_dir: Path | None = None, backend: str = "auto",
             progress: bool = False) -> ValidationReport:
    """Compare a .tflite model with its float reference; gates are evaluated, not raised (see raise_for_gates)."""
    model_path = Path(model_path)
    tfl = runtime.open_model(model_path, backend)  # a corrupt model fails before anything slow
    shape = tfl.input.shape
    if len(shape) != 4 or shape[1] != shape[2] or shape[3] != 3:
        raise ModelError(f"{model_path} input shape {shape} is not a square RGB image")
    resolution = int(shape[1])
    source = resolve_reference(model_path, reference, weights_dir)
    if isinstance(source, models.ModelSpec) and source.resolution != resolution:
        raise ModelError(f"reference {source.name} is {source.resolution}x{source.resolution} but {model_path.name} "
                         f"takes {resolution}x{resolution}")
    if data is None:
        from edgemnv2.paths import shared_calibration_dir

        data = shared_calibration_dir()
    data_mod.list_images(Path(data))  # missing / empty folder fails before the model is built

    if isinstance(source, models.ModelSpec):
        models.weights_file(source)  # missing weights fail before any inference
    imageset = data_mod.load_images(Path(data), resolution, limit=limit, seed=seed, crop_fraction=crop_fraction,
                                    synsets=synsets, progress=progress)
    if max_top1_drop is not None and not imageset.labelled:
        raise InputError(f"--max-top1-drop needs labelled images, and {data} has none (name files "
                         "<synset>_*.JPEG with an imagenet_synsets.txt, or use one subfolder per class)")

    # TFLite first: TensorFlow's thread pools keep spinning after Keras runs and would steal the cores
    # (measured: 250 → 80 img/s on 2 cores), making the reported images/s meaningless.
    # images/s is inference only (set input, invoke, read output) in the steady state, as on a device
    # that keeps the model loaded: inputs are quantized beforehand like the rest of preprocessing
    raw_inputs = tfl.quantize_input(imageset.images)
    tfl.warm_up()
    t0 = time.perf_counter()
    raw_outputs = tfl.run_raw(raw_inputs, progress)
    tflite_seconds = time.perf_counter() - t0
    tflite_out = tfl.dequantize_output(raw_outputs)

    keras_model = models.load_keras_model(source)
    if models.model_resolution(keras_model) != resolution:
        raise ModelError(f"reference model takes {models.model_resolution(keras_model)} px images but "
                         f"{model_path.name} takes {resolution}")
    t0 = time.perf_counter()
    float_out = run_float(keras_model, imageset.images, progress)
    float_seconds = time.perf_counter() - t0

    tflite_aligned, dropped = align_classes(tflite_out, float_out.shape[1])
    p = to_probabilities(float_out)
    q = to_probabilities(fill_rounded_tail(tflite_aligned, tfl.output.scale) if tfl.output.quantized
                         else tflite_aligned)
    kl = kl_divergence(p, q)
    abs_diff = np.abs(float_out - tflite_aligned)  # dequantized outputs, before any renormalisation
    float_top1, tflite_top1 = p.argmax(axis=1), q.argmax(axis=1)
    n = len(imageset.images)
    # labels from another label space (e.g. ImageNet synsets for a 10-class model) cannot score accuracy
    labelled = imageset.labelled and int(imageset.labels.max()) < float_out.shape[1]
    if max_top1_drop is not None and not labelled:
        raise InputError(f"--max-top1-drop: labels in {data} go up to {int(imageset.labels.max())} but the "
                         f"model has {float_out.shape[1]} classes; use images labelled for this model")

    report = ValidationReport(
        model=str(model_path), reference=models.describe(source), data=str(Path(data).resolve()),
        backend=tfl.backend, images=n, skipped=[f"{f.name}: {why}" for f, why in imageset.skipped],
        labelled=labelled, classes=int(float_out.shape[1]), dropped_background=dropped,
        input={"dtype": str(tfl.input.dtype), "scale": tfl.input.scale, "zero_point": tfl.input.zero_point},
        top1_agreement=100.0 * float(np.mean(float_top1 == tflite_top1)),
        mean_kl=float(np.mean(kl)), mean_abs_diff=float(np.mean(abs_diff)), max_abs_diff=float(np.max(abs_diff)),
        float_seconds=round(float_seconds, 3), tflite_seconds=round(tflite_seconds, 3),
        tflite_images_per_second=round(n / tflite_seconds, 2) if tflite_seconds > 0 else 0.0,
    )
    if labelled:
        labels = imageset.labels
        report.float_top1 = 100.0 * float(np.mean(float_top1 == labels))
        report.tflite_top1 = 100.0 * float(np.mean(tflite_top1 == labels))
        report.float_top5 = 100.0 * float(np.mean(topk_hits(p, labels, 5)))
        report.tflite_top5 = 100.0 * float(np.mean(topk_hits(q, labels, 5)))
        report.top1_drop = report.float_top1 - report.tflite_top1
    if max_top1_drop is not None and report.top1_drop is not None:
        report.gates.append(GateResult("max_top1_drop", max_top1_drop, report.top1_drop,
                                       report.top1_drop <= max_top1_drop + 1e-9))
    if min_agreement is not None:
        report.gates.append(GateResult("min_agreement", min_agreement, report.top1_agreement,
                                       report.top1_agreement >= min_agreement - 1e-9))
    if per_image:
        report.rows = [ImageRow(file=f.name, label=int(label), float_top1=int(a), tflite_top1=int(b),
                                kl=float(k), max_abs_diff=float(d))
                       for f, label, a, b, k, d in zip(imageset.files, imageset.labels, float_top1, tflite_top1,
                                                      kl, abs_diff.max(axis=1))]
    return report


def render_text(report: ValidationReport) -> str:
    """The short human summary the CLI prints on stdout."""
    ref = report.reference.get("name", "?")
    lines = [f"{Path(report.model).name} vs {ref} on {report.images} images from {report.data}"
             + (f" ({len(report.skipped)} unreadable skipped)" if report.skipped else "")]
    if report.labelled:
        lines.append(f"  top-1   float {report.float_top1:6.2f}%   tflite {report.tflite_top1:6.2f}%   "
                     f"drop {report.top1_drop:+.2f} pts")
        lines.append(f"  top-5   float {report.float_top5:6.2f}%   tflite {report.tflite_top5:6.2f}%")
    else:
        lines.append("  (no labels: accuracy not computed)")
    lines.append(f"  top-1 agreement {report.top1_agreement:.2f}%   mean KL {report.mean_kl:.4f}   "
                 f"|float-tflite| mean {report.mean_abs_diff:.2e} max {report.max_abs_diff:.3f}")
    lines.append(f"  tflite ({report.backend}, {report.input['dtype']} input) {report.tflite_images_per_second:.1f} img/s"
                 + ("   background class dropped (1001 → 1000)" if report.dropped_background else ""))
    for gate in report.gates:
        lines.append(f"  gate {gate.name} {gate.threshold:g}: {'pass' if gate.passed else 'FAIL'} ({gate.value:.2f})")
    return "\n".join(lines)
