"""The convert stage: Keras model + calibration images → .tflite + JSON sidecar.

`convert()` runs a list of stages over one `ConvertJob` (see `STAGES`), each reading what earlier
stages left on the job and adding its own result, so a new stage (e.g. a float-model transform
before calibration) is one function and one entry in the list. Cheap checks run first: an unusable
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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgemnv2 import __version__, atomic, models, quantization
from edgemnv2.errors import ConversionError, InputError, ModelError
from edgemnv2.models import ModelSource, ModelSpec
from edgemnv2.sidecar import Sidecar, sidecar_path
from edgemnv2.tflite import Tensor, load_graph

if TYPE_CHECKING:  # numpy + Pillow load only when a conversion runs, not for `edgemnv2 --help`
    from edgemnv2 import data

QUANTIZE_MODES = ("int8", "float16", "dynamic", "none")
IO_TYPES = ("int8", "uint8", "float32")


@dataclass
class ConvertOptions:
    """How to convert. `io` defaults to int8 for int8 quantization and float32 otherwise."""

    quantize: str = "int8"
    io: str | None = None
    calibration: Path | None = None  # None: the shared calibration folder
    num_calibration: int = 100
    exclude_calibration: tuple[str, ...] = ()  # images of the folder never to calibrate on (held out)
    seed: int = 0
    output: Path | None = None  # None: <model name>_<quantize>.tflite in the current folder
    crop_fraction: float | None = 0.875
    # quantization beyond the converter's defaults (edgemnv2.quantization, issue 6)
    # None = the measured best for the mode (quantization.resolve_defaults): mse ranges + bias correction
    # for per-channel int8, min/max + bias correction for per-tensor, the converter's own otherwise.
    calibration_method: str | None = None  # minmax | percentile | mse activation ranges
    per_tensor: bool = False  # per-tensor instead of per-channel weights
    equalize: bool = False  # cross-layer equalization (ReLU6-aware) before calibration
    bias_correction: bool | None = None  # empirical bias correction from the calibration images
    int16_activations: str | None = None  # "all": 16x8 mode (int16 activations, int8 weights)
    bias_correction_by_default: bool = field(default=False, repr=False)  # set by resolve_defaults

    def __post_init__(self) -> None:
        if self.quantize not in QUANTIZE_MODES:
            raise InputError(f"--quantize {self.quantize!r} is not supported; choose one of {', '.join(QUANTIZE_MODES)}")
        if self.io is None:
            self.io = "int8" if self.quantize == "int8" else "float32"
        if self.io not in IO_TYPES:
            raise InputError(f"--io {self.io!r} is not supported; choose one of {', '.join(IO_TYPES)}")
        if self.quantize != "int8" and self.io != "float32":
            raise InputError(f"--io {self.io} needs --quantize int8 ({self.quantize} models keep float32 I/O)")
        if self.num_calibration < 1:
            raise InputError(f"--num-calibration must be at least 1, got {self.num_calibration}")
        if self.calibration is not None:
            self.calibration = Path(self.calibration)
        if self.output is not None:
            self.output = Path(self.output)
        quantization.resolve_defaults(self)
        quantization.check_options(self)


@dataclass(frozen=True)
class ConvertResult:
    output: Path
    sidecar_path: Path
    sidecar: Sidecar


@dataclass
class ConvertJob:
    """State handed from stage to stage; each stage fills its fields."""

    source: ModelSource
    options: ConvertOptions
    progress: bool = False
    output: Path | None = None
    calibration_files: list[Path] = field(default_factory=list)
    model: Any = None
    resolution: int | None = None
    calibration: data.ImageSet | None = None
    tflite: bytes | None = None
    summary: TFLiteSummary | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)
    result: ConvertResult | None = None
    quantization: dict[str, Any] = field(default_factory=dict)  # what edgemnv2.quantization's stages did


@dataclass
class TensorSummary:
    name: str
    shape: list[int]
    dtype: str
    scale: float | None
    zero_point: int | None


@dataclass
class TFLiteSummary:
    """What the sidecar records about a flatbuffer, read with the `tflite` parser (no TensorFlow)."""

    ops: dict[str, int]
    input: TensorSummary
    output: TensorSummary
    non_integer_ops: list[str]  # "OP#index: tensor name dtype" for ops touching other than int8/int32


def default_output(source: ModelSource, options: ConvertOptions) -> Path:
    """e.g. mobilenet_v2_1.0_224_int8.tflite (io is added only when not the mode's default)."""
    default_io = "int8" if options.quantize == "int8" else "float32"
    suffix = "" if options.io == default_io else f"_io{options.io}"
    return Path.cwd() / f"{source.name}_{options.quantize}{suffix}.tflite"


# ---- stages -------------------------------------------------------------------------------------

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


def check_output(job: ConvertJob) -> None:
    """Fail now, not after the conversion, when the output (or its sidecar) cannot be written."""
    job.output = ensure_writable(job.options.output or default_output(job.source, job.options))


def list_calibration(job: ConvertJob) -> None:
    """Find the calibration images (int8 only) before building the model, so a bad folder fails fast."""
    if job.options.quantize != "int8":
        return
    if job.options.calibration is None:
        from edgemnv2.paths import shared_calibration_dir

        job.options.calibration = shared_calibration_dir()
    from edgemnv2 import data

    left_out = set(job.options.exclude_calibration)
    job.calibration_files = [f for f in data.list_images(job.options.calibration)
                             if data.relative_name(f, job.options.calibration) not in left_out]
    if not job.calibration_files:
        raise InputError(f"every image in {job.options.calibration} is held out; none is left to calibrate on")


def build_model(job: ConvertJob) -> None:
    job.model = models.load_keras_model(job.source)
    job.resolution = models.model_resolution(job.model)


def load_calibration(job: ConvertJob) -> None:
    if job.options.quantize != "int8":
        return
    assert job.options.calibration is not None and job.resolution is not None
    from edgemnv2 import data

    job.calibration = data.load_images(job.options.calibration, job.resolution,
                                       limit=job.options.num_calibration, seed=job.options.seed,
                                       crop_fraction=job.options.crop_fraction,
                                       exclude=job.options.exclude_calibration, progress=job.progress)


def run_converter(job: ConvertJob) -> None:
    from edgemnv2_converters.keras_to_tflite import convert_keras

    images = job.calibration.images if job.calibration is not None else None
    try:
        job.tflite = convert_keras(job.model, job.options.quantize, job.options.io or "int8", images,
                                   quiet=not logging.getLogger().isEnabledFor(logging.INFO))
    except Exception as exc:  # TensorFlow raises ConverterError, RuntimeError, ValueError...
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = next((line for line in lines if "error" in line.lower()), lines[0] if lines else type(exc).__name__)
        raise ConversionError(f"TFLite converter failed for {job.source.name}: {detail[:300]}") from exc


def quantize(job: ConvertJob) -> None:
    """The plain converter when nothing custom is asked; otherwise calibrate → ranges → quantize."""
    if quantization.custom(job.options):
        quantization.quantize_or_convert(job)
    else:
        run_converter(job)


def verify(job: ConvertJob) -> None:
    """Summarise the flatbuffer; for int8, refuse any op that is not fully integer."""
    assert job.tflite is not None
    job.summary = summarize_tflite(job.tflite, quantization.integer_types(job.options))
    if job.options.quantize == "int8":
        bad = job.summary.non_integer_ops
        if bad:
            raise ConversionError(f"int8 conversion is not fully integer: {len(bad)} op(s) use other tensor "
                                  f"types, first: {bad[0]}")
        want = job.options.io
        got = (job.summary.input.dtype, job.summary.output.dtype)
        if got != (want, want):
            raise ConversionError(f"converter produced I/O {got[0]}/{got[1]}, asked for {want}")


def write_outputs(job: ConvertJob, started: float) -> None:
    assert job.output is not None and job.tflite is not None and job.summary is not None
    atomic.write_bytes(job.output, job.tflite)
    sidecar = build_sidecar(job, wall_time_s=time.perf_counter() - started)
    path = atomic.write_json(sidecar_path(job.output), sidecar.to_json())
    job.result = ConvertResult(output=job.output, sidecar_path=path, sidecar=sidecar)


STAGES: list[Callable[[ConvertJob], None]] = [check_output, list_calibration, build_model, load_calibration,
                                             quantization.transform_float_model, quantize,
                                             verify, quantization.write_float_twin]


def convert(source: ModelSource, options: ConvertOptions | None = None, progress: bool = False,
            on_stage: Callable[[int, int, str], None] | None = None) -> ConvertResult:
    """Convert a MobileNetV2 spec or a user's Keras model to TFLite and write the sidecar beside it.

    `on_stage(number, total, name)` is called as each stage starts, so a caller can show where a long
    conversion is."""
    started = time.perf_counter()
    job = ConvertJob(source=source, options=options or ConvertOptions(), progress=progress)
    for number, stage in enumerate(STAGES, 1):
        if on_stage is not None:
            on_stage(number, len(STAGES), stage.__name__)
        t0 = time.perf_counter()
        stage(job)
        job.stage_seconds[stage.__name__] = round(time.perf_counter() - t0, 3)
    write_outputs(job, started)
    assert job.result is not None
    return job.result


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
        return TensorSummary(name=t.name, shape=list(t.shape), dtype=t.dtype.name,
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
                         output=tensor(graph.tensors[graph.outputs[0]]), non_integer_ops=non_integer)


# ---- sidecar ------------------------------------------------------------------------------------

def build_sidecar(job: ConvertJob, wall_time_s: float) -> Sidecar:
    import numpy as np
    import tensorflow as tf

    assert job.output is not None and job.tflite is not None and job.summary is not None
    calibration = None
    if job.calibration is not None:
        calibration = {
            "folder": str(Path(job.options.calibration).resolve()),  # type: ignore[arg-type]
            "count": len(job.calibration.files),
            "requested": job.options.num_calibration,
            "available": len(job.calibration_files),
            "skipped": [f"{p.name}: {why}" for p, why in job.calibration.skipped],
            "files_sha256": job.calibration.file_list_sha256(),
            "seed": job.options.seed,
        }
    options = asdict(job.options)
    return Sidecar(
        model=job.output.name,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        source=models.describe(job.source),
        resolution=job.resolution,
        alpha=float(job.source.alpha) if isinstance(job.source, ModelSpec) else None,
        options={k: (str(v) if isinstance(v, Path) else v) for k, v in options.items()},
        calibration=calibration,
        file_size=len(job.tflite),
        sha256=hashlib.sha256(job.tflite).hexdigest(),
        ops=job.summary.ops,
        op_count=sum(job.summary.ops.values()),
        fully_integer=not job.summary.non_integer_ops,
        input=asdict(job.summary.input),
        output=asdict(job.summary.output),
        versions={"edgemnv2": __version__, "tensorflow": tf.__version__, "numpy": np.__version__},
        wall_time_s=round(wall_time_s, 3),
        stage_seconds=dict(job.stage_seconds),
        quantization=job.quantization or None,
    )
