"""`edgemnv2 profile` and `edgemnv2 devices`: thin click wrappers over `edgemnv2.profile`."""

from __future__ import annotations

from pathlib import Path

import click

from edgemnv2.cli.options import emit_json, json_option, to_jsonable
from edgemnv2.errors import GateFailed, InputError


@click.command("profile")
@click.argument("model", required=False, type=click.Path(path_type=Path))
@click.option("--alpha", type=float, default=None, help="Profile a MobileNetV2 spec of this width (no file needed).")
@click.option("--resolution", type=int, default=None, help="Input size of the MobileNetV2 spec.")
@click.option("--classes", type=int, default=1000, show_default=True, help="Classes of the MobileNetV2 spec.")
@click.option("--device", "-d", default=None, metavar="KEY|all",
              help="Target profile (see `edgemnv2 devices`), several separated by commas, or all.")
@click.option("--device-file", type=click.Path(path_type=Path), default=None,
              help="Your own device profile (TOML, same keys as the bundled ones).")
@json_option
@click.option("--csv", "as_csv", is_flag=True, help="Per-layer rows (or the device comparison) as CSV.")
@click.option("--markdown", "as_markdown", is_flag=True, help="The table as Markdown.")
@click.option("--plot", type=click.Path(path_type=Path), default=None,
              help="Write a PNG of per-layer multiplications and the memory timeline (first device).")
@click.option("--require-fit", is_flag=True, help="Exit 3 when the model does not fit a device.")
def profile_cmd(model: Path | None, alpha: float | None, resolution: int | None, classes: int, device: str | None,
                device_file: Path | None, as_json: bool, as_csv: bool, as_markdown: bool, plot: Path | None,
                require_fit: bool) -> None:
    """Per-layer multiplications, memory and latency of MODEL (.tflite or Keras) on target devices.

    \b
    Examples:
      edgemnv2 profile model.tflite --device rpi4
      edgemnv2 profile --alpha 0.35 --resolution 96 --device esp32-s3 --json
      edgemnv2 profile model.tflite --device all --markdown
      edgemnv2 profile model.tflite --device-file my_board.toml --plot layers.png
    """
    from edgemnv2.profile import profile
    from edgemnv2.profile import report as render

    if sum((as_json, as_csv, as_markdown)) > 1:
        raise InputError("choose one of --json, --csv and --markdown")
    reports = profile(model, alpha=alpha, resolution=resolution, classes=classes, device=device,
                      device_file=device_file)
    if plot is not None:
        try:
            render.render_plot(reports[0], plot)
        except ImportError:
            raise InputError("--plot needs matplotlib (pip install 'edgemnv2[plot]')") from None
        click.echo(f"plot written to {plot}", err=True)
    many = len(reports) > 1
    if as_json:
        emit_json({"model": reports[0].model, "devices": [to_jsonable(r) for r in reports]} if many else reports[0])
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


@click.command("devices")
@json_option
def devices_cmd(as_json: bool) -> None:
    """List the bundled device profiles (files under edgemnv2/profile/devices/)."""
    from edgemnv2.profile.devices import load_all
    from edgemnv2.profile.report import grid, human_bytes

    devices = load_all()
    if as_json:
        emit_json([{"key": d.key, "name": d.name, "kind": d.kind, "runtime": d.runtime, "cores": d.cores,
                    "threads": d.threads, "clock_mhz": d.clock_mhz, "simd": d.simd, "ram_bytes": d.ram_bytes,
                    "psram_bytes": d.psram_bytes, "flash_bytes": d.flash_bytes,
                    "runtime_code_bytes": d.runtime_code_bytes, "calibration": d.calibration,
                    "file": str(d.path)} for d in devices])
        return
    rows = [[d.key, d.kind, f"{d.cores}x {d.clock_mhz:g} MHz", human_bytes(d.ram_bytes), human_bytes(d.flash_bytes), d.name]
            for d in devices]
    click.echo(grid(("device", "kind", "cores", "RAM", "flash", "name"), rows, right={3, 4}))
