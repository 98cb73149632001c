"""Per-layer quantization error: where a quantized model loses precision against its float twin.

Both models run on the same images with every intermediate tensor kept; tensors are matched by name
(the TFLite quantizers keep the float model's tensor names) and compared after dequantization.
For each operator output we report

* SQNR (dB) of the quantized activation against the float one, accumulated through the network,
* the SQNR lost *by this layer*: the worst SQNR of its inputs minus its output's (the error the layer
  itself adds, which is what ranks layers for 16-bit activations or a better range),
* the relative error ||q - f|| / ||f||.

The float twin must be the float model that was quantized (same weights after any equalization or
bias correction): the int8 model's calibrated float parent is exactly that, so `convert` keeps it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from edgemnv2 import atomic
from edgemnv2.errors import ModelError
from edgemnv2.tflite import layer_name, load_graph


@dataclasses.dataclass(frozen=True)
class LayerError:
    index: int  # operator position in the quantized model
    op: str
    tensor: str
    dtype: str
    sqnr_db: float
    sqnr_lost_db: float  # SQNR of the worst input minus this output's (what this op added)
    relative_error: float

    @property
    def short_name(self) -> str:
        """The layer the tensor belongs to (e.g. block_5_project_BN), by the package's one naming rule."""
        return layer_name(self.tensor)


@dataclasses.dataclass(frozen=True)
class LayerReport:
    images: int
    layers: list[LayerError]  # in graph order
    float_model: str = ""  # where the float twin came from

    def worst(self, count: int | None = None) -> list[LayerError]:
        """Layers that lose the most SQNR themselves, worst first."""
        ranked = sorted(self.layers, key=lambda layer: layer.sqnr_lost_db, reverse=True)
        return ranked if count is None else ranked[:count]


