"""`edgemnv2 fit`: which MobileNetV2 of the family fits a device, ranked by expected accuracy.

Every variant (alpha x resolution, optionally with per-tensor int8 weights for NPUs) is profiled from its
spec (`edgemnv2.profile.spec`: no TensorFlow, no file, a few milliseconds each), checked against the
device profile and the user's limits, and the variants that fit are ranked by the family's published
ImageNet accuracy (`mobilenet_v2_accuracy.toml`, with its source). `apply_measurements` replaces those
priors with accuracy measured on the user's images (`edgemnv2.sweep`) and ranks again, measured first.

The report is a frozen dataclass rendered here (table, Markdown, Pareto plot); the CLI only prints it.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgemnv2.errors import InputError
from edgemnv2.resources import data_file
from edgemnv2.models import ALPHAS, RESOLUTIONS
from edgemnv2.profile import resolve_devices
from edgemnv2.profile.report import build_report, grid, human_bytes
from edgemnv2.profile.spec import mobilenet_v2_graph

if TYPE_CHECKING:
    from edgemnv2.sweep import CandidateResult, SweepReport

SCHEMA_VERSION = 1
# Memory schedules the planner knows; TFLite Micro's arena plan is the only one on main so far.
SCHEDULES = ("tflm",)
_BYTE_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 2**10, "kib": 2**10, "m": 2**20, "mb": 2**20, "mib": 2**20,
               "g": 2**30, "gb": 2**30, "gib": 2**30}
_BYTES = re.compile(r"^\s*(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>[a-z]*)\s*$", re.IGNORECASE)


def parse_bytes(text: str) -> int:
    """`524288`, `512K`, `512KiB`, `1M`, `1.5MB`, `2G` -> bytes (K/M/G are binary, as in device datasheets)."""
    match = _BYTES.match(str(text))
    unit = match["unit"].lower() if match else None
    if match is None or unit not in _BYTE_UNITS:
        raise InputError(f"{text!r} is not a byte size; write e.g. 524288, 512K, 1M or 1.5MiB")
    value = float(match["number"]) * _BYTE_UNITS[unit]
    if value < 1:
        raise InputError(f"byte size {text!r} must be at least 1 byte")
    return int(value)


@dataclass(frozen=True)
class Variant:
    """One member of the family as `edgemnv2 convert` builds it (int8, per-channel unless per_tensor)."""

    alpha: float
    resolution: int
    per_tensor: bool = False

    @property
    def name(self) -> str:
        return f"{float(self.alpha)}/{self.resolution}" + (" per-tensor" if self.per_tensor else "")


@dataclass(frozen=True)
class Published:
    """One row of the published table (float32 checkpoint on ImageNet validation)."""

    top1: float
    top5: float
    macs_millions: float
    params_millions: float


@dataclass(frozen=True)
class AccuracySource:
    name: str
    url: str
    also: str
    dataset: str


@dataclass(frozen=True)
class Measured:
    """Accuracy of the converted int8 model on the user's images (`edgemnv2.sweep`)."""

    images: int
    top1: float | None             # int8 model, labelled images only
    top5: float | None
    float_top1: float | None
    agreement: float               # top-1 agreement int8 vs float, percent
    mean_kl: float
    top1_ci: tuple[float, float] | None  # 95% Wilson interval of the int8 top-1 (validate's)
    imagenet_weights: bool         # False: random or user weights, so top-1 is not an ImageNet figure
    weights_note: str | None       # e.g. "weights trained at 224"
    model: str                     # the .tflite the sweep wrote


@dataclass(frozen=True)
class Limits:
    max_latency_ms: float | None = None
    max_ram_bytes: int | None = None
    max_flash_bytes: int | None = None
    schedule: str = "tflm"
    external_ram: bool = True       # count a board's PSRAM/SDRAM as RAM (slower; the estimate does not model it)


