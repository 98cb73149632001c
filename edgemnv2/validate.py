"""The validate stage: a TFLite model against its float Keras reference on the same preprocessed images.

Both models see the pixels `edgemnv2.data` produces for the TFLite model's input size. The report
is computed first (a dataclass) and rendered by the CLI; gates are checked separately by
`ValidationReport.raise_for_gates()` so the report is always printed and written before a
failed gate ends the command with exit code 3.

Models with 1001 classes (background at index 0, e.g. Coral's exports) are compared with a
1000-class reference by dropping index 0 and renormalising.

Every rate carries a 95% Wilson interval: on 300 images one image is a third of a point, so a
difference between two models means little without it. `compare=` runs a second model on the
same images and gives the paired comparison (discordant images and an exact McNemar p-value), the
test that fits two classifiers scored on one image set.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgemnv2 import data as data_mod
from edgemnv2 import models, runtime
from edgemnv2.errors import GateFailed, InputError, ModelError
from edgemnv2.models import ModelSource
from edgemnv2.sidecar import read_sidecar

FLOAT_BATCH = 32
_EPS = 1e-7
Z_95 = 1.959963984540054  # two-sided 95% normal quantile


@dataclass(frozen=True)
class Interval:
    """A 95% confidence interval of a rate, in percent."""

    low: float
    high: float


def wilson_interval(successes: int, n: int, z: float = Z_95) -> Interval:
    """Wilson score interval of successes/n (percent): sound near 0% and 100%, where the normal one is not."""
    if n <= 0:
        raise ValueError("a confidence interval needs at least one trial")
    p = successes / n
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low = 0.0 if successes == 0 else max(0.0, centre - half)  # exact bounds at the edges, not 1e-16 off
    high = 1.0 if successes == n else min(1.0, centre + half)
    return Interval(100.0 * low, 100.0 * high)


def mcnemar_exact(only_first: int, only_second: int) -> float:
    """Two-sided exact McNemar p-value: the discordant pairs under H0 are Binomial(b + c, 1/2)."""
    n = only_first + only_second
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(only_first, only_second) + 1)) / 2.0 ** n
    return min(1.0, 2.0 * tail)


@dataclass(frozen=True)
class PairedRate:
    """One rate (agreement with float, or top-1 accuracy) of both models on the same images."""

    name: str  # "top1_agreement" | "top1"
    model: float  # percent
    other: float
    model_ci: Interval
    other_ci: Interval
    only_model: int  # images where only the first model is right (agrees)
    only_other: int
    p_value: float  # exact McNemar on the discordant images


@dataclass(frozen=True)
class Comparison:
    """The validated model against a second one on the same preprocessed images."""

    other: str
    rates: list[PairedRate]
    differing_images: int  # images whose top-1 differs between the two models
    differing_files: list[str]


def paired_rate(name: str, first: np.ndarray, second: np.ndarray) -> PairedRate:
    """Both models' rate of `first`/`second` (per-image booleans) with intervals and McNemar's test."""
    n = len(first)
    only_first, only_second = int(np.sum(first & ~second)), int(np.sum(second & ~first))
    return PairedRate(name=name, model=100.0 * float(first.mean()), other=100.0 * float(second.mean()),
                      model_ci=wilson_interval(int(first.sum()), n), other_ci=wilson_interval(int(second.sum()), n),
                      only_model=only_first, only_other=only_second, p_value=mcnemar_exact(only_first, only_second))


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
    float_margin: float  # log(p1 / p2) of the float model, see float_margins


@dataclass(frozen=True)
class Disagreement:
    """An image whose top-1 differs, with how near a tie the float model itself was there."""

    file: str
    float_top1: int
    tflite_top1: int
    float_margin: float  # log(p1 / p2) of the float model: its top-1 minus top-2 logit


@dataclass(frozen=True)
class NearTies:
    """Whether the disagreements are near-ties: a quantized model's rounding noise flips the float model's
    top-1 only where its top-1/top-2 margin is small, so the largest disagreeing margin and how many images
    are at least that close tell a user whether a lower agreement is noise on near-ties or a broken layer.
    """

    largest_disagreeing_margin: float
    images_within: int  # images whose float margin is <= largest_disagreeing_margin
    disagreements: list[Disagreement]


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
    top1_agreement_ci: Interval | None = None
    float_top1_ci: Interval | None = None
    float_top5_ci: Interval | None = None
    tflite_top1_ci: Interval | None = None
    tflite_top5_ci: Interval | None = None
    note: str | None = None  # e.g. how images were held out of calibration
    comparison: Comparison | None = None
    gates: list[GateResult] = field(default_factory=list)
    rows: list[ImageRow] | None = None
    near_ties: NearTies | None = None  # None when every top-1 agrees

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


def float_margins(probs: np.ndarray) -> np.ndarray:
    """log(p_top1 / p_top2) per row: for a softmax output, the gap between the two largest logits."""
    top2 = np.sort(np.asarray(probs, dtype=np.float64), axis=1)[:, -2:]
    return np.log(np.clip(top2[:, 1], _EPS, None)) - np.log(np.clip(top2[:, 0], _EPS, None))


def near_ties(files: list[str], float_top1: np.ndarray, tflite_top1: np.ndarray,
              margins: np.ndarray) -> NearTies | None:
    """The disagreeing images, smallest float margin first, and how many images are as close to a tie."""
    differ = np.flatnonzero(float_top1 != tflite_top1)
    if len(differ) == 0:
        return None
    differ = differ[np.argsort(margins[differ], kind="stable")]
    largest = float(margins[differ[-1]])
    return NearTies(largest_disagreeing_margin=largest, images_within=int(np.sum(margins <= largest)),
                    disagreements=[Disagreement(files[i], int(float_top1[i]), int(tflite_top1[i]),
                                                float(margins[i])) for i in differ])


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
    sidecar = read_sidecar(model_path)
    if sidecar is None:
        raise InputError(f"no --reference given and {model_path} has no edgemnv2 sidecar naming its float model; "
                         "pass --reference mobilenet_v2_<alpha>_<resolution> or a Keras model path")
    return models.source_from_description(dict(sidecar.source), weights_dir)


@dataclass(frozen=True)
class _TFLiteRun:
    """One TFLite model's dequantized outputs on the images (classes as the model has them)."""

    outputs: np.ndarray
    output_scale: float | None  # the probability grid of a quantized output, None for float outputs
    backend: str
    input: dict[str, Any]
    seconds: float

    def aligned(self, float_classes: int) -> tuple[np.ndarray, np.ndarray, bool]:
        """(outputs, probabilities, background dropped) in the reference's class order."""
        outputs, dropped = align_classes(self.outputs, float_classes)
        filled = fill_rounded_tail(outputs, self.output_scale) if self.output_scale is not None else outputs
        return outputs, to_probabilities(filled), dropped


