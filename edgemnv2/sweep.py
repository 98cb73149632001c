"""Sweeps: convert and validate many candidates (variants x convert options), cached by content.

A candidate is one MobileNetV2 (alpha, resolution, weights) with its convert options. `plan` gives each a
content key (weights file hash or the random-weights seed, options, the image folders' contents, image
limit, edgemnv2 and TensorFlow versions); `run_sweep` skips every candidate whose key already has a finished
result in the output folder, hands the others to an executor (`edgemnv2.executors`: sequential or Ray),
and writes each returned artifact set (.tflite, sidecar, validation report, result) into
`<out-dir>/<key>/` as one staged folder, so an interrupted sweep keeps what finished and never leaves
half a result. One candidate's failure is recorded and does not stop the others.

`run_task` is what a worker runs: everything it needs is in the `Task` (plain, picklable data), TensorFlow
is imported inside it, and it returns the artifacts as bytes so the output folder need not be shared
between machines (input folders and weights must be readable on every node).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import itertools
import json
import math
import re
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from edgemnv2 import __version__
from edgemnv2.errors import EdgeMNV2Error, InputError
from edgemnv2.models import ALPHAS, RESOLUTIONS, find_imagenet_weights, weights_filename

SCHEMA_VERSION = 1
RESULT_FILE = "result.json"
MODEL_FILE = "model.tflite"
RANDOM_WEIGHTS_FILE = "random.weights.h5"
# convert options a sweep may vary, with their types (edgemnv2.convert.ConvertOptions fields)
OPTION_TYPES: dict[str, tuple[type, ...]] = {
    "quantize": (str,), "io": (str,), "per_tensor": (bool,), "calibration_method": (str,), "equalize": (bool,),
    "bias_correction": (bool,), "int16_activations": (str,), "num_calibration": (int,), "seed": (int,),
}
MODEL_KEYS = {"alpha": (float, int), "resolution": (int,), "weights": (str,)}
_WEIGHTS_RES = re.compile(r"_(\d+)\.h5$")


@dataclass(frozen=True)
class Candidate:
    """One MobileNetV2 to convert and validate: weights "imagenet", "none" (seeded random) or a file path."""

    alpha: float
    resolution: int
    weights: str = "imagenet"
    options: tuple[tuple[str, Any], ...] = ()     # sorted (name, value) pairs of convert options

    @property
    def name(self) -> str:
        opts = " ".join(f"{k}={v}" for k, v in self.options)
        weights = "" if self.weights == "imagenet" else f" weights={self.weights}"
        return f"{float(self.alpha)}/{self.resolution}{weights}" + (f" {opts}" if opts else "")

    @property
    def option_dict(self) -> dict[str, Any]:
        return dict(self.options)


def candidate(alpha: float, resolution: int, weights: str = "imagenet", **options: Any) -> Candidate:
    """A checked candidate; options are convert options (`OPTION_TYPES`)."""
    if not any(math.isclose(alpha, a) for a in ALPHAS):
        raise InputError(f"alpha {alpha:g} is not in the family; choose from {', '.join(f'{a:g}' for a in ALPHAS)}")
    if resolution not in RESOLUTIONS:
        raise InputError(f"resolution {resolution} is not in the family; choose from {', '.join(map(str, RESOLUTIONS))}")
    for key, value in options.items():
        if key not in OPTION_TYPES:
            raise InputError(f"{key!r} is not a convert option a sweep can vary; allowed: {', '.join(sorted(OPTION_TYPES))}")
        if not isinstance(value, OPTION_TYPES[key]) or (isinstance(value, bool) and bool not in OPTION_TYPES[key]):
            raise InputError(f"option {key} must be {OPTION_TYPES[key][0].__name__}, got {value!r}")
    return Candidate(float(alpha), int(resolution), str(weights), tuple(sorted(options.items())))


@dataclass(frozen=True)
class SweepInputs:
    """What every candidate shares: the images, how many, where weights are looked up."""

    data: Path
    calibration: Path | None = None      # None: the shared calibration folder
    limit: int | None = None             # validation images (seeded choice), None: all
    weights_dir: Path | None = None
    random_seed: int = 0                 # seeds the random weights of weights="none" candidates


@dataclass(frozen=True)
class Task:
    """Everything a worker needs for one candidate, resolved on the driver (paths as strings)."""

    key: str
    candidate: Candidate
    weights_file: str | None             # None: random weights seeded with random_seed
    random_seed: int
    data: str
    calibration: str
    limit: int | None


class Executor(Protocol):
    """Where tasks run (implementations in edgemnv2.executors: sequential, Ray)."""

    name: str
    notes: tuple[str, ...]

    def run(self, tasks: list[Task]) -> Iterator[tuple[Task, dict[str, Any]]]:
        """Run every task; yield (task, run_task's output) as each finishes, in any order."""


@dataclass(frozen=True)
class CandidateResult:
    candidate: Candidate
    key: str
    status: str                          # "measured" | "cached" | "failed"
    error: str | None = None
    model: Path | None = None
    validation: dict[str, Any] | None = None
    conversion: dict[str, Any] | None = None
    weights_note: str | None = None
    seconds: float | None = None         # convert + validate wall time in the worker
    peak_rss_bytes: int | None = None    # the worker process's peak resident memory
    node: str | None = None


@dataclass(frozen=True)
class SweepReport:
    schema_version: int
    out_dir: Path
    executor: str
    results: tuple[CandidateResult, ...]
    wall_seconds: float
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def failed(self) -> list[CandidateResult]:
        return [r for r in self.results if r.status == "failed"]


# ---------------------------------------------------------------------------------------------- spec file


def load_spec(path: Path) -> tuple[list[Candidate], SweepInputs]:
    """A sweep spec (TOML): shared inputs, a [grid] whose lists multiply, and/or explicit [[candidate]] tables.

    Relative paths are relative to the spec file.
    """
    path = Path(path)
    try:
        spec = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"sweep spec {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read sweep spec {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML ({exc})") from None
    top = {"data", "calibration", "limit", "weights_dir", "random_seed", "grid", "candidate"}
    unknown = sorted(set(spec) - top)
    if unknown:
        raise InputError(f"{path}: key {unknown[0]!r} is not a sweep spec key; allowed: {', '.join(sorted(top))}")
    if "data" not in spec:
        raise InputError(f"{path}: 'data' (the folder of validation images) is missing")

    def folder(key: str) -> Path | None:
        value = spec.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise InputError(f"{path}: {key} must be a path string, got {value!r}")
        return Path(value) if Path(value).is_absolute() else (path.parent / value).resolve()

    limit = spec.get("limit")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise InputError(f"{path}: limit must be a positive integer, got {limit!r}")
    inputs = SweepInputs(folder("data"), folder("calibration"), limit, folder("weights_dir"),
                         int(spec.get("random_seed", 0)))
    rows: list[dict[str, Any]] = []
    grid = spec.get("grid")
    if grid is not None:
        if not isinstance(grid, dict):
            raise InputError(f"{path}: [grid] must be a table of lists")
        axes = {k: (v if isinstance(v, list) else [v]) for k, v in grid.items()}
        names = list(axes)
        rows += [dict(zip(names, values)) for values in itertools.product(*axes.values())]
    explicit = spec.get("candidate", [])
    if not isinstance(explicit, list) or not all(isinstance(c, dict) for c in explicit):
        raise InputError(f"{path}: candidates are [[candidate]] tables")
    rows += explicit
    if not rows:
        raise InputError(f"{path}: no candidates: give a [grid] or [[candidate]] tables")
    candidates = []
    for row in rows:
        row = dict(row)
        model = {k: row.pop(k) for k in list(row) if k in MODEL_KEYS}
        if "alpha" not in model or "resolution" not in model:
            raise InputError(f"{path}: every candidate needs alpha and resolution (got {model or row})")
        weights = str(model.get("weights", "imagenet"))
        if weights not in ("imagenet", "none"):
            weights = str(path.parent / weights) if not Path(weights).is_absolute() else weights
        candidates.append(candidate(float(model["alpha"]), int(model["resolution"]), weights, **row))
    return list(dict.fromkeys(candidates)), inputs


