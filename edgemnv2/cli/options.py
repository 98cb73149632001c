"""Option decorators and output helpers shared by every command group."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import stat
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click

from edgemnv2.errors import EdgeMNV2Error, InputError

F = TypeVar("F", bound=Callable[..., Any])


@dataclasses.dataclass
class CliContext:
    verbose: int = 0
    debug: bool = False


# Top-level modules of the optional extras (pyproject.toml) → what to install when one is missing.
EXTRA_FOR_MODULE = {
    "tensorflow": ("TensorFlow", "tf"), "keras": ("TensorFlow/Keras", "tf"), "tf_keras": ("TensorFlow/Keras", "tf"),
    "h5py": ("TensorFlow/Keras", "tf"), "ai_edge_litert": ("LiteRT", "runtime"),
    "tflite_micro": ("TFLite Micro", "runtime"), "tflite_runtime": ("a TFLite runtime", "runtime"),
    "matplotlib": ("matplotlib", "plot"),
}


def error_line(exc: BaseException) -> tuple[str, int]:
    """The one line and exit code a failure ends in: library errors say what to do, a missing extra says which
    one to install, and anything else is a bug reported in one line that points at --debug."""
    if isinstance(exc, EdgeMNV2Error):
        return f"Error: {exc}", exc.exit_code
    if isinstance(exc, click.UsageError):
        where = f" (see: {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
        return f"Error: {exc.format_message()}{where}", exc.exit_code
    if isinstance(exc, click.ClickException):
        return f"Error: {exc.format_message()}", exc.exit_code
    if isinstance(exc, click.Abort):
        return "Error: aborted", 1
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] in EXTRA_FOR_MODULE:
        what, extra = EXTRA_FOR_MODULE[(exc.name or "").split(".")[0]]
        return f"Error: this command needs {what}, which is not installed: pip install 'edgemnv2[{extra}]' ({exc})", 1
    return (f"Error: unexpected {type(exc).__name__}: {exc} (a bug in edgemnv2; rerun with --debug for the "
            "traceback)"), 1


def require_modules(*names: str) -> None:
    """Fail first, in one line naming the extra, when a command's heavy dependency is not installed
    (before it looks at data or options that would fail for another reason)."""
    for name in names:
        if importlib.util.find_spec(name) is None:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


@contextlib.contextmanager
def handle_errors(debug: bool) -> Iterator[None]:
    """Turn every exception into one stderr line and an exit code (a traceback too with --debug)."""
    try:
        yield
    except BrokenPipeError:  # `edgemnv2 devices | head -1`: the reader left, nothing to report
        sys.stderr.close()
        sys.exit(1)
    except Exception as exc:  # the CLI boundary: nothing may end in a bare traceback
        if debug and not isinstance(exc, click.ClickException):
            traceback.print_exc()
        line, code = error_line(exc)
        click.echo(line, err=True)
        sys.exit(code)


class _AliasedOption(click.Option):
    """An option whose old spellings still parse but stay out of --help (one spelling is documented)."""

    def __init__(self, *args: Any, hidden_aliases: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hidden_aliases = hidden_aliases

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        shown, self.opts = self.opts, [o for o in self.opts if o not in self.hidden_aliases]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = shown


def _param_label(param: click.Parameter | None) -> str:
    if isinstance(param, click.Option) and param.opts:
        return max(param.opts, key=len)
    return param.human_readable_name if param is not None else "path"


_SPECIAL = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
            (stat.S_ISBLK, "a block device"))


class InputPath(click.ParamType):
    """A path the command reads. Reading a FIFO or a device blocks or misleads, so only a regular file (or a
    folder, where `folder` allows one) gets through; a missing path is left to the reader, which names it."""

    def __init__(self, folder: bool | None = False) -> None:
        self.folder = folder  # False: a file · True: a folder · None: either (a Keras SavedModel is a folder)
        self.name = {False: "file", True: "folder", None: "path"}[folder]

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Path:
        path = Path(value)
        label = _param_label(param)
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            return path
        except OSError as exc:
            raise InputError(f"cannot read {label} {path}: {exc.strerror or exc}") from None
        if stat.S_ISDIR(mode):
            if self.folder is False:
                raise InputError(f"{label} {path} is a folder; give a file")
        elif stat.S_ISREG(mode):
            if self.folder is True:
                raise InputError(f"{label} {path} is a file; give a folder")
        else:
            kind = next((name for test, name in _SPECIAL if test(mode)), "not a regular file")
            want = {False: "a regular file", True: "a folder", None: "a regular file or a folder"}[self.folder]
            raise InputError(f"{label} {path} is {kind}; give {want}")
        return path


READ_FILE, READ_FOLDER, READ_PATH = InputPath(False), InputPath(True), InputPath(None)

PLOT_FORMATS = ("png", "svg", "pdf")  # written by matplotlib without extra libraries, chosen by the extension


class PlotPath(click.ParamType):
    """Where a chart goes: its extension picks the format, so an unknown one is refused before any work."""

    name = "FILE.png|svg|pdf"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Path:
        path = Path(value)
        if path.suffix.lower().lstrip(".") not in PLOT_FORMATS:
            self.fail(f"{str(path)!r}: the chart format comes from the extension; use one of "
                      + ", ".join(f".{f}" for f in PLOT_FORMATS), param, ctx)
        return path


BAUD_MIN, BAUD_MAX = 300, 12_000_000  # slowest standard UART rate .. fastest USB-serial bridges (FT232H)


class BaudRate(click.ParamType):
    """A UART rate UARTs and USB-serial bridges can run; `zero` also allows 0 (board-sim: unthrottled)."""

    def __init__(self, zero: bool = False) -> None:
        self.zero = zero
        self.name = "BAUD"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        rate = value if isinstance(value, int) else click.INT.convert(value, param, ctx)
        if (rate == 0 and self.zero) or BAUD_MIN <= rate <= BAUD_MAX:
            return rate
        self.fail(f"{rate} baud is out of range: {BAUD_MIN}..{BAUD_MAX:,}" + (" (or 0 for unthrottled)" if self.zero
                                                                             else ""), param, ctx)


COUNT = click.IntRange(min=1)     # images, classes, jobs, runs: at least one
SEED = click.IntRange(min=0)      # numpy's generators take non-negative seeds


def output_option(help: str, *, old: tuple[str, ...] = (), required: bool = False, default: Any = None,
                  show_default: bool = False, dest: str = "output") -> Callable[[F], F]:
    """`-o/--output`, the one spelling of "where to write" on every command; `old` spellings still work.

    No default is passed unless one is given: click 8.2+ counts an explicit `default=None` as a value, and a
    required -o would then go missing silently."""
    given = {} if default is None else {"default": default}
    return click.option("-o", "--output", *old, dest, cls=_AliasedOption, hidden_aliases=old, required=required,
                        show_default=show_default, type=click.Path(path_type=Path), help=help, **given)


def model_options(func: F) -> F:
    """Which MobileNetV2: `--alpha --resolution --weights --weights-dir`, the same on `run` and `convert`."""
    from edgemnv2.models import ALPHAS, RESOLUTIONS

    options = [
        click.option("--alpha", type=float, default=None,
                     help="Width multiplier: " + ", ".join(f"{a:g}" for a in ALPHAS) + " (default 1.0)."),
        click.option("--resolution", type=int, default=None,
                     help="Input size: " + ", ".join(map(str, RESOLUTIONS)) + " (default 224)."),
        click.option("--weights", default="imagenet", show_default=True, metavar="imagenet|none|PATH",
                     help="ImageNet weights (offline first), random weights, or a weights file."),
        click.option("--weights-dir", type=READ_FOLDER, default=None,
                     help="Folder holding Keras's weight files by their own names (default: $EDGEMNV2_WEIGHTS_DIR, "
                          "then ../shared/models, then the Keras cache)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def model_spec(alpha: float | None, resolution: int | None, weights: str, weights_dir: Path | None) -> Any:
    """The `ModelSpec` that `model_options` name (1.0/224 when alpha or resolution is not given)."""
    from edgemnv2.models import ModelSpec

    return ModelSpec(1.0 if alpha is None else alpha, 224 if resolution is None else resolution, weights, weights_dir)


def json_option(func: F) -> F:
    """`--json`: print the machine-readable result on stdout instead of the table."""
    return click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")(func)


def versioned(data: Any, schema_version: int) -> dict[str, Any]:
    """`data` as a JSON object whose first key is `schema_version` (edgemnv2/json_versions.py says which).

    A report that stamps its own version must carry the one the caller names, so the two cannot drift."""
    body = to_jsonable(data)
    if not isinstance(body, dict):
        raise TypeError(f"a --json document is an object, not {type(body).__name__}")
    own = body.pop("schema_version", schema_version)
    if own != schema_version:
        raise ValueError(f"report carries schema_version {own}, the command declares {schema_version}")
    return {"schema_version": schema_version, **body}


def emit_json(data: Any, schema_version: int) -> None:
    """Print a `--json` document on stdout, `schema_version` first (dataclasses, paths, numpy converted)."""
    click.echo(json.dumps(versioned(data, schema_version), indent=2))


def to_jsonable(value: Any) -> Any:
    """Recursively convert dataclasses, Paths, tuples and numpy scalars to plain JSON types."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return value.item()
    if hasattr(value, "tolist"):  # numpy array
        return value.tolist()
    return value


def stage_lines() -> Callable[[int, int, str], None] | None:
    """A convert `on_stage` callback printing `convert [3/8] build model (2.1 s)` lines on stderr, so a conversion
    of minutes shows where it is; None when progress is not shown (see `progress_enabled`)."""
    if not progress_enabled():
        return None
    import time

    started = time.perf_counter()

    def show(number: int, total: int, name: str) -> None:
        click.echo(f"convert [{number}/{total}] {name.replace('_', ' ')} ({time.perf_counter() - started:.1f} s)",
                   err=True)

    return show


def progress_enabled() -> bool:
    """Progress bars go to stderr only when it is a terminal or verbose output was asked for."""
    ctx = click.get_current_context(silent=True)
    verbose = bool(ctx and isinstance(ctx.find_root().obj, CliContext) and ctx.find_root().obj.verbose)
    return sys.stderr.isatty() or verbose
