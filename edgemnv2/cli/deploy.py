"""`edgemnv2 edgetpu check|compile` and `edgemnv2 deploy`: thin click wrappers over edgemnv2.deploy."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from edgemnv2 import json_versions
from edgemnv2.cli.options import READ_FILE, emit_json, json_option, output_option
from edgemnv2.errors import GateFailed, InputError


# ---------------------------------------------------------------- edgetpu

@click.group("edgetpu")
def edgetpu_group() -> None:
    """Will the Coral Edge TPU run a model? Static check, or the real compiler when installed."""


def _emit(report, show_ops: bool, as_json: bool) -> None:
    from edgemnv2.deploy import edgetpu
    from edgemnv2.deploy.edgetpu import render_text, report_json

    if as_json:
        emit_json(report_json(report), edgetpu.SCHEMA_VERSION)
    else:
        click.echo(render_text(report, show_ops))


def _gate(report, strict: bool) -> None:
    if strict and (report.cpu_ops or report.fits_cache is False):
        raise GateFailed(f"--strict: {report.verdict}")


@edgetpu_group.command("check")
@click.argument("model", type=READ_FILE)
@click.option("--ops", "show_ops", is_flag=True,
              help="List every operator: TPU, or CPU before/after the TPU segment, with the compiler's status and why.")
@click.option("--compiler-version", default=None, metavar="N",
              help="Partition as this Edge TPU Compiler version does: 16 (default, the current release) keeps "
                   "unsupported ops in front of the model on the CPU and starts the TPU segment after them; 15 "
                   "sends the first unsupported op and everything after it to the CPU.")
@click.option("--strict", is_flag=True,
              help="Exit 3 when any op runs on the CPU or parameters stream from host memory.")
@click.option("--rules", type=READ_FILE, default=None,
              help="Use another rules file instead of the packaged edgetpu_ops.toml.")
@click.option("--against", type=READ_FILE, default=None, metavar="COMPILED.tflite",
              help="Hold the prediction against MODEL_edgetpu.tflite made by edgetpu_compiler: lists every op the "
                   "two place differently.")
@json_option
def check_cmd(model: Path, show_ops: bool, compiler_version: str | None, strict: bool, rules: Path | None,
              against: Path | None, as_json: bool) -> None:
    """Predict how edgetpu_compiler partitions MODEL.tflite, from Coral's rules (no compiler needed).

    Reports which ops run on the Edge TPU, the CPU ops before and after the TPU segment, the first CPU op
    and why, the tensors crossing the boundary, and parameter data against the ~8 MB on-chip cache (what
    streams from host memory). An already compiled *_edgetpu.tflite is read as the compiler left it.
    --json carries schema_version and every op's placement.
    """
    from edgemnv2.deploy import edgetpu

    loaded = edgetpu.load_rules(rules) if rules else None
    report = edgetpu.check_model(model, loaded, compiler_version)
    if against is not None:
        report = dataclasses.replace(report, against=edgetpu.compare(report, edgetpu.check_model(against, loaded)))
    _emit(report, show_ops, as_json)
    _gate(report, strict)


@edgetpu_group.command("compile", context_settings={"ignore_unknown_options": True})
@click.argument("model", type=READ_FILE)
@click.argument("compiler_args", nargs=-1, type=click.UNPROCESSED)
@output_option("Folder where edgetpu_compiler writes *_edgetpu.tflite (default: the current folder).", old=("--out-dir",))
@click.option("--strict", is_flag=True, help="Exit 3 when any op stays on the CPU or parameters are streamed.")
@json_option
def compile_cmd(model: Path, compiler_args: tuple[str, ...], output: Path | None, strict: bool, as_json: bool) -> None:
    """Compile MODEL.tflite with edgetpu_compiler and report its answer like `check` does.

    Options after `--` go to edgetpu_compiler unchanged, e.g. `edgemnv2 edgetpu compile m.tflite -- -a -m 13`.
    """
    from edgemnv2.deploy import edgetpu

    if output is not None:
        output.mkdir(parents=True, exist_ok=True)
    report, _log, text = edgetpu.compile_model(model, list(compiler_args), output)
    if not as_json:
        click.echo(text.rstrip(), err=True)
    _emit(report, False, as_json)
    _gate(report, strict)


# ---------------------------------------------------------------- deploy

def _agent_files() -> tuple[tuple[Path, str], ...]:
    try:
        from edgemnv2.serial import agent_files
    except ImportError as exc:
        raise InputError(f"the linux agent is not available in this installation ({exc})") from exc
    return tuple((Path(local), name) for name, local in agent_files().items())


@click.command("deploy")
@click.option("--target", required=True, metavar="BOARD",
              help="rpi | coral-devboard, or a board key of `edgemnv2 devices` (rpi4, rpi5, rpi-zero2w).")
@click.option("--host", "host_text", required=True, metavar="USER@HOST", help="The board, as for ssh.")
@click.option("--model", type=READ_FILE, required=True, help="The .tflite to deploy.")
@click.option("--labels", type=READ_FILE, default=None, help="Labels file copied next to it.")
@click.option("--port", type=click.IntRange(1, 65535), default=22, show_default=True, help="ssh port.")
@click.option("--identity", type=READ_FILE, default=None, help="ssh private key (ssh -i).")
@click.option("--known-hosts", type=READ_FILE, default=None,
              help="known_hosts file holding the board's host key (default: ~/.ssh/known_hosts).")
@click.option("--dest", default="edgemnv2", show_default=True, help="Folder on the board (relative = under home).")
@click.option("--python", "python", default="python3", show_default=True,
              help="Python on the board, e.g. a venv's VENV/bin/python.")
@click.option("--install/--no-install", default=True, show_default=True,
              help="Install the TFLite runtime when it does not import (it is checked first either way).")
@click.option("--systemd", is_flag=True, help="Install and start a systemd unit running the agent (needs sudo -n).")
@click.option("--serial-port", default="/dev/ttyGS0", show_default=True,
              help="Serial device the agent serves when run by the systemd unit.")
@click.option("--min-free", "min_free_mb", type=click.FloatRange(0), default=20.0, show_default=True,
              help="MiB that must stay free on the board after copying.")
@click.option("--runs", "smoke_runs", type=click.IntRange(1), default=1, show_default=True,
              help="Inferences in the smoke run.")
@click.option("--transport", type=click.Choice(["auto", "ssh", "mdt"]), default="auto", show_default=True,
              help="auto uses mdt for a Coral Dev Board when mdt is installed, else ssh.")
@click.option("--connect-timeout", type=click.IntRange(1), default=10, show_default=True, help="Seconds.")
@click.option("--dry-run", is_flag=True, help="Print every command instead of running it.")
@json_option
def deploy_cmd(target: str, host_text: str, model: Path, labels: Path | None, port: int, identity: Path | None,
               known_hosts: Path | None, dest: str, python: str, install: bool, systemd: bool, serial_port: str,
               min_free_mb: float,
               smoke_runs: int, transport: str, connect_timeout: int, dry_run: bool, as_json: bool) -> None:
    """Copy MODEL, labels and the linux agent to a board, install the runtime, run one inference there.

    Uses ssh/scp with host-key checking (or mdt on a Coral Dev Board) and prints the on-board latency.
    """
    from edgemnv2.deploy import remote

    config = remote.DeployConfig(
        target=target, host=remote.Host.parse(host_text), model=model, labels=labels, dest=dest, port=port,
        identity=identity, known_hosts=known_hosts, python=python, install=install, systemd=systemd,
        serial_port=serial_port, min_free_mb=min_free_mb, smoke_runs=smoke_runs, transport=transport, connect_timeout=connect_timeout,
        agent_files=_agent_files())
    echo = (lambda line: click.echo(line, err=True)) if (as_json or not dry_run) else click.echo
    result = remote.deploy(config, dry_run=dry_run, echo=echo)
    if as_json:
        emit_json(result, json_versions.DEPLOY)
        return
    if dry_run:
        return
    click.echo(f"Deployed {len(result.files)} files to {result.host}:{result.dest} via {result.transport}; "
               f"runtime {result.runtime}" + (f"; systemd unit {remote.UNIT_NAME} enabled" if systemd else ""))
    smoke = result.smoke or {}
    spread = smoke.get("latency_us") if isinstance(smoke.get("latency_us"), dict) else {}
    extra = ", ".join(f"{k} {v / 1000:.2f} ms" for k, v in spread.items() if k != "mean" and isinstance(v, (int, float)))
    latency = f"{result.latency_ms:.2f} ms" if result.latency_ms is not None else "latency not reported"
    click.echo(f"Smoke inference on the board ({smoke.get('runtime', '?')}, {smoke.get('smoke', smoke_runs)} runs): "
               f"mean {latency}" + (f" ({extra})" if extra else ""))
