"""Every `edgemnv2 ...` command a user is shown parses with the real CLI: the top-level README's tour (which must
also run as written from a fresh clone: each file it reads exists beside the checkout or is written by an
earlier step) and the README of every `export` target. Parsing is click's own `make_context` — unknown
options, missing required ones and bad values fail — and nothing runs."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from edgemnv2.cli import cli
from edgemnv2.deploy.export import TARGETS, ExportRequest, export_project

REPO = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
SPAN = re.compile(r"`(edgemnv2 [^`]+)`")


def parse(line: str) -> tuple[click.Command, click.Context]:
    """The (sub)command and its parsed context, down through groups (`edgetpu check`); raises click's errors."""
    argv = shlex.split(line, comments=True)
    assert argv[0] == "edgemnv2", line
    command: click.Command = cli
    ctx = command.make_context("edgemnv2", argv[1:])
    while isinstance(command, click.Group):
        rest = [*ctx._protected_args, *ctx.args] if hasattr(ctx, "_protected_args") else [*ctx.protected_args,
                                                                                              *ctx.args]
        if not rest and command.invoke_without_command:  # `edgemnv2 devices` lists, `devices calibrate` fits
            break
        name, sub, rest = command.resolve_command(ctx, rest)
        assert sub is not None, f"{line}: no command {name!r}"
        command, ctx = sub, sub.make_context(name, rest, parent=ctx)
    return command, ctx


def fenced_commands(text: str) -> list[str]:
    """`edgemnv2 ...` lines of the fenced blocks (a `$ ` prompt or `cmd && ` before it dropped)."""
    lines = []
    for block in FENCE.findall(text):
        for line in block.splitlines():
            for part in line.removeprefix("$ ").split(" && "):
                if part.strip().startswith("edgemnv2 "):
                    lines.append(part.strip())
    return lines


def _check(lines: list[str], where: str) -> None:
    failures = []
    for line in lines:
        try:
            parse(line)
        except click.ClickException as exc:
            failures.append(f"{line}\n    -> {exc.format_message()}")
    assert not failures, f"{where}: commands that do not parse:\n" + "\n".join(failures)


def test_the_parser_catches_what_a_user_would_hit():
    command, ctx = parse("edgemnv2 edgetpu check m.tflite --ops")
    assert command.name == "check" and ctx.params["show_ops"] is True
    for bad in ("edgemnv2 bench --port P --model m.tflite --images d",        # -o is required
                "edgemnv2 deploy --target rpi",                                # --host, --model
                "edgemnv2 export --target pico --model m.tflite -o d --bogus",
                "edgemnv2 build . --kernels cmsis-nn|reference"):
        with pytest.raises(click.ClickException):
            parse(bad)


def _tour() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index("## Start here")
    return text[start:text.index("\n## ", text.index("## A short tour"))]


def test_readme_tour_parses_and_runs_from_a_fresh_clone():
    """Each command parses; each file or folder it reads is in the clone or ../shared, or an earlier step wrote it."""
    tour = _tour()
    lines = fenced_commands(tour) + SPAN.findall(tour[tour.index("## A short tour"):])
    assert len(lines) >= 6, lines
    _check(lines, "README.md")
    written: set[str] = set()
    missing = []
    for line in lines:
        command, ctx = parse(line)
        for param in command.params:
            value = ctx.params.get(param.name or "")
            if param.name == "output" and value is not None:
                written.add(str(value))
            elif isinstance(param.type, click.Path) and value is not None:
                if str(value) not in written and not (REPO / value).exists():
                    missing.append(f"{line}: {param.name} = {value}")
    assert not missing, "the tour reads files that nothing before it makes:\n" + "\n".join(missing)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, shared_dir: Path) -> dict[str, str]:
    """README.md of every export target, rendered from Coral's small uint8 MobileNetV1."""
    model = shared_dir / "models" / "mobilenet_v1_0.25_128_quant.tflite"
    root = tmp_path_factory.mktemp("exports")
    readmes = {}
    for target in TARGETS:
        export_project(ExportRequest(target=target, model=model, out=root / target))
        readmes[target] = (root / target / "README.md").read_text(encoding="utf-8")
    return readmes


@pytest.mark.parametrize("target", list(TARGETS))
def test_every_command_in_an_exported_readme_parses(exported: dict[str, str], target: str):
    text = exported[target]
    lines = SPAN.findall(text) + fenced_commands(text)
    if target in ("android", "ios"):   # app code only: no edgemnv2 command to show
        assert not lines
        return
    assert any(line.startswith("edgemnv2 bench ") for line in lines) or target == "linux-agent", lines
    _check(lines, f"export --target {target} README.md")


def test_the_linux_agent_readme_deploys_with_the_real_options(exported: dict[str, str]):
    (deploy,) = [line for line in SPAN.findall(exported["linux-agent"]) if line.startswith("edgemnv2 deploy ")]
    _, ctx = parse(deploy)
    assert ctx.params["host_text"] and ctx.params["model"].name == "mobilenet_v1_0.25_128_quant.tflite"
