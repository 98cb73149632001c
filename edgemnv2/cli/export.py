"""`edgemnv2 export`: render a ready-to-build project (firmware, Linux agent or phone package) for a model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from edgemnv2 import json_versions
from edgemnv2.cli.options import READ_FILE, BaudRate, emit_json, json_option, output_option, to_jsonable
from edgemnv2.deploy.export import DEFAULT_BAUD, TARGETS, ExportRequest, FirmwareExport, export_project
from edgemnv2.errors import InputError

if TYPE_CHECKING:
    from edgemnv2.deploy.static_engine import EngineOptions


def _engine_options(schedule: str, ram_budget: int | None, patch_split: int | None, tiles: str | None,
                    kernels: str) -> EngineOptions:
    from edgemnv2.deploy.static_engine import EngineOptions
    from edgemnv2.profile.schedule import parse_grid

    if (patch_split is None) != (tiles is None):
        raise InputError("give --patch-split and --tiles together (or neither: they are searched)")
    if schedule != "patch" and (patch_split is not None or ram_budget is not None):
        raise InputError("--ram-budget, --patch-split and --tiles go with --schedule patch")
    return EngineOptions(schedule, ram_budget, patch_split, parse_grid(tiles) if tiles is not None else None, kernels)


def _static_engine(model: Path, out: Path, options: EngineOptions, as_json: bool) -> None:
    from edgemnv2.deploy.static_engine import generate_engine

    result = generate_engine(model, out, options.schedule, options.ram_budget, options.split, options.grid,
                             options.kernels)
    if as_json:
        emit_json(result, json_versions.EXPORT)
        return
    click.echo(f"static engine ({result.schedule} schedule, {result.steps} steps) in {result.out}: "
               f"{', '.join(result.files)}")
    click.echo(f"  arena   {result.arena_bytes} bytes (input at {result.input_offset}, output at {result.output_offset})")
    click.echo(f"  build   gcc -std=c99 -O2 -I{result.out} {result.out}/se_kernels.c {result.out}/se_model.c "
               f"{result.out}/se_host_main.c  (host: raw inputs on stdin, outputs on stdout)")


@click.command("export")
@click.option("--target", default=None, type=click.Choice(list(TARGETS)),
              help="What to render the project for (required with the default --engine tflm).")
@click.option("--engine", type=click.Choice(["tflm", "static"]), default="tflm", show_default=True,
              help="tflm: TFLite Micro's interpreter; static: generated C99 for one schedule, no interpreter, no heap "
                   "(with --target mps2-an386|mps3-an547|host: the firmware project running it; without: the engine "
                   "sources alone; see docs/static-engine.md).")
@click.option("--schedule", type=click.Choice(["inplace", "patch"]), default="inplace", show_default=True,
              help="--engine static: layer by layer in place, or the first blocks tile by tile.")
@click.option("--ram-budget", type=click.IntRange(min=1), default=None, metavar="BYTES",
              help="--engine static --schedule patch: the RAM the tiling must fit (fewest extra MACs).")
@click.option("--patch-split", type=click.IntRange(min=1), default=None, metavar="STEP",
              help="--schedule patch: tile the first STEP steps (with --tiles).")
@click.option("--tiles", default=None, metavar="ROWSxCOLS", help="--schedule patch: the tile grid, e.g. 4x4.")
@click.option("--kernels", "engine_kernels", type=click.Choice(["portable", "cmsis-nn"]), default="portable",
              show_default=True, help="--engine static: the project's own C kernels, or Arm's CMSIS-NN (from the TFLite "
                                      "Micro tree at build time) wherever one fits a layer or tile; both bit-exact.")
@click.option("--model", "model", required=True, type=READ_FILE,
              help="The .tflite model (int8 for microcontrollers).")
@output_option("Folder to write the project to.", old=("--out",), required=True)
@click.option("--arena-bytes", type=int, default=None,
              help="Tensor arena for TFLite Micro targets (default: the planned peak + 10 %; below the peak only "
                   "with --force).")
@click.option("--board", default=None,
              help="Board of the target: arduino nano33ble|portenta-h7, esp-idf esp32-s3, pico pico (the keys of `edgemnv2 devices`) "
                   "(default: the first).")
@click.option("--labels", type=READ_FILE, default=None, help="Labels file (phone targets).")
@click.option("--baud", type=BaudRate(), default=DEFAULT_BAUD, show_default=True, help="UART rate the firmware opens.")
@click.option("--force", is_flag=True, help="Export anyway when the model computes in float or --arena-bytes is below "
                                            "the planned peak (the board would fail).")
@click.option("--input-slots", type=click.Choice(["auto", "1", "2"]), default="auto", show_default=True,
              help="Inputs the firmware holds: 2 uploads the next image while one computes (mps2-an386, mps3-an547, "
                   "host, when RAM allows: auto); 1 is stop-and-wait.")
@json_option
def export_cmd(target: str | None, engine: str, schedule: str, ram_budget: int | None, patch_split: int | None,
               tiles: str | None, engine_kernels: str, model: Path, output: Path, arena_bytes: int | None,
               board: str | None, labels: Path | None, baud: int, force: bool, input_slots: str, as_json: bool) -> None:
    """Render a project for TARGET: firmware sources + model C array + arena + op resolver + build/flash README.

    \b
    With --engine static: the model as C99 (weights, multipliers and shifts as const arrays, one static
    arena, the schedule's call sequence) plus the kernel library, bit-exact with TFLite Micro; with --target
    the same firmware (protocol, board port) runs it in place of TFLite Micro:
      edgemnv2 export --engine static --model m.tflite --output engine/ --schedule patch --ram-budget 262144
      edgemnv2 export --engine static --target mps2-an386 --model m.tflite --output fw --schedule inplace
    """
    if engine != "static" and engine_kernels != "portable":
        raise InputError("--kernels goes with --engine static (TFLite Micro projects pick kernels at `edgemnv2 build`)")
    options = _engine_options(schedule, ram_budget, patch_split, tiles, engine_kernels) if engine == "static" else None
    if options is not None and target is None:
        _static_engine(model, output, options, as_json)
        return
    if target is None:
        raise InputError("give --target (or --engine static for the engine sources alone)")
    result = export_project(ExportRequest(target=target, model=model, out=output, arena_bytes=arena_bytes, board=board,
                                          labels=labels, baud=baud, engine=options, force=force,
                                          input_slots=None if input_slots == "auto" else int(input_slots)))
    if as_json:
        emit_json(result, json_versions.EXPORT)
        return
    if isinstance(result, FirmwareExport):
        for warning in result.warnings:
            click.echo(f"warning: {warning}", err=True)
        click.echo(f"{result.target} project in {result.out} ({len(result.files)} files)")
        click.echo(f"  model   {result.model_bytes} bytes, sha256 {result.model_sha256[:16]}…, "
                   f"{len(result.ops)} ops: {', '.join(result.ops)}")
        if result.arena_bytes is not None:
            click.echo(f"  arena   {result.arena_bytes} bytes ({result.arena_source})")
        click.echo(f"  slots   {result.input_slots} input slot{'s' if result.input_slots > 1 else ''}: "
                   f"{result.input_slots_reason}")
        click.echo("  build   " + "\n          ".join(result.build_commands))
        return
    for key, value in to_jsonable(result).items():
        click.echo(f"{key}: {value}")
