"""Phone packages: the model with TFLite metadata, so Android's Task Library ImageClassifier (and MediaPipe
Tasks on Android and iOS) can use it as is.

The metadata is the `ModelMetadata` flatbuffer of tensorflow/tflite-support's `metadata_schema.fbs`
(file identifier "M001"), written with the package's flatbuffer helpers (`edgemnv2.tflite.writer`) because `tflite-support` is
unmaintained and pins an old numpy. Like its MetadataPopulator we store it in a model buffer listed under
`Model.metadata` as "TFLITE_METADATA" and append the labels as an uncompressed zip after the flatbuffer
(TFLite ignores trailing bytes; the Task Library reads the associated files from that zip).

The Task Library accepts only uint8 or float32 image inputs and scores, so an int8-I/O model gets a
QUANTIZE op at each end (uint8 <-> int8, same scale, zero point + 128: exact), as Coral's published
models have.
"""

from __future__ import annotations

import dataclasses
import io
import zipfile
from pathlib import Path

import numpy as np

from edgemnv2 import atomic
from edgemnv2.errors import InputError, ModelError
from edgemnv2.tflite import load_graph, parse_errors, read_tflite, writer
from edgemnv2.tflite.writer import TableView, float_vector, offset_vector, strings, table

METADATA_NAME = "TFLITE_METADATA"
METADATA_IDENTIFIER = b"M001"
MIN_PARSER_VERSION = "1.0.0"   # every field written here exists since metadata schema 1.0.0
NORM_MEAN = 127.5
NORM_STD = 127.5
LABELS_NAME = "labels.txt"

# metadata_schema.fbs enums and union tags
_TENSOR_AXIS_LABELS = 2
_RGB = 1
_CONTENT_FEATURE, _CONTENT_IMAGE = 1, 2
_PROCESS_NORMALIZATION = 1
# tflite schema values
_UINT8, _INT8, _FLOAT32 = 3, 9, 0
_QUANTIZE = 114


# ---------------------------------------------------------------- write the metadata flatbuffer

def _associated_file(b, name: str, description: str, kind: int) -> int:
    n, d = strings(b, name, description)
    return table(b, {0: ("offset", n), 1: ("offset", d), 2: ("uint8", kind)})


@dataclasses.dataclass(frozen=True)
class MetadataSpec:
    name: str
    description: str
    version: str
    author: str
    license: str
    input_name: str
    input_description: str
    input_width: int
    input_height: int
    input_quantized: bool        # uint8 input: pixels go in as they are; float: (x - mean) / std
    output_name: str
    output_description: str
    labels_file: str
    mean: float = NORM_MEAN
    std: float = NORM_STD


def build_metadata(spec: MetadataSpec) -> bytes:
    """The ModelMetadata flatbuffer (root type of metadata_schema.fbs), finished with identifier M001."""
    b = writer.builder(1024)   # every field given is written, even when it equals the schema default
    # input tensor: image content, normalization, stats
    size = table(b, {0: ("uint32", spec.input_width), 1: ("uint32", spec.input_height)})
    image_props = table(b, {0: ("uint8", _RGB), 1: ("offset", size)})
    in_content = table(b, {0: ("uint8", _CONTENT_IMAGE), 1: ("offset", image_props)})
    mean, std = float_vector(b, [spec.mean]), float_vector(b, [spec.std])
    norm = table(b, {0: ("offset", mean), 1: ("offset", std)})
    unit = table(b, {0: ("uint8", _PROCESS_NORMALIZATION), 1: ("offset", norm)})
    units = offset_vector(b, [unit])
    lo, hi = (0.0, 255.0) if spec.input_quantized else ((0 - spec.mean) / spec.std, (255 - spec.mean) / spec.std)
    stats_max, stats_min = float_vector(b, [hi]), float_vector(b, [lo])
    in_stats = table(b, {0: ("offset", stats_max), 1: ("offset", stats_min)})
    in_name, in_desc = strings(b, spec.input_name, spec.input_description)
    input_md = table(b, {0: ("offset", in_name), 1: ("offset", in_desc), 3: ("offset", in_content),
                          4: ("offset", units), 5: ("offset", in_stats)})
    # output tensor: feature content, probabilities in [0, 1], labels on its class axis
    feature = table(b, {})
    out_content = table(b, {0: ("uint8", _CONTENT_FEATURE), 1: ("offset", feature)})
    out_max, out_min = float_vector(b, [1.0]), float_vector(b, [0.0])
    out_stats = table(b, {0: ("offset", out_max), 1: ("offset", out_min)})
    labels = offset_vector(b, [_associated_file(b, spec.labels_file, "Labels for the classes the model can "
                                                 "recognise, one per line in output order.", _TENSOR_AXIS_LABELS)])
    out_name, out_desc = strings(b, spec.output_name, spec.output_description)
    output_md = table(b, {0: ("offset", out_name), 1: ("offset", out_desc), 3: ("offset", out_content),
                           5: ("offset", out_stats), 6: ("offset", labels)})
    subgraph = table(b, {2: ("offset", offset_vector(b, [input_md])), 3: ("offset", offset_vector(b, [output_md]))})
    subgraphs = offset_vector(b, [subgraph])
    name, desc, version, author, lic, parser = strings(b, spec.name, spec.description, spec.version, spec.author,
                                                        spec.license, MIN_PARSER_VERSION)
    root = table(b, {0: ("offset", name), 1: ("offset", desc), 2: ("offset", version), 3: ("offset", subgraphs),
                      4: ("offset", author), 5: ("offset", lic), 7: ("offset", parser)})
    return writer.finish(b, root, METADATA_IDENTIFIER)


