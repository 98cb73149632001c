"""Wire efficiency of the serial protocol at a simulated 921600 baud, ours vs a stop-and-wait baseline.

A virtual board (real pty, pyserial on the host, both directions paced to the baud rate) with a stand-in
runner that "computes" for a fixed time, so the link is what is measured. Input: 224×224×3 int8
(150,528 bytes, 1.63 s of wire time). Ours: 16 KiB chunks, a window of 4 frames, two input slots (the next
image uploads while the current one computes). Baseline: the same link driven stop-and-wait the way the
MLPerf Tiny runner and ST's validate-on-target are, small packets, one acknowledged at a time, no overlap
of upload and compute (window 1, 1 slot, 256-byte chunks).

    python3 benchmarks/serial_wire.py [--images 6] [--baud 921600] [--compute-ms 200]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time
from pathlib import Path

from edgemnv2.serial import protocol as p
from edgemnv2.serial.bench import Streamer
from edgemnv2.serial.board import Inference
from edgemnv2.serial.runners import ModelRunner
from edgemnv2.serial.sim import SimOptions, VirtualBoard
from edgemnv2.serial.transport import Transport

INPUT = p.TensorDesc("int8", (1, 224, 224, 3), 0.0078125, -1)
OUTPUT = p.TensorDesc("int8", (1, 1000), 0.00390625, -128)


class StandInRunner(ModelRunner):
    """Sleeps `compute_s` and returns a constant output: the wire, not the model, is under test."""

    runtime = "stand-in"
    input, output = INPUT, OUTPUT

    def __init__(self, compute_s: float) -> None:
        self.compute_s = compute_s

    def __call__(self, data: bytes) -> Inference:
        time.sleep(self.compute_s)
        return Inference(bytes(OUTPUT.nbytes), int(self.compute_s * 1e6))


def measure(model: Path, baud: int, images: int, compute_s: float, window: int, slots: int,
            max_payload: int) -> dict[str, float]:
    options = SimOptions(baud=baud, window=window, input_slots=slots, max_payload=max_payload)
    jobs = [(i, os.urandom(INPUT.nbytes)) for i in range(images)]
    done: list[float] = []
    with VirtualBoard(model, options, runner=StandInRunner(compute_s)) as board, Transport(board.path, baud, write_timeout=60.0) as link:
        streamer = Streamer(link, timeout=30, max_retries=3)
        streamer.handshake(hashlib.sha256(model.read_bytes()).digest(), timeout=10)
        streamer.run(jobs, lambda ident, msg, upload_s: done.append(time.monotonic()))
        elapsed = done[-1] - streamer.first_upload
        payload = images * INPUT.nbytes
        return {"images_per_s": images / elapsed,
                "wire_limit": baud / p.BITS_PER_BYTE / INPUT.nbytes,
                "overhead_tx": (link.tx_bytes - payload) / payload,
                "overhead_rx": (link.rx_bytes - images * OUTPUT.nbytes) / payload,
                "retries": streamer.retries}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--baud", type=int, default=921600)
    parser.add_argument("--compute-ms", type=float, default=200.0, help="stand-in inference time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "stand-in.tflite"
        model.write_bytes(b"stand-in model for the wire benchmark")
        ours = measure(model, args.baud, args.images, args.compute_ms / 1000, window=4, slots=2, max_payload=16384)
        base = measure(model, args.baud, max(2, args.images // 3), args.compute_ms / 1000, window=1, slots=1,
                       max_payload=256)
    limit = ours["wire_limit"]
    print(f"input 224x224x3 int8 = {INPUT.nbytes} bytes; {args.baud} baud 8N1; stand-in compute "
          f"{args.compute_ms:.0f} ms; wire limit {limit:.4f} images/s")
    print(f"{'':34} {'images/s':>9} {'of wire limit':>14} {'overhead tx':>12} {'overhead rx':>12}")
    for name, m in (("ours (16 KiB, window 4, 2 slots)", ours), ("stop-and-wait (256 B, 1 slot)", base)):
        print(f"{name:34} {m['images_per_s']:9.4f} {m['images_per_s'] / limit:14.1%} {m['overhead_tx']:12.3%} "
              f"{m['overhead_rx']:12.3%}")
    print(f"ratio ours / stop-and-wait: {ours['images_per_s'] / base['images_per_s']:.2f}x")
    print(f"ours: images/s {ours['images_per_s'] / limit:.1%} of the wire limit (target >= 90%), "
          f"protocol overhead {ours['overhead_tx']:.3%} of payload bytes sent (target <= 1%)")


if __name__ == "__main__":
    main()
