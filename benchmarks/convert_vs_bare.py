"""`edgemnv2 convert` wall time vs a bare tf.lite.TFLiteConverter script on the same model and images.

Each side runs as a fresh `python` subprocess (same TensorFlow import cost), timed from launch to
exit; sides alternate and each keeps its best of --repeats runs, since the 2-core machine is shared.
Two ratios are gated: `edgemnv2 convert` with the bare converter's quantization (min/max ranges), which
measures the pipeline's own cost (--max-ratio), and `edgemnv2 convert` with its defaults (MSE activation
ranges: one more float pass over the calibration images and the range search), which is what a user
pays (--max-default-ratio). Exit status 1 when either is exceeded.

    python3 benchmarks/convert_vs_bare.py                     # 1.0/224, shared weights + 100 images
    python3 benchmarks/convert_vs_bare.py --alpha 0.35 --resolution 96 --weights none --repeats 1
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BARE = r'''
import sys
from pathlib import Path
import numpy as np
import tensorflow as tf
import keras
from PIL import Image

alpha, resolution, weights, calib, count, out = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6]
model = keras.applications.MobileNetV2(input_shape=(resolution, resolution, 3), alpha=alpha,
                                       weights=None if weights == "none" else weights)
files = sorted(p for p in Path(calib).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp"))[:count]

def representative():
    for f in files:
        img = Image.open(f).convert("RGB").resize((resolution, resolution), Image.BILINEAR)
        yield [np.asarray(img, np.float32)[None] / 127.5 - 1.0]

converter = tf.lite.TFLiteConverter.from_keras_model(model)
converter.optimizations = [tf.lite.Optimize.DEFAULT]
converter.representative_dataset = representative
converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
converter.inference_input_type = tf.int8
converter.inference_output_type = tf.int8
Path(out).write_bytes(converter.convert())
'''


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return elapsed


def main() -> None:
    from edgemnv2.models import resolve_imagenet_weights
    from edgemnv2.paths import shared_calibration_dir

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--weights", default="imagenet", help="imagenet (resolved like convert does) or none")
    parser.add_argument("--calibration", type=Path, default=None)
    parser.add_argument("--num-calibration", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--max-ratio", type=float, default=1.15)
    parser.add_argument("--max-default-ratio", type=float, default=1.3)
    args = parser.parse_args()

    calib = args.calibration or shared_calibration_dir()
    weights = (str(resolve_imagenet_weights(args.alpha, args.resolution)) if args.weights == "imagenet"
               else args.weights)
    count = min(args.num_calibration, sum(1 for p in calib.iterdir() if p.is_file()))
    # the same TensorFlow settings on both sides (edgemnv2's CLI sets these two when not verbose)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0"}
    with tempfile.TemporaryDirectory(prefix="edgemnv2-bench-") as tmp:
        ours_default = [sys.executable, "-m", "edgemnv2", "convert", "--alpha", str(args.alpha), "--resolution",
                        str(args.resolution), "--weights", weights, "--calibration", str(calib),
                        "--num-calibration", str(count), "-o", f"{tmp}/ours.tflite"]
        # the same quantization as the bare converter: what the pipeline itself costs
        ours_cmd = ours_default + ["--calibration-method", "minmax"]
        bare_cmd = [sys.executable, "-c", BARE, str(args.alpha), str(args.resolution), weights, str(calib),
                    str(count), f"{tmp}/bare.tflite"]
        ours, bare, default = [], [], []
        runs = [("bare", bare_cmd, bare), ("ours", ours_cmd, ours), ("ours-default", ours_default, default)]
        for i in range(args.repeats):
            for name, cmd, times in runs[:: 1 if i % 2 == 0 else -1]:
                times.append(timed(cmd, env))
                print(f"  run {i + 1} {name}: {times[-1]:.2f} s", file=sys.stderr)
        sizes = (Path(tmp, "ours.tflite").stat().st_size, Path(tmp, "bare.tflite").stat().st_size)

    ratio = min(ours) / min(bare)
    default_ratio = min(default) / min(bare)
    print(f"model     MobileNetV2 {float(args.alpha)}/{args.resolution}, weights {Path(weights).name}, "
          f"{count} calibration images from {calib}")
    print(f"bare      tf.lite.TFLiteConverter script  {min(bare):7.2f} s  (best of {args.repeats}; {sizes[1]} bytes)")
    print(f"ours      edgemnv2 convert               {min(ours):7.2f} s  (best of {args.repeats}; {sizes[0]} bytes, "
          "same min/max quantization + verification + sidecar)")
    print(f"ratio     {ratio:.3f}  (limit {args.max_ratio})  {'OK' if ratio <= args.max_ratio else 'TOO SLOW'}")
    print(f"default   edgemnv2 convert (mse ranges)  {min(default):7.2f} s  (best of {args.repeats})")
    print(f"ratio     {default_ratio:.3f}  (limit {args.max_default_ratio})  "
          f"{'OK' if default_ratio <= args.max_default_ratio else 'TOO SLOW'}  (default vs bare)")
    sys.exit(0 if ratio <= args.max_ratio and default_ratio <= args.max_default_ratio else 1)


if __name__ == "__main__":
    main()