def _open_checked(model_path: Path, backend: str) -> runtime.TFLiteModel:
    tfl = runtime.open_model(model_path, backend)  # a corrupt model fails before anything slow
    shape = tfl.input.shape
    if len(shape) != 4 or shape[1] != shape[2] or shape[3] != 3:
        raise ModelError(f"{model_path} input shape {shape} is not a square RGB image")
    return tfl


def _run_tflite(tfl: runtime.TFLiteModel, images: np.ndarray, progress: bool) -> _TFLiteRun:
    # images/s is inference only (set input, invoke, read output) in the steady state, as on a device
    # that keeps the model loaded: inputs are quantized beforehand like the rest of preprocessing
    raw_inputs = tfl.quantize_input(images)
    tfl.warm_up()
    t0 = time.perf_counter()
    raw_outputs = tfl.run_raw(raw_inputs, progress)
    seconds = time.perf_counter() - t0
    return _TFLiteRun(outputs=tfl.dequantize_output(raw_outputs),
                      output_scale=tfl.output.scale if tfl.output.quantized else None, backend=tfl.backend,
                      input={"dtype": str(tfl.input.dtype), "scale": tfl.input.scale,
                             "zero_point": tfl.input.zero_point}, seconds=seconds)


def validate(model_path: Path, reference: ModelSource | str | None = None, data: Path | None = None, *,
             limit: int | None = None, seed: int = 0, max_top1_drop: float | None = None,
             min_agreement: float | None = None, per_image: bool = False, crop_fraction: float | None = 0.875,
             synsets: Path | None = None, weights_dir: Path | None = None, backend: str = "auto",
             compare: Path | None = None, exclude: tuple[str, ...] = (), note: str | None = None,
             progress: bool = False) -> ValidationReport:
    """Compare a .tflite model with its float reference; gates are evaluated, not raised (see raise_for_gates).

    `compare`: a second .tflite run on the same images for a paired comparison (`report.comparison`).
    `exclude`: file names in `data` not to validate on (the images a model was calibrated on).
    """
    model_path = Path(model_path)
    tfl = _open_checked(model_path, backend)
    other = _open_checked(Path(compare), backend) if compare is not None else None
    resolution = int(tfl.input.shape[1])
    if other is not None and int(other.input.shape[1]) != resolution:
        raise ModelError(f"--compare {Path(compare).name} takes {other.input.shape[1]} px images but "  # type: ignore[arg-type]
                         f"{model_path.name} takes {resolution}: they cannot be compared on the same pixels")
    source = resolve_reference(model_path, reference, weights_dir)
    if isinstance(source, models.ModelSpec) and source.resolution != resolution:
        raise ModelError(f"reference {source.name} is {source.resolution}x{source.resolution} but {model_path.name} "
                         f"takes {resolution}x{resolution}")
    if data is None:
        from edgemnv2.paths import shared_validation_dir

        data = shared_validation_dir()
    data_mod.list_images(Path(data))  # missing / empty folder fails before the model is built

    if isinstance(source, models.ModelSpec):
        models.weights_file(source)  # missing weights fail before any inference
    imageset = data_mod.load_images(Path(data), resolution, limit=limit, seed=seed, crop_fraction=crop_fraction,
                                    synsets=synsets, exclude=exclude, progress=progress)
    if max_top1_drop is not None and not imageset.labelled:
        raise InputError(f"--max-top1-drop needs labelled images, and {data} has none (name files "
                         "<synset>_*.JPEG with an imagenet_synsets.txt, or use one subfolder per class)")

    # TFLite first: TensorFlow's thread pools keep spinning after Keras runs and would steal the cores
    # (measured: 250 → 80 img/s on 2 cores), making the reported images/s meaningless.
    run = _run_tflite(tfl, imageset.images, progress)
    other_run = _run_tflite(other, imageset.images, progress) if other is not None else None

    keras_model = models.load_keras_model(source)
    if models.model_resolution(keras_model) != resolution:
        raise ModelError(f"reference model takes {models.model_resolution(keras_model)} px images but "
                         f"{model_path.name} takes {resolution}")
    t0 = time.perf_counter()
    float_out = run_float(keras_model, imageset.images, progress)
    float_seconds = time.perf_counter() - t0
    tflite_aligned, q, dropped = run.aligned(float_out.shape[1])
    p = to_probabilities(float_out)
    kl = kl_divergence(p, q)
    abs_diff = np.abs(float_out - tflite_aligned)  # dequantized outputs, before any renormalisation
    float_top1, tflite_top1 = p.argmax(axis=1), q.argmax(axis=1)
    agrees = float_top1 == tflite_top1
    margins = float_margins(p)
    n = len(imageset.images)
    # labels from another label space (e.g. ImageNet synsets for a 10-class model) cannot score accuracy
    labelled = imageset.labelled and int(imageset.labels.max()) < float_out.shape[1]
    if max_top1_drop is not None and not labelled:
        raise InputError(f"--max-top1-drop: labels in {data} go up to {int(imageset.labels.max())} but the "
                         f"model has {float_out.shape[1]} classes; use images labelled for this model")

    report = ValidationReport(
        model=str(model_path), reference=models.describe(source), data=str(Path(data).resolve()),
        backend=run.backend, images=n, skipped=[f"{f.name}: {why}" for f, why in imageset.skipped],
        labelled=labelled, classes=int(float_out.shape[1]), dropped_background=dropped,
        input=run.input, top1_agreement=100.0 * float(np.mean(agrees)),
        top1_agreement_ci=wilson_interval(int(agrees.sum()), n),
        mean_kl=float(np.mean(kl)), mean_abs_diff=float(np.mean(abs_diff)), max_abs_diff=float(np.max(abs_diff)),
        float_seconds=round(float_seconds, 3), tflite_seconds=round(run.seconds, 3),
        tflite_images_per_second=round(n / run.seconds, 2) if run.seconds > 0 else 0.0, note=note,
        near_ties=near_ties([f.name for f in imageset.files], float_top1, tflite_top1, margins),
    )
    labels = imageset.labels
    if labelled:
        hits = {"float_top1": float_top1 == labels, "tflite_top1": tflite_top1 == labels,
                "float_top5": topk_hits(p, labels, 5), "tflite_top5": topk_hits(q, labels, 5)}
        for name, hit in hits.items():
            setattr(report, name, 100.0 * float(np.mean(hit)))
            setattr(report, f"{name}_ci", wilson_interval(int(hit.sum()), n))
        report.top1_drop = report.float_top1 - report.tflite_top1  # type: ignore[operator]
    if other_run is not None:
        other_top1 = other_run.aligned(float_out.shape[1])[1].argmax(axis=1)
        rates = [paired_rate("top1_agreement", agrees, other_top1 == float_top1)]
        if labelled:
            rates.append(paired_rate("top1", tflite_top1 == labels, other_top1 == labels))
        differ = np.flatnonzero(other_top1 != tflite_top1)
        report.comparison = Comparison(other=str(compare), rates=rates, differing_images=len(differ),
                                       differing_files=[imageset.files[i].name for i in differ])
    if max_top1_drop is not None and report.top1_drop is not None:
        report.gates.append(GateResult("max_top1_drop", max_top1_drop, report.top1_drop,
                                       report.top1_drop <= max_top1_drop + 1e-9))
    if min_agreement is not None:
        report.gates.append(GateResult("min_agreement", min_agreement, report.top1_agreement,
                                       report.top1_agreement >= min_agreement - 1e-9))
    if per_image:
        report.rows = [ImageRow(file=f.name, label=int(label), float_top1=int(a), tflite_top1=int(b),
                                kl=float(k), max_abs_diff=float(d), float_margin=float(m))
                       for f, label, a, b, k, d, m in zip(imageset.files, imageset.labels, float_top1, tflite_top1,
                                                         kl, abs_diff.max(axis=1), margins)]
    return report


