"""`edgemnv2 validate`'s int8 images/s vs a bare LiteRT set_tensor/invoke/get_tensor loop on the same images.

Validate's figure is `tflite_images_per_second` from `edgemnv2 validate --json`: its TFLite inference
loop (`TFLiteModel.run_raw`: set input, invoke, copy output, per image) over inputs quantized
beforehand. The bare loop times the same three calls on the same preprocessed, quantized images,
straight on the LiteRT Interpreter. Both make one warm-up invoke first
(XNNPACK packs weights on the first call). Each side runs in a fresh subprocess, the sides
alternate --repeats times and each keeps its best run, because the 2-core machine is shared.
Exit status 1 when ours/bare falls below --min-ratio.

    python3 benchmarks/validate_throughput.py                      # converts 1.0/224 int8 once (cached)
    python3 benchmarks/validate_throughput.py --model m.tflite --reference mobilenet_v2_1.0_224
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def bare_loop(model_path: Path, data: Path, limit: int | None) -> float:
    """Images/s of the plainest LiteRT loop (input already quantized, nothing else)."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    from edgemnv2.data import load_images

    interpreter = Interpreter(model_path=str(model_path))
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    images = load_images(data, int(inp["shape"][1]), limit=limit).images
    scale, zero_point = inp["quantization"]
    info = np.iinfo(inp["dtype"])
    raw = np.clip(np.round(images / scale) + zero_point, info.min, info.max).astype(inp["dtype"])
    interpreter.set_tensor(inp["index"], raw[:1])
    interpreter.invoke()  # warm-up, as validate does
    start = time.perf_counter()
    for i in range(len(raw)):
        interpreter.set_tensor(inp["index"], raw[i:i + 1])
        interpreter.invoke()
        interpreter.get_tensor(out["index"])
    return len(raw) / (time.perf_counter() - start)


def run(cmd: list[str]) -> str:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="int8 .tflite (default: convert 1.0/224, cached)")
    parser.add_argument("--reference", default="mobilenet_v2_1.0_224")
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs per side; best counts")
    parser.add_argument("--min-ratio", type=float, default=0.80)
    parser.add_argument("--bare-only", action="store_true", help=argparse.SUPPRESS)  # the subprocess side
    args = parser.parse_args()

    from edgemnv2.paths import shared_calibration_dir

    data = args.data or shared_calibration_dir()
    if args.bare_only:
        print(bare_loop(args.model, data, args.limit))
        return
    model = args.model
    if model is None:
        model = Path(os.environ.get("TMPDIR", "/tmp")) / "edgemnv2-bench" / "mobilenet_v2_1.0_224_int8.tflite"
        if not model.exists():
            print(f"converting {model} (once)...", file=sys.stderr)
            run([sys.executable, "-m", "edgemnv2", "convert", "-o", str(model)])

    limit = ["--limit", str(args.limit)] if args.limit else []
    bare_cmd = [sys.executable, __file__, "--bare-only", "--model", str(model), "--data", str(data), *limit]
    ours_cmd = [sys.executable, "-m", "edgemnv2", "validate", str(model), "--reference", args.reference,
                "--data", str(data), "--json", *limit]
    bare_runs, ours_runs = [], []
    for _ in range(args.repeats):
        bare_runs.append(float(run(bare_cmd)))
        report = json.loads(run(ours_cmd))
        ours_runs.append(report["tflite_images_per_second"])
        print(f"  bare {bare_runs[-1]:.1f} img/s, validate {ours_runs[-1]:.1f} img/s", file=sys.stderr)
    bare, ours = max(bare_runs), max(ours_runs)

    ratio = ours / bare
    print(f"model     {model} ({report['input']['dtype']} input), {report['images']} images from {data}")
    print(f"bare      LiteRT invoke loop   {bare:8.1f} img/s  (best of {args.repeats})")
    print(f"ours      edgemnv2 validate    {ours:8.1f} img/s  (best of {args.repeats}; "
          f"top-1 agreement {report['top1_agreement']:.1f}%)")
    print(f"ratio     {ratio:.3f}  (minimum {args.min_ratio})  {'OK' if ratio >= args.min_ratio else 'TOO SLOW'}")
    sys.exit(0 if ratio >= args.min_ratio else 1)


if __name__ == "__main__":
    main()
