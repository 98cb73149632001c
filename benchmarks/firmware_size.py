"""Firmware size (Berkeley `size`: text/data/bss) per emulated target and kernel set, for one model.

Each target is rendered once with `edgemnv2 export --target T --json`, then built per kernel set with
`edgemnv2 build PROJECT --kernels K --json` (the TFLM objects come from the shared object cache, so a second
run only compiles the project's own files); the table is printed from those two JSON answers. text holds the
model array and the code, bss the tensor arena, the receive ring and the input slots' buffers.

    python3 benchmarks/firmware_size.py                        # MobileNetV2 1.0/96 int8 (edgemnv2.convert, cached)
    python3 benchmarks/firmware_size.py --model mnv2_1.0_96_int8.tflite --work-dir /tmp/fw-size
    python3 benchmarks/firmware_size.py --targets host --markdown
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

# (target, kernel set) in table order; CMSIS-NN is Arm code, so the host builds the reference kernels only
BUILDS = (("mps2-an386", "cmsis-nn"), ("mps2-an386", "reference"), ("mps3-an547", "cmsis-nn"),
          ("mps3-an547", "reference"), ("host", "reference"))


def edgemnv2_json(*args: str) -> dict:
    """Run `edgemnv2 ARGS --json` and return its answer; a failure prints the command's stderr and exits."""
    argv = [sys.executable, "-m", "edgemnv2", *args, "--json"]
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv[2:])} failed ({proc.returncode}): {proc.stderr.strip()}")
    return json.loads(proc.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None,
                        help="an int8 .tflite (default: MobileNetV2 1.0/96 from edgemnv2.convert, cached in --cache)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "edgemnv2-bench-models")
    parser.add_argument("--work-dir", type=Path, default=None, help="where the projects go (default: a temp dir)")
    parser.add_argument("--targets", nargs="*", default=None, help="restrict to these targets")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown (docs/firmware.md)")
    args = parser.parse_args()

    model = args.model
    if model is None:
        from arena_check import converted_model

        args.cache.mkdir(parents=True, exist_ok=True)
        model, _ = converted_model(1.0, 96, args.cache, 100)
    builds = [b for b in BUILDS if args.targets is None or b[0] in args.targets]
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="edgemnv2-fw-size-"))
    rows = []
    exports: dict[str, dict] = {}
    for target, kernels in builds:
        project = work / target
        if target not in exports:
            exports[target] = edgemnv2_json("export", "--target", target, "--model", str(model), "--output",
                                            str(project))
        built = edgemnv2_json("build", str(project), "--kernels", kernels, "--jobs", str(args.jobs))
        rows.append((target, kernels, built["size"], exports[target], built))
        print(f"built {target} {kernels}: {built['sources']} files ({built['compiled']} compiled) in "
              f"{built['seconds']} s", file=sys.stderr)

    print(f"model: {model.name}, {rows[0][3]['model_bytes']:,} bytes; arena {rows[0][3]['arena_bytes']:,} bytes")
    columns = ("target", "kernels", "text", "data", "bss", "model", "arena", "input slots")
    table = [(t, k, f"{s['text']:,}", f"{s['data']:,}", f"{s['bss']:,}", f"{e['model_bytes']:,}",
              f"{e['arena_bytes']:,}", str(e.get("input_slots", 1))) for t, k, s, e, _ in rows]
    if args.markdown:
        print("| " + " | ".join(columns) + " |")
        print("| " + " | ".join("---" for _ in columns) + " |")
        for row in table:
            print("| " + " | ".join(row) + " |")
    else:
        widths = [max(len(c), *(len(r[i]) for r in table)) for i, c in enumerate(columns)]
        print("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(columns, widths))))
        for row in table:
            print("  ".join(v.ljust(w) if i < 2 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths))))
    print(f"compiler: {', '.join(sorted({b['compiler'] for *_, b in rows}))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
