"""`edgemnv2 fit`: thin click wrapper over `edgemnv2.fit`."""

from __future__ import annotations

from pathlib import Path

import click

from edgemnv2.cli.options import READ_FILE, READ_FOLDER, PlotPath, emit_json, json_option, output_option
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


def sweep_options(func):  # type: ignore[no-untyped-def]
    """Where candidates run and where their artifacts go (fit --measure and sweep)."""
    options = [
        output_option("Folder of the artifacts per candidate (.tflite, sidecar, validation report), cached by "
                      "content: a rerun skips finished candidates.", old=("--out-dir",), default=Path("out/sweep"),
                      show_default=True, dest="out_dir"),
        click.option("--executor", type=click.Choice(("auto", "ray", "sequential")), default="auto",
                     show_default=True, help="auto: Ray when installed (pip install 'edgemnv2[scale]'), else one "
                                             "candidate after another."),
        click.option("--ray-address", envvar="RAY_ADDRESS", default=None, metavar="ADDR",
                     help="An existing Ray cluster (host:port or ray://...; default $RAY_ADDRESS, else a local Ray "
                          "limited to this machine's cores)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def run_and_print(candidates, inputs, out_dir: Path, executor: str, ray_address: str | None):  # type: ignore[no-untyped-def]
    """Run a sweep with a progress bar; say on stderr how it runs."""
    from edgemnv2 import executors, sweep
    from edgemnv2.cli.options import progress_enabled

    chosen = executors.choose(executor, ray_address)
    for note in chosen.notes:
        click.echo(f"note: {note}", err=True)
    return sweep.run_sweep(candidates, inputs, out_dir, chosen, progress=progress_enabled())


def _floats(text: str | None, option: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise InputError(f"{option} takes numbers separated by commas, e.g. 0.35,1.0; got {text!r}") from None


@click.command("fit")
@click.option("--device", "-d", default=None, metavar="KEY", help="Target profile (see `edgemnv2 devices`).")
@click.option("--device-file", type=READ_FILE, default=None,
              help="Your own device profile (TOML, same keys as the bundled ones).")
@click.option("--max-latency-ms", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Only variants whose estimated latency is at most this.")
@click.option("--max-ram", type=ByteSize(), default=None, help="RAM budget below the device's, e.g. 400K.")
@click.option("--max-flash", type=ByteSize(), default=None, help="Flash budget below the device's, e.g. 1.5M.")
@click.option("--schedule", type=click.Choice(("tflm",)), default="tflm", show_default=True,
              help="Memory schedule the RAM figure assumes (tflm: TensorFlow Lite Micro's arena plan; the inplace "
                   "and patch schedules need a converted .tflite: `profile MODEL --schedule auto`).")
@click.option("--no-external-ram", is_flag=True,
              help="Do not count a board's PSRAM/SDRAM (slower than on-chip RAM) as RAM.")
@click.option("--alpha", "alphas", default=None, metavar="A[,A...]",
              help="Widths to consider (default all: " + ",".join(f"{a:g}" for a in ALPHAS) + ").")
@click.option("--resolution", "resolutions", default=None, metavar="R[,R...]",
              help="Input sizes to consider (default all: " + ",".join(map(str, RESOLUTIONS)) + ").")
@click.option("--per-tensor", is_flag=True, help="Also consider per-tensor int8 weights (NPUs without per-channel).")
@click.option("--plot", type=PlotPath(), default=None,
              help="Write a PNG: accuracy vs latency, marker size = RAM, Pareto front marked (needs matplotlib).")
@click.option("--markdown", "as_markdown", is_flag=True, help="The table as Markdown.")
@click.option("--all", "show_all", is_flag=True, help="Show every variant, not only the first 15 rows.")
@click.option("--measure", is_flag=True,
              help="Convert and validate the best candidates for real (needs TensorFlow); measured top-1 replaces "
                   "the published figure in the ranking.")
@click.option("--data", type=READ_FOLDER, default=None, help="With --measure: validation images.")
@click.option("--top", type=click.IntRange(1), default=3, show_default=True, help="With --measure: how many to measure.")
@click.option("--limit", type=click.IntRange(1), default=None, help="With --measure: at most N validation images.")
@click.option("--calibration", type=READ_FOLDER, default=None,
              help="With --measure: calibration images (default ../shared/data/imagenet-calib).")
@click.option("--num-calibration", type=click.IntRange(1), default=100, show_default=True,
              help="With --measure: calibration images to use.")
@click.option("--weights", type=click.Choice(("imagenet", "none")), default="imagenet", show_default=True,
              help="With --measure: ImageNet weights found on disk (never downloaded), or random weights "
                   "(cost-only and pipeline checks: agreement, no accuracy).")
@click.option("--weights-dir", type=READ_FOLDER, default=None,
              help="Folder holding Keras's weight files by their own names (default: $EDGEMNV2_WEIGHTS_DIR, "
                   "../shared/models, the Keras cache).")
@sweep_options
@json_option
def fit_cmd(device: str | None, device_file: Path | None, max_latency_ms: float | None, max_ram: int | None,
            max_flash: int | None, schedule: str, no_external_ram: bool, alphas: str | None, resolutions: str | None,
            per_tensor: bool, plot: Path | None, as_markdown: bool, show_all: bool, measure: bool,
            data: Path | None, top: int, limit: int | None, calibration: Path | None, num_calibration: int,
            weights: str, weights_dir: Path | None, out_dir: Path, executor: str, ray_address: str | None,
            as_json: bool) -> None:
    """Which MobileNetV2 (alpha 0.35-1.4 x input 96-224) gives the best accuracy that fits a device?

    Every variant is profiled from its spec (no TensorFlow, well under a second in all), checked against
    the device's RAM and flash and your limits, and the ones that fit are ranked by the family's published
    ImageNet top-1 (TF-Slim / Keras table). Exit 3 when nothing fits (the report is printed first).

    \b
    Examples:
      edgemnv2 fit --device esp32-s3 --max-latency-ms 500
      edgemnv2 fit --device stm32h7 --max-ram 768K --plot stm32h7.png
      edgemnv2 fit --device rpi4 --json
      edgemnv2 fit --device rpi4 --measure --data ../shared/data/imagenet-val --top 5
    """
    from edgemnv2 import fit as fit_lib

    if as_json and as_markdown:
        raise InputError("choose one of --json and --markdown")
    alpha_grid = _floats(alphas, "--alpha") or ALPHAS
    res_grid = tuple(int(r) for r in _floats(resolutions, "--resolution") or RESOLUTIONS)
    if measure and data is None:
        raise InputError("--measure needs --data DIR (the images to validate on)")
    if not measure and data is not None:
        raise InputError("--data is for --measure; add --measure to convert and validate the candidates")
    if plot is not None:
        from edgemnv2.convert import ensure_writable

        ensure_writable(plot, example="fit.png")
    limits = fit_lib.Limits(max_latency_ms, max_ram, max_flash, schedule, not no_external_ram)
    report = fit_lib.fit(device, device_file=device_file, limits=limits, alphas=alpha_grid, resolutions=res_grid,
                         per_tensor=per_tensor)
    if measure:
        from edgemnv2 import sweep

        chosen = fit_lib.plan_measurement(report, top, weights, weights_dir)  # what it skips is in the report
        candidates = [sweep.candidate(v.alpha, v.resolution, weights, num_calibration=num_calibration,
                                      **({"per_tensor": True} if v.per_tensor else {})) for v in chosen.variants]
        inputs = sweep.SweepInputs(data, calibration, limit, weights_dir)
        swept = run_and_print(candidates, inputs, out_dir, executor, ray_address)
        report = fit_lib.apply_sweep(report, swept, chosen)
    if plot is not None:
        try:
            fit_lib.render_plot(report, plot)
        except ImportError:
            raise InputError("--plot needs matplotlib (pip install 'edgemnv2[plot]')") from None
        click.echo(f"plot written to {plot}", err=True)
    limit = None if show_all or as_json else 15
    if as_json:
        emit_json(fit_lib.report_json(report), fit_lib.SCHEMA_VERSION)
    elif as_markdown:
        click.echo(fit_lib.render_markdown(report, limit))
    else:
        click.echo(fit_lib.render_table(report, limit))
    if report.best is None and not any(r.fits for r in report.rows):
        raise GateFailed(f"no MobileNetV2 variant fits {report.device.key}")


@click.command("sweep")
@click.argument("spec", type=READ_FILE)
@sweep_options
@json_option
def sweep_cmd(spec: Path, out_dir: Path, executor: str, ray_address: str | None, as_json: bool) -> None:
    """Convert and validate every candidate of SPEC (a TOML grid of variants x convert options).

    Candidates run in parallel on Ray (local, or the cluster at --ray-address / $RAY_ADDRESS), or one after
    another without Ray. Finished candidates are cached by content in --out-dir; one candidate's failure is
    reported and the others go on. Exit 1 when any candidate failed (the table is printed first).

    \b
    SPEC example:
      data = "../shared/data/imagenet-val"      # relative to the spec file
      limit = 50
      [grid]
      alpha = [1.0]
      resolution = [96, 128]
      per_tensor = [false, true]
      calibration_method = ["mse", "minmax"]
    """
    from edgemnv2 import sweep
    from edgemnv2.errors import EdgeMNV2Error

    candidates, inputs = sweep.load_spec(spec)
    report = run_and_print(candidates, inputs, out_dir, executor, ray_address)
    if as_json:
        emit_json(report, sweep.SCHEMA_VERSION)
    else:
        click.echo(sweep.render_table(report))
    if report.failed:
        raise EdgeMNV2Error(f"{len(report.failed)} of {len(report.results)} candidates failed; first: "
                            f"{report.failed[0].candidate.name}: {report.failed[0].error}")