# ---------------------------------------------------------------- read it back (ours or anyone's)

@dataclasses.dataclass(frozen=True)
class TensorMetadataInfo:
    name: str | None
    description: str | None
    content: str                 # "image", "feature" or "none"
    image_size: tuple[int, int] | None
    mean: tuple[float, ...]
    std: tuple[float, ...]
    stats_min: tuple[float, ...]
    stats_max: tuple[float, ...]
    label_files: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class MetadataInfo:
    name: str | None
    description: str | None
    version: str | None
    author: str | None
    license: str | None
    min_parser_version: str | None
    inputs: tuple[TensorMetadataInfo, ...]
    outputs: tuple[TensorMetadataInfo, ...]
    associated_files: dict[str, bytes]   # the zip appended to the model


def _tensor_info(v: TableView) -> TensorMetadataInfo:
    content = v.table(3)
    kinds = {0: "none", _CONTENT_FEATURE: "feature", _CONTENT_IMAGE: "image"}
    kind = kinds.get(content.uint8(0) if content else 0, "other")
    size = None
    if kind == "image":
        props = content.table(1)
        dims = props.table(1) if props else None
        size = (dims.uint32(0), dims.uint32(1)) if dims else None
    mean: list[float] = []
    std: list[float] = []
    for unit in v.tables(4):
        if unit.uint8(0) == _PROCESS_NORMALIZATION and unit.table(1):
            mean, std = unit.table(1).floats(0), unit.table(1).floats(1)
    stats = v.table(5)
    labels = tuple(f.string(0) for f in v.tables(6) if f.uint8(2) == _TENSOR_AXIS_LABELS)
    return TensorMetadataInfo(name=v.string(0), description=v.string(1), content=kind, image_size=size,
                              mean=tuple(mean), std=tuple(std), stats_min=tuple(stats.floats(1) if stats else ()),
                              stats_max=tuple(stats.floats(0) if stats else ()), label_files=labels)


def read_metadata(model_bytes: bytes) -> MetadataInfo:
    """Parse the TFLITE_METADATA buffer of a model and the associated files zipped after it."""
    graph = load_graph(model_bytes)
    if METADATA_NAME not in graph.metadata:
        raise ModelError(f"the model has no {METADATA_NAME} metadata (entries: {sorted(graph.metadata)})")
    data = graph.metadata_bytes(METADATA_NAME) or b""
    if data[4:8] != METADATA_IDENTIFIER:
        raise ModelError(f"{METADATA_NAME} buffer does not carry the {METADATA_IDENTIFIER.decode()} identifier")
    root = TableView.root(data)
    subgraphs = root.tables(3)
    files: dict[str, bytes] = {}
    try:
        with zipfile.ZipFile(io.BytesIO(model_bytes)) as z:
            files = {info.filename: z.read(info) for info in z.infolist()}
    except zipfile.BadZipFile:
        pass
    return MetadataInfo(
        name=root.string(0), description=root.string(1), version=root.string(2), author=root.string(4),
        license=root.string(5), min_parser_version=root.string(7),
        inputs=tuple(_tensor_info(t) for sg in subgraphs[:1] for t in sg.tables(2)),
        outputs=tuple(_tensor_info(t) for sg in subgraphs[:1] for t in sg.tables(3)),
        associated_files=files)


# ---------------------------------------------------------------- put it into the model

