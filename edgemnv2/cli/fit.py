"""`edgemnv2 fit`: thin click wrapper over `edgemnv2.fit`."""

from __future__ import annotations

from pathlib import Path

import click

from edgemnv2.cli.options import emit_json, json_option
from edgemnv2.errors import GateFailed, InputError
from edgemnv2.models import ALPHAS, RESOLUTIONS


class ByteSize(click.ParamType):
    """A byte count: 524288, 512K, 1M, 1.5MiB (K/M/G are 1024-based)."""

    name = "BYTES"

    def convert(self, value, param, ctx):  # type: ignore[no-untyped-def]
        if isinstance(value, int):
            return value
        from edgemnv2.fit import parse_bytes

        try:
            return parse_bytes(value)
        except InputError as exc:
            self.fail(str(exc), param, ctx)


def _floats(text: str | None, option: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise InputError(f"{option} takes numbers separated by commas, e.g. 0.35,1.0; got {text!r}") from None


@click.command("fit")
@click.option("--device", "-d", default=None, metavar="KEY", help="Target profile (see `edgemnv2 devices`).")
@click.option("--device-file", type=click.Path(path_type=Path), default=None,
              help="Your own device profile (TOML, same keys as the bundled ones).")
@click.option("--max-latency-ms", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Only variants whose estimated latency is at most this.")
@click.option("--max-ram", type=ByteSize(), default=None, help="RAM budget below the device's, e.g. 400K.")
@click.option("--max-flash", type=ByteSize(), default=None, help="Flash budget below the device's, e.g. 1.5M.")
@click.option("--schedule", type=click.Choice(("tflm",)), default="tflm", show_default=True,
              help="Memory schedule the RAM figure assumes (tflm: TensorFlow Lite Micro's arena plan).")
@click.option("--no-external-ram", is_flag=True,
              help="Do not count a board's PSRAM/SDRAM (slower than on-chip RAM) as RAM.")
@click.option("--alpha", "alphas", default=None, metavar="A[,A...]",
              help="Widths to consider (default all: " + ",".join(f"{a:g}" for a in ALPHAS) + ").")
@click.option("--resolution", "resolutions", default=None, metavar="R[,R...]",
              help="Input sizes to consider (default all: " + ",".join(map(str, RESOLUTIONS)) + ").")
@click.option("--per-tensor", is_flag=True, help="Also consider per-tensor int8 weights (NPUs without per-channel).")
@click.option("--plot", type=click.Path(path_type=Path), default=None,
              help="Write a PNG: accuracy vs latency, marker size = RAM, Pareto front marked (needs matplotlib).")
@click.option("--markdown", "as_markdown", is_flag=True, help="The table as Markdown.")
@click.option("--all", "show_all", is_flag=True, help="Show every variant, not only the first 15 rows.")
@json_option
def fit_cmd(device: str | None, device_file: Path | None, max_latency_ms: float | None, max_ram: int | None,
            max_flash: int | None, schedule: str, no_external_ram: bool, alphas: str | None, resolutions: str | None,
            per_tensor: bool, plot: Path | None, as_markdown: bool, show_all: bool, as_json: bool) -> None:
    """Which MobileNetV2 (alpha 0.35-1.4 x input 96-224) gives the best accuracy that fits a device?

    Every variant is profiled from its spec (no TensorFlow, well under a second in all), checked against
    the device's RAM and flash and your limits, and the ones that fit are ranked by the family's published
    ImageNet top-1 (TF-Slim / Keras table). Exit 3 when nothing fits (the report is printed first).

    \b
    Examples:
      edgemnv2 fit --device esp32-s3 --max-latency-ms 500
      edgemnv2 fit --device stm32h7 --max-ram 768K --plot stm32h7.png
      edgemnv2 fit --device rpi4 --json
    """
    from edgemnv2 import fit as fit_lib

    if as_json and as_markdown:
        raise InputError("choose one of --json and --markdown")
    alpha_grid = _floats(alphas, "--alpha") or ALPHAS
    res_grid = tuple(int(r) for r in _floats(resolutions, "--resolution") or RESOLUTIONS)
    if plot is not None:
        from edgemnv2.convert import ensure_writable

        ensure_writable(plot, example="fit.png")
    limits = fit_lib.Limits(max_latency_ms, max_ram, max_flash, schedule, not no_external_ram)
    report = fit_lib.fit(device, device_file=device_file, limits=limits, alphas=alpha_grid, resolutions=res_grid,
                         per_tensor=per_tensor)
    if plot is not None:
        try:
            fit_lib.render_plot(report, plot)
        except ImportError:
            raise InputError("--plot needs matplotlib (pip install 'edgemnv2[plot]')") from None
        click.echo(f"plot written to {plot}", err=True)
    limit = None if show_all or as_json else 15
    if as_json:
        emit_json(fit_lib.report_json(report))
    elif as_markdown:
        click.echo(fit_lib.render_markdown(report, limit))
    else:
        click.echo(fit_lib.render_table(report, limit))
    if report.best is None and not any(r.fits for r in report.rows):
        raise GateFailed(f"no MobileNetV2 variant fits {report.device.key}")
