"""`edgemnv2 flash`: build and flash a rendered firmware project with arduino-cli, idf.py, picotool or openocd."""

from __future__ import annotations

from pathlib import Path

import click

from edgemnv2 import json_versions
from edgemnv2.cli.options import READ_FOLDER, emit_json, json_option
from edgemnv2.deploy.flash import INSTALL_HINTS, TARGETS, plan_flash, run_flash


@click.command("flash")
@click.option("--target", required=True, type=click.Choice(list(TARGETS)), help="Toolchain to drive.")
@click.option("--project", required=True, type=READ_FOLDER,
              help="Project folder (from `edgemnv2 export`; for stm32 a folder with the built .elf/.bin).")
@click.option("--port", default=None, help="Serial port to upload through (arduino: required; esp-idf: optional).")
@click.option("--fqbn", default=None, help="arduino-cli board id (default: the exported board's).")
@click.option("--board", default=None, help="Board key, as in `edgemnv2 devices` (stm32: nucleo-h743zi).")
@click.option("--tool", default=None, help="stm32: openocd or st-flash (default: whichever is installed).")
@click.option("--dry-run", is_flag=True, help="Print the commands without running them.")
@json_option
def flash_cmd(target: str, project: Path, port: str | None, fqbn: str | None, board: str | None, tool: str | None,
              dry_run: bool, as_json: bool) -> None:
    """Build PROJECT and flash it to the board; --dry-run prints every command."""
    plan = plan_flash(target, project, port=port, fqbn=fqbn, board=board, tool=tool)
    result = run_flash(plan, dry_run=dry_run)
    if as_json:
        emit_json(result, json_versions.FLASH)
        return
    if dry_run:
        for command in result.commands:
            click.echo(command)
        for name in result.missing_tools:
            click.echo(f"note: {name} is not installed: {INSTALL_HINTS[name]}", err=True)
        return
    click.echo(f"flashed {result.project} ({result.target}, {result.board}): {result.completed} commands ran")