# ---------------------------------------------------------------------------------------------- planning


def _hash_images(folder: Path) -> str:
    """Content hash of an image folder (names and bytes, sorted): what the candidates see."""
    from edgemnv2.data import list_images

    digest = hashlib.sha256()
    for file in list_images(folder):
        digest.update(str(file.relative_to(folder)).encode() + b"\0")
        digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def resolve_weights(cand: Candidate, weights_dir: Path | None) -> tuple[str | None, str | None]:
    """(weights file or None for random weights, a note when the file was trained at another resolution).

    Never downloads: ImageNet weights must be on disk (mirror folder, ../shared/models or Keras's cache).
    """
    if cand.weights == "none":
        return None, None
    if cand.weights != "imagenet":
        if not Path(cand.weights).is_file():
            raise InputError(f"weights file {cand.weights} does not exist")
        return cand.weights, None
    found = find_imagenet_weights(cand.alpha, cand.resolution, weights_dir)
    if found is None:
        raise InputError(f"no ImageNet weights for MobileNetV2 {float(cand.alpha)} on disk: put "
                         f"{weights_filename(cand.alpha, cand.resolution)} in the weights folder, or use weights none")
    match = _WEIGHTS_RES.search(found.name)
    trained = int(match.group(1)) if match else cand.resolution
    note = (f"weights trained at {trained} (the {float(cand.alpha)}/{trained} ImageNet file, run at {cand.resolution})"
            if trained != cand.resolution else None)
    return str(found), note


