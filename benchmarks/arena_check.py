"""Our TFLM arena plan (edgemnv2.profile.memory.plan_arena) vs the arena the tflite-micro wheel allocates.

For each model: the planned total (head + tail), the total RecordingMicroAllocator reports, and the error.
Models: Coral's published int8 MobileNetV2 1.0/224 and int8 MobileNetV2 1.0 at two other resolutions
converted with `edgemnv2.convert` (cached under --cache, so a rerun takes seconds).

    python3 benchmarks/arena_check.py                      # the three default models
    python3 benchmarks/arena_check.py --resolutions 96 128 160 192
    python3 benchmarks/arena_check.py --per-op MODEL.tflite  # truncate op by op: where would a mismatch come from?

`--per-op` is the calibration tool behind tflm_kernels.toml: it cuts the model after each op (graph
output = that op's output), measures the wheel's arena, and prints planned vs measured head and tail,
so a kernel whose tail use is wrong shows up as the first op where the tail error changes.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from edgemnv2.paths import shared_dir  # noqa: E402
from edgemnv2.profile.memory import plan_arena  # noqa: E402
from edgemnv2.profile.tflm_arena import measure_arena  # noqa: E402


def converted_model(alpha: float, resolution: int, cache: Path, calibration: int) -> tuple[Path, str]:
    """An int8 (int8 I/O) MobileNetV2 built by `edgemnv2 convert` with the shared ImageNet weights."""
    out = cache / f"mobilenet_v2_{alpha}_{resolution}_int8.tflite"
    if out.exists():
        return out, "cached edgemnv2.convert"
    from edgemnv2 import logs
    from edgemnv2.convert import ConvertOptions, convert
    from edgemnv2.models import ModelSpec

    logs.configure(False)
    weights = shared_dir() / "models" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5"
    spec = ModelSpec(alpha=alpha, resolution=resolution, weights=weights)
    convert(spec, ConvertOptions(quantize="int8", num_calibration=calibration, output=out))
    return out, "edgemnv2.convert"


def compare(path: Path, how: str) -> float:
    t0 = time.perf_counter()
    plan = plan_arena(path)
    plan_s = time.perf_counter() - t0
    measured = measure_arena(path)
    error = 100.0 * (plan.peak_bytes - measured.total_bytes) / measured.total_bytes
    print(f"{path.name:42s} {plan.peak_bytes:>10,d} {measured.total_bytes:>10,d} {error:>+8.3f}%   "
          f"head {plan.nonpersistent_bytes:,d}/{measured.nonpersistent_bytes:,d}  "
          f"tail {plan.persistent_bytes:,d}/{measured.persistent_bytes:,d}  plan {plan_s * 1000:.0f} ms  ({how})")
    return error


def per_op(path: Path) -> None:
    """Truncate the model after every op and compare head and tail op by op."""
    from edgemnv2.tflite import writer

    source = path.read_bytes()
    count = len(writer.unpack(source).subgraphs[0].operators)
    print(f"{'ops':>4s} {'last op':20s} {'head plan':>10s} {'measured':>10s} {'tail plan':>10s} {'measured':>10s} {'tail err':>8s}")
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(1, count + 1):
            model = writer.unpack(source)
            graph = model.subgraphs[0]
            graph.operators = copy.copy(graph.operators[:k])
            graph.outputs = [int(graph.operators[-1].outputs[0])]
            cut = Path(tmp) / f"first_{k}.tflite"
            cut.write_bytes(writer.pack(model))
            plan = plan_arena(cut)
            measured = measure_arena(cut)
            print(f"{k:>4d} {plan.op_names[-1]:20s} {plan.nonpersistent_bytes:>10,d} {measured.nonpersistent_bytes:>10,d} "
                  f"{plan.persistent_bytes:>10,d} {measured.persistent_bytes:>10,d} "
                  f"{plan.persistent_bytes - measured.persistent_bytes:>+8d}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolutions", type=int, nargs="+", default=[96, 160])
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--calibration", type=int, default=20, help="calibration images per conversion")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "edgemnv2-arena-check")
    parser.add_argument("--per-op", type=Path, metavar="MODEL", help="op-by-op comparison of one model")
    parser.add_argument("models", type=Path, nargs="*", help="extra .tflite files to compare")
    args = parser.parse_args()

    if args.per_op:
        per_op(args.per_op)
        return 0
    args.cache.mkdir(parents=True, exist_ok=True)
    print(f"{'model':42s} {'estimate':>10s} {'measured':>10s} {'error':>9s}")
    errors = [compare(shared_dir() / "models" / "tf2_mobilenet_v2_1.0_224_ptq.tflite", "Coral, published")]
    for resolution in args.resolutions:
        path, how = converted_model(args.alpha, resolution, args.cache, args.calibration)
        errors.append(compare(path, how))
    for path in args.models:
        errors.append(compare(path, "given"))
    worst = max(abs(e) for e in errors)
    print(f"worst |error| {worst:.3f}% over {len(errors)} models (target <= 1%)")
    return 0 if worst <= 1.0 else 3


if __name__ == "__main__":
    sys.exit(main())
