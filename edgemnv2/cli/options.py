"""Option decorators and output helpers shared by every command group."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click

from edgemnv2.errors import EdgeMNV2Error

F = TypeVar("F", bound=Callable[..., Any])


@dataclasses.dataclass
class CliContext:
    verbose: int = 0
    debug: bool = False


@contextlib.contextmanager
def handle_errors(debug: bool) -> Iterator[None]:
    """Turn library errors into one stderr line and the error's exit code."""
    try:
        yield
    except EdgeMNV2Error as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"Error: {exc}", err=True)
        sys.exit(exc.exit_code)


def json_option(func: F) -> F:
    """`--json`: print the machine-readable result on stdout instead of the table."""
    return click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")(func)


def emit_json(data: Any) -> None:
    """Print JSON on stdout (dataclasses, paths and numpy scalars are converted)."""
    click.echo(json.dumps(to_jsonable(data), indent=2))


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


def progress_enabled() -> bool:
    """Progress bars go to stderr only when it is a terminal or verbose output was asked for."""
    ctx = click.get_current_context(silent=True)
    verbose = bool(ctx and isinstance(ctx.find_root().obj, CliContext) and ctx.find_root().obj.verbose)
    return sys.stderr.isatty() or verbose