@dataclass(frozen=True)
class FitRow:
    variant: Variant
    published: Published | None
    measured: Measured | None
    macs: int
    params: int
    latency_ms: float
    ram_bytes: int                  # peak RAM of the schedule + the runtime's own RAM
    flash_bytes: int
    uses_external_ram: bool
    fits: bool
    reasons: tuple[str, ...]        # why it does not fit (empty when it fits)
    overshoot: float                # worst need/limit ratio (<= 1 when it fits): how far from fitting
    pareto: bool = False
    rank: int | None = None

    @property
    def accuracy_kind(self) -> str | None:
        """"measured" (ImageNet weights, labelled images), "published", or None (no figure)."""
        if self.measured is not None and self.measured.imagenet_weights and self.measured.top1 is not None:
            return "measured"
        return "published" if self.published else None

    @property
    def accuracy(self) -> float | None:
        """Top-1 the ranking uses: measured when there is a meaningful measurement, else published."""
        kind = self.accuracy_kind
        if kind == "measured":
            assert self.measured is not None
            return self.measured.top1
        return self.published.top1 if kind == "published" and self.published else None


@dataclass(frozen=True)
class DeviceSummary:
    key: str
    name: str
    kind: str
    runtime: str
    ram_bytes: int
    psram_bytes: int
    flash_bytes: int
    calibration: str


@dataclass(frozen=True)
class FitReport:
    schema_version: int
    device: DeviceSummary
    limits: Limits
    rows: tuple[FitRow, ...]        # ranked fitting variants first, then the rest (closest to fitting first)
    recommendation: str
    accuracy_source: AccuracySource
    notes: tuple[str, ...]

    @property
    def best(self) -> FitRow | None:
        return next((r for r in self.rows if r.rank == 1), None)


def load_published() -> tuple[AccuracySource, dict[tuple[float, int], Published]]:
    """The published accuracy table shipped in the package, keyed by (alpha, resolution)."""
    data = tomllib.loads(data_file("mobilenet_v2_accuracy.toml").read_text(encoding="utf-8"))
    source = AccuracySource(**data["source"])
    table = {}
    for key, (macs, params, top1, top5) in data["checkpoints"].items():
        alpha, resolution = key.split("_")
        table[(float(alpha), int(resolution))] = Published(float(top1), float(top5), float(macs), float(params))
    return source, table


def family(alphas: tuple[float, ...] = ALPHAS, resolutions: tuple[int, ...] = RESOLUTIONS,
           per_tensor: bool = False) -> list[Variant]:
    """The grid of variants: every alpha x resolution, each also per-tensor when asked."""
    bad_alpha = [a for a in alphas if not any(math.isclose(a, known) for known in ALPHAS)]
    if bad_alpha:
        raise InputError(f"alpha {bad_alpha[0]:g} is not in the family; choose from {', '.join(f'{a:g}' for a in ALPHAS)}")
    bad_res = [r for r in resolutions if r not in RESOLUTIONS]
    if bad_res:
        raise InputError(f"resolution {bad_res[0]} is not in the family; choose from {', '.join(map(str, RESOLUTIONS))}")
    kinds = (False, True) if per_tensor else (False,)
    return [Variant(float(a), r, pt) for a in alphas for r in resolutions for pt in kinds]


