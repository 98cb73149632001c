"""Fit a device profile's per-op-kind cycle counts to measured per-layer times (`edgemnv2 devices calibrate`).

A bench results file (JSONL: a header, then one record per image, `docs/bench.md`) holds the board's µs per
operator; at the board's clock (`cpu_hz`) they are cycles. Every operator of every file is one equation

    cycles = c_mac[kind] · MACs inside the input       (every multiplying kind)
             + c_out[kind] · outputs + c_weight[kind] · weights    (pointwise; depthwise: outputs)
             + c_byte[kind] · activation bytes touched  (add, mean, softmax, pad, ...: one rate per kind)
             + c_op                                     (every op: dispatch, profiler, loop set-up)

solved by non-negative least squares (a cost is never negative), so the few large layers that dominate the
total are fitted most closely. The terms follow the kernels: a 1x1 convolution requantizes and stores every
output and (CMSIS-NN) sums every filter row once per call for the input offset, a 3x3 depthwise convolution
skips the taps on the padding and costs per output, adds cost per element and MEAN per element read. A kind
MobileNetV2 has once (stem conv, classifier, MEAN, SOFTMAX) gets one term so the fit stays determined. The
fitted numbers are written into a copy of the base profile as `[cpu.per_kind.KIND]` tables, which
`edgemnv2.profile.latency` uses instead of its roofline for those kinds; `--held-out` files are predicted,
never fitted.
"""

from __future__ import annotations

import hashlib
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgemnv2 import atomic
from edgemnv2.errors import InputError
from edgemnv2.profile.devices import FITTED_KINDS, KIND_CYCLE_KEYS, DeviceProfile, KindCycles
from edgemnv2.profile.latency import LayerFeatures
from edgemnv2.serial.bench import load_results
from edgemnv2.toml_text import dump_toml

# the per-kind terms fitted (besides the shared cycles_per_op); other kinds: cycles_per_byte
TERMS = {"conv": ("cycles_per_mac",), "pointwise": ("cycles_per_mac", "cycles_per_output", "cycles_per_weight"),
         "depthwise": ("cycles_per_mac", "cycles_per_output"), "fully_connected": ("cycles_per_mac",)}
PER_OP = "cycles_per_op"


@dataclass(frozen=True)
class Measured:
    """One results file reduced to what the fit needs: per-op features and mean measured cycles."""

    path: str
    model: str
    model_sha256: str
    images: int                      # records with per-layer times
    cpu_hz: int
    ops: list[LayerFeatures]
    op_cycles: list[float]           # mean over the images, per op
    whole_cycles: float              # mean whole inference (the ops plus the interpreter between them)


@dataclass(frozen=True)
class FilePrediction:
    path: str
    model: str
    role: str                        # "fitted" | "held-out"
    images: int
    measured_cycles: float           # mean whole inference
    predicted_cycles: float          # sum over ops of the fitted cycles
    error: float                     # predicted / measured - 1


@dataclass(frozen=True)
class KindFit:
    kind: str
    ops: int                         # ops of this kind over the fitted files
    macs: int
    measured_cycles: float
    predicted_cycles: float
    measured_cycles_per_mac: float | None


@dataclass(frozen=True)
class CalibrationReport:
    base: str                        # the base profile's key
    output: str
    coefficients: dict[str, float]   # columns() -> fitted cycles
    per_kind: dict[str, KindCycles]  # what the written profile holds
    kinds: list[KindFit]
    files: list[FilePrediction]


def read_results(path: Path, models: dict[str, Path]) -> Measured:
    """Mean per-op cycles of one bench JSONL; the op features come from its header, or from the `--model` whose
    sha256 the header names (files written before bench recorded them)."""
    path = Path(path)
    header, records = load_results(path, "give files written by `edgemnv2 bench`")
    sha = str(header.get("model_sha256", ""))
    ops = _features(path, header, models.get(sha))
    cpu_hz = header.get("cpu_hz")
    if not isinstance(cpu_hz, int) or cpu_hz <= 0:
        raise InputError(f"{path} does not say the board's clock (header cpu_hz): rerun `edgemnv2 bench`")
    timed = [r for r in records if r.get("status") == "ok" and r.get("layer_us")]
    if not timed:
        raise InputError(f"{path} holds no per-layer times (the board's RESULT had no layer_us)")
    if any(len(r["layer_us"]) != len(ops) for r in timed):
        raise InputError(f"{path}: the board timed another number of ops than the model has ({len(ops)})")
    per_us = cpu_hz / 1e6
    op_cycles = np.mean(np.asarray([r["layer_us"] for r in timed], dtype=np.float64), axis=0) * per_us
    whole = float(np.mean([r["latency_us"] for r in timed])) * per_us
    return Measured(str(path), str(header.get("model") or sha[:12]), sha, len(timed), cpu_hz, ops,
                    [float(v) for v in op_cycles], whole)


