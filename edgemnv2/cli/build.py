"""`edgemnv2 build`: compile an exported firmware project against TensorFlow Lite Micro (thin wrapper)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from edgemnv2 import json_versions
from edgemnv2.cli.options import COUNT, READ_FOLDER, emit_json, json_option, progress_enabled


@click.command("build")
@click.argument("project", type=READ_FOLDER)
@click.option("--tflm-dir", type=READ_FOLDER, default=None,
              help="TensorFlow Lite Micro source tree [default: $EDGEMNV2_TFLM_DIR, else ../shared/tflm].")
@click.option("--kernels", type=click.Choice(["cmsis-nn", "reference"]), default=None,
              help="Kernel set [default: cmsis-nn on Cortex-M, reference on the host].")
@click.option("-j", "--jobs", type=COUNT, default=2, show_default=True, help="Compilers run at once.")
@json_option
def build_cmd(project: Path, tflm_dir: Path | None, kernels: str | None, jobs: int, as_json: bool) -> None:
    """Build PROJECT (from `edgemnv2 export --target mps2-an386|mps3-an547|host`): the TFLM core and only the
    kernels the model registers, object files cached in the user cache; prints the ELF and its text/data/bss.
    A static-engine project (`export --engine static --target ...`) compiles its generated engine only.

    \b
    Examples:
      edgemnv2 export --target mps2-an386 --model m.tflite --out fw && edgemnv2 build fw
      edgemnv2 build fw --kernels reference        # portable kernels (about 25x slower on Cortex-M4)
    """
    from tqdm import tqdm

    from edgemnv2.firmware.build import BuildRequest, build_project

    bar: list[Any] = []

    def progress(done: int, total: int) -> None:
        if not bar:
            bar.append(tqdm(total=total, desc="compile", unit="file", file=sys.stderr,
                            disable=not progress_enabled() or total == 0))
        bar[0].n = done
        bar[0].refresh()

    try:
        result = build_project(BuildRequest(project=project, tflm_dir=tflm_dir, kernels=kernels, jobs=jobs), progress)
    finally:
        if bar:
            bar[0].close()
    if as_json:
        emit_json(result, json_versions.BUILD)
        return
    size = result.size
    click.echo(f"{result.elf}")
    click.echo(f"  {result.target}, {result.kernels} kernels: text {size.text}  data {size.data}  bss {size.bss} bytes")
    click.echo(f"  {result.sources} files ({result.compiled} compiled, {result.sources - result.compiled} cached) "
               f"in {result.seconds:.1f} s; {result.compiler}")