def plan(candidates: list[Candidate], inputs: SweepInputs) -> list[tuple[Task, str | None]]:
    """One task per candidate with its content key, and the weights note of each."""
    from edgemnv2.paths import shared_calibration_dir

    calibration = Path(inputs.calibration) if inputs.calibration is not None else shared_calibration_dir()
    images = {"data": _hash_images(Path(inputs.data)), "calibration": _hash_images(calibration)}
    versions = {"edgemnv2": __version__, "tensorflow": _version("tensorflow"), "ai-edge-litert": _version("ai-edge-litert")}
    weight_hashes: dict[str, str] = {}
    tasks = []
    for cand in candidates:
        weights_file, note = resolve_weights(cand, inputs.weights_dir)
        if weights_file is not None and weights_file not in weight_hashes:
            weight_hashes[weights_file] = hashlib.sha256(Path(weights_file).read_bytes()).hexdigest()
        content = {"schema": SCHEMA_VERSION, "alpha": cand.alpha, "resolution": cand.resolution,
                   "weights": weight_hashes[weights_file] if weights_file else f"random:{inputs.random_seed}",
                   "options": cand.option_dict, "images": images, "limit": inputs.limit, "versions": versions}
        key = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:20]
        tasks.append((Task(key, cand, weights_file, inputs.random_seed, str(Path(inputs.data).resolve()),
                           str(calibration.resolve()), inputs.limit), note))
    return tasks


# ---------------------------------------------------------------------------------------------- the task


