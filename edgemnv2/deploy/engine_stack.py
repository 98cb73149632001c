"""The static engine's stack, from gcc's own call graph (`-fcallgraph-info=su`).

The stack is the one RAM term the arena plan cannot see: se_invoke's frame plus the deepest kernel call
chain below it. gcc reports every function's frame and its calls (after inlining), so the worst chain is
computed, not guessed; `benchmarks/engine_stack.py` writes the result per build target to
edgemnv2/profile/engine_stack.toml, which the planner reads (no compiler needed at plan time).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from edgemnv2.errors import BuildError
from edgemnv2.toml_text import dump_toml

STACK_FILE = Path(__file__).resolve().parents[1] / "profile" / "engine_stack.toml"
_NODE = re.compile(r'node: \{ title: "([^"]+)" label: "[^"]*?(?:\\n(\d+) bytes \(([^)]*)\))?"')
_EDGE = re.compile(r'edge: \{ sourcename: "([^"]+)" targetname: "([^"]+)"')


def read_call_graph(ci_files: list[Path]) -> tuple[dict[str, int], dict[str, set[str]]]:
    """Frames (bytes) and callees of every function in gcc's .ci files; a node without a frame (a builtin,
    an external function) counts 0. Static functions are titled `file:name`, globals by name."""
    frames: dict[str, int] = {}
    calls: dict[str, set[str]] = {}
    for path in ci_files:
        text = path.read_text(encoding="utf-8", errors="replace")
        for title, size, kind in _NODE.findall(text):
            if kind == "dynamic":   # "dynamic,bounded" (alloca-free stack adjustments gcc bounded) is fine
                raise BuildError(f"{title} in {path.name} has a dynamic stack frame: the stack cannot be bounded")
            frames[title] = max(frames.get(title, 0), int(size or 0))
        for source, target in _EDGE.findall(text):
            calls.setdefault(source, set()).add(target)
    return frames, calls


def deepest(name: str, frames: dict[str, int], calls: dict[str, set[str]], seen: tuple[str, ...] = ()) -> int:
    """Bytes of the deepest call chain starting at `name` (its frame included)."""
    if name in seen:
        raise BuildError(f"recursion through {name}: the stack cannot be bounded")
    below = [deepest(c, frames, calls, seen + (name,)) for c in calls.get(name, ())]
    return frames.get(name, 0) + max(below, default=0)


def compile_call_graph(cc: str, flags: list[str], sources: list[Path], work: Path) -> tuple[dict, dict]:
    """Compile `sources` with `-fcallgraph-info=su` into `work` and read the graph."""
    work.mkdir(parents=True, exist_ok=True)
    ci = []
    for source in sources:
        obj = work / f"{source.stem}.o"
        proc = subprocess.run([cc, "-std=c17", "-O2", *flags, "-fcallgraph-info=su", f"-I{source.parent}", "-c",
                               str(source), "-o", str(obj)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise BuildError(f"{cc} failed on {source.name}: {proc.stderr.strip()[-300:]}")
        ci.append(obj.with_suffix(".ci"))
    return read_call_graph(ci)


def measure_engine_stack(model: Path, work: Path, targets: tuple[str, ...] = ("mps2-an386", "mps3-an547", "host"),
                         schedules: tuple[str, ...] = ("inplace", "patch"),
                         kernel_sets: tuple[str, ...] = ("portable", "cmsis-nn"), tflm: Path | None = None) -> dict[str, dict]:
    """Per target: `invoke` (per schedule of `model` and kernel set: the runner's and se_invoke's frames) and
    `kernels` (each kernel's deepest chain, CMSIS-NN's functions included), compiled as `edgemnv2 build`
    compiles a static-engine firmware."""
    from edgemnv2.deploy.static_engine import CMSIS_FILES, FIRMWARE_RUNNER, KERNEL_FILES, kernel_source, render_engine
    from edgemnv2.errors import ToolMissing
    from edgemnv2.firmware.build import cmsis_flags, cmsis_sources, resolve_tflm_dir, static_flags, toolchain
    from edgemnv2.firmware.targets import build_target
    from edgemnv2.profile.opgraph import read_opgraph
    from edgemnv2.profile.schedule import plan_schedule, stack_key
    from edgemnv2.resources import templates_root

    g = read_opgraph(model)
    tree = resolve_tflm_dir(tflm) if "cmsis-nn" in kernel_sets else None
    table: dict[str, dict] = {}
    for target in targets:
        spec = build_target(target)
        try:
            cc = toolchain(spec.compiler).cc
        except ToolMissing:
            continue
        flags = static_flags(spec) + (cmsis_flags(tree) if tree is not None else [])
        lib = work / target / "lib"
        lib.mkdir(parents=True, exist_ok=True)
        for name in KERNEL_FILES[:2] + (CMSIS_FILES if tree is not None else ()):
            (lib / name).write_text(kernel_source(name), encoding="utf-8")
        library = [lib / "se_kernels.c"] + ([lib / "se_cmsis.c", *cmsis_sources(tree)] if tree is not None else [])
        lib_frames, lib_calls = compile_call_graph(cc, flags, library, lib / "obj")
        invoke: dict[str, int] = {}
        kernels: dict[str, int] = {}
        for kernel_set in kernel_sets:
            for schedule in schedules:
                src = work / target / f"{schedule}-{kernel_set}"
                src.mkdir(parents=True, exist_ok=True)
                plan = plan_schedule(model, schedule, graph=g, stack_target=target, kernels=kernel_set, with_stack=False)
                text = render_engine(g, plan, declare_only=True)
                (src / "se_model.h").write_text(text.header, encoding="utf-8")
                (src / "se_model.c").write_text(text.source, encoding="utf-8")
                (src / FIRMWARE_RUNNER).write_text(kernel_source(FIRMWARE_RUNNER), encoding="utf-8")
                (src / "edgemnv2_model.h").write_text((templates_root() / "common" / "edgemnv2_model.h").read_text())
                (src / "edgemnv2_config.h").write_text(  # what the runner needs of a firmware's config
                    "#define EDGEMNV2_INPUT_BYTES SE_INPUT_BYTES\n#define EDGEMNV2_OUTPUT_BYTES SE_OUTPUT_BYTES\n"
                    + ("#define EDGEMNV2_STACK_LIMIT 1\n" if spec.bare_metal else ""))
                frames, calls = compile_call_graph(cc, [*flags, f"-I{lib}"], [src / "se_model.c", src / FIRMWARE_RUNNER],
                                                   src / "obj")
                frames, calls = {**lib_frames, **frames}, {**lib_calls, **calls}
                # the runner reads the stack pointer on entry, so its own frame counts as the engine's
                invoke[stack_key(schedule, kernel_set)] = frames["emn_model_invoke"] + frames["se_invoke"]
                for callee in calls["se_invoke"]:
                    kernels[callee] = max(kernels.get(callee, 0), deepest(callee, frames, calls))
        for name in lib_frames:
            if name.startswith("se_") and ":" not in name:
                kernels[name] = max(kernels.get(name, 0), deepest(name, lib_frames, lib_calls))
        table[target] = {"invoke": invoke, "kernels": dict(sorted(kernels.items()))}
    return table


def render_stack_toml(table: dict[str, dict], model_name: str) -> str:
    """The data file's text."""
    lines = ["# The static engine's stack per build target, bytes, from gcc -fcallgraph-info=su (O2, the target's",
             "# flags): `invoke` is the runner's and se_invoke's frames per schedule (and kernel set), each kernel its deepest",
             "# call chain (CMSIS-NN's functions included). The planner adds",
             "# invoke + the deepest kernel the schedule calls to the arena. Written by benchmarks/engine_stack.py",
             f"# from {model_name} (inplace and patch); tests/engine/test_engine_stack.py checks it is current.", ""]
    return "\n".join(lines) + "\n" + dump_toml(table)
