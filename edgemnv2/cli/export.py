"""`edgemnv2 export`: render a ready-to-build project (firmware, Linux agent or phone package) for a model."""

from __future__ import annotations

from pathlib import Path

import click

from edgemnv2.cli.options import emit_json, json_option, output_option, to_jsonable
from edgemnv2.deploy.export import DEFAULT_BAUD, TARGETS, ExportRequest, FirmwareExport, export_project


@click.command("export")
@click.option("--target", required=True, type=click.Choice(list(TARGETS)), help="What to render the project for.")
@click.option("--model", "model", required=True, type=click.Path(path_type=Path),
              help="The .tflite model (int8 for microcontrollers).")
@output_option("Folder to write the project to.", old=("--out",), required=True)
@click.option("--arena-bytes", type=int, default=None,
              help="Tensor arena for TFLite Micro targets (default: the planned peak + 10 %).")
@click.option("--board", default=None,
              help="Board of the target: arduino nano33ble-sense|portenta-h7, esp-idf esp32s3, pico pico "
                   "(default: the first).")
@click.option("--labels", type=click.Path(path_type=Path), default=None, help="Labels file (phone targets).")
@click.option("--baud", type=int, default=DEFAULT_BAUD, show_default=True, help="UART rate the firmware opens.")
@json_option
def export_cmd(target: str, model: Path, output: Path, arena_bytes: int | None, board: str | None,
               labels: Path | None, baud: int, as_json: bool) -> None:
    """Render a project for TARGET: firmware sources + model C array + arena + op resolver + build/flash README."""
    result = export_project(ExportRequest(target=target, model=model, out=output, arena_bytes=arena_bytes, board=board,
                                          labels=labels, baud=baud))
    if as_json:
        emit_json(result)
        return
    if isinstance(result, FirmwareExport):
        for warning in result.warnings:
            click.echo(f"warning: {warning}", err=True)
        click.echo(f"{result.target} project in {result.out} ({len(result.files)} files)")
        click.echo(f"  model   {result.model_bytes} bytes, sha256 {result.model_sha256[:16]}…, "
                   f"{len(result.ops)} ops: {', '.join(result.ops)}")
        if result.arena_bytes is not None:
            click.echo(f"  arena   {result.arena_bytes} bytes ({result.arena_source})")
        click.echo("  build   " + "\n          ".join(result.build_commands))
        return
    for key, value in to_jsonable(result).items():
        click.echo(f"{key}: {value}")