def _ci(interval: Interval | None) -> str:
    return f" [{interval.low:.1f}, {interval.high:.1f}]" if interval is not None else ""


def _p_value(p: float) -> str:
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def render_text(report: ValidationReport) -> str:
    """The short human summary the CLI prints on stdout; brackets are 95% Wilson intervals."""
    ref = report.reference.get("name", "?")
    lines = [f"{Path(report.model).name} vs {ref} on {report.images} images from {report.data}"
             + (f" ({len(report.skipped)} unreadable skipped)" if report.skipped else "")]
    if report.note:
        lines.append(f"  note: {report.note}")
    if report.labelled:
        lines.append(f"  top-1   float {report.float_top1:6.2f}%{_ci(report.float_top1_ci)}   tflite "
                     f"{report.tflite_top1:6.2f}%{_ci(report.tflite_top1_ci)}   drop {report.top1_drop:+.2f} pts")
        lines.append(f"  top-5   float {report.float_top5:6.2f}%{_ci(report.float_top5_ci)}   tflite "
                     f"{report.tflite_top5:6.2f}%{_ci(report.tflite_top5_ci)}")
    else:
        lines.append("  (no labels: accuracy not computed)")
    lines.append(f"  top-1 agreement {report.top1_agreement:.2f}%{_ci(report.top1_agreement_ci)}   "
                 f"mean KL {report.mean_kl:.4f}   |float-tflite| mean {report.mean_abs_diff:.2e} "
                 f"max {report.max_abs_diff:.3f}")
    if report.near_ties is not None:
        ties = report.near_ties
        smallest = ties.disagreements[0].float_margin
        lines.append(f"  top-1 differs on {len(ties.disagreements)} image(s), float top-1/top-2 margins "
                     f"{smallest:.3f}-{ties.largest_disagreeing_margin:.3f} (log-prob); {ties.images_within} of "
                     f"{report.images} images are that close to a tie")
    lines.append(f"  tflite ({report.backend}, {report.input['dtype']} input) {report.tflite_images_per_second:.1f} img/s"
                 + ("   background class dropped (1001 → 1000)" if report.dropped_background else "")
                 + "   [95% Wilson intervals]")
    if report.comparison is not None:
        lines += render_comparison(report.comparison, Path(report.model).name)
    for gate in report.gates:
        lines.append(f"  gate {gate.name} {gate.threshold:g}: {'pass' if gate.passed else 'FAIL'} ({gate.value:.2f})")
    return "\n".join(lines)


def render_comparison(comparison: Comparison, model_name: str) -> list[str]:
    """The paired block: each rate for both models, the discordant images and McNemar's exact p-value."""
    other = Path(comparison.other).name
    lines = [f"  paired with {other} on the same images:"]
    for rate in comparison.rates:
        label = "agreement with float" if rate.name == "top1_agreement" else "top-1 accuracy"
        lines.append(f"    {label:<21} {model_name} {rate.model:.2f}%{_ci(rate.model_ci)}   {other} "
                     f"{rate.other:.2f}%{_ci(rate.other_ci)}")
        lines.append(f"    {'':<21} right only in {model_name}: {rate.only_model}, only in {other}: "
                     f"{rate.only_other}   McNemar exact p = {_p_value(rate.p_value)}")
    shown = ", ".join(comparison.differing_files[:5]) + (", ..." if len(comparison.differing_files) > 5 else "")
    lines.append(f"    top-1 differs between the two on {comparison.differing_images} image(s)"
                 + (f": {shown}" if shown else ""))
    return lines
