"""`edgemnv2 convert`: a Keras MobileNetV2 (or a user's Keras model) → .tflite + JSON sidecar."""

from __future__ import annotations

from pathlib import Path

import click

from edgemnv2 import json_versions
from edgemnv2.cli.options import (
    READ_FOLDER, READ_PATH, SEED, emit_json, json_option, model_options, model_spec, output_option, progress_enabled,
    require_modules, stage_lines,
)
from edgemnv2.convert import IO_TYPES, QUANTIZE_MODES, ConvertOptions, ConvertResult, convert
from edgemnv2.errors import InputError
from edgemnv2.models import ModelSpec, UserModel
from edgemnv2.quantization import CALIBRATION_METHODS


def quantization_options(func):  # type: ignore[no-untyped-def]
    """Options of quantization beyond the converter's defaults (docs/quantization.md has measurements)."""
    options = [
        click.option("--calibration-method", type=click.Choice(CALIBRATION_METHODS), default=None,
                     help="Activation ranges: converter min/max, a 99.999th percentile, or the range minimising "
                          "quantization MSE (default: mse for per-channel int8, minmax for --per-tensor)."),
        click.option("--per-tensor", is_flag=True,
                     help="One weight scale per tensor (for NPUs/kernels without per-channel support)."),
        click.option("--equalize/--no-equalize", default=None,
                     help="Cross-layer equalization (ReLU6-aware, batch norm folded) before calibration "
                          "(default: on for --per-tensor int8)."),
        click.option("--bias-correction/--no-bias-correction", default=None,
                     help="Correct the bias shift that weight rounding causes, measured on the calibration images "
                          "(default: on for --per-tensor int8). --calibration-method minmax is the plain converter."),
        click.option("--adaround", is_flag=True,
                     help="AdaRound: learn each weight's rounding (down or up) layer by layer against the float "
                          "model's outputs on the calibration images (slower). With bias correction (the "
                          "--per-tensor default) the correction is measured for the learned rounding."),
        click.option("--adaround-augment", default="none", show_default=True, metavar="none|flips|crops|flips,crops",
                     help="Add mirror images and/or random crops (75-100% of the side, resized back) of the "
                          "calibration images to AdaRound's statistics; each doubles its statistics pass."),
        click.option("--int16-activations", default=None, metavar="all|auto|stream|LAYER,...",
                     help="16x8 mode (int16 activations, int8 weights): 'all' for the whole graph (needs --io "
                          "float32); 'auto' for the 3 layers losing most SQNR (plus the output probabilities with "
                          "--io float32); 'stream' for the linear residual stream (every ADD's inputs and output, "
                          "convolutions without activation); or layers as `validate --per-layer` names them. The "
                          "rest stays int8."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.command("convert")
@model_options
@click.option("--model", "model_path", type=READ_PATH, default=None,
              help="Convert your own Keras model (.keras, .h5 or SavedModel folder) instead of a MobileNetV2 spec.")
@click.option("--quantize", type=click.Choice(QUANTIZE_MODES), default="int8", show_default=True,
              help="int8 = full integer (no float fallback); the others are for comparison.")
@click.option("--io", type=click.Choice(IO_TYPES), default=None,
              help="Input/output type of an int8 model (default int8; float32 for other modes).")
@output_option("Where to write the .tflite (default <model>_<quantize>.tflite here); the sidecar is <output>.json.")
@click.option("--calibration", type=READ_FOLDER, default=None,
              help="Folder of calibration images (default ../shared/data/imagenet-calib).")
@click.option("--num-calibration", type=int, default=100, show_default=True,
              help="Calibration images to use (seeded choice when the folder has more).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the calibration choice.")
@quantization_options
@json_option
def convert_cmd(alpha: float | None, resolution: int | None, weights: str, weights_dir: Path | None,
                model_path: Path | None, quantize: str, io: str | None, output: Path | None,
                calibration: Path | None, num_calibration: int, seed: int, calibration_method: str,
                per_tensor: bool, equalize: bool | None, bias_correction: bool | None, adaround: bool,
                adaround_augment: str, int16_activations: str | None, as_json: bool) -> None:
    """Convert MobileNetV2 (or your Keras model) to TFLite; int8 by default, verified fully integer.

    \b
    Examples:
      edgemnv2 convert                                  # 1.0/224, ImageNet weights, int8
      edgemnv2 convert --alpha 0.35 --resolution 96 -o small.tflite
      edgemnv2 convert --model my.keras --calibration photos/ --io uint8
    """
    require_modules("tensorflow")
    if model_path is not None:
        if alpha is not None or resolution is not None or weights != "imagenet":
            raise InputError("--model cannot be combined with --alpha/--resolution/--weights")
        source: ModelSpec | UserModel = UserModel(model_path)
    else:
        source = model_spec(alpha, resolution, weights, weights_dir)
    options = ConvertOptions(quantize=quantize, io=io, calibration=calibration, num_calibration=num_calibration,
                             seed=seed, output=output, calibration_method=calibration_method,
                             per_tensor=per_tensor, equalize=equalize, bias_correction=bias_correction,
                             adaround=adaround, adaround_augment=adaround_augment,
                             int16_activations=int16_activations)
    result = convert(source, options, progress=progress_enabled(), on_stage=stage_lines())
    if as_json:
        emit_json({**result.sidecar.to_json(), "model": result.output, "sidecar": result.sidecar_path},
                  json_versions.CONVERT)
    else:
        click.echo(render_text(result))


def render_text(result: ConvertResult) -> str:
    s = result.sidecar
    io_in, io_out = s.input, s.output
    integer = "fully integer" if s.fully_integer else "not fully integer"
    lines = [f"wrote {result.output} ({s.file_size / 1e6:.2f} MB, {s.op_count} ops, {integer}) "
             f"in {s.wall_time_s:.1f} s",
             f"  input  {io_in['dtype']} {io_in['shape']}" + _qparams(io_in),
             f"  output {io_out['dtype']} {io_out['shape']}" + _qparams(io_out),
             "  ops    " + ", ".join(f"{name} {count}" for name, count in s.ops.items())]
    q = s.quantization or {}
    if q.get("method"):
        lines.append(f"  quantization {q['weights']} weights, {q['activations']} activations, {q['method']} ranges "
                     f"({q['ranges_changed']}/{q['ranges_recorded']} ranges changed)"
                     + (", equalized" if "equalize" in q else "") + (", bias-corrected" if "bias_correction" in q else "")
                     + (f", AdaRound ({q['adaround']['flipped']:.1%} of weights flipped, {q['adaround']['images']} images, "
                        f"{q['adaround']['seconds']:.0f} s)"
                        if "adaround" in q else ""))
    if s.calibration:
        c = s.calibration
        lines.append(f"  calibration {c['count']} images from {c['folder']}"
                     + (f" ({len(c['skipped'])} unreadable skipped)" if c["skipped"] else ""))
    lines.append(f"  sidecar {result.sidecar_path}")
    return "\n".join(lines)


def _qparams(tensor: dict) -> str:
    return f" scale {tensor['scale']:.6g} zero point {tensor['zero_point']}" if tensor["scale"] else ""
