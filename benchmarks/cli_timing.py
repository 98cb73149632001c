"""One `edgemnv2` command timed in a fresh Python process, the way a user waits for it.

The child runs the CLI and reports on stderr whether TensorFlow or Keras ended up in sys.modules, so a
benchmark checks the light core's promise (profile, fit, bench run without TensorFlow) on the same run.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

PROBE = ("import sys, atexit\n"
         "atexit.register(lambda: sys.stderr.write('TENSORFLOW_IMPORTED=%s\\n' % "
         "(('tensorflow' in sys.modules) or ('keras' in sys.modules))))\n"
         "sys.argv = ['edgemnv2', *sys.argv[1:]]\n"
         "from edgemnv2.cli import main\n"
         "main()\n")


@dataclass(frozen=True)
class CliRun:
    seconds: float
    result: subprocess.CompletedProcess

    @property
    def tensorflow_imported(self) -> bool:
        return "TENSORFLOW_IMPORTED=True" in self.result.stderr


def wall(cmd: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True)
    return time.perf_counter() - start, result


def run_cli(*args: str) -> CliRun:
    """`edgemnv2 ARGS...` in a new interpreter: its wall time and output."""
    return CliRun(*wall([sys.executable, "-c", PROBE, *args]))


def interpreter_floor(runs: int) -> float:
    """Median wall time of `python -c pass`: what no CLI can beat."""
    return statistics.median(wall([sys.executable, "-c", "pass"])[0] for _ in range(runs))