def _check_limits(device_ram: int, device_psram: int, device_flash: int, ram: int, flash: int, latency: float,
                  limits: Limits, ram_word: str) -> tuple[bool, tuple[str, ...], float, bool]:
    """(fits, reasons, overshoot, uses external RAM) of one variant."""
    reasons: list[str] = []
    ratios = [ram / device_ram, flash / device_flash]
    external = ram > device_ram
    if external and (not limits.external_ram or ram > device_ram + device_psram):
        extra = f" (+{human_bytes(device_psram)} external)" if device_psram and limits.external_ram else ""
        reasons.append(f"RAM {human_bytes(ram)} > {human_bytes(device_ram)} {ram_word}{extra}")
        ratios[0] = ram / (device_ram + (device_psram if limits.external_ram else 0))
    elif external:
        ratios[0] = ram / (device_ram + device_psram)
    if flash > device_flash:
        reasons.append(f"flash {human_bytes(flash)} > {human_bytes(device_flash)}")
    if limits.max_latency_ms is not None:
        ratios.append(latency / limits.max_latency_ms)
        if latency > limits.max_latency_ms:
            reasons.append(f"latency {latency:.0f} ms > {limits.max_latency_ms:g} ms")
    if limits.max_ram_bytes is not None:
        ratios.append(ram / limits.max_ram_bytes)
        if ram > limits.max_ram_bytes:
            reasons.append(f"RAM {human_bytes(ram)} > --max-ram {human_bytes(limits.max_ram_bytes)}")
    if limits.max_flash_bytes is not None:
        ratios.append(flash / limits.max_flash_bytes)
        if flash > limits.max_flash_bytes:
            reasons.append(f"flash {human_bytes(flash)} > --max-flash {human_bytes(limits.max_flash_bytes)}")
    return not reasons, tuple(reasons), max(ratios), external and not reasons


def fit(device: str | None = None, *, device_file: Path | None = None, limits: Limits = Limits(),
        alphas: tuple[float, ...] = ALPHAS, resolutions: tuple[int, ...] = RESOLUTIONS,
        per_tensor: bool = False) -> FitReport:
    """Profile every variant from its spec on one device and rank the ones that fit (library of `edgemnv2 fit`)."""
    if limits.schedule not in SCHEDULES:
        raise InputError(f"schedule {limits.schedule!r} is not known; choose from {', '.join(SCHEDULES)}")
    devices = resolve_devices(device, device_file)
    if len(devices) != 1:
        raise InputError("fit answers for one device at a time; give a single --device or --device-file")
    target = devices[0]
    source, published = load_published()
    kind = "mcu" if target.is_mcu else "linux"
    rows = []
    for variant in family(alphas, resolutions, per_tensor):
        report = build_report(mobilenet_v2_graph(variant.alpha, variant.resolution, per_tensor=variant.per_tensor),
                              target)
        totals = report.totals
        ram = totals.peak_ram_bytes + totals.runtime_ram_bytes
        latency = totals.latency_ms if totals.latency_ms is not None else math.inf
        fits, reasons, overshoot, external = _check_limits(
            target.ram_bytes, target.psram_bytes, target.flash_bytes, ram, totals.flash_bytes, latency, limits,
            "SRAM" if kind == "mcu" else "RAM")
        rows.append(FitRow(variant, published.get((variant.alpha, variant.resolution)), None, totals.macs,
                           totals.params, latency, ram, totals.flash_bytes, external, fits, reasons, overshoot))
    notes = [f"accuracy priors: {source.name} ({source.dataset}); int8 conversion changes them: "
             "--measure converts and validates the candidates for real",
             f"latency: estimate from the {target.key} profile ({target.calibration})",
             f"memory: {limits.schedule} schedule; spec variants (no .tflite yet): activations planned from the "
             "layer table, model size estimated"]
    if any(r.published is None for r in rows):
        notes.append("alpha 1.3 and 1.4 were published at 224 only: their other resolutions have no accuracy prior "
                     "and are not ranked until measured")
    if per_tensor:
        notes.append("per-tensor variants share the per-channel checkpoint's published figure (no per-tensor "
                     "figure is published); measure them before trusting the ranking")
    summary = DeviceSummary(target.key, target.name, target.kind, target.runtime, target.ram_bytes,
                            target.psram_bytes, target.flash_bytes, target.calibration)
    return _ranked(FitReport(SCHEMA_VERSION, summary, limits, tuple(rows), "", source, tuple(notes)))


def _pareto(rows: list[FitRow]) -> set[int]:
    """Indices of rows no other row beats on both accuracy (higher) and latency (lower)."""
    front = set()
    for i, row in enumerate(rows):
        dominated = any(o.accuracy >= row.accuracy and o.latency_ms <= row.latency_ms
                        and (o.accuracy > row.accuracy or o.latency_ms < row.latency_ms) for o in rows)
        if not dominated:
            front.add(i)
    return front


