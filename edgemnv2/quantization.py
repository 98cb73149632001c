"""Convert stages for quantization beyond the converter's defaults (issue 6).

Two stages plug into `edgemnv2.convert.STAGES`:

* `transform_float_model` (after the calibration images are loaded): cross-layer equalization and/or
  bias correction of the Keras model, batch norm folded first.
* `quantize_or_convert` (in place of the plain converter run): when any quantization option differs
  from the converter's own behaviour, calibrate with the converter's calibrate-only path, choose
  activation ranges (minmax | percentile | mse), and quantize with the converter's own quantizers
  (per-channel or per-tensor weights, int8 or 16x8 activations). Otherwise the plain converter runs.

What each stage did is recorded in `job.quantization`, which the sidecar stores under "quantization".
When the float model was transformed, `write_float_twin` keeps the float model that was quantized
beside the output (`<output>.float.tflite`): `validate --per-layer` compares against it.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Any

from edgemnv2.errors import ConversionError, InputError

if TYPE_CHECKING:
    from edgemnv2.convert import ConvertJob, ConvertOptions

CALIBRATION_METHODS = ("minmax", "percentile", "mse")
INT16_CHOICES = ("all",)
FLOAT_TWIN_SUFFIX = ".float.tflite"


def resolve_defaults(options: ConvertOptions) -> None:
    """Fill unset quantization options with the best measured setting for the mode (docs/quantization.md).

    Per-channel int8: MSE activation ranges + bias correction (100% vs 98% held-out agreement, lower KL than
    the plain converter). Per-tensor: min/max + bias correction (MSE ranges lost 3 points there). 16x8 and
    non-int8 modes keep the converter's own behaviour.
    """
    plain = options.quantize != "int8" or options.int16_activations is not None
    if options.calibration_method is None:
        options.calibration_method = "minmax" if plain or options.per_tensor else "mse"
    if options.bias_correction is None:
        options.bias_correction = not plain
        options.bias_correction_by_default = options.bias_correction


def check_options(options: ConvertOptions) -> None:
    """Validate the quantization fields of ConvertOptions (called from its __post_init__)."""
    if options.calibration_method not in CALIBRATION_METHODS:
        raise InputError(f"--calibration-method {options.calibration_method!r} is not supported; choose one of "
                         + ", ".join(CALIBRATION_METHODS))
    if options.int16_activations is not None and options.int16_activations not in INT16_CHOICES:
        raise InputError(
            f"--int16-activations {options.int16_activations!r}: TensorFlow 2.21's quantizers apply 16-bit "
            "activations to the whole graph only (per-layer int8/16x8 mixing is not supported), so the only "
            "value is 'all'; run `edgemnv2 validate --per-layer` to see which layers lose most")
    if options.quantize != "int8" and custom(options):
        raise InputError("--calibration-method/--per-tensor/--equalize/--bias-correction/--int16-activations "
                         "need --quantize int8")
    if options.int16_activations and options.io not in ("float32",):
        raise InputError(f"--int16-activations all makes 16-bit activations; --io {options.io} is not available "
                         "for it (use --io float32)")


def custom(options: ConvertOptions) -> bool:
    """True when the plain converter cannot produce what the options ask for."""
    return (options.calibration_method != "minmax" or options.per_tensor or options.equalize
            or options.bias_correction or options.int16_activations is not None)


def float_twin_path(output: Any) -> Any:
    return output.with_name(output.name + FLOAT_TWIN_SUFFIX)


def transform_float_model(job: ConvertJob) -> None:
    """Equalize and/or bias-correct the float model (batch norm folded), exact in float where promised."""
    options = job.options
    if not (options.equalize or options.bias_correction):
        return
    from edgemnv2_converters import bias_correction, equalize, fold

    assert job.calibration is not None
    images = job.calibration.images
    try:
        model = job.model
        if options.equalize:
            mode = "weights" if options.per_tensor else "activations"
            model, report = equalize.equalize(model, images, mode=mode)
            job.quantization["equalize"] = {"mode": mode, **dataclasses.asdict(report)}
        if options.bias_correction:
            model, units = fold.fold_batch_norm(model)
            report_bc = bias_correction.correct_biases(model, units, images, per_tensor=options.per_tensor)
            job.quantization["bias_correction"] = dataclasses.asdict(report_bc)
    except (ValueError, RuntimeError) as exc:
        reason = str(exc).splitlines()[0][:200]
        if options.bias_correction_by_default and not options.equalize:
            # a user's model the transform cannot rebuild: the default is a bonus, not a requirement
            logging.getLogger(__name__).warning("note: default bias correction skipped for %s: %s",
                                                job.source.name, reason)
            job.quantization["bias_correction_skipped"] = reason
            return
        raise ConversionError(f"cannot equalize/bias-correct {job.source.name}: {reason}") from exc
    job.model = model


def quantize_or_convert(job: ConvertJob) -> None:
    """The plain converter when nothing custom is asked; otherwise calibrate → ranges → quantize."""
    from edgemnv2.convert import run_converter

    options = job.options
    if not custom(options):
        run_converter(job)
        return
    from edgemnv2_converters import calibration
    from edgemnv2_converters.keras_to_tflite import silenced_output

    assert job.calibration is not None
    images = job.calibration.images
    quiet = not logging.getLogger().isEnabledFor(logging.INFO)
    try:
        with silenced_output(quiet):
            calibrated = calibration.calibrate_float_model(job.model, images)
            ranges = calibration.activation_ranges(calibrated, images, options.calibration_method)
            calibrated = calibration.write_ranges(calibrated, ranges)
            job.tflite = calibration.quantize_calibrated(
                calibrated, per_tensor=options.per_tensor,
                activations="int16" if options.int16_activations else "int8", io_type=options.io or "int8")
    except (ValueError, RuntimeError) as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        raise ConversionError(f"quantization failed for {job.source.name}: {(lines or [type(exc).__name__])[0][:300]}") \
            from exc
    changed = sorted((r for r in ranges if abs(r.shrink - 1.0) > 1e-6), key=lambda r: r.shrink, reverse=True)
    job.quantization.update({
        "method": options.calibration_method,
        "weights": "per-tensor" if options.per_tensor else "per-channel",
        "activations": "int16 (16x8, whole graph)" if options.int16_activations else "int8",
        "ranges_changed": len(changed),
        "ranges_recorded": len(ranges),
        "largest_range_shrinks": [{"tensor": r.name.split(";")[0], "recorded": r.recorded, "chosen": r.chosen,
                                   "shrink": round(r.shrink, 3)} for r in changed[:5]],
    })
    if options.equalize:  # equalization rescales channels: per-layer errors must compare against this float model
        job.quantization["_float_twin_bytes"] = calibrated


def write_float_twin(job: ConvertJob) -> None:
    """Keep the transformed float model beside the output so per-layer errors compare like with like."""
    twin = job.quantization.pop("_float_twin_bytes", None)
    if twin is None or job.output is None:
        return
    path = float_twin_path(job.output)
    path.write_bytes(twin)
    job.quantization["float_twin"] = path.name


def integer_types(options: ConvertOptions) -> tuple[str, ...]:
    """Tensor types a fully integer model may use: 16x8 adds int16 activations and int64 biases."""
    return ("int8", "int16", "int32", "int64") if options.int16_activations else ("int8", "int32")
