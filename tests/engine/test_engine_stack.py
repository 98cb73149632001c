"""The planner's stack term: engine_stack.toml is what gcc's call graph gives for the current kernels and
code generator, and the call-graph arithmetic is right on a hand-made graph."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pytest

from edgemnv2.deploy.engine_stack import STACK_FILE, deepest, measure_engine_stack, read_call_graph
from edgemnv2.errors import BuildError


def test_deepest_chain_by_hand(tmp_path: Path) -> None:
    ci = tmp_path / "a.ci"
    ci.write_text('graph: { title: "a.c"\n'
                  'node: { title: "top" label: "top\\na.c:1:1\\n40 bytes (static)" }\n'
                  'node: { title: "a.c:mid" label: "mid\\na.c:2:1\\n24 bytes (dynamic,bounded)" }\n'
                  'node: { title: "leaf" label: "leaf\\na.c:3:1\\n8 bytes (static)" }\n'
                  'node: { title: "memcpy" label: "__builtin_memcpy\\n<built-in>" shape : ellipse }\n'
                  'edge: { sourcename: "top" targetname: "a.c:mid" label: "a.c:1:5" }\n'
                  'edge: { sourcename: "top" targetname: "memcpy" }\n'
                  'edge: { sourcename: "a.c:mid" targetname: "leaf" label: "a.c:2:5" }\n}\n')
    frames, calls = read_call_graph([ci])
    assert deepest("top", frames, calls) == 40 + 24 + 8 and deepest("memcpy", frames, calls) == 0
    ci.write_text(ci.read_text().replace("(dynamic,bounded)", "(dynamic)"))
    with pytest.raises(BuildError, match="dynamic"):
        read_call_graph([ci])


@pytest.mark.parametrize("target", ["mps2-an386", pytest.param("mps3-an547", marks=pytest.mark.slow),
                                    pytest.param("host", marks=pytest.mark.slow)])
def test_stack_data_is_current(coral_v2_tflite: Path, tmp_path: Path, target: str) -> None:
    if shutil.which("arm-none-eabi-gcc" if target != "host" else "gcc") is None:
        pytest.skip("compiler not installed")
    measured = measure_engine_stack(coral_v2_tflite, tmp_path, targets=(target,))
    stored = tomllib.loads(STACK_FILE.read_text())
    assert measured[target] == stored[target], "rerun: python3 benchmarks/engine_stack.py --write"
