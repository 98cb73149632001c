"""Convert stages for quantization beyond the converter's defaults (issue 6).

Two stages plug into `edgemnv2.convert.STAGES`:

* `transform_float_model` (after the calibration images are loaded): cross-layer equalization and/or
  bias correction of the Keras model, batch norm folded first.
* `quantize_or_convert` (run by convert's `quantize` stage in place of the plain converter): when any
  quantization option differs from the converter's own behaviour, calibrate with the converter's calibrate-only path, choose
  activation ranges (minmax | percentile | mse), and quantize with the converter's own quantizers
  (per-channel or per-tensor weights, int8 or 16x8 activations).
  `--int16-activations auto|stream|LAYER,...` quantizes twice (int8, and 16x8 from the recorded min/max) and
  splices the chosen layers' 16x8 ops into the int8 model (`edgemnv2_converters.mixed_precision`).

What each stage did is in its frozen result's `report`, which the sidecar stores under "quantization".
When the float model was equalized, the calibrated float model that was quantized is kept beside the
output (`<output>.float.tflite`, `write_float_twin`): `validate --per-layer` compares against it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgemnv2 import atomic
from edgemnv2.errors import ConversionError, InputError
from edgemnv2.tflite import layer_name, load_graph

if TYPE_CHECKING:
    from edgemnv2.convert import ConvertOptions

CALIBRATION_METHODS = ("minmax", "percentile", "mse")
INT16_CHOICES = ("all", "auto", "stream")  # or a comma-separated list of layers as `validate --per-layer` names them
AUTO_INT16_LAYERS = 3  # `auto`: this many layers losing most SQNR (docs/quantization.md: more did not help)
AUTO_RANK_IMAGES = 10  # calibration images the `auto` per-layer comparison runs on
FLOAT_TWIN_SUFFIX = ".float.tflite"


@dataclass(frozen=True)
class FloatTransform:
    """The float model after equalization / bias correction (the input model when neither was asked)."""

    model: Any
    report: Mapping[str, Any] = field(default_factory=dict)

    @property
    def weights_rounded(self) -> bool:
        """AdaRound ran here (before bias correction): the learned weights are on the int8 grid already."""
        return "adaround" in self.report


@dataclass(frozen=True)
class Quantized:
    """The quantized flatbuffer, what quantization did, and the float model to keep beside it (equalized)."""

    tflite: bytes
    report: Mapping[str, Any] = field(default_factory=dict)
    float_twin: bytes | None = None


def resolved_defaults(options: ConvertOptions) -> dict[str, Any]:
    """The best measured setting for each unset quantization option of the mode (docs/quantization.md).

    Per-channel int8: MSE activation ranges, no bias correction: on the shared MobileNetV2 weights (int8
    values per channel already) the correction moved biases by 2e-8 on average, a no-op that cost a Keras
    pass over the calibration images. Per-tensor: equalization + min/max + bias correction (without
    equalization 80.7% agreement on imagenet-val, with it 96.0%; MSE ranges lost 3 points there). 16x8 and
    non-int8 modes keep the converter's own behaviour; per-layer 16x8 keeps the int8 defaults for its int8
    layers.
    """
    plain = options.quantize != "int8" or options.int16_activations == "all"
    resolved: dict[str, Any] = {}
    if options.equalize is None:
        resolved["equalize"] = resolved["equalize_by_default"] = not plain and options.per_tensor
    if options.calibration_method is None:
        resolved["calibration_method"] = "minmax" if plain or options.per_tensor else "mse"
    if options.bias_correction is None:
        # with --adaround the correction is measured for the learned rounding (transform_float_model)
        resolved["bias_correction"] = resolved["bias_correction_by_default"] = not plain and options.per_tensor
    return resolved


def check_options(options: ConvertOptions) -> None:
    """Validate the quantization fields of ConvertOptions (called from its __post_init__)."""
    if options.calibration_method not in CALIBRATION_METHODS:
        raise InputError(f"--calibration-method {options.calibration_method!r} is not supported; choose one of "
                         + ", ".join(CALIBRATION_METHODS))
    if options.int16_activations is not None and not int16_layer_list(options.int16_activations) \
            and options.int16_activations not in INT16_CHOICES:
        raise InputError(
            f"--int16-activations {options.int16_activations!r}: give 'all' (whole graph), 'auto' (the "
            f"{AUTO_INT16_LAYERS} layers losing most), 'stream' (the linear residual stream) or layer names "
            "separated by commas, as `edgemnv2 validate --per-layer` shows them (e.g. block_13_project_BN_1)")
    if options.quantize != "int8" and custom(options):
        raise InputError("--calibration-method/--per-tensor/--equalize/--bias-correction/--adaround/"
                         "--int16-activations need --quantize int8")
    if options.adaround_augment and not options.adaround:
        raise InputError("--adaround-augment adds images to AdaRound's statistics: it needs --adaround")
    if options.int16_activations == "all" and options.io not in ("float32",):
        raise InputError(f"--int16-activations all makes 16-bit activations; --io {options.io} is not available "
                         "for it (use --io float32)")


def custom(options: ConvertOptions) -> bool:
    """True when the plain converter cannot produce what the options ask for."""
    return (options.calibration_method != "minmax" or options.per_tensor or options.equalize
            or options.bias_correction or options.adaround or options.int16_activations is not None)


def int16_layer_list(value: str | None) -> list[str]:
    """The layer names of `--int16-activations LAYER,...` (empty for all/auto/None)."""
    if value is None or value in INT16_CHOICES:
        return []
    return [name.strip() for name in value.split(",") if name.strip()]


def mixed(options: ConvertOptions) -> bool:
    """True for per-layer 16x8 (auto or a layer list), as opposed to the whole-graph `all`."""
    return options.int16_activations is not None and options.int16_activations != "all"


def float_twin_path(output: Path) -> Path:
    return output.with_name(output.name + FLOAT_TWIN_SUFFIX)


def transform_float_model(model_name: str, options: ConvertOptions, model: Any, images: Any) -> FloatTransform:
    """Equalize and/or bias-correct the float model (batch norm folded), exact in float where promised.

    With --adaround, the rounding is learned here first (on the equalized model) and the bias correction is
    measured for it: the sequential correction then removes the mean shift that the learned rounding and every
    earlier layer pass on, which AdaRound's layer-wise loss (float inputs) does not see. The units get AdaRound's
    weights s·q, which the converter maps back to the learned integers.
    """
    if not (options.equalize or options.bias_correction):
        return FloatTransform(model=model)
    from edgemnv2_converters import bias_correction, equalize, fold

    assert images is not None
    asked = {name: by_default for name, on, by_default in (
        ("equalize", options.equalize, options.equalize_by_default),
        ("bias_correction", options.bias_correction, options.bias_correction_by_default)) if on}
    report: dict[str, Any] = {}
    transformed = model
    try:
        if options.equalize:
            mode = "weights" if options.per_tensor else "activations"
            transformed, equalized = equalize.equalize(transformed, images, mode=mode)
            report["equalize"] = {"mode": mode, **dataclasses.asdict(equalized)}
        if options.bias_correction:
            transformed, units = fold.fold_batch_norm(transformed)
            rounded = None
            if options.adaround:
                rounded, learned = _adaround_units(options, transformed, units, images)
                report["adaround"] = dataclasses.asdict(learned)
            corrected = bias_correction.correct_biases(transformed, units, images, per_tensor=options.per_tensor,
                                                       rounded=rounded)
            report["bias_correction"] = dataclasses.asdict(corrected)
            by_name = {unit.name: unit for unit in units}
            for name, kernel in (rounded or {}).items():
                by_name[name].set(kernel, by_name[name].bias)
    except (ValueError, RuntimeError) as exc:
        reason = str(exc).splitlines()[0][:200]
        if all(asked.values()):
            # a user's model the transforms cannot rebuild: defaults are a bonus, not a requirement
            what = " and ".join(name.replace("_", " ") for name in asked)
            logging.getLogger(__name__).warning("note: default %s skipped for %s: %s", what, model_name, reason)
            return FloatTransform(model=model, report={f"{name}_skipped": reason for name in asked})
        raise ConversionError(f"cannot equalize/bias-correct {model_name}: {reason}") from exc
    return FloatTransform(model=transformed, report=report)


def _adaround_units(options: ConvertOptions, model: Any, units: list[Any], images: Any) -> tuple[dict[str, Any], Any]:
    """AdaRound's kernels for the folded Keras units (by name), learned on the model's calibrated float TFLite."""
    from edgemnv2_converters import adaround, augment, calibration
    from edgemnv2_converters.keras_to_tflite import silenced_output

    with silenced_output(not logging.getLogger().isEnabledFor(logging.INFO)):
        calibrated = calibration.calibrate_float_model(model, images)
    return adaround.learn_for_units(calibrated, units, augment.augmented(images, options.adaround_augment),
                                    per_tensor=options.per_tensor)


def quantize_or_convert(model_name: str, options: ConvertOptions, model: Any, images: Any,
                        weights_rounded: bool = False) -> Quantized:
    """Calibrate → ranges → quantize, for options `custom` says the plain converter cannot do (convert runs
    the plain converter itself otherwise). `weights_rounded`: AdaRound already ran on the float model
    (`transform_float_model`); otherwise --adaround learns here, on the calibrated float model."""
    from edgemnv2_converters import calibration
    from edgemnv2_converters.keras_to_tflite import silenced_output

    quiet = not logging.getLogger().isEnabledFor(logging.INFO)
    try:
        with silenced_output(quiet):
            calibrated = calibration.calibrate_float_model(model, images)
            learned: dict[str, Any] = {}
            if options.adaround and not weights_rounded:
                from edgemnv2_converters import adaround, augment

                calibrated, report_ada = adaround.apply(calibrated, augment.augmented(images, options.adaround_augment),
                                                        per_tensor=options.per_tensor)
                learned["adaround"] = dataclasses.asdict(report_ada)
            ranges = calibration.activation_ranges(calibrated, images, options.calibration_method)
            recorded = calibrated
            calibrated = calibration.write_ranges(calibrated, ranges)
            tflite = calibration.quantize_calibrated(
                calibrated, per_tensor=options.per_tensor,
                activations="int16" if options.int16_activations == "all" else "int8", io_type=options.io or "int8")
            if mixed(options):
                # 16-bit tensors need no clipping: their 16x8 ops use the recorded min/max, not the int8 ranges
                int16_model = calibration.quantize_calibrated(recorded, per_tensor=options.per_tensor,
                                                              activations="int16", io_type="float32")
    except (ValueError, RuntimeError) as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        raise ConversionError(f"quantization failed for {model_name}: {(lines or [type(exc).__name__])[0][:300]}") \
            from exc
    report: dict[str, Any] = {}
    if mixed(options):
        tflite, report = _mix_int16_layers(model_name, options, tflite, recorded, int16_model, images)
    changed = sorted((r for r in ranges if abs(r.shrink - 1.0) > 1e-6), key=lambda r: r.shrink, reverse=True)
    report = {
        "method": options.calibration_method,
        "weights": "per-tensor" if options.per_tensor else "per-channel",
        "activations": {"all": "int16 (16x8, whole graph)", None: "int8"}.get(
            options.int16_activations, f"int8 (int16 at {len(report.get('int16_layers', []))} layers)"),
        "ranges_changed": len(changed),
        "ranges_recorded": len(ranges),
        "largest_range_shrinks": [{"tensor": r.name.split(";")[0], "recorded": r.recorded, "chosen": r.chosen,
                                   "shrink": round(r.shrink, 3)} for r in changed[:5]],
        **learned,
        **report,
    }
    # equalization rescales channels: per-layer errors must compare against this float model
    return Quantized(tflite=tflite, report=report, float_twin=calibrated if options.equalize else None)


def _mix_int16_layers(model_name: str, options: ConvertOptions, int8_model: bytes, float_model: bytes,
                      int16_model: bytes, images: Any) -> tuple[bytes, dict[str, Any]]:
    """Splice 16x8 ops into the int8 model for the chosen layers; the report names them ("int16_layers")."""
    from edgemnv2_converters import mixed_precision

    report: dict[str, Any] = {}
    candidates = mixed_precision.candidates(int8_model, int16_model)
    if options.int16_activations == "stream":
        allowed = set(candidates)
        chosen = [t for t in residual_stream_tensors(int8_model) if t in allowed]
    elif options.int16_activations == "auto":
        from edgemnv2.layer_error import compare_layers

        ranking = compare_layers(float_model, int8_model, images[:AUTO_RANK_IMAGES])
        allowed = set(candidates)
        ranked = [layer for layer in ranking.worst() if layer.tensor in allowed][:AUTO_INT16_LAYERS]
        chosen = [layer.tensor for layer in ranked]
        # with float I/O the int8 probabilities are the largest error left: keep them 16-bit up to the output
        chosen += [t for t in mixed_precision.float_output_sources(int8_model) if t in allowed and t not in chosen]
        report["int16_ranking"] = [{"layer": layer.short_name, "sqnr_lost_db": layer.sqnr_lost_db}
                                   for layer in ranked]
    else:
        by_name: dict[str, list[str]] = {}
        for tensor in candidates:
            by_name.setdefault(tensor, []).append(tensor)
            by_name.setdefault(layer_name(tensor), []).append(tensor)
        chosen = []
        for name in int16_layer_list(options.int16_activations):
            if name not in by_name:
                examples = ", ".join(layer_name(t) for t in candidates[:3])
                raise InputError(f"--int16-activations: no layer {name!r} can be made 16-bit in {model_name}; "
                                 f"use names from `edgemnv2 validate --per-layer` (e.g. {examples}); the model's "
                                 "input and output layers keep their I/O type")
            chosen += by_name[name]
    try:
        result = mixed_precision.mix(int8_model, int16_model, chosen)
    except ValueError as exc:
        raise ConversionError(f"16-bit layers for {model_name}: {exc}") from exc
    report.update({
        "int16_layers": [layer_name(t) for t in result.int16_tensors],
        "int16_tensors": list(result.int16_tensors),
        "ops_16x8": len(result.ops_16x8),
        "requantize_ops": result.requantize_ops,
    })
    return result.content, report


def residual_stream_tensors(int8_model: bytes) -> list[str]:
    """The linear residual stream: every ADD's inputs and output, and every CONV_2D output without a fused
    activation (the linear bottlenecks, also those of blocks without a residual), in graph order.

    On MobileNetV2 (27 tensors) 16 bits there gave 98.3% held-out agreement against the default's 97.7-98.0%
    and a lower KL (docs/quantization.md): within noise. The QUANTIZE ops between the int8 and int16 parts make
    TFLM's arena 2.3x larger.
    """
    graph = load_graph(int8_model, what="the int8 model")
    found: list[str] = []
    for op in graph.ops:
        if op.kind == "ADD":
            tensors = [*op.inputs, *op.outputs]
        elif op.kind == "CONV_2D" and int(op.options.get("fused_activation_function", 0)) == 0:
            tensors = list(op.outputs)
        else:
            continue
        found += [graph.tensors[t].name for t in tensors if t >= 0 and graph.tensors[t].name not in found]
    return found


def write_float_twin(output: Path, twin: bytes) -> Path:
    """Keep the transformed float model beside the output so per-layer errors compare like with like."""
    path = float_twin_path(output)
    atomic.write_bytes(path, twin)
    return path


def integer_types(options: ConvertOptions) -> tuple[str, ...]:
    """Tensor types a fully integer model may use: 16x8 (whole graph or listed layers) adds int16 activations
    and int64 biases."""
    return ("int8", "int16", "int32", "int64") if options.int16_activations else ("int8", "int32")
