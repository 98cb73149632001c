"""`edgemnv2 bench` and `edgemnv2 board-sim`: thin click wrappers over `edgemnv2.serial`."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click

from edgemnv2 import json_versions
from edgemnv2.cli.options import (
    READ_FILE, READ_FOLDER, READ_PATH, SEED, BaudRate, emit_json, json_option, output_option, progress_enabled,
)
from edgemnv2.errors import BoardError


@click.command("bench")
@click.option("--port", required=True, help="Serial port of the board (/dev/ttyACM0, COM3, a board-sim pty, "
                                             "or a pyserial URL such as socket://host:port).")
@click.option("--baud", type=BaudRate(), default=921600, show_default=True, help="UART baud rate (sets the timeouts and "
                                                                          "the wire limit).")
@click.option("--model", required=True, type=READ_FILE, help="The .tflite model the board runs.")
@click.option("--images", required=True, type=READ_FOLDER, help="Folder of test images.")
@click.option("--count", type=int, default=None, help="Use this many images (default: all).")
@click.option("--warmup", type=int, default=0, show_default=True, help="Untimed inferences before the run.")
@click.option("--timeout", type=float, default=None,
              help="Seconds without progress (an ACK or a result) before the board counts as dead; bounds every "
                   "wait [default: 10 + 3 × the input's wire time].")
@output_option("JSONL file: a header line (model, runtime, images, options), then one line per result.",
               old=("--out",), required=True)
@click.option("--resume", is_flag=True, help="Keep the results already in --output (written for this model, runtime "
                                             "and images) and send only the missing images.")
@click.option("--force", is_flag=True, help="Replace an existing --output (without it, or --resume, bench refuses).")
@click.option("--device", "-d", default=None, metavar="KEY",
              help="Device profile whose per-layer estimate goes beside the measured times (see `edgemnv2 devices`; "
                   "qemu-an386 for board-sim --firmware --icount on mps2-an386).")
@click.option("--device-file", type=click.Path(path_type=Path), default=None,
              help="Or your own profile, e.g. one written by `edgemnv2 devices calibrate`.")
@json_option
def bench_cmd(port: str, baud: int, model: Path, images: Path, count: int | None, warmup: int,
              timeout: float | None, output: Path, resume: bool, force: bool, device: str | None,
              device_file: Path | None, as_json: bool) -> None:
    """Time MODEL on a board over serial and check every output against the host.

    \b
    Examples:
      edgemnv2 bench --port /dev/ttyACM0 --model m.tflite --images ../shared/data/imagenet-calib -o r.jsonl
      edgemnv2 bench --port /dev/pts/5 --model m.tflite --images imgs --count 20 --warmup 2 --json -o r.jsonl
      edgemnv2 bench ... -o r.jsonl --resume     # after a board died mid-run
      edgemnv2 bench --port /dev/pts/5 --model m.tflite --images imgs -d qemu-an386 -o r.jsonl   # vs the estimate
    """
    from tqdm import tqdm

    from edgemnv2.serial.bench import BenchOptions, render_report, run_bench

    options = BenchOptions(port=port, model=model, images=images, out=output, baud=baud, count=count, warmup=warmup,
                           timeout=timeout, resume=resume, force=force, device=device, device_file=device_file)
    bar: list[Any] = []

    def on_start(total: int) -> None:
        bar.append(tqdm(total=total, desc="bench", unit="img", disable=not progress_enabled(), file=sys.stderr))

    def on_result(record: dict[str, Any]) -> None:
        if bar:
            bar[0].update(1)
            if "latency_us" in record:
                bar[0].set_postfix(latency_ms=f"{record['latency_us'] / 1000:.1f}", refresh=False)

    try:
        report = run_bench(options, on_result=on_result, on_start=on_start)
    except BoardError as exc:
        partial = getattr(exc, "report", None)
        if bar:
            bar[0].close()
        if partial is not None:
            emit_json(partial, json_versions.BENCH) if as_json else click.echo(render_report(partial))
        raise
    if bar:
        bar[0].close()
    emit_json(report, json_versions.BENCH) if as_json else click.echo(render_report(report))


@click.command("board-sim")
@click.option("--model", type=READ_FILE, default=None,
              help="The .tflite model to serve with the Python board (or use --firmware).")
@click.option("--firmware", type=READ_PATH, default=None,
              help="Run the real C firmware instead: a project from `edgemnv2 build` (or its ELF), in QEMU for "
                   "mps2-an386/mps3-an547, natively for host.")
@click.option("--icount", is_flag=True, help="With --firmware on QEMU: -icount shift=0, so cycles = instructions.")
@click.option("--kernels", type=click.Choice(["cmsis-nn", "reference"]), default=None,
              help="With --firmware PROJECT: which build to run [default: the newest].")
@click.option("--runtime", type=click.Choice(["tflm", "litert"]), default="tflm", show_default=True,
              help="tflm: TensorFlow Lite Micro kernels (as on a microcontroller); litert: LiteRT (Linux boards).")
@click.option("--baud", type=BaudRate(zero=True), default=921600, show_default=True,
              help="Simulated UART speed; 0 = unthrottled.")
@click.option("--fault-rate", type=float, default=0.0, show_default=True,
              help="Probability per frame of a fault: corrupted or dropped byte, stall, or reset.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the fault injector.")
@click.option("--max-payload", type=int, default=16384, show_default=True, help="Largest INPUT chunk the board takes.")
@click.option("--window", type=int, default=4, show_default=True, help="INPUT frames the host may have unacknowledged.")
@click.option("--slots", type=click.IntRange(1, 2), default=2, show_default=True,
              help="Inputs held at once (2 = upload the next while computing).")
def board_sim_cmd(model: Path | None, firmware: Path | None, icount: bool, kernels: str | None, runtime: str,
                  baud: int, fault_rate: float, seed: int, max_payload: int, window: int, slots: int) -> None:
    """A virtual board on a pseudo-terminal: prints its path, then serves until killed.

    \b
    Example:
      edgemnv2 board-sim --model m.tflite --runtime tflm &     # prints e.g. /dev/pts/5
      edgemnv2 bench --port /dev/pts/5 --model m.tflite --images imgs -o r.jsonl
      edgemnv2 board-sim --firmware fw --icount &              # the built firmware in QEMU
    """
    from edgemnv2.errors import InputError

    if (model is None) == (firmware is None):
        raise InputError("give exactly one of --model (the Python board) or --firmware (the built C firmware)")
    if firmware is not None:
        _serve_firmware(firmware, icount, kernels)
        return
    if icount or kernels:
        raise InputError("--icount and --kernels apply to --firmware")
    from edgemnv2.serial.sim import SimOptions, VirtualBoard

    if baud < 0:
        raise InputError(f"--baud must be 0 (unthrottled) or positive, got {baud}")
    if not 1 <= window <= 255 or not 64 <= max_payload <= 1 << 24:
        raise InputError("--window must be 1..255 and --max-payload 64..16777216")
    options = SimOptions(runtime=runtime, baud=baud, fault_rate=fault_rate, seed=seed, max_payload=max_payload,
                         window=window, input_slots=slots)
    board = VirtualBoard(model, options)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    path = board.start()
    click.echo(path)
    sys.stdout.flush()
    click.echo(f"board-sim: serving {model} with {board.runner.runtime}, "
               f"{'unthrottled' if not baud else f'{baud} baud'} on {path} (Ctrl-C to stop)", err=True)
    try:
        stop.wait()
    finally:
        board.stop()
        faults = ", ".join(f"{k} {v}" for k, v in sorted(board.faults.items())) or "none"
        click.echo(f"board-sim: {board.engine.inferences} inferences, faults injected: {faults}", err=True)


def _serve_firmware(firmware: Path, icount: bool, kernels: str | None) -> None:
    """board-sim --firmware: print the pty path, serve until SIGINT/SIGTERM or the firmware exits."""
    from edgemnv2.firmware.emulator import EmulatorOptions, FirmwareBoard

    board = FirmwareBoard(firmware, EmulatorOptions(icount=icount, kernels=kernels))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        path = board.start()
        click.echo(path)
        sys.stdout.flush()
        how = f"QEMU {board.spec.qemu_machine}{' -icount shift=0' if icount else ''}" if board.spec.bare_metal \
            else "natively"
        click.echo(f"board-sim: running {board.elf} {how} on {path} (Ctrl-C to stop)", err=True)
        threading.Thread(target=lambda: (board.wait(), stop.set()), daemon=True).start()
        stop.wait()
        status = board.proc.poll() if board.proc else None
    finally:
        board.stop()
    if status is not None:
        raise BoardError(f"the firmware exited by itself with status {status}")