def _ranked(report: FitReport) -> FitReport:
    """Order, rank and mark the Pareto front; measured accuracy ranks before published priors."""
    rows = [replace(r, pareto=False, rank=None) for r in report.rows]
    scored = [r for r in rows if r.fits and r.accuracy is not None]
    # per-tensor rows share their per-channel prior but lose accuracy in practice: they rank after it
    scored.sort(key=lambda r: (r.accuracy_kind != "measured", -r.accuracy,
                               r.variant.per_tensor and r.accuracy_kind == "published", r.latency_ms))
    front = _pareto(scored)
    scored = [replace(r, rank=i + 1, pareto=i in front) for i, r in enumerate(scored)]
    unscored = [r for r in rows if r.fits and r.accuracy is None]
    misfits = sorted((r for r in rows if not r.fits), key=lambda r: (len(r.reasons), r.overshoot, -(r.accuracy or 0)))
    ordered = tuple(scored + sorted(unscored, key=lambda r: r.latency_ms) + misfits)
    report = replace(report, rows=ordered)
    return replace(report, recommendation=_recommend(report))


def _limits_text(limits: Limits) -> str:
    parts = [f"latency <= {limits.max_latency_ms:g} ms" if limits.max_latency_ms is not None else "",
             f"RAM <= {human_bytes(limits.max_ram_bytes)}" if limits.max_ram_bytes is not None else "",
             f"flash <= {human_bytes(limits.max_flash_bytes)}" if limits.max_flash_bytes is not None else ""]
    return ", ".join(p for p in parts if p)


def _accuracy_text(row: FitRow) -> str:
    if row.accuracy_kind == "measured":
        assert row.measured is not None
        return f"measured top-1 {row.accuracy:.1f}% on {row.measured.images} of your images"
    if row.accuracy_kind == "published":
        return f"published top-1 {row.accuracy:.1f}%"
    return "no published accuracy"


def _recommend(report: FitReport) -> str:
    d = report.device
    within = _limits_text(report.limits)
    best = report.best
    if best is None:
        if any(r.fits for r in report.rows):
            first = next(r for r in report.rows if r.fits)
            return f"Recommendation: MobileNetV2 {first.variant.name} fits {d.key} but has no accuracy figure: measure it (--measure)"
        closest = report.rows[0]
        return (f"Nothing in the MobileNetV2 family fits {d.key}" + (f" within {within}" if within else "")
                + f"; closest: {closest.variant.name} ({'; '.join(closest.reasons)})")
    ram_of = human_bytes(d.ram_bytes + (d.psram_bytes if best.uses_external_ram else 0))
    text = (f"Recommendation: MobileNetV2 {best.variant.name} int8 on {d.key}: {_accuracy_text(best)}, "
            f"{best.latency_ms:.1f} ms estimated, RAM {human_bytes(best.ram_bytes)} of {ram_of}"
            + (" (external RAM)" if best.uses_external_ram else "")
            + f", flash {human_bytes(best.flash_bytes)} of {human_bytes(d.flash_bytes)}")
    faster = [r for r in report.rows if r.pareto and r.rank and r.rank > 1 and best.accuracy - r.accuracy <= 1.0]
    if faster:
        quick = min(faster, key=lambda r: r.latency_ms)
        text += (f"; {quick.variant.name} is {best.latency_ms / quick.latency_ms:.1f}x faster for "
                 f"{best.accuracy - quick.accuracy:.1f} points less")
    return text


