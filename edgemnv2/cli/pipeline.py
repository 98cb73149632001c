"""`edgemnv2 run`: the main job (convert + validate + profile) in one command."""

from __future__ import annotations

from pathlib import Path

import click

from edgemnv2 import json_versions
from edgemnv2.cli.convert import render_text as render_conversion
from edgemnv2.cli.options import (
    READ_FOLDER, emit_json, json_option, model_options, model_spec, output_option, progress_enabled, require_modules,
    stage_lines, to_jsonable,
)
from edgemnv2.profile.report import render_comparison, summary_lines


@click.command("run")
@model_options
@click.option("--calibration", type=READ_FOLDER, default=None,
              help="Calibration images (default ../shared/data/imagenet-calib).")
@click.option("--data", type=READ_FOLDER, default=None,
              help="Validation images (default ../shared/data/imagenet-val, never calibrated on). Given the "
                   "calibration folder itself, a seeded 30% of it is held out of calibration and validated on.")
@click.option("--device", default="rpi4", show_default=True, help="Device profile(s) to profile for, or 'all'.")
@output_option("Folder the .tflite and its sidecar are written to.", old=("--out-dir",), default=Path("out"),
               show_default=True)
@click.option("--min-agreement", type=click.FloatRange(0, 100), default=97.0, show_default=True,
              help="Fail (exit 3) when int8-vs-float top-1 agreement is below this percentage.")
@json_option
def run_cmd(alpha: float | None, resolution: int | None, weights: str, weights_dir: Path | None,
            calibration: Path | None, data: Path | None, device: str, output: Path, min_agreement: float, as_json: bool) -> None:
    """Convert MobileNetV2 to int8, validate it against the float model, and profile it for a device.

    With no options: MobileNetV2 1.0/224, ImageNet weights and calibration images from ../shared,
    validated on the 300 held-out images of ../shared/data/imagenet-val, profiled for a Raspberry Pi 4.
    """
    require_modules("tensorflow")
    from edgemnv2.pipeline import run_pipeline  # numpy + interpreters: only when it runs
    from edgemnv2.validate import render_text as render_validation

    spec = model_spec(alpha, resolution, weights, weights_dir)
    report = run_pipeline(spec, out_dir=output, calibration=calibration, data=data, device=device,
                          min_agreement=min_agreement, progress=progress_enabled(), on_stage=stage_lines())
    if as_json:
        emit_json({"conversion": {**report.conversion.sidecar.to_json(), "model": report.conversion.output,
                                   "sidecar": report.conversion.sidecar_path},
                   "validation": {**to_jsonable(report.validation), "passed": report.validation.passed},
                   "profiles": report.profiles}, json_versions.RUN)
    else:
        click.echo("== convert\n" + render_conversion(report.conversion))
        click.echo("\n== validate\n" + render_validation(report.validation))
        profiles = report.profiles
        body = "\n".join(summary_lines(profiles[0])) if len(profiles) == 1 else render_comparison(profiles)
        click.echo("\n== profile (per-layer table: edgemnv2 profile MODEL --device DEVICE)\n" + body)
    report.validation.raise_for_gates()

