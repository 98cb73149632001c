"""The same 4-candidate sweep run sequentially (one process, one candidate after another) and on a local Ray
(one task per candidate, as many at once as the machine has cores), wall time of each and the ratio.

Candidates: MobileNetV2 0.35 at 96 and 128, per-channel and per-tensor, seeded random weights, the plain
converter, 8 calibration and 10 validation images from ../shared. Each side writes to its own fresh output
folder (no cache), and the script checks that both produced the same models and validation figures.
Ray runs its workers at niceness 15; the sequential side runs at the same niceness, so that on a shared
machine both get the same share of the cores.

    python benchmarks/sweep_ray.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
RAY_WORKER_NICENESS = 15  # Ray's default niceness of worker processes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", type=Path, default=None, help="Keep both output folders here.")
    args = parser.parse_args()
    from edgemnv2.executors import RayExecutor, SequentialExecutor
    from edgemnv2.sweep import SweepInputs, candidate, comparable, run_sweep

    work = args.keep or Path(tempfile.mkdtemp(prefix="sweep-ray-"))
    images = {}
    for name, count in (("imagenet-val", 10), ("imagenet-calib", 8)):
        folder = work / name
        folder.mkdir(parents=True, exist_ok=True)
        for image in sorted((SHARED / "data" / name).iterdir())[:count]:
            shutil.copyfile(image, folder / image.name)
        shutil.copyfile(SHARED / "data" / "imagenet_synsets.txt", folder / "imagenet_synsets.txt")
        images[name] = folder
    plain = dict(calibration_method="minmax", bias_correction=False, equalize=False, num_calibration=8)
    candidates = [candidate(0.35, r, "none", per_tensor=pt, **plain) for r in (96, 128) for pt in (False, True)]
    inputs = SweepInputs(images["imagenet-val"], images["imagenet-calib"])
    walls, reports = {}, {}
    # Ray first: its workers are fresh processes either way, while the sequential side imports TensorFlow here
    for label, executor in (("ray (local)", RayExecutor()), ("sequential", SequentialExecutor())):
        if label == "sequential":
            os.nice(RAY_WORKER_NICENESS - os.nice(0))
        start = time.perf_counter()
        reports[label] = run_sweep(candidates, inputs, work / label.split()[0], executor)
        walls[label] = time.perf_counter() - start
        failed = reports[label].failed
        if failed:
            print(f"{label}: {failed[0].candidate.name} failed: {failed[0].error}", file=sys.stderr)
            return 1
    same = [comparable(a) for a in reports["sequential"].results] == [comparable(b) for b in reports["ray (local)"].results]
    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"{len(candidates)} candidates (0.35 at 96/128, per-channel/per-tensor, random weights, plain converter); "
          f"{os.cpu_count()} cores, load average {load}")
    for label in ("sequential", "ray (local)"):
        tasks = ", ".join(f"{r.seconds:.0f}" for r in reports[label].results)
        print(f"{label:<12} wall {walls[label]:7.1f} s   (task seconds: {tasks})")
    print(f"ratio sequential / ray: {walls['sequential'] / walls['ray (local)']:.2f}x")
    print(f"same models and validation on both sides: {same}")
    print(f"outputs: {work}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
