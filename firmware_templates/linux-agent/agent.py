#!/usr/bin/env python3
"""edgemnv2 Linux agent: serve the edgemnv2 serial protocol (docs/protocol.md) from a Linux board.

Runs on a Raspberry Pi or Coral Dev Board with only a TFLite runtime (ai-edge-litert or tflite-runtime;
the Edge TPU delegate when libedgetpu is present), numpy and pyserial. `protocol.py` and `board.py` are
copied beside this file by `edgemnv2 export --target linux-agent` / `edgemnv2 deploy`.

    python3 agent.py --port /dev/ttyGS0 --model model.tflite          # serve until stopped
    python3 agent.py --model model.tflite --smoke 20                  # 20 local inferences, one JSON line
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import board  # noqa: E402  (copied beside this file)
import protocol  # noqa: E402


class AgentError(Exception):
    """A problem the operator can fix; printed as one line, exit code 1."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Serve an int8 .tflite model over the edgemnv2 serial protocol.")
    parser.add_argument("--model", required=True, type=Path, help="the .tflite model to run")
    parser.add_argument("--port", help="serial device to serve on (/dev/ttyGS0 for USB gadget serial, /dev/serial0)")
    parser.add_argument("--baud", type=int, default=921600, help="UART baud rate (default 921600)")
    parser.add_argument("--runtime", choices=["auto", "litert", "tflite_runtime"], default="auto",
                        help="TFLite runtime to use (default: the first installed)")
    parser.add_argument("--edgetpu", choices=["auto", "on", "off"], default="auto",
                        help="use the Edge TPU delegate: auto = when libedgetpu loads")
    parser.add_argument("--name", default=platform.node() or "linux-agent", help="board name announced in INFO")
    parser.add_argument("--max-payload", type=int, default=16384, help="largest INPUT chunk accepted")
    parser.add_argument("--window", type=int, default=4, help="INPUT frames the host may have unacknowledged")
    parser.add_argument("--smoke", type=int, metavar="N", help="run N local inferences on a zero input, print one "
                                                               "JSON line and exit (no serial port needed)")
    args = parser.parse_args(argv)
    if args.smoke is None and not args.port:
        parser.error("--port is required unless --smoke N is given")
    return args


def open_runner(args: argparse.Namespace) -> tuple[board.InterpreterRunner, str]:
    if not args.model.is_file():
        raise AgentError(f"model file {args.model} does not exist")
    try:
        interpreter, runtime = board.load_interpreter(args.model, args.runtime, args.edgetpu)
        return board.InterpreterRunner(interpreter, board.cpu_hz()), runtime
    except board.InferenceFailed as exc:
        raise AgentError(str(exc)) from None
    except (ValueError, RuntimeError) as exc:
        raise AgentError(f"cannot load {args.model}: {str(exc).strip().splitlines()[0]}") from None


def smoke(args: argparse.Namespace) -> dict:
    """N inferences on a zero input: proves the runtime (and Edge TPU) work, and times them."""
    if args.smoke < 1:
        raise AgentError("--smoke needs a count of at least 1")
    runner, runtime = open_runner(args)
    zero = bytes(runner.input.nbytes)
    latencies = sorted(runner(zero).micros for _ in range(args.smoke))
    return {"smoke": args.smoke, "runtime": runtime, "board": args.name,
            "model_sha256": board.file_sha256(args.model).hex(),
            "input": {"dtype": runner.input.dtype, "shape": list(runner.input.shape)},
            "output": {"dtype": runner.output.dtype, "shape": list(runner.output.shape)},
            "latency_us": {"mean": round(sum(latencies) / len(latencies), 1),
                           "p50": latencies[len(latencies) // 2], "min": latencies[0], "max": latencies[-1]}}


def serve(args: argparse.Namespace) -> None:
    import serial

    runner, runtime = open_runner(args)
    config = board.BoardConfig(board_name=args.name, runtime=runtime, model_sha256=board.file_sha256(args.model),
                               input=runner.input, output=runner.output, cpu_hz=runner.cpu_hz,
                               max_payload=args.max_payload, window=args.window, input_slots=2)
    try:
        port = serial.serial_for_url(args.port, baudrate=args.baud, timeout=0.1)
    except serial.SerialException as exc:
        raise AgentError(f"cannot open {args.port}: {exc}") from None
    write_lock = threading.Lock()

    def send(frame: bytes) -> None:
        with write_lock:
            port.write(frame)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    engine = board.BoardEngine(config, runner, send)
    engine.start()
    print(f"agent: ready on {args.port} at {args.baud} baud, model {args.model.name}, runtime {runtime}, "
          f"protocol v{protocol.PROTOCOL_VERSION}", file=sys.stderr, flush=True)
    try:
        board.serve_port(port, engine, stop)
    except serial.SerialException as exc:
        raise AgentError(f"{args.port} failed: {exc}") from None
    finally:
        engine.stop()
        port.close()
        print(f"agent: stopped after {engine.inferences} inferences", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.smoke is not None:
            print(json.dumps(smoke(args)), flush=True)
        else:
            serve(args)
    except AgentError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.exit(main())
