"""Fixtures for the serial tests: virtual boards on ptys, a null-modem pty pair, the Linux agent."""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import threading
import tty
from pathlib import Path

import pytest

from edgemnv2.serial import agent_files
from edgemnv2.serial.sim import SimOptions, VirtualBoard


@pytest.fixture
def virtual_board():
    """Factory: start an in-process VirtualBoard; all are stopped at teardown.

    `runner` replaces the interpreter; `prepare(board)` runs before the board starts (and sends its INFO)."""
    boards: list[VirtualBoard] = []

    def start(model: Path, runner=None, prepare=None, **options) -> VirtualBoard:
        board = VirtualBoard(model, SimOptions(**options), runner=runner)
        if prepare:
            prepare(board)
        board.start()
        boards.append(board)
        return board

    yield start
    for board in boards:
        board.stop()


@pytest.fixture
def null_modem():
    """Two ptys whose master sides are wired together: (host end, board end), like a USB-serial cable pair."""
    pairs = [os.openpty() for _ in range(2)]
    for _, slave in pairs:
        tty.setraw(slave)
    (ma, sa), (mb, sb) = pairs
    stop_r, stop_w = os.pipe()

    def relay() -> None:
        route = {ma: mb, mb: ma}
        while True:
            ready, _, _ = select.select([ma, mb, stop_r], [], [])
            if stop_r in ready:
                return
            for fd in ready:
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    continue
                view = memoryview(data)
                while view:
                    view = view[os.write(route[fd], view):]

    thread = threading.Thread(target=relay, daemon=True)
    thread.start()
    yield os.ttyname(sa), os.ttyname(sb)
    os.write(stop_w, b"x")
    thread.join()
    for fd in (ma, sa, mb, sb, stop_r, stop_w):
        os.close(fd)


ISOLATED_RUN = ("import runpy, sys; sys.modules['edgemnv2'] = None; sys.argv = sys.argv[1:]; "
                "runpy.run_path(sys.argv[0], run_name='__main__')")


@pytest.fixture
def agent_dir(tmp_path: Path) -> Path:
    """A folder holding only the files deploy copies to a board."""
    folder = tmp_path / "agent"
    folder.mkdir()
    for name, source in agent_files().items():
        shutil.copy(source, folder / name)
    return folder


def _agent_command(agent_dir: Path, *args: str) -> list[str]:
    """Run agent.py in isolated mode with `import edgemnv2` made impossible."""
    return [sys.executable, "-I", "-c", ISOLATED_RUN, str(agent_dir / "agent.py"), *args]


@pytest.fixture
def agent_command(agent_dir: Path):
    """`agent_command(*args)`: the command line running the copied agent with those arguments."""
    return lambda *args: _agent_command(agent_dir, *args)


@pytest.fixture
def start_agent(agent_dir: Path):
    """Factory: start the agent serving on a port; waits for its 'ready' line on stderr."""
    procs: list[subprocess.Popen] = []

    def start(*args: str) -> subprocess.Popen:
        proc = subprocess.Popen(_agent_command(agent_dir, *args), cwd=agent_dir, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        lines = []
        for line in proc.stderr:
            lines.append(line)
            if "agent: ready" in line:
                break
        else:
            raise AssertionError("agent did not start:\n" + "".join(lines))
        threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep draining
        return proc

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)
