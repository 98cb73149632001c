"""The `edgemnv2` command: a thin click layer over the library.

Command modules are imported only when their command runs, so `edgemnv2 profile` and `edgemnv2 bench`
start fast and never import TensorFlow.
"""

from __future__ import annotations

import importlib
import sys

import click

from edgemnv2 import __version__
from edgemnv2.cli.options import CliContext, handle_errors

# command name -> "module:attribute"; each module is edgemnv2/cli/<group>.py
COMMANDS: dict[str, str] = {
    "run": "edgemnv2.cli.pipeline:run_cmd",
    "convert": "edgemnv2.cli.convert:convert_cmd",
    "validate": "edgemnv2.cli.validate:validate_cmd",
    "profile": "edgemnv2.cli.profile:profile_cmd",
    "devices": "edgemnv2.cli.profile:devices_cmd",
    "fit": "edgemnv2.cli.fit:fit_cmd",
    "sweep": "edgemnv2.cli.fit:sweep_cmd",
    "bench": "edgemnv2.cli.bench:bench_cmd",
    "board-sim": "edgemnv2.cli.bench:board_sim_cmd",
    "export": "edgemnv2.cli.export:export_cmd",
    "build": "edgemnv2.cli.build:build_cmd",
    "edgetpu": "edgemnv2.cli.deploy:edgetpu_group",
    "deploy": "edgemnv2.cli.deploy:deploy_cmd",
    "flash": "edgemnv2.cli.flash:flash_cmd",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("edgemnv2.cli"):
                return None  # command not built yet in this checkout
            raise
        return with_global_options(getattr(module, attr))


def _more_verbose(ctx: click.Context, _param: click.Parameter, count: int) -> None:
    if count:
        from edgemnv2 import logs

        root = ctx.find_root().obj
        root.verbose += count
        logs.configure(root.verbose)


def _debug(ctx: click.Context, _param: click.Parameter, flag: bool) -> None:
    if flag:
        ctx.find_root().obj.debug = True


def with_global_options(command: click.Command) -> click.Command:
    """`-v` and `--debug` also after the subcommand (`edgemnv2 profile X --debug`), on every (sub)command."""
    names = {opt for param in command.params for opt in getattr(param, "opts", ())}
    if "--debug" not in names:
        command.params += [
            click.Option(["-v", "--verbose"], count=True, expose_value=False, callback=_more_verbose,
                         help="More diagnostics on stderr (same as before the command)."),
            click.Option(["--debug"], is_flag=True, expose_value=False, callback=_debug,
                         help="Show the full traceback when the command fails."),
        ]
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            with_global_options(sub)
    return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgemnv2")
@click.option("-v", "--verbose", count=True, help="More diagnostics on stderr (-v also shows TensorFlow's own log).")
@click.option("--debug", is_flag=True, help="Show the full traceback when a command fails.")
@click.pass_context
def cli(ctx: click.Context, verbose: int, debug: bool) -> None:
    """MobileNetV2 on the edge: convert to int8 TFLite, validate, profile, time on the board, deploy.

    \b
    Exit codes: 0 success, 1 error, 2 usage, 3 a quality gate or fit check failed,
    4 the board or remote host failed mid-run (partial results kept).
    """
    ctx.obj = CliContext(verbose=verbose, debug=debug)
    from edgemnv2 import logs

    logs.configure(verbose)


def main() -> None:
    """Console-script entry point: every failure, usage errors included, becomes one line and its exit code."""
    with handle_errors(debug="--debug" in sys.argv[1:]):
        code = cli.main(prog_name="edgemnv2", standalone_mode=False)
    sys.exit(code if isinstance(code, int) else 0)
