"""`edgemnv2 profile` and `edgemnv2 devices`: thin click wrappers over `edgemnv2.profile`."""

from __future__ import annotations

from pathlib import Path

import click

from edgemnv2 import json_versions
from edgemnv2.cli.options import COUNT, READ_FILE, READ_PATH, PlotPath, emit_json, json_option, output_option, to_jsonable
from edgemnv2.errors import GateFailed, InputError


@click.command("profile")
@click.argument("model", required=False, type=READ_PATH)
@click.option("--alpha", type=float, default=None, help="Profile a MobileNetV2 spec of this width (no file needed).")
@click.option("--resolution", type=int, default=None, help="Input size of the MobileNetV2 spec.")
@click.option("--classes", type=COUNT, default=1000, show_default=True, help="Classes of the MobileNetV2 spec.")
@click.option("--device", "-d", default=None, metavar="KEY|all",
              help="Target profile (see `edgemnv2 devices`), several separated by commas, or all.")
@click.option("--device-file", type=READ_FILE, default=None,
              help="Your own device profile (TOML, same keys as the bundled ones).")
@json_option
@click.option("--csv", "as_csv", is_flag=True, help="Per-layer rows (or the device comparison) as CSV.")
@click.option("--markdown", "as_markdown", is_flag=True, help="The table as Markdown.")
@click.option("--plot", type=PlotPath(), default=None,
              help="Write a PNG of per-layer multiplications and the memory timeline (first device).")
@click.option("--require-fit", is_flag=True, help="Exit 3 when the model does not fit a device.")
@click.option("--schedule", type=click.Choice(["tflm", "inplace", "patch", "auto"]), default=None,
              help="Static-engine schedules instead of the layer table: peak RAM, extra MACs, latency and which "
                   "schedule fits each device (auto: all three; see docs/static-engine.md).")
@click.option("--ram-budget", type=click.IntRange(min=1), default=None, metavar="BYTES",
              help="RAM the patch schedule must fit (default: each --device's RAM less its runtime's).")
@click.option("--patch-split", type=click.IntRange(min=1), default=None, metavar="STEP",
              help="Patch schedule: tile the first STEP engine steps (with --tiles; default: searched).")
@click.option("--tiles", default=None, metavar="ROWSxCOLS", help="Patch schedule: the tile grid, e.g. 4x4.")
def profile_cmd(model: Path | None, alpha: float | None, resolution: int | None, classes: int, device: str | None,
                device_file: Path | None, as_json: bool, as_csv: bool, as_markdown: bool, plot: Path | None,
                require_fit: bool, schedule: str | None, ram_budget: int | None, patch_split: int | None,
                tiles: str | None) -> None:
    """Per-layer multiplications, memory and latency of MODEL (.tflite or Keras) on target devices.

    Without --device: what MODEL costs wherever it runs (multiplications, weights, activations, the TFLite
    Micro arena plan); with one: latency, peak RAM, flash and the fit verdict too.

    \b
    Examples:
      edgemnv2 profile model.tflite
      edgemnv2 profile model.tflite --device rpi4
      edgemnv2 profile --alpha 0.35 --resolution 96 --device esp32-s3 --json
      edgemnv2 profile model.tflite --device all --markdown
      edgemnv2 profile model.tflite --device-file my_board.toml --plot layers.png
      edgemnv2 profile model.tflite --schedule auto --device stm32h7,nano33ble
    """
    from edgemnv2.profile import profile
    from edgemnv2.profile import report as render

    if sum((as_json, as_csv, as_markdown)) > 1:
        raise InputError("choose one of --json, --csv and --markdown")
    if schedule is not None or ram_budget is not None or patch_split is not None or tiles is not None:
        _schedules(model, alpha, resolution, device, device_file, schedule, ram_budget, patch_split, tiles,
                   as_json, as_csv or as_markdown or plot is not None, require_fit)
        return
    if device is None and device_file is None:
        _model_only(model, alpha, resolution, classes, as_json, as_csv, as_markdown, plot, require_fit)
        return
    reports = profile(model, alpha=alpha, resolution=resolution, classes=classes, device=device,
                      device_file=device_file)
    if plot is not None:
        _plot(render, reports[0], plot)
    many = len(reports) > 1
    if as_json:
        emit_json({"model": reports[0].model, "devices": [to_jsonable(r) for r in reports]} if many else reports[0],
                  json_versions.PROFILE)
    elif as_csv:
        click.echo(render.render_comparison_csv(reports) if many else render.render_csv(reports[0]), nl=False)
    elif as_markdown:
        click.echo(render.render_comparison(reports, markdown=True) if many else render.render_markdown(reports[0]))
    else:
        click.echo(render.render_comparison(reports) if many else render.render_table(reports[0]))
    if require_fit:
        misfits = [r.device.key for r in reports if not r.fits]
        if misfits:
            raise GateFailed(f"the model does not fit: {', '.join(misfits)}")


def _model_only(model: Path | None, alpha: float | None, resolution: int | None, classes: int, as_json: bool,
                as_csv: bool, as_markdown: bool, plot: Path | None, require_fit: bool) -> None:
    """`profile MODEL` without --device: what the model costs wherever it runs (no latency, no fit)."""
    from edgemnv2.profile import profile_model
    from edgemnv2.profile import report as render

    if require_fit:
        raise InputError("--require-fit checks a device: give --device KEY or --device all")
    report = profile_model(model, alpha=alpha, resolution=resolution, classes=classes)
    if plot is not None:
        _plot(render, report, plot)
    if as_json:
        emit_json(report, json_versions.PROFILE_MODEL)
    elif as_csv:
        click.echo(render.render_csv(report), nl=False)
    else:
        click.echo(render.render_markdown(report) if as_markdown else render.render_table(report))