def _quantize_io(schema, model) -> list[str]:
    """Give int8 I/O a uint8 face with exact QUANTIZE ops; returns what was changed."""
    sg = model.subgraphs[0]
    changes: list[str] = []

    def opcode() -> int:
        for i, code in enumerate(model.operatorCodes):
            if writer.builtin_code(code) == _QUANTIZE:
                return i
        code = schema.OperatorCodeT()
        code.builtinCode, code.deprecatedBuiltinCode, code.version = _QUANTIZE, _QUANTIZE, 2
        model.operatorCodes.append(code)
        return len(model.operatorCodes) - 1

    def uint8_twin(index: int, suffix: str) -> int:
        old = sg.tensors[index]
        t = schema.TensorT()
        t.shape, t.shapeSignature = old.shape, old.shapeSignature
        t.type, t.buffer = _UINT8, 0
        t.name = (writer.name_of(old) + suffix).encode()
        q = schema.QuantizationParametersT()
        q.scale = [float(old.quantization.scale[0])]
        q.zeroPoint = [int(old.quantization.zeroPoint[0]) + 128]
        t.quantization = q
        sg.tensors.append(t)
        return len(sg.tensors) - 1

    def quantize_op(src: int, dst: int):
        op = schema.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = opcode(), [src], [dst]
        return op

    renamed: dict[int, int] = {}
    for k, index in enumerate(list(sg.inputs)):
        if sg.tensors[index].type == _INT8:
            new = uint8_twin(index, "_uint8")
            sg.operators.insert(0, quantize_op(new, index))
            sg.inputs[k] = renamed[index] = new
            changes.append("input int8 -> uint8")
    for k, index in enumerate(list(sg.outputs)):
        if sg.tensors[index].type == _INT8:
            new = uint8_twin(index, "_uint8")
            sg.operators.append(quantize_op(index, new))
            sg.outputs[k] = renamed[index] = new
            changes.append("output int8 -> uint8")
    for signature in model.signatureDefs or []:
        for tmap in (signature.inputs or []) + (signature.outputs or []):
            tmap.tensorIndex = renamed.get(tmap.tensorIndex, tmap.tensorIndex)
    return changes


def read_labels(path: Path, classes: int) -> list[str]:
    """Labels matching the model's classes: a 1001-line file (background first) also serves 1000 classes."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"labels file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InputError(f"cannot read labels file {path}: {exc.strerror or exc}") from None
    labels = [line.strip() for line in text.splitlines() if line.strip()]
    if len(labels) == classes:
        return labels
    if len(labels) == classes + 1:
        return labels[1:]   # drop "background" for Keras' 1000-class order
    raise InputError(f"{path} has {len(labels)} labels but the model has {classes} classes "
                     f"(use a file with {classes} lines, or {classes + 1} with background first)")


@dataclasses.dataclass(frozen=True)
class PhoneExport:
    model: Path
    labels: Path
    classes: int
    input_type: str
    output_type: str
    changes: tuple[str, ...]
    metadata_bytes: int
    model_bytes: int


def add_metadata(model_path: Path, labels_path: Path, out_path: Path, name: str | None = None,
                 description: str | None = None, author: str = "edgemnv2", license: str = "Apache-2.0",
                 version: str = "1") -> PhoneExport:
    """Write `out_path`: the model (uint8 or float I/O) with TFLITE_METADATA and its labels zipped after it."""
    schema = writer.schema()
    model_path, out_path = Path(model_path), Path(out_path)
    raw = read_tflite(model_path)
    with parse_errors(str(model_path)):
        model = writer.unpack(raw)
    sg = model.subgraphs[0]
    if len(sg.inputs) != 1 or len(sg.outputs) != 1:
        raise ModelError(f"{model_path}: an image classifier has one input and one output, this model has "
                         f"{len(sg.inputs)} and {len(sg.outputs)}")
    in_t, out_t = sg.tensors[sg.inputs[0]], sg.tensors[sg.outputs[0]]
    if len(in_t.shape) != 4 or in_t.shape[3] != 3:
        raise ModelError(f"{model_path}: input shape {list(in_t.shape)} is not [1, height, width, 3]")
    for t, role in ((in_t, "input"), (out_t, "output")):
        if t.type not in (_UINT8, _INT8, _FLOAT32):
            raise ModelError(f"{model_path}: {role} type {t.type} is not uint8, int8 or float32")
    classes = int(out_t.shape[-1])
    labels = read_labels(labels_path, classes)
    changes = _quantize_io(schema, model)
    in_t, out_t = sg.tensors[sg.inputs[0]], sg.tensors[sg.outputs[0]]
    height, width = int(in_t.shape[1]), int(in_t.shape[2])
    spec = MetadataSpec(
        name=name or model_path.stem,
        description=description or (f"Image classifier ({model_path.name}): identifies the most prominent object "
                                    f"in an image among {classes} classes. Made with edgemnv2."),
        version=version, author=author, license=license,
        input_name="image", input_description=f"Input image to be classified, RGB {width}x{height}.",
        input_width=width, input_height=height, input_quantized=in_t.type == _UINT8,
        output_name="probability", output_description=f"Probabilities of the {classes} labels.",
        labels_file=LABELS_NAME)
    metadata = build_metadata(spec)

    buffer = schema.BufferT()
    buffer.data = np.frombuffer(metadata, dtype=np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = METADATA_NAME.encode(), len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if writer.name_of(m) != METADATA_NAME] + [entry]
    out = io.BytesIO(writer.pack(model, len(raw) + len(metadata) + 4096))
    out.seek(0, io.SEEK_END)
    with zipfile.ZipFile(out, "a", compression=zipfile.ZIP_STORED) as z:
        z.writestr(LABELS_NAME, "\n".join(labels) + "\n")
    atomic.write_bytes(out_path, out.getvalue())
    types = {_UINT8: "uint8", _INT8: "int8", _FLOAT32: "float32"}
    return PhoneExport(model=out_path, labels=Path(labels_path), classes=classes, input_type=types[in_t.type],
                       output_type=types[out_t.type], changes=tuple(changes), metadata_bytes=len(metadata),
                       model_bytes=len(out.getvalue()))


# ---------------------------------------------------------------- the export targets

_ANDROID_README = """# {name} for Android