def _features(path: Path, header: dict[str, Any], model: Path | None) -> list[LayerFeatures]:
    if model is not None:
        from edgemnv2.profile.cost import graph_costs
        from edgemnv2.profile.graph import load_tflite
        from edgemnv2.profile.latency import layer_features

        graph = load_tflite(model)
        return layer_features(graph, graph_costs(graph))
    ops = (header.get("layers") or {}).get("ops")
    if not ops:
        raise InputError(f"{path} does not list the model's ops (written by an older bench): add --model with the "
                         f"model it was run with (sha256 {str(header.get('model_sha256'))[:12]}…)")
    try:
        return [LayerFeatures(**op) for op in ops]
    except TypeError:
        raise InputError(f"{path}: header layers.ops is not what this edgemnv2 bench writes: add --model with the "
                         f"model it was run with (sha256 {str(header.get('model_sha256'))[:12]}…)") from None


def model_index(models: list[Path]) -> dict[str, Path]:
    """--model files by sha256, so each results file finds the model its header names."""
    index = {}
    for model in models:
        try:
            index[hashlib.sha256(Path(model).read_bytes()).hexdigest()] = Path(model)
        except OSError as exc:
            raise InputError(f"cannot read --model {model}: {exc.strerror or exc}") from None
    return index


def terms(kind: str) -> tuple[str, ...]:
    return TERMS.get(kind, ("cycles_per_byte",))


def columns(kinds: set[str]) -> list[str]:
    """The unknowns for ops of `kinds`: KIND.TERM per kind (profile order), then the shared per-op cost."""
    ordered = [k for k in FITTED_KINDS if k in kinds] + sorted(kinds - set(FITTED_KINDS))
    return [f"{kind}.{term}" for kind in ordered for term in terms(kind)] + [PER_OP]


def design_row(op: LayerFeatures, cols: list[str]) -> list[float]:
    """One equation's coefficients, in `cols` order."""
    value = {"cycles_per_mac": op.inside_macs, "cycles_per_output": op.outputs, "cycles_per_weight": op.weights,
             "cycles_per_byte": op.touched_bytes}
    row = dict.fromkeys(cols, 0.0)
    for term in terms(op.kind):
        row[f"{op.kind}.{term}"] = float(value[term])
    row[PER_OP] = 1.0
    return [row[c] for c in cols]


