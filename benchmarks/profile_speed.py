"""Wall time of `edgemnv2 profile MODEL.tflite --device rpi4` in a fresh process, vs the 1.5 s budget.

Each run is a new Python process (what a user waits for: interpreter start, imports, parse, arena plan,
latency model, table). The same process reports whether TensorFlow or Keras ended up in sys.modules.
A bare `python -c pass` is timed too, as the floor no CLI can beat.

    python benchmarks/profile_speed.py [MODEL.tflite] [--device rpi4] [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cli_timing import interpreter_floor, run_cli  # noqa: E402

BUDGET_S = 1.5
DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "shared" / "models" / "tf2_mobilenet_v2_1.0_224_ptq.tflite"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--device", default="rpi4")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    times, tf_seen = [], set()
    for _ in range(args.runs):
        run = run_cli("profile", str(args.model), "--device", args.device)
        if run.result.returncode != 0:
            print(run.result.stderr, file=sys.stderr)
            return 1
        tf_seen.add(run.tensorflow_imported)
        times.append(run.seconds)
    floor = interpreter_floor(args.runs)
    median = statistics.median(times)
    print(f"model: {args.model}  device: {args.device}  runs: {args.runs}")
    print(f"edgemnv2 profile wall time: median {median:.3f} s (min {min(times):.3f}, max {max(times):.3f})")
    print(f"budget: {BUDGET_S:.3f} s   ratio ours/budget: {median / BUDGET_S:.2f}")
    print(f"python -c pass (interpreter floor): {floor:.3f} s")
    print(f"tensorflow imported: {any(tf_seen)}")
    return 0 if median < BUDGET_S and not any(tf_seen) else 1


if __name__ == "__main__":
    sys.exit(main())
