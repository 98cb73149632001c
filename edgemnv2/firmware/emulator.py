"""The built firmware as a virtual board: QEMU (`mps2-an386`, `mps3-an547`) or the host build, its UART on a
pseudo-terminal whose path `start()` returns, exactly like `edgemnv2 board-sim` prints it.

The child runs in its own process group and gets SIGKILL if this process dies (PR_SET_PDEATHSIG), so no QEMU
outlives the command that started it; `stop()` ends the group (SIGTERM, then SIGKILL). What the firmware writes
through semihosting (TFLM's MicroPrintf) is passed to our stderr.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from edgemnv2.errors import BoardError, InputError, ToolMissing
from edgemnv2.firmware.build import find_elf
from edgemnv2.firmware.targets import build_target

_PTY_LINE = re.compile(r"char device redirected to (\S+) \(label serial0\)")
QEMU = "qemu-system-arm"


@dataclass(frozen=True)
class EmulatorOptions:
    icount: bool = False          # qemu -icount shift=0: 1 instruction = 1 ns, cycles are instruction counts
    kernels: str | None = None    # which build of a project folder (default: the newest)
    start_timeout: float = 30.0


def _die_with_parent() -> None:
    """In the child: SIGKILL when the parent goes away; a new process group for a clean stop."""
    os.setsid()
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class FirmwareBoard:
    """One running firmware; use as a context manager or call start()/stop()."""

    def __init__(self, firmware: Path, options: EmulatorOptions | None = None) -> None:
        self.options = options or EmulatorOptions()
        self.elf, self.target = find_elf(Path(firmware), self.options.kernels)
        self.spec = build_target(self.target)
        if self.options.icount and not self.spec.bare_metal:
            raise InputError("--icount applies to the QEMU targets (mps2-an386, mps3-an547), not the host build")
        self.proc: subprocess.Popen | None = None
        self.path = ""
        self._found = threading.Event()
        self._threads: list[threading.Thread] = []

    def command(self) -> list[str]:
        if not self.spec.bare_metal:
            return [str(self.elf.resolve())]
        if shutil.which(QEMU) is None:
            raise ToolMissing(f"{QEMU} not found: install it (Debian: apt-get install qemu-system-arm)")
        argv = [QEMU, "-M", str(self.spec.qemu_machine), "-nographic", "-monitor", "none", "-serial", "pty",
                "-semihosting-config", "enable=on,target=native", "-kernel", str(self.elf.resolve())]
        return argv + (["-icount", "shift=0"] if self.options.icount else [])

    def start(self) -> str:
        """Start the firmware; returns the pty path once the UART is there."""
        argv = self.command()
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, preexec_fn=_die_with_parent)
        for stream in (self.proc.stdout, self.proc.stderr):
            thread = threading.Thread(target=self._watch, args=(stream,), daemon=True)
            thread.start()
            self._threads.append(thread)
        waiter = threading.Thread(target=lambda: (self.proc.wait(), self._found.set()), daemon=True)
        waiter.start()
        self._found.wait(self.options.start_timeout)
        if not self.path:
            code = self.proc.poll()
            self.stop()
            raise BoardError(f"{Path(argv[0]).name} did not open its UART "
                             + (f"(exited with status {code})" if code is not None
                                else f"within {self.options.start_timeout:.0f} s"))
        return self.path

    def _watch(self, stream: IO[str]) -> None:
        """Find the pty line (QEMU: `char device redirected to ...`; host build: its first stdout line); pass the
        rest through to stderr."""
        for line in stream:
            if not self.path:
                match = _PTY_LINE.search(line)
                candidate = match.group(1) if match else line.strip() if not self.spec.bare_metal else ""
                if candidate.startswith("/dev/"):
                    self.path = candidate
                    self._found.set()
                    continue
            sys.stderr.write(line)

    def wait(self) -> int:
        """Block until the firmware exits by itself; its exit status."""
        assert self.proc is not None
        return self.proc.wait()

    def stop(self) -> None:
        """End the whole process group: SIGTERM, then SIGKILL after 5 s."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            except ProcessLookupError:
                pass
        if proc.stdin:
            proc.stdin.close()
        for thread in self._threads:
            thread.join(timeout=2)

    def __enter__(self) -> "FirmwareBoard":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
