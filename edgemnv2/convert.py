"""The convert stage: Keras model + calibration images → .tflite + JSON sidecar.

`convert()` runs the stages in `STAGES` order; each is a function of the options and earlier stages'
frozen results and returns its own (a path, `CalibrationFiles`, `FloatModel`, the images,
`quantization.FloatTransform`, `quantization.Quantized`, `TFLiteSummary`), so data flows one way and a
stage can be called alone (benchmarks use `quantize_in_memory`). Cheap checks run first: an unusable
output path or calibration folder fails before the minutes-long conversion.

For int8 the result is verified after conversion: every operator's tensors must be int8/int32
(only the I/O quantize/dequantize boundary ops may touch uint8/float32 when `io` asks for it).
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from edgemnv2 import __version__, atomic, models, quantization
from edgemnv2.errors import ConversionError, InputError, ModelError
from edgemnv2.models import ModelSource, ModelSpec
from edgemnv2.sidecar import Sidecar, sidecar_path
from edgemnv2.tflite import Tensor, load_graph

if TYPE_CHECKING:  # numpy + Pillow load only when a conversion runs, not for `edgemnv2 --help`
    from edgemnv2 import data

_R = TypeVar("_R")

QUANTIZE_MODES = ("int8", "float16", "dynamic", "none")
IO_TYPES = ("int8", "uint8", "float32")


@dataclass(frozen=True)
class ConvertOptions:
    """How to convert. `io` defaults to int8 for int8 quantization and float32 otherwise; unset quantization
    fields are resolved to the measured best for the mode when the options are made (never changed later)."""

    quantize: str = "int8"
    io: str | None = None
    calibration: Path | None = None  # None: the shared calibration folder
    num_calibration: int = 100
    exclude_calibration: tuple[str, ...] = ()  # images of the folder never to calibrate on (held out)
    seed: int = 0
    output: Path | None = None  # None: <model name>_<quantize>.tflite in the current folder
    crop_fraction: float | None = 0.875
    # quantization beyond the converter's defaults (edgemnv2.quantization, issue 6)
    # None = the measured best for the mode (quantization.resolved_defaults): mse ranges for per-channel
    # int8, equalization + min/max + bias correction for per-tensor, the converter's own otherwise.
    calibration_method: str | None = None  # minmax | percentile | mse activation ranges
    per_tensor: bool = False  # per-tensor instead of per-channel weights
    equalize: bool | None = None  # cross-layer equalization (ReLU6-aware) before calibration
    bias_correction: bool | None = None  # empirical bias correction from the calibration images
    adaround: bool = False  # learned weight rounding (AdaRound) against the float model's layer outputs
    adaround_augment: tuple[str, ...] = ()  # flips / crops added to AdaRound's statistics (converters.augment)
    int16_activations: str | None = None  # "all": 16x8 mode (int16 activations, int8 weights)
    equalize_by_default: bool = field(default=False, repr=False)  # set by resolved_defaults
    bias_correction_by_default: bool = field(default=False, repr=False)  # set by resolved_defaults

    def __post_init__(self) -> None:
        if self.quantize not in QUANTIZE_MODES:
            raise InputError(f"--quantize {self.quantize!r} is not supported; choose one of {', '.join(QUANTIZE_MODES)}")
        normalised: dict[str, Any] = {"exclude_calibration": tuple(self.exclude_calibration),
                                      "adaround_augment": _augmentations(self.adaround_augment)}
        if self.io is None:
            normalised["io"] = "int8" if self.quantize == "int8" else "float32"
        if self.calibration is not None:
            normalised["calibration"] = Path(self.calibration)
        if self.output is not None:
            normalised["output"] = Path(self.output)
        for name, value in normalised.items():
            object.__setattr__(self, name, value)
        if self.io not in IO_TYPES:
            raise InputError(f"--io {self.io!r} is not supported; choose one of {', '.join(IO_TYPES)}")
        if self.quantize != "int8" and self.io != "float32":
            raise InputError(f"--io {self.io} needs --quantize int8 ({self.quantize} models keep float32 I/O)")
        if self.num_calibration < 1:
            raise InputError(f"--num-calibration must be at least 1, got {self.num_calibration}")
        for name, value in quantization.resolved_defaults(self).items():
            object.__setattr__(self, name, value)
        quantization.check_options(self)


def _augmentations(value: str | tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    """--adaround-augment as given (text 'flips,crops' or names) → the names, in order, checked."""
    from edgemnv2_converters import augment

    text = value if isinstance(value, str) or value is None else ",".join(value)
    try:
        return augment.parse(text)
    except ValueError as exc:
        raise InputError(f"--adaround-augment: {exc}") from exc


@dataclass(frozen=True)
class ConvertResult:
    output: Path
    sidecar_path: Path
    sidecar: Sidecar


@dataclass(frozen=True)
class CalibrationFiles:
    """The calibration folder (resolved) and the images it offers after the held-out ones; empty for non-int8."""

    folder: Path | None
    files: tuple[Path, ...]


@dataclass(frozen=True)
class FloatModel:
    """The Keras model to quantize and its input resolution."""

    model: Any
    resolution: int


@dataclass(frozen=True)
class TensorSummary:
    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float | None
    zero_point: int | None


@dataclass(frozen=True)
class TFLiteSummary:
    """What the sidecar records about a flatbuffer, read with the `tflite` parser (no TensorFlow)."""

    ops: Mapping[str, int]
    input: TensorSummary
    output: TensorSummary
    non_integer_ops: tuple[str, ...]  # "OP#index: tensor name dtype" for ops touching other than int8/int32


def default_output(source: ModelSource, options: ConvertOptions) -> Path:
    """e.g. mobilenet_v2_1.0_224_int8.tflite (io is added only when not the mode's default)."""
    default_io = "int8" if options.quantize == "int8" else "float32"
    suffix = "" if options.io == default_io else f"_io{options.io}"
    return Path.cwd() / f"{source.name}_{options.quantize}{suffix}.tflite"


# ---- stages: each takes earlier stages' frozen results and returns its own ---------------------------

def ensure_writable(path: Path, example: str = "model.tflite") -> Path:
    """Create the parent folder and prove a file can be written there (os.access lies for root)."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise InputError(f"output {path} is a folder; give a file path such as {path / example}")
    existing = next(p for p in path.parents if p.exists())
    if not existing.is_dir():
        raise InputError(f"cannot write output {path}: {existing} is a file, not a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".edgemnv2-write-test-"):
            pass
    except OSError as exc:
        raise InputError(f"cannot write output {path}: {exc.strerror or exc}") from exc
    return path.resolve()


def check_output(source: ModelSource, options: ConvertOptions) -> Path:
    """Fail now, not after the conversion, when the output (or its sidecar) cannot be written."""
    return ensure_writable(options.output or default_output(source, options))


def list_calibration(options: ConvertOptions) -> CalibrationFiles:
    """Find the calibration images (int8 only) before building the model, so a bad folder fails fast."""
    if options.quantize != "int8":
        return CalibrationFiles(folder=None, files=())
    folder = options.calibration
    if folder is None:
        from edgemnv2.paths import shared_calibration_dir

        folder = shared_calibration_dir()
    from edgemnv2 import data

    left_out = set(options.exclude_calibration)
    files = tuple(f for f in data.list_images(folder) if data.relative_name(f, folder) not in left_out)
    if not files:
        raise InputError(f"every image in {folder} is held out; none is left to calibrate on")
    return CalibrationFiles(folder=Path(folder), files=files)


def build_model(source: ModelSource) -> FloatModel:
    model = models.load_keras_model(source)
    return FloatModel(model=model, resolution=models.model_resolution(model))


def load_calibration(options: ConvertOptions, files: CalibrationFiles, resolution: int,
                     progress: bool = False) -> data.ImageSet | None:
    if files.folder is None:
        return None
    from edgemnv2 import data

    return data.load_images(files.folder, resolution, limit=options.num_calibration, seed=options.seed,
                            crop_fraction=options.crop_fraction, exclude=options.exclude_calibration,
                            progress=progress)


def run_converter(source: ModelSource, options: ConvertOptions, model: Any,
                  calibration: data.ImageSet | None) -> bytes:
    from edgemnv2_converters.keras_to_tflite import convert_keras

    images = calibration.images if calibration is not None else None
    try:
        return convert_keras(model, options.quantize, options.io or "int8", images,
                             quiet=not logging.getLogger().isEnabledFor(logging.INFO))
    except Exception as exc:  # TensorFlow raises ConverterError, RuntimeError, ValueError...
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = next((line for line in lines if "error" in line.lower()), lines[0] if lines else type(exc).__name__)
        raise ConversionError(f"TFLite converter failed for {source.name}: {detail[:300]}") from exc


def quantize(source: ModelSource, options: ConvertOptions, transformed: quantization.FloatTransform,
             calibration: data.ImageSet | None) -> quantization.Quantized:
    """The plain converter when nothing custom is asked; otherwise calibrate → ranges → quantize."""
    model = transformed.model
    if quantization.custom(options):
        assert calibration is not None
        return quantization.quantize_or_convert(source.name, options, model, calibration.images,
                                                weights_rounded=transformed.weights_rounded)
    return quantization.Quantized(tflite=run_converter(source, options, model, calibration))


def verify(tflite: bytes, options: ConvertOptions) -> TFLiteSummary:
    """Summarise the flatbuffer; for int8, refuse any op that is not fully integer."""
    summary = summarize_tflite(tflite, quantization.integer_types(options))
    if options.quantize == "int8":
        bad = summary.non_integer_ops
        if bad:
            raise ConversionError(f"int8 conversion is not fully integer: {len(bad)} op(s) use other tensor "
                                  f"types, first: {bad[0]}")
        want = options.io
        got = (summary.input.dtype, summary.output.dtype)
        if got != (want, want):
            raise ConversionError(f"converter produced I/O {got[0]}/{got[1]}, asked for {want}")
    return summary


def quantize_in_memory(source: ModelSource, options: ConvertOptions, model: Any,
                       calibration: data.ImageSet) -> tuple[bytes, float]:
    """Transform, quantize and verify without writing anything (benchmarks compare methods this way);
    returns the model and the seconds the transform + quantization took."""
    started = time.perf_counter()
    transformed = quantization.transform_float_model(source.name, options, model, calibration.images)
    quantized = quantize(source, options, transformed, calibration)
    seconds = time.perf_counter() - started
    verify(quantized.tflite, options)  # fully integer or it raises
    return quantized.tflite, seconds


STAGES: tuple[str, ...] = ("check_output", "list_calibration", "build_model", "load_calibration",
                           "transform_float_model", "quantize", "verify", "write_outputs")


class _StageClock:
    """Announces each stage as it starts (`on_stage`) and keeps its seconds for the sidecar."""

    def __init__(self, on_stage: Callable[[int, int, str], None] | None) -> None:
        self.on_stage = on_stage
        self.seconds: dict[str, float] = {}

    def run(self, name: str, stage: Callable[..., _R], *args: Any) -> _R:
        if self.on_stage is not None:
            self.on_stage(STAGES.index(name) + 1, len(STAGES), name)
        started = time.perf_counter()
        result = stage(*args)
        self.seconds[name] = round(time.perf_counter() - started, 3)
        return result


def convert(source: ModelSource, options: ConvertOptions | None = None, progress: bool = False,
            on_stage: Callable[[int, int, str], None] | None = None) -> ConvertResult:
    """Convert a MobileNetV2 spec or a user's Keras model to TFLite and write the sidecar beside it.

    The stages run in `STAGES` order, each from the frozen results of earlier ones; `on_stage(number,
    total, name)` is called as each starts, so a caller can show where a long conversion is."""
    started = time.perf_counter()
    options = options or ConvertOptions()
    clock = _StageClock(on_stage)
    output = clock.run("check_output", check_output, source, options)
    files = clock.run("list_calibration", list_calibration, options)
    float_model = clock.run("build_model", build_model, source)
    calibration = clock.run("load_calibration", load_calibration, options, files, float_model.resolution, progress)
    images = calibration.images if calibration is not None else None
    transformed = clock.run("transform_float_model", quantization.transform_float_model, source.name, options,
                            float_model.model, images)
    quantized = clock.run("quantize", quantize, source, options, transformed, calibration)
    summary = clock.run("verify", verify, quantized.tflite, options)
    return clock.run("write_outputs", write_outputs, source, options, output, files, float_model.resolution,
                     calibration, transformed, quantized, summary, clock.seconds, started)


def write_outputs(source: ModelSource, options: ConvertOptions, output: Path, files: CalibrationFiles,
                  resolution: int, calibration: data.ImageSet | None, transformed: quantization.FloatTransform,
                  quantized: quantization.Quantized, summary: TFLiteSummary, stage_seconds: Mapping[str, float],
                  started: float) -> ConvertResult:
    """The model, its float twin when the float model was transformed, then the sidecar: each atomically.
    `stage_seconds` are the stages before this one (this one's time is in the sidecar's wall time)."""
    atomic.write_bytes(output, quantized.tflite)
    report: dict[str, Any] = {**transformed.report, **quantized.report}
    if quantized.float_twin is not None:
        report["float_twin"] = quantization.write_float_twin(output, quantized.float_twin).name
    sidecar = build_sidecar(source, options, output, files, resolution, calibration, quantized.tflite, summary,
                            report, stage_seconds=stage_seconds,
                            wall_time_s=time.perf_counter() - started)
    path = atomic.write_json(sidecar_path(output), sidecar.to_json())
    return ConvertResult(output=output, sidecar_path=path, sidecar=sidecar)


# ---- flatbuffer inspection (the package's graph model, no TensorFlow) --------------------------------

def summarize_tflite(content: bytes, integer_types: tuple[str, ...] = ("int8", "int32")) -> TFLiteSummary:
    """Op histogram, I/O tensors and the ops that break full-integer inference."""
    try:
        graph = load_graph(content, what="the converter output")
    except ModelError as exc:
        raise ConversionError(f"converter output is not a readable TFLite flatbuffer: {exc}") from exc

    def tensor(t: Tensor) -> TensorSummary:
        q = t.quantization
        per_tensor = q is not None and len(q.scale) == 1
        return TensorSummary(name=t.name, shape=tuple(t.shape), dtype=t.dtype.name,
                             scale=q.scale[0] if per_tensor else None, zero_point=t.zero_point if per_tensor else None)

    graph_inputs, graph_outputs = set(graph.inputs), set(graph.outputs)
    ops: Counter[str] = Counter()
    non_integer: list[str] = []
    for op in graph.ops:
        name = op.kind  # a custom op is named by its custom code
        ops[name] += 1
        ins = [t for t in op.inputs if t >= 0]
        outs = [t for t in op.outputs if t >= 0]
        # I/O boundary ops converting uint8/float32 graph I/O to int8 are allowed by the contract
        boundary = name in ("QUANTIZE", "DEQUANTIZE") and (set(ins) & graph_inputs or set(outs) & graph_outputs)
        for t in ins + outs:
            if boundary and (t in graph_inputs or t in graph_outputs):
                continue
            dtype = graph.tensors[t].dtype.name
            if dtype not in integer_types:
                non_integer.append(f"{name}#{op.index}: {graph.tensors[t].name} is {dtype}")
                break
    return TFLiteSummary(ops=dict(sorted(ops.items())), input=tensor(graph.tensors[graph.inputs[0]]),
                         output=tensor(graph.tensors[graph.outputs[0]]), non_integer_ops=tuple(non_integer))


# ---- sidecar ------------------------------------------------------------------------------------

def build_sidecar(source: ModelSource, options: ConvertOptions, output: Path, files: CalibrationFiles,
                  resolution: int, calibration: data.ImageSet | None, tflite: bytes, summary: TFLiteSummary,
                  quantization_report: Mapping[str, Any], stage_seconds: Mapping[str, float],
                  wall_time_s: float) -> Sidecar:
    import numpy as np
    import tensorflow as tf

    calibration_record = None
    if calibration is not None:
        calibration_record = {
            "folder": str(Path(files.folder).resolve()),  # type: ignore[arg-type]
            "count": len(calibration.files),
            "requested": options.num_calibration,
            "available": len(files.files),
            "skipped": [f"{p.name}: {why}" for p, why in calibration.skipped],
            "files_sha256": calibration.file_list_sha256(),
            "seed": options.seed,
        }
    recorded = asdict(options)
    if files.folder is not None:
        recorded["calibration"] = files.folder  # the folder actually used, also when the shared one by default
    return Sidecar(
        model=output.name,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        source=models.describe(source),
        resolution=resolution,
        alpha=float(source.alpha) if isinstance(source, ModelSpec) else None,
        options={k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
                 for k, v in recorded.items()},
        calibration=calibration_record,
        file_size=len(tflite),
        sha256=hashlib.sha256(tflite).hexdigest(),
        ops=dict(summary.ops),
        op_count=sum(summary.ops.values()),
        fully_integer=not summary.non_integer_ops,
        input=asdict(summary.input),
        output=asdict(summary.output),
        versions={"edgemnv2": __version__, "tensorflow": tf.__version__, "numpy": np.__version__},
        wall_time_s=round(wall_time_s, 3),
        stage_seconds=dict(stage_seconds),
        quantization=dict(quantization_report) or None,
    )