def measured_from(result: CandidateResult) -> Measured:
    """A sweep result's validation, as the accuracy `apply_measurements` ranks by."""
    v = result.validation or {}
    return Measured(images=int(v.get("images", 0)), top1=v.get("tflite_top1"), top5=v.get("tflite_top5"),
                    float_top1=v.get("float_top1"), agreement=float(v.get("top1_agreement", 0.0)),
                    mean_kl=float(v.get("mean_kl", 0.0)),
                    top1_ci=(ci["low"], ci["high"]) if (ci := v.get("tflite_top1_ci")) else None,
                    imagenet_weights=result.candidate.weights == "imagenet",
                    weights_note=result.weights_note, model=str(result.model or ""))


def apply_measurements(report: FitReport, measured: dict[Variant, Measured]) -> FitReport:
    """Measured accuracy replaces the published prior of each measured variant; ranks again."""
    rows = tuple(replace(r, measured=measured.get(r.variant, r.measured)) for r in report.rows)
    notes = report.notes
    if measured:
        n = max(m.images for m in measured.values())
        notes += (f"measured: int8 top-1 on your images (n={n}; 95% intervals beside each) ranks first; it is not on "
                  "the published figures' scale (ImageNet validation, 50,000 images), so compare measured with measured",)
        if any(not m.imagenet_weights for m in measured.values()):
            notes += ("measured with non-ImageNet weights: only agreement is meaningful, the ranking keeps the "
                      "published priors",)
    return _ranked(replace(report, rows=rows, notes=notes))


# ---------------------------------------------------------------------------------------------- render


def report_json(report: FitReport) -> dict[str, Any]:
    """The report as JSON-ready data: every dataclass field, plus each row's ranking accuracy and its kind."""
    data = asdict(report)
    for row, out in zip(report.rows, data["rows"]):
        out["name"] = row.variant.name
        out["accuracy"] = row.accuracy
        out["accuracy_kind"] = row.accuracy_kind
    data["best"] = report.best.variant.name if report.best else None
    return data

_COLUMNS = ("rank", "variant", "top-1 %", "top-5 %", "accuracy", "agree %", "latency ms", "RAM", "flash", "MMACs",
            "fits", "")


def _columns(report: FitReport) -> tuple[tuple[str, ...], set[int]]:
    """Table columns (agreement only once something was measured) and the right-aligned ones."""
    measured = any(r.measured for r in report.rows)
    columns = tuple(c for c in _COLUMNS if measured or c != "agree %")
    numeric = {"rank", "top-1 %", "top-5 %", "agree %", "latency ms", "RAM", "flash", "MMACs"}
    return columns, {i for i, c in enumerate(columns) if c in numeric}


def _row_cells(row: FitRow, columns: tuple[str, ...]) -> list[str]:
    m = row.measured
    top5 = m.top5 if row.accuracy_kind == "measured" and m is not None else (row.published.top5 if row.published else None)
    fits = ("yes (ext RAM)" if row.uses_external_ram else "yes") if row.fits else "no: " + "; ".join(row.reasons)
    cells = {"rank": str(row.rank) if row.rank else "-", "variant": row.variant.name,
             "top-1 %": "-" if row.accuracy is None else f"{row.accuracy:.1f}",
             "top-5 %": "-" if top5 is None else f"{top5:.1f}", "accuracy": row.accuracy_kind or "-",
             "agree %": f"{m.agreement:.1f}" if m else "", "latency ms": f"{row.latency_ms:.1f}",
             "RAM": human_bytes(row.ram_bytes), "flash": human_bytes(row.flash_bytes),
             "MMACs": f"{row.macs / 1e6:.0f}", "fits": fits, "": "pareto" if row.pareto else ""}
    return [cells[c] for c in columns]


def _header(report: FitReport) -> list[str]:
    d = report.device
    ram = human_bytes(d.ram_bytes) + (f" + {human_bytes(d.psram_bytes)} external" if d.psram_bytes else "")
    limits = _limits_text(report.limits)
    fitting = sum(r.fits for r in report.rows)
    return [f"device: {d.key} - {d.name}; {d.runtime}",
            f"limits: RAM {ram}, flash {human_bytes(d.flash_bytes)}" + (f"; {limits}" if limits else "")
            + f"; schedule {report.limits.schedule}",
            f"variants: {len(report.rows)} profiled from their specs, {fitting} fit"]


