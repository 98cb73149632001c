"""The static engine per model, side by side with TFLite Micro: arena, each schedule's planned peak RAM,
extra MACs, and bit-exactness of the generated C (host gcc build) against the tflite-micro wheel.

    python3 benchmarks/static_engine.py                       # Coral 1.0/224 + edgemnv2.convert 1.0/96 and 1.0/224
    python3 benchmarks/static_engine.py --images 10 --resolutions 96
    python3 benchmarks/static_engine.py --model my_int8.tflite --ram-budget 262144
    python3 benchmarks/static_engine.py --model m.tflite --kernels portable cmsis-nn   # CMSIS-NN's C paths too

For each model: TFLM's arena (planned, and measured by the wheel), then one row per static schedule
(`inplace`, `patch` with the lowest peak within 15 % extra MACs, and `patch` for --ram-budget, default 25 %
of TFLM's arena): predicted peak, ratio to TFLM, extra MACs, and the number of the --images images of
../shared/data/imagenet-val (default 100) whose outputs differ from TFLM's in any byte.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from arena_check import converted_model  # noqa: E402

from edgemnv2.deploy.static_engine import check_bit_exact, image_inputs, tflm_outputs  # noqa: E402
from edgemnv2.paths import shared_dir  # noqa: E402
from edgemnv2.profile.schedule import plan_schedule  # noqa: E402
from edgemnv2.profile.tflm_arena import measure_arena  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, action="append", help="an int8 .tflite (repeatable; default: see above)")
    parser.add_argument("--resolutions", type=int, nargs="*", default=[96, 224],
                        help="MobileNetV2 1.0 resolutions to convert with edgemnv2.convert (cached)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "edgemnv2-bench-models")
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--ram-budget", type=int, default=None, help="patch budget (default: 25 %% of TFLM's arena)")
    parser.add_argument("--kernels", nargs="*", default=["portable"], choices=["portable", "cmsis-nn"],
                        help="kernel sets to build (cmsis-nn: CMSIS-NN's plain-C paths, host gcc)")
    args = parser.parse_args()

    shared = shared_dir()
    models: list[tuple[Path, str]] = []
    if args.model:
        models = [(m, "given") for m in args.model]
    else:
        models.append((shared / "models" / "tf2_mobilenet_v2_1.0_224_ptq.tflite", "Coral, uint8 I/O"))
        args.cache.mkdir(parents=True, exist_ok=True)
        models += [converted_model(1.0, r, args.cache, 100) for r in args.resolutions]
    header = (f"{'model':<38} {'schedule':<28} {'peak RAM B':>11} {'vs TFLM':>8} {'extra MACs':>10} "
              f"{'bit-exact':>12} {'build+run s':>11}")
    print(header)
    print("-" * len(header))
    worst = 0
    for model, origin in models:
        tflm = plan_schedule(model, "tflm")
        measured = measure_arena(model).total_bytes
        print(f"{model.name:<38} {'tflm (plan/measured)':<28} {tflm.peak_bytes:>11,} {'100.0%':>8} {'+0.00%':>10} "
              f"{'measured ' + format(measured, ','):>12}   ({origin})")
        inputs = image_inputs(model, shared / "data" / "imagenet-val", args.images)
        reference = tflm_outputs(model, inputs)
        budget = args.ram_budget or tflm.peak_bytes // 4
        for (label, schedule, options), kernels in ((row, k) for row in (
                ("inplace", "inplace", {}), ("patch (<=15% MACs)", "patch", {}),
                (f"patch (<= {budget:,})", "patch", {"ram_budget": budget})) for k in args.kernels):
            start = time.perf_counter()
            report = check_bit_exact(model, inputs, schedule, reference=reference, kernels=kernels, **options)
            plan = plan_schedule(model, schedule, options.get("ram_budget"), kernels=kernels)
            label = label if kernels == "portable" else f"{label} cmsis"
            tiles = f" {plan.patch.split_step}/{plan.patch.grid[0]}x{plan.patch.grid[1]}" if plan.patch else ""
            worst = max(worst, report.mismatched_inputs)
            exact = f"{report.inputs - report.mismatched_inputs}/{report.inputs}"
            print(f"{'':<38} {label + tiles:<28} {report.peak_bytes:>11,} {report.peak_bytes / tflm.peak_bytes:>8.1%} "
                  f"{plan.extra_macs_ratio:>+10.2%} {exact:>12} {time.perf_counter() - start:>11.0f}")
    print(f"inputs differing from TFLM in any byte: {worst} (target 0)")
    return 1 if worst else 0


if __name__ == "__main__":
    sys.exit(main())