def run_task(task: Task, threads: int | None = None) -> dict[str, Any]:
    """Convert and validate one candidate in this process; the artifacts come back as bytes.

    `threads` caps TensorFlow's thread pools (a Ray task gets the cores it asked for); it only takes effect
    when TensorFlow is not imported yet in this process. Errors come back as {"error": one line}.
    """
    import os
    import resource
    import tempfile

    if threads is not None:
        os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(threads))
        os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="edgemnv2-sweep-") as tmp:
            out = _convert_and_validate(task, Path(tmp))
    except EdgeMNV2Error as exc:
        return {"error": str(exc)}
    except Exception as exc:  # a worker must answer for its candidate whatever TensorFlow raises
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        return {"error": f"{type(exc).__name__}: {first}"}
    out["seconds"] = round(time.perf_counter() - started, 2)
    out["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out["node"] = _node()
    return out


def _convert_and_validate(task: Task, tmp: Path) -> dict[str, Any]:
    from edgemnv2 import logs
    from edgemnv2.convert import ConvertOptions, convert
    from edgemnv2.models import ModelSpec, import_keras
    from edgemnv2.validate import validate

    logs.configure(0)
    cand = task.candidate
    for folder in (task.data, task.calibration, task.weights_file):
        if folder is not None and not Path(folder).exists():
            raise InputError(f"{folder} is not readable on this node ({_node()}): sweep inputs must be on a "
                             "file system every node sees")
    output = tmp / MODEL_FILE
    # options are checked before anything slow: a bad combination fails in milliseconds, TensorFlow not imported
    options = ConvertOptions(calibration=Path(task.calibration), output=output, **cand.option_dict)
    weights = task.weights_file
    if weights is None:  # seeded random weights: the same model on every node and every run
        keras = import_keras()
        keras.utils.set_random_seed(task.random_seed)
        model = keras.applications.MobileNetV2(input_shape=(cand.resolution, cand.resolution, 3), alpha=cand.alpha,
                                               weights=None)
        weights = str(tmp / "random.weights.h5")
        model.save_weights(weights)
        keras.backend.clear_session()
    spec = ModelSpec(cand.alpha, cand.resolution, weights)
    result = convert(spec, options)
    report = validate(output, spec, Path(task.data), limit=task.limit)
    import_keras().backend.clear_session()  # in-process sweeps: free the graphs before the next candidate
    out = {"tflite": output.read_bytes(), "sidecar": _jsonable(result.sidecar.to_json()),
           "validation": _jsonable(asdict(report))}
    if task.weights_file is None:  # the seeded random weights travel with the model: validate can find its reference
        out["random_weights"] = Path(weights).read_bytes()
    return out


def _node() -> str:
    """This host, and the Ray node id when running as a Ray task (several nodes may share a host)."""
    import platform
    import sys

    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        return f"{platform.node()}:{ray.get_runtime_context().get_node_id()[:12]}"
    return platform.node()


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


# ---------------------------------------------------------------------------------------------- driver


def _cached(folder: Path, task: Task, note: str | None) -> CandidateResult | None:
    """The finished result stored under the task's key, or None (missing, unreadable, or another key)."""
    try:
        stored = json.loads((folder / RESULT_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if stored.get("key") != task.key or stored.get("schema_version") != SCHEMA_VERSION:
        return None
    return CandidateResult(task.candidate, task.key, "cached", None, folder / MODEL_FILE, stored.get("validation"),
                           stored.get("conversion"), note, stored.get("seconds"), stored.get("peak_rss_bytes"),
                           stored.get("node"))


def _store(folder: Path, task: Task, note: str | None, out: dict[str, Any]) -> CandidateResult:
    """Write one candidate's artifacts as a staged folder (all or nothing) and return its result."""
    from edgemnv2 import atomic

    sidecar = out["sidecar"]
    if "random_weights" in out:  # point the sidecar and the report at the weights kept beside the model
        kept = str(folder / RANDOM_WEIGHTS_FILE)
        for source in (sidecar.get("source") or {}, out["validation"].get("reference") or {}):
            if "weights_file" in source:
                source["weights_file"] = kept
    conversion = {k: sidecar.get(k) for k in ("file_size", "sha256", "ops", "op_count", "fully_integer", "options",
                                              "wall_time_s", "quantization")}
    stored = {"schema_version": SCHEMA_VERSION, "key": task.key, "candidate": asdict(task.candidate),
              "weights_file": task.weights_file, "weights_note": note, "conversion": conversion,
              "validation": out["validation"], "seconds": out.get("seconds"),
              "peak_rss_bytes": out.get("peak_rss_bytes"), "node": out.get("node")}
    generated = (MODEL_FILE, MODEL_FILE + ".json", "validation.json", RANDOM_WEIGHTS_FILE, RESULT_FILE)
    with atomic.staged_dir(folder, generated=generated) as stage:
        (stage / MODEL_FILE).write_bytes(out["tflite"])
        if "random_weights" in out:
            (stage / RANDOM_WEIGHTS_FILE).write_bytes(out["random_weights"])
        (stage / (MODEL_FILE + ".json")).write_text(json.dumps(sidecar, indent=2, default=str) + "\n")
        (stage / "validation.json").write_text(json.dumps(out["validation"], indent=2) + "\n")
        (stage / RESULT_FILE).write_text(json.dumps(stored, indent=2, default=str) + "\n")  # last: marks it finished
    return CandidateResult(task.candidate, task.key, "measured", None, folder / MODEL_FILE, out["validation"],
                           conversion, note, out.get("seconds"), out.get("peak_rss_bytes"), out.get("node"))


def run_sweep(candidates: list[Candidate], inputs: SweepInputs, out_dir: Path, executor: Executor,
              progress: bool = False, on_result: Callable[[CandidateResult], None] | None = None) -> SweepReport:
    """Run every candidate not already finished in `out_dir` on `executor`; failures are results too."""
    from tqdm import tqdm

    started = time.perf_counter()
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create output folder {out_dir}: {exc.strerror or exc}") from None
    planned = plan(candidates, inputs)
    results: dict[str, CandidateResult] = {}
    notes: dict[str, str | None] = {}
    pending = []
    for task, note in planned:
        notes[task.key] = note
        cached = _cached(out_dir / task.key, task, note)
        if cached is not None:
            results[task.key] = cached
        else:
            pending.append(task)
    run_notes: tuple[str, ...] = ()
    if pending:
        bar = tqdm(total=len(pending), desc=f"sweep ({executor.name})", unit="candidate", disable=not progress,
                   leave=False)
        with bar:
            for task, out in executor.run(pending):
                if "error" in out:
                    result = CandidateResult(task.candidate, task.key, "failed", out["error"], weights_note=notes[task.key])
                else:
                    result = _store(out_dir / task.key, task, notes[task.key], out)
                results[task.key] = result
                if on_result is not None:
                    on_result(result)
                bar.update(1)
        run_notes = executor.notes
    ordered = tuple(results[task.key] for task, _ in planned)
    return SweepReport(SCHEMA_VERSION, out_dir, executor.name, ordered, round(time.perf_counter() - started, 2),
                       run_notes)


# ---------------------------------------------------------------------------------------------- render


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def render_table(report: SweepReport) -> str:
    from edgemnv2.profile.report import grid, human_bytes

    rows = []
    for r in report.results:
        v = r.validation or {}
        c = r.conversion or {}
        rows.append([r.candidate.name, r.status, human_bytes(c["file_size"]) if c.get("file_size") else "-",
                     _pct(v.get("float_top1")), _pct(v.get("tflite_top1")), _pct(v.get("top1_agreement")),
                     f"{v['mean_kl']:.4f}" if "mean_kl" in v else "-", str(v.get("images", "-")),
                     f"{r.seconds:.0f}" if r.seconds is not None else "-",
                     human_bytes(r.peak_rss_bytes) if r.peak_rss_bytes else "-",
                     r.error or r.weights_note or ""])
    table = grid(("candidate", "status", "tflite", "float top-1", "int8 top-1", "agree %", "mean KL", "images",
                  "task s", "peak RSS", "note"), rows, right={2, 3, 4, 5, 6, 7, 8, 9})
    counts = {s: sum(r.status == s for r in report.results) for s in ("measured", "cached", "failed")}
    summary = (f"{len(report.results)} candidates: {counts['measured']} run on {report.executor}, "
               f"{counts['cached']} cached, {counts['failed']} failed; {report.wall_seconds:.1f} s; "
               f"artifacts in {report.out_dir}")
    return "\n".join([table, "", summary, *[f"note: {n}" for n in report.notes]])


def comparable(result: CandidateResult) -> dict[str, Any]:
    """What must agree between two runs of the same candidate (timings and paths left out)."""
    timing = {"float_seconds", "tflite_seconds", "tflite_images_per_second", "model", "data"}
    validation = {k: v for k, v in (result.validation or {}).items() if k not in timing}
    if "reference" in validation:  # where the weights file lies differs between output folders
        validation["reference"] = {k: v for k, v in validation["reference"].items() if k != "weights_file"}
    return {"key": result.key, "sha256": (result.conversion or {}).get("sha256"), "validation": validation,
            "error": result.error}