`{model}` carries TFLite metadata (input normalisation mean/std {mean}/{std}, {classes} labels zipped inside,
description), so the Task Library or MediaPipe Tasks load it with no extra code:

```kotlin
// build.gradle: implementation("org.tensorflow:tensorflow-lite-task-vision:0.4.4")
val classifier = ImageClassifier.createFromFileAndOptions(context, "{model}",
    ImageClassifier.ImageClassifierOptions.builder().setMaxResults(5).build())
val results = classifier.classify(TensorImage.fromBitmap(bitmap))
```

Put `{model}` in `app/src/main/assets/` and keep it uncompressed (`androidResources {{ noCompress += "tflite" }}`).
Input {input_type} {width}x{height} RGB, output {output_type} scores.
"""

_IOS_README = """# {name} for iOS

`{model}` carries TFLite metadata (normalisation, labels, description) for MediaPipe Tasks:

```swift
// Podfile: pod 'MediaPipeTasksVision'
let options = ImageClassifierOptions()
options.baseOptions.modelAssetPath = Bundle.main.path(forResource: "{stem}", ofType: "tflite")!
options.maxResults = 5
let classifier = try ImageClassifier(options: options)
let result = try classifier.classify(image: MPImage(uiImage: image))
```

With the plain `TensorFlowLiteSwift` interpreter, feed {input_type} {width}x{height} RGB pixels as they are and
read the class names from `{labels}` (also inside the model).
"""


def render_phone(target: str, model: Path, out_dir: Path, labels: Path | None = None) -> PhoneExport:
    """`edgemnv2 export --target android|ios`: the model with metadata, plus a README with the app code."""
    from edgemnv2.paths import shared_dir

    if target not in ("android", "ios"):
        raise InputError(f"phone target {target!r}: use android or ios")
    if labels is None:
        base = shared_dir(required=False)
        labels = base / "data" / "imagenet_labels.txt" if base else None
        if labels is None or not labels.is_file():
            raise InputError("no labels file given and ../shared/data/imagenet_labels.txt not found: pass --labels FILE")
    out_dir = Path(out_dir)
    model_name = f"{Path(model).stem}_metadata.tflite"
    with atomic.staged_dir(out_dir, generated=(model_name, LABELS_NAME, "README.md")) as stage:
        result = add_metadata(model, labels, stage / model_name)
        names = read_labels(labels, result.classes)
        (stage / LABELS_NAME).write_text("\n".join(names) + "\n")
        info = read_metadata(result.model.read_bytes())
        size = info.inputs[0].image_size or (0, 0)
        text = (_ANDROID_README if target == "android" else _IOS_README).format(
            name=Path(model).stem, model=model_name, stem=result.model.stem, mean=NORM_MEAN, std=NORM_STD,
            classes=result.classes, input_type=result.input_type, output_type=result.output_type, width=size[0],
            height=size[1], labels=LABELS_NAME)
        (stage / "README.md").write_text(text)
    return dataclasses.replace(result, model=out_dir / model_name)