def _interpreter(content: bytes) -> Any:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    try:
        interpreter = Interpreter(model_content=content, experimental_preserve_all_tensors=True,
                                  experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise ModelError(f"model cannot be loaded for per-layer comparison: {str(exc).strip()[:200]}") from exc
    return interpreter


def _feed(interpreter: Any, image: np.ndarray) -> None:
    detail = interpreter.get_input_details()[0]
    scale, zero_point = detail["quantization"]
    x = np.asarray(image, np.float32)[None]
    if detail["dtype"] != np.float32:
        limits = np.iinfo(detail["dtype"])
        x = np.clip(np.round(x / scale) + zero_point, limits.min, limits.max).astype(detail["dtype"])
    interpreter.set_tensor(detail["index"], x)
    interpreter.invoke()


def _dequantized(interpreter: Any, detail: dict) -> np.ndarray:
    raw = interpreter.get_tensor(detail["index"])
    if detail["dtype"] == np.float32:
        return raw.astype(np.float64)
    params = detail["quantization_parameters"]
    scales, zero_points = params["scales"], params["zero_points"]
    if len(scales) == 0:
        return raw.astype(np.float64)
    if len(scales) == 1:
        return (raw.astype(np.float64) - zero_points[0]) * scales[0]
    axis = params["quantized_dimension"]
    shape = [1] * raw.ndim
    shape[axis] = -1
    return (raw.astype(np.float64) - zero_points.reshape(shape)) * scales.reshape(shape)


def _op_outputs(content: bytes) -> list[tuple[str, list[int], list[int]]]:
    """(op name, input tensor indices, output tensor indices) per operator of subgraph 0, in order."""
    return [(op.builtin, [t for t in op.inputs if t >= 0], [t for t in op.outputs if t >= 0])
            for op in load_graph(content).ops]


def compare_layers(float_model: bytes, quant_model: bytes, images: np.ndarray) -> LayerReport:
    """SQNR and relative error of every quantized operator output that has a float twin of the same name."""
    f_interp, q_interp = _interpreter(float_model), _interpreter(quant_model)
    f_by_name = {d["name"]: d for d in f_interp.get_tensor_details()}
    q_details = {d["index"]: d for d in q_interp.get_tensor_details()}
    ops = _op_outputs(quant_model)
    # every op output plus the graph input (whose own quantization is the first error)
    tensors = {t for _, _, outs in ops for t in outs} | {d["index"] for d in q_interp.get_input_details()}
    matched = {t: f_by_name[q_details[t]["name"]] for t in tensors if q_details[t]["name"] in f_by_name}
    if not matched:
        raise ModelError("no tensor of the quantized model has a float twin of the same name; "
                         "give the float model this one was quantized from")
    signal = dict.fromkeys(matched, 0.0)
    noise = dict.fromkeys(matched, 0.0)
    for image in images:
        _feed(f_interp, image)
        _feed(q_interp, image)
        for q_index, f_detail in matched.items():
            f = f_interp.get_tensor(f_detail["index"]).astype(np.float64)
            q = _dequantized(q_interp, q_details[q_index])
            if f.shape != q.shape:
                continue
            signal[q_index] += float(np.sum(f * f))
            noise[q_index] += float(np.sum((f - q) ** 2))

    def sqnr(t: int) -> float:
        if noise[t] == 0.0:
            return 200.0  # exact (e.g. a reshape of an exact tensor)
        return 10.0 * np.log10(max(signal[t], 1e-30) / noise[t])

    layers = []
    for position, (op, ins, outs) in enumerate(ops):
        for t in outs:
            if t not in matched or signal[t] == 0.0 and noise[t] == 0.0:
                continue
            in_sqnr = [sqnr(i) for i in ins if i in matched]
            out_sqnr = sqnr(t)
            lost = min(in_sqnr) - out_sqnr if in_sqnr else 0.0
            layers.append(LayerError(index=position, op=op, tensor=q_details[t]["name"],
                                     dtype=np.dtype(q_details[t]["dtype"]).name, sqnr_db=round(out_sqnr, 2),
                                     sqnr_lost_db=round(lost, 2),
                                     relative_error=float(np.sqrt(noise[t] / max(signal[t], 1e-30)))))
    return LayerReport(images=len(images), layers=layers)


def render_table(report: LayerReport, count: int | None = None) -> str:
    """Worst layers first: the SQNR each one loses, its accumulated SQNR and relative error."""
    rows = [f"per-layer error on {report.images} image(s) against {report.float_model or 'the float model'}, "
            "worst first (lost = SQNR this layer adds to the error, dB)",
            f"{'#':>4} {'op':<18} {'layer':<34} {'dtype':<6} {'lost dB':>8} {'SQNR dB':>8} {'rel err':>8}"]
    for layer in report.worst(count):
        rows.append(f"{layer.index:>4} {layer.op:<18} {layer.short_name[:34]:<34} {layer.dtype:<6} "
                    f"{layer.sqnr_lost_db:>8.2f} {layer.sqnr_db:>8.2f} {layer.relative_error:>8.4f}")
    return "\n".join(rows)


def plot(report: LayerReport, path: Path) -> Path:
    """Bar chart of accumulated SQNR and SQNR lost per layer, in graph order (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ModelError("--plot needs matplotlib: pip install 'edgemnv2[plot]'") from exc
    layers = report.layers
    x = np.arange(len(layers))
    fig, ax = plt.subplots(figsize=(max(8, len(layers) * 0.18), 4.5))
    ax.plot(x, [layer.sqnr_db for layer in layers], marker=".", label="SQNR (accumulated)")
    ax.bar(x, [layer.sqnr_lost_db for layer in layers], color="tab:red", alpha=0.6, label="SQNR lost by layer")
    ax.set_xticks(x, [layer.short_name for layer in layers], rotation=90, fontsize=6)
    ax.set_ylabel("dB")
    ax.set_title(f"float vs quantized, {report.images} image(s)")
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    atomic.save_figure(fig, path, dpi=120)
    plt.close(fig)
    return path


def float_twin(model_path: Path, reference: Any = None, weights_dir: Path | None = None) -> tuple[bytes, str]:
    """The float TFLite model to compare with, and where it came from.

    Convert keeps the float model it quantized as `<model>.float.tflite` when it transformed the
    float model (equalization, bias correction); otherwise the Keras reference is converted to float
    TFLite (same converter, so the same tensor names).
    """
    from edgemnv2 import models
    from edgemnv2.sidecar import read_sidecar
    from edgemnv2.validate import resolve_reference

    model_path = Path(model_path)
    sidecar = read_sidecar(model_path)
    twin_name = ((sidecar.quantization if sidecar else None) or {}).get("float_twin")
    if twin_name and reference is None:
        twin = model_path.with_name(twin_name)
        if not twin.is_file():
            raise ModelError(f"{model_path.name}'s sidecar names its float model {twin_name}, which is missing "
                             f"beside it; re-run convert or pass --reference (layers rescaled by --equalize "
                             "then show as errors)")
        return twin.read_bytes(), str(twin)
    source = resolve_reference(model_path, reference, weights_dir)
    from edgemnv2_converters.keras_to_tflite import convert_keras

    keras_model = models.load_keras_model(source)
    return bytes(convert_keras(keras_model, "none", "float32", None)), f"{source.name} (converted to float TFLite)"


def per_layer(model_path: Path, reference: Any = None, data: Path | None = None, *, limit: int = 10,
              seed: int = 0, crop_fraction: float | None = 0.875, weights_dir: Path | None = None) -> LayerReport:
    """Per-layer error of a quantized .tflite against its float twin on `limit` images of `data`."""
    from edgemnv2 import data as data_mod
    from edgemnv2 import runtime

    model_path = Path(model_path)
    quant = runtime.check_tflite_file(model_path)
    resolution = int(runtime.open_model(model_path).input.shape[1])
    if data is None:
        from edgemnv2.paths import shared_calibration_dir

        data = shared_calibration_dir()
    images = data_mod.load_images(Path(data), resolution, limit=limit, seed=seed, crop_fraction=crop_fraction)
    twin, origin = float_twin(model_path, reference, weights_dir)
    return dataclasses.replace(compare_layers(twin, quant, images.images), float_model=origin)
