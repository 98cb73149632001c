"""Write edgemnv2/profile/engine_stack.toml: the static engine's stack per target, from gcc's call graph.

The planner adds this stack term to a static schedule's arena (docs/static-engine.md, "Stack"). For each
build target the generated engine of the shared Coral MobileNetV2 1.0/224 (inplace and patch schedules) and
the kernel library are compiled with the target's flags and `-fcallgraph-info=su`; each kernel's entry is the
deepest chain below it (its frame plus its deepest callee's), and `invoke` the runner's (edgemnv2_static.c)
and se_invoke's own frames, per schedule.

    python3 benchmarks/engine_stack.py            # print
    python3 benchmarks/engine_stack.py --write    # and rewrite the data file
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from edgemnv2.deploy.engine_stack import STACK_FILE, measure_engine_stack, render_stack_toml
from edgemnv2.paths import shared_dir


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=shared_dir() / "models" / "tf2_mobilenet_v2_1.0_224_ptq.tflite")
    parser.add_argument("--write", action="store_true", help=f"rewrite {STACK_FILE}")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgemnv2-stack-") as tmp:
        table = measure_engine_stack(args.model, Path(tmp))
    text = render_stack_toml(table, args.model.name)
    print(text)
    if args.write:
        from edgemnv2.atomic import write_text

        write_text(Path(STACK_FILE), text)
        print(f"wrote {STACK_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