def _measured_lines(report: FitReport) -> list[str]:
    rows = [r for r in report.rows if r.measured is not None]
    lines = []
    for r in rows:
        m = r.measured
        assert m is not None
        ci = f" [95% {m.top1_ci[0]:.1f}-{m.top1_ci[1]:.1f}]" if m.top1_ci else ""
        acc = (f"int8 top-1 {m.top1:.1f}%{ci} (float {m.float_top1:.1f}%)"
               if m.top1 is not None and m.float_top1 is not None else "unlabelled images: no top-1")
        published = f"published {r.published.top1:.1f}%" if r.published else "no published figure"
        lines.append(f"measured {r.variant.name}: {acc}, agreement {m.agreement:.1f}%, mean KL {m.mean_kl:.4f} on "
                     f"{m.images} images; {published}; estimated {r.latency_ms:.1f} ms"
                     + (f"; {m.weights_note}" if m.weights_note else ""))
    return lines


def render_table(report: FitReport, limit: int | None = None) -> str:
    """Header, ranked table (all rows unless `limit`), measured lines, notes, the recommendation."""
    rows = report.rows if limit is None else report.rows[:limit]
    columns, right = _columns(report)
    body = grid(columns, [_row_cells(r, columns) for r in rows], right=right)
    more = [f"... {len(report.rows) - len(rows)} more (--all shows every variant)"] if len(rows) < len(report.rows) else []
    return "\n".join([*_header(report), "", body, *more, "", *_measured_lines(report),
                      *[f"note: {n}" for n in report.notes], report.recommendation])


def render_markdown(report: FitReport, limit: int | None = None) -> str:
    rows = report.rows if limit is None else report.rows[:limit]
    columns, right = _columns(report)
    lines = [*[f"- {line}" for line in _header(report)], "",
             "| " + " | ".join(c or "front" for c in columns) + " |",
             "|" + "|".join("---:" if i in right else "---" for i in range(len(columns))) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in _row_cells(r, columns)) + " |" for r in rows]
    lines += ["", *[f"- {line}" for line in _measured_lines(report)], *[f"- note: {n}" for n in report.notes],
              "", f"**{report.recommendation}**"]
    return "\n".join(lines)


