"""Wall time of `edgemnv2 fit --device D [--plot]` in a fresh process, vs the 3 s budget, TensorFlow not imported.

Each run is a new Python process (interpreter start, imports, 30 spec profiles, ranking, table, and the
Pareto PNG with --plot). The process reports whether TensorFlow or Keras ended up in sys.modules.
A bare `python -c pass` is timed too, as the floor no CLI can beat. The CPU seconds of the child (user +
system) are printed beside the wall time: on a shared machine the wall time also counts waiting for a core.

    python benchmarks/fit_speed.py [--runs 3] [--out-dir /tmp/fit-plots]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cli_timing import interpreter_floor, run_cli  # noqa: E402

BUDGET_S = 3.0
CASES = (["--device", "esp32-s3", "--max-latency-ms", "500"], ["--device", "stm32h7"], ["--device", "nano33ble"])


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out-dir", type=Path, default=None, help="Keep the plots here (default: a temp folder).")
    args = parser.parse_args()
    out = args.out_dir or Path(tempfile.mkdtemp(prefix="fit-speed-"))
    out.mkdir(parents=True, exist_ok=True)
    floor = interpreter_floor(args.runs)
    ok = True
    print(f"runs per case: {args.runs}; budget {BUDGET_S:.1f} s; python -c pass (floor) {floor:.3f} s")
    for case in CASES:
        plot = out / f"fit_{case[1]}.png"
        for label, extra in (("table", []), ("table + plot", ["--plot", str(plot)])):
            times, cpu, tf_seen = [], [], False
            for _ in range(args.runs):
                before = children_cpu()
                run = run_cli("fit", *case, *extra)
                cpu.append(children_cpu() - before)
                if run.result.returncode not in (0, 3):  # 3: nothing fits (the report is still printed)
                    print(run.result.stderr, file=sys.stderr)
                    return 1
                tf_seen |= run.tensorflow_imported
                times.append(run.seconds)
            median = statistics.median(times)
            ok &= median < BUDGET_S and not tf_seen
            print(f"fit {' '.join(case):<38} {label:<13} wall median {median:.3f} s (max {max(times):.3f}), "
                  f"cpu {statistics.median(cpu):.3f} s  ratio ours/budget {median / BUDGET_S:.2f}  "
                  f"tensorflow imported: {tf_seen}")
    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"plots: {out}; load average {load} on {os.cpu_count()} cores")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