def nnls(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Non-negative least squares (Lawson & Hanson's active set; the light core has no SciPy).

    Columns are scaled to unit norm first: MAC counts and the per-op constant differ by six orders."""
    norms = np.linalg.norm(a, axis=0)
    norms[norms == 0] = 1.0
    a = a / norms
    n = a.shape[1]
    x = np.zeros(n)
    passive = np.zeros(n, dtype=bool)
    tol = 1e-10 * max(1.0, float(np.linalg.norm(b)))
    for _ in range(3 * n):
        gradient = a.T @ (b - a @ x)
        if passive.all() or gradient[~passive].max() <= tol:
            break
        passive[int(np.argmax(np.where(passive, -np.inf, gradient)))] = True
        while True:
            z = np.zeros(n)
            z[passive] = np.linalg.lstsq(a[:, passive], b, rcond=None)[0]
            if (z[passive] > 0).all():
                x = z
                break
            blocking = passive & (z <= 0)
            step = float(np.min(x[blocking] / (x[blocking] - z[blocking])))
            x = x + step * (z - x)
            passive &= x > 1e-15
            x[~passive] = 0.0
    return x / norms


def fit(measured: list[Measured]) -> dict[str, float]:
    """Fitted cycles per column over every op of every file."""
    cols = columns({op.kind for m in measured for op in m.ops})
    rows = [design_row(op, cols) for m in measured for op in m.ops]
    cycles = [c for m in measured for c in m.op_cycles]
    x = nnls(np.asarray(rows, dtype=np.float64), np.asarray(cycles, dtype=np.float64))
    return {name: float(v) for name, v in zip(cols, x)}


def per_kind(coefficients: dict[str, float]) -> dict[str, KindCycles]:
    """The `[cpu.per_kind.KIND]` tables (7 significant digits, as written) of the fitted kinds (the others keep
    the roofline)."""
    rounded = {k: float(f"{v:.7g}") for k, v in coefficients.items()}
    tables: dict[str, dict[str, float]] = {}
    for name, value in rounded.items():
        if name != PER_OP:
            kind, term = name.split(".")
            tables.setdefault(kind, {})[term] = value
    return {kind: KindCycles(**t, cycles_per_op=rounded[PER_OP]) for kind, t in tables.items()}


def predict(tables: dict[str, KindCycles], ops: list[LayerFeatures]) -> list[float]:
    """Cycles per op (as edgemnv2.profile.latency computes them from the same tables)."""
    return [tables[op.kind].cycles(op.inside_macs, op.outputs, op.weights, op.touched_bytes) if op.kind in tables
            else math.nan for op in ops]


def calibrate(results: list[Path], base: DeviceProfile, output: Path, held_out: list[Path] = (),
              models: list[Path] = ()) -> CalibrationReport:
    """Fit on `results`, predict `held_out`, write the calibrated profile to `output` (atomically)."""
    if not results:
        raise InputError("give at least one bench results file (JSONL) to fit")
    if base.kind == "edgetpu":
        raise InputError(f"{base.key} is an Edge TPU profile: per-kind cycles describe a CPU")
    index = model_index(list(models))
    fitted = [read_results(path, index) for path in results]
    held = [read_results(path, index) for path in held_out]
    clocks = {m.cpu_hz for m in fitted + held}
    if len(clocks) > 1:
        raise InputError(f"the results were measured at different clocks ({', '.join(map(str, sorted(clocks)))} Hz):"
                         " fit one board at a time")
    coefficients = fit(fitted)
    tables = per_kind(coefficients)
    unfitted = sorted({op.kind for m in held for op in m.ops} - set(tables))
    if unfitted:
        raise InputError(f"the held-out results have {', '.join(unfitted)} ops and the fitted ones none: "
                         "fit on a model with every kind")
    files = [_prediction(m, tables, role) for role, group in (("fitted", fitted), ("held-out", held)) for m in group]
    kinds = []
    for kind in tables:
        pairs = [(op, m_cycles, p) for m in fitted
                 for op, m_cycles, p in zip(m.ops, m.op_cycles, predict(tables, m.ops)) if op.kind == kind]
        macs = sum(op.macs for op, _, _ in pairs)
        measured = sum(c for _, c, _ in pairs)
        kinds.append(KindFit(kind, len(pairs), macs, round(measured, 1), round(sum(p for _, _, p in pairs), 1),
                             round(measured / macs, 4) if macs else None))
    clock_mhz = clocks.pop() / 1e6
    atomic.write_text(output, profile_toml(base, tables, clock_mhz, fitted))
    return CalibrationReport(base.key, str(output), coefficients, tables, kinds, files)


def _prediction(m: Measured, tables: dict[str, KindCycles], role: str) -> FilePrediction:
    predicted = float(sum(predict(tables, m.ops)))
    return FilePrediction(m.path, m.model, role, m.images, round(m.whole_cycles, 1), round(predicted, 1),
                          round(predicted / m.whole_cycles - 1, 5))


def profile_toml(base: DeviceProfile, tables: dict[str, KindCycles], clock_mhz: float,
                 fitted: list[Measured]) -> str:
    """The base profile's TOML with the fitted tables, the board's clock and where the numbers came from."""
    try:
        data = tomllib.loads(Path(base.path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"cannot read the base profile {base.path}: {exc}") from None
    for own in ("aliases", "board"):  # names and firmware facts stay with the bundled profile
        data.pop(own, None)
    what = ", ".join(f"{Path(m.path).name} ({m.model}, {m.images} images)" for m in fitted)
    data["clock_mhz"] = clock_mhz
    data["calibration"] = f"per-kind cycles fitted by edgemnv2 devices calibrate to {what}; base profile {base.key}"
    data["cpu"]["per_kind"] = {kind: {k: getattr(t, k) for k in KIND_CYCLE_KEYS if getattr(t, k)}
                               for kind, t in tables.items()}
    sources = data.setdefault("sources", {})
    sources["clock_mhz"] = "the board's cpu_hz in the bench results' header (the clock its cycle counts are at)"
    sources["cpu.per_kind"] = f"non-negative least squares on per-layer times: {what}"
    return f"# Written by `edgemnv2 devices calibrate` from {base.key} ({base.path}).\n" + dump_toml(data)


def render_calibration(report: CalibrationReport) -> str:
    """The fitted terms and the fit per kind, then each file (fitted and held out)."""
    lines = [f"calibrated {report.base} -> {report.output}",
             f"  kind              ops          MACs  measured cycles  fitted cycles  measured/MAC  fitted cycles per "
             f"(shared: {report.coefficients[PER_OP]:.4g} per op)"]
    for k in report.kinds:
        per_mac = f"{k.measured_cycles_per_mac:>13.3f}" if k.measured_cycles_per_mac is not None else f"{'-':>13}"
        table = report.per_kind[k.kind]
        fitted = "  ".join(f"{getattr(table, t):.4g} {t.removeprefix('cycles_per_')}" for t in terms(k.kind))
        lines.append(f"  {k.kind:<16} {k.ops:>4} {k.macs:>13,} {k.measured_cycles:>16,.0f} {k.predicted_cycles:>14,.0f}"
                     f" {per_mac}  {fitted}")
    lines.append("  file                                  role      images   measured cycles    predicted    error")
    for f in report.files:
        lines.append(f"  {Path(f.path).name[:36]:<37} {f.role:<9} {f.images:>6} {f.measured_cycles:>17,.0f} "
                     f"{f.predicted_cycles:>12,.0f} {f.error:>+8.2%}")
    return "\n".join(lines)