def _plot(render, report, plot: Path) -> None:  # type: ignore[no-untyped-def]
    try:
        render.render_plot(report, plot)
    except ImportError:
        raise InputError("--plot needs matplotlib (pip install 'edgemnv2[plot]')") from None
    click.echo(f"plot written to {plot}", err=True)


def _schedules(model: Path | None, alpha: float | None, resolution: int | None, device: str | None,
               device_file: Path | None, schedule: str | None, ram_budget: int | None, patch_split: int | None,
               tiles: str | None, as_json: bool, other_format: bool, require_fit: bool) -> None:
    """`profile --schedule`: the schedule table (or JSON) and one fit verdict per device."""
    from edgemnv2.profile import resolve_devices
    from edgemnv2.profile import schedule_report
    from edgemnv2.profile.schedule_report import build_schedule_report, render_schedules

    if schedule is None:
        raise InputError("--ram-budget, --patch-split and --tiles go with --schedule")
    if model is None or alpha is not None or resolution is not None:
        raise InputError("--schedule plans a .tflite file: give MODEL (convert a spec with `edgemnv2 convert`)")
    if other_format:
        raise InputError("--schedule prints a table or --json (not --csv, --markdown or --plot)")
    if (patch_split is None) != (tiles is None):
        raise InputError("give --patch-split and --tiles together (or neither: they are searched)")
    if patch_split is not None and schedule not in ("patch", "auto"):
        raise InputError("--patch-split/--tiles set the patch schedule: use --schedule patch or auto")
    from edgemnv2.profile.schedule import parse_grid

    grid = parse_grid(tiles) if tiles is not None else None
    devices = resolve_devices(device, device_file) if device or device_file else []
    report = build_schedule_report(model, schedule, devices, ram_budget, patch_split, grid)
    if as_json:
        emit_json(report, schedule_report.SCHEMA_VERSION)
    else:
        click.echo(render_schedules(report))
    if require_fit:
        misfits = [v.device for v in report.devices if v.schedule is None]
        if misfits:
            raise GateFailed(f"no schedule fits: {', '.join(misfits)}")


@click.group("devices", invoke_without_command=True)
@json_option
@click.pass_context
def devices_cmd(ctx: click.Context, as_json: bool) -> None:
    """List the bundled device profiles (files under edgemnv2/profile/devices/); `devices calibrate` fits one.

    \b
    Examples:
      edgemnv2 devices --json
      edgemnv2 devices calibrate r96.jsonl -d qemu-an386 -o an386.toml --held-out r160.jsonl
    """
    if ctx.invoked_subcommand is not None:
        return
    from edgemnv2.profile.devices import load_all
    from edgemnv2.profile.report import grid, human_bytes

    devices = load_all()
    if as_json:
        emit_json({"devices": [{"key": d.key, "name": d.name, "kind": d.kind, "runtime": d.runtime, "cores": d.cores,
                    "threads": d.threads, "clock_mhz": d.clock_mhz, "simd": d.simd, "ram_bytes": d.ram_bytes,
                    "psram_bytes": d.psram_bytes, "flash_bytes": d.flash_bytes,
                    "runtime_code_bytes": d.runtime_code_bytes, "calibration": d.calibration,
                    "file": str(d.path)} for d in devices]}, json_versions.DEVICES)
        return
    rows = [[d.key, d.kind, f"{d.cores}x {d.clock_mhz:g} MHz", human_bytes(d.ram_bytes), human_bytes(d.flash_bytes), d.name]
            for d in devices]
    click.echo(grid(("device", "kind", "cores", "RAM", "flash", "name"), rows, right={3, 4}))


@devices_cmd.command("calibrate")
@click.argument("results", nargs=-1, required=True, type=READ_FILE)
@click.option("--device", "-d", default=None, metavar="KEY", help="The base profile to calibrate (see `edgemnv2 devices`).")
@click.option("--device-file", type=READ_FILE, default=None, help="Or your own base profile (TOML).")
@output_option("Where to write the calibrated profile (TOML; use it with `profile --device-file`).", required=True)
@click.option("--held-out", multiple=True, type=READ_FILE,
              help="Bench results to predict with the fit, never fitted (repeatable).")
@click.option("--model", "models", multiple=True, type=READ_FILE,
              help="The .tflite a results file was measured with, when its header does not list the ops "
                   "(repeatable; matched by sha256).")
@json_option
def calibrate_cmd(results: tuple[Path, ...], device: str | None, device_file: Path | None, output: Path,
                  held_out: tuple[Path, ...], models: tuple[Path, ...], as_json: bool) -> None:
    """Fit a device profile's per-op-kind cycles to the per-layer times in bench RESULTS (JSONL).

    \b
    Example:
      edgemnv2 bench --port /dev/pts/3 --model m96.tflite --images imgs -o r96.jsonl
      edgemnv2 devices calibrate r96.jsonl -d qemu-an386 -o an386.toml --held-out r160.jsonl
      edgemnv2 profile m160.tflite --device-file an386.toml
    """
    from edgemnv2.profile import resolve_devices
    from edgemnv2.profile.calibrate import calibrate, render_calibration

    if (device is None) == (device_file is None) or device and "," in device:
        raise InputError("give one base profile: --device KEY or --device-file F")
    [base] = resolve_devices(device, device_file)
    report = calibrate(list(results), base, output, list(held_out), list(models))
    if as_json:
        emit_json(report, json_versions.CALIBRATE)
    else:
        click.echo(render_calibration(report))
