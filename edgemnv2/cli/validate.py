"""`edgemnv2 validate`: a .tflite model vs its float Keras reference on the same images."""

from __future__ import annotations

from pathlib import Path

import click

from edgemnv2 import atomic, json_versions
from edgemnv2.cli.options import (
    COUNT, READ_FILE, READ_FOLDER, SEED, PlotPath, emit_json, json_option, output_option, progress_enabled,
    to_jsonable, versioned,
)
from edgemnv2.errors import InputError
from edgemnv2.convert import ensure_writable


@click.command("validate")
@click.argument("model", type=READ_FILE)
@click.option("--reference", default=None, metavar="SPEC|PATH",
              help="Float model: a spec like mobilenet_v2_1.0_224 (ImageNet weights) or a Keras model path "
                   "(default: the source recorded in MODEL's sidecar).")
@click.option("--weights-dir", type=READ_FOLDER, default=None,
              help="Weights mirror folder for a spec reference (as in convert).")
@click.option("--data", type=READ_FOLDER, default=None,
              help="Folder of images (default ../shared/data/imagenet-val: 300 images no conversion calibrates on).")
@click.option("--limit", type=COUNT, default=None, help="Use at most N images (seeded choice).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the --limit choice.")
@click.option("--max-top1-drop", type=float, default=None, metavar="POINTS",
              help="Fail (exit 3) when float top-1 minus TFLite top-1 exceeds this many percentage points.")
@click.option("--min-agreement", type=click.FloatRange(0, 100), default=None, metavar="PERCENT",
              help="Fail (exit 3) when top-1 agreement with the float model is below this percentage, e.g. 97.")
@click.option("--compare", type=READ_FILE, default=None, metavar="OTHER.tflite",
              help="Also run OTHER.tflite on the same images: both agreements and accuracies, the images whose "
                   "top-1 differs, and an exact McNemar p-value (paired test).")
@click.option("--per-image", is_flag=True, help="Include one row per image in the JSON report.")
@output_option("Also write the JSON report to this file.")
@click.option("--per-layer", is_flag=True,
              help="Also report SQNR / relative error of every layer against the float model, worst first.")
@click.option("--per-layer-images", type=click.IntRange(1), default=10, show_default=True,
              help="Images for --per-layer (every tensor of both models is kept per image).")
@click.option("--plot", type=PlotPath(), default=None,
              help="With --per-layer: save a per-layer SQNR chart to this PNG (needs matplotlib).")
@json_option
def validate_cmd(model: Path, reference: str | None, weights_dir: Path | None, data: Path | None,
                 limit: int | None, seed: int, max_top1_drop: float | None, min_agreement: float | None,
                 compare: Path | None, per_image: bool, output: Path | None, per_layer: bool, per_layer_images: int,
                 plot: Path | None, as_json: bool) -> None:
    """Compare MODEL (.tflite) with its float reference: accuracy, agreement, KL, output error.

    Rates come with 95% Wilson confidence intervals; --compare adds a paired test against a second model.

    \b
    Exit codes: 0 all gates passed, 1 error, 3 a gate (--max-top1-drop, --min-agreement) failed.
    The report is printed and written before a failed gate ends the command.
    """
    from edgemnv2.validate import render_text, validate  # numpy + interpreters: only when it runs

    if output is not None:
        ensure_writable(output, example="report.json")  # before minutes of inference, not after
    if min_agreement is not None and 0 < min_agreement <= 1:
        click.echo(f"note: --min-agreement is a percentage: {min_agreement:g} means {min_agreement:g}%, "
                   f"not {min_agreement * 100:g}%", err=True)
    if plot is not None:
        if not per_layer:
            raise InputError("--plot draws the per-layer report; add --per-layer")
        ensure_writable(plot, example="layers.png")
    report = validate(model, reference, data, limit=limit, seed=seed, max_top1_drop=max_top1_drop,
                      min_agreement=min_agreement, per_image=per_image, weights_dir=weights_dir,
                      compare=compare, progress=progress_enabled())
    layers = None
    if per_layer:
        from edgemnv2 import layer_error

        layers = layer_error.per_layer(model, reference, data, limit=per_layer_images, seed=seed,
                                       weights_dir=weights_dir)
        if plot is not None:
            layer_error.plot(layers, plot)
    payload = versioned({**to_jsonable(report), "passed": report.passed}, json_versions.VALIDATE)
    if layers is not None:
        payload["per_layer"] = {"images": layers.images, "float_model": layers.float_model,
                                "worst_first": to_jsonable(layers.worst())}
    if output is not None:
        atomic.write_json(output, payload)
    if as_json:
        emit_json(payload, json_versions.VALIDATE)
    else:
        click.echo(render_text(report))
        if layers is not None:
            from edgemnv2.layer_error import render_table

            click.echo(render_table(layers, count=15))
            if plot is not None:
                click.echo(f"per-layer chart: {plot}")
    report.raise_for_gates()