def render_plot(report: FitReport, path: Path) -> Path:
    """Accuracy vs estimated latency, marker area = RAM, Pareto front joined, measured vs published marked."""
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, a second less to start

    rows = [r for r in report.rows if r.accuracy is not None and math.isfinite(r.latency_ms)]
    biggest = max((r.ram_bytes for r in rows), default=1)
    size = {id(r): 30 + 570 * r.ram_bytes / biggest for r in rows}
    fig = Figure(figsize=(10, 6.5))
    ax = fig.add_subplot()
    groups = [("does not fit", lambda r: not r.fits, dict(facecolors="none", edgecolors="tab:gray", marker="o")),
              ("fits, published top-1", lambda r: r.fits and r.accuracy_kind == "published",
               dict(color="tab:blue", marker="o", alpha=0.75)),
              ("fits, measured top-1 (your images)", lambda r: r.fits and r.accuracy_kind == "measured",
               dict(color="tab:orange", marker="D", alpha=0.85))]
    for label, keep, style in groups:
        chosen = [r for r in rows if keep(r)]
        if chosen:
            ax.scatter([r.latency_ms for r in chosen], [r.accuracy for r in chosen],
                       s=[size[id(r)] for r in chosen], label=label, **style)
    front = sorted((r for r in rows if r.pareto), key=lambda r: r.latency_ms)
    if front:
        ax.step([r.latency_ms for r in front], [r.accuracy for r in front], where="post", color="tab:red",
                linewidth=1.5, label="Pareto front (fits)")
    for r in rows:
        ax.annotate(r.variant.name.replace(" per-tensor", " pt"), (r.latency_ms, r.accuracy), fontsize=7,
                    xytext=(4, 3), textcoords="offset points", color="black" if r.fits else "tab:gray")
    best = report.best
    if best is not None:
        ax.scatter([best.latency_ms], [best.accuracy], s=size[id(best)] * 1.8, facecolors="none",
                   edgecolors="tab:green", linewidths=2, label=f"recommended: {best.variant.name}")
    if report.limits.max_latency_ms is not None:
        ax.axvline(report.limits.max_latency_ms, color="black", linestyle="--", linewidth=1,
                   label=f"--max-latency-ms {report.limits.max_latency_ms:g}")
    ax.set_xscale("log")
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda value, _: f"{value:g}")
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(plain)
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_xlabel(f"estimated latency on {report.device.key} (ms, log scale)")
    measured = any(r.accuracy_kind == "measured" for r in rows)
    ax.set_ylabel("top-1 (%): published ImageNet" + (", or measured on your images" if measured else ""))
    ax.set_title(f"MobileNetV2 family on {report.device.key}: accuracy vs latency (marker area = peak RAM, "
                 f"largest {human_bytes(biggest)})", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.subplots_adjust(left=0.07, right=0.98, top=0.94, bottom=0.09)
    from edgemnv2 import atomic

    return atomic.save_figure(fig, Path(path), dpi=110)


# ---------------------------------------------------------------------------------------------- measure


@dataclass(frozen=True)
class MeasurePlan:
    variants: tuple[Variant, ...]      # what will be converted and validated, best prior first
    skipped: tuple[str, ...]           # higher-ranked variants left out, and why


def plan_measurement(report: FitReport, top: int, weights: str = "imagenet",
                     weights_dir: Path | None = None) -> MeasurePlan:
    """The `top` best fitting variants that can be measured here: ImageNet weights on disk (never downloaded),
    or any variant with weights "none" (random: agreement only)."""
    from edgemnv2.models import find_imagenet_weights

    if top < 1:
        raise InputError(f"--top must be at least 1, got {top}")
    chosen: list[Variant] = []
    skipped: list[str] = []
    no_weights: dict[float, int] = {}
    for row in report.rows:
        if len(chosen) == top or not row.fits:
            break
        if weights == "imagenet" and find_imagenet_weights(row.variant.alpha, row.variant.resolution, weights_dir) is None:
            no_weights[row.variant.alpha] = no_weights.get(row.variant.alpha, 0) + 1
            continue
        chosen.append(row.variant)
    for alpha, count in no_weights.items():
        skipped.append(f"{count} better-ranked variant(s) of alpha {alpha} not measured: no ImageNet weights for it "
                       f"on disk (put mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha}_224.h5 in the weights "
                       "folder, or measure with --weights none)")
    if not chosen:
        raise InputError("nothing to measure: no fitting variant has weights on disk" + (f" ({skipped[0]})" if skipped else ""))
    return MeasurePlan(tuple(chosen), tuple(skipped))


def apply_sweep(report: FitReport, swept: SweepReport, chosen: MeasurePlan) -> FitReport:
    """Measured accuracy from a sweep of `chosen.variants` (same order) replaces their priors."""
    measured = {}
    notes = list(chosen.skipped)
    for variant, result in zip(chosen.variants, swept.results):
        if result.status == "failed":
            notes.append(f"{variant.name} could not be measured: {result.error}")
        else:
            measured[variant] = measured_from(result)
    counts = {s: sum(r.status == s for r in swept.results) for s in ("measured", "cached", "failed")}
    notes.append(f"sweep: {counts['measured']} measured on {swept.executor}, {counts['cached']} from the cache, "
                 f"{counts['failed']} failed, in {swept.wall_seconds:.0f} s; artifacts in {swept.out_dir}")
    notes += list(swept.notes)
    return apply_measurements(replace(report, notes=report.notes + tuple(notes)), measured)
