"""Board facts for firmware export and flashing, loaded from `boards.toml` into frozen dataclasses.

Kept apart from the performance profiles (edgemnv2/profile/devices/): these are what a build needs
(FQBN, IDF target, clock the firmware reports, memory to check the model against).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from edgemnv2.errors import DeviceProfileError, InputError
from edgemnv2.resources import data_file

BOARDS_FILE = data_file("deploy/boards.toml")
CYCLE_COUNTERS = ("dwt", "ccount", "time_us", "cmsdk_timer", "systick", "clock_monotonic")
_REQUIRED = ("target", "title", "mcu", "core", "cpu_hz", "ram_bytes", "flash_bytes", "cycle_counter", "source")


@dataclass(frozen=True)
class Board:
    name: str
    target: str
    title: str
    mcu: str
    core: str
    cpu_hz: int
    ram_bytes: int
    flash_bytes: int
    cycle_counter: str
    source: str
    psram_bytes: int = 0
    max_payload: int = 1024
    window: int = 2
    fqbn: str | None = None
    idf_target: str | None = None
    pico_board: str | None = None
    openocd_target: str | None = None


@lru_cache(maxsize=1)
def load_boards(path: Path = BOARDS_FILE) -> dict[str, Board]:
    """All boards by name; a malformed entry names the file, the board and the key."""
    data = tomllib.loads(path.read_text())
    boards: dict[str, Board] = {}
    known = set(Board.__dataclass_fields__) - {"name"}
    for name, entry in data.items():
        missing = [k for k in _REQUIRED if k not in entry]
        unknown = sorted(set(entry) - known)
        if missing or unknown:
            raise DeviceProfileError(f"{path}: board [{name}] " + (f"lacks keys {missing}" if missing else "")
                                     + (f" has unknown keys {unknown}" if unknown else "")
                                     + f" (allowed: {sorted(known)})")
        if entry["cycle_counter"] not in CYCLE_COUNTERS:
            raise DeviceProfileError(f"{path}: board [{name}] key cycle_counter = {entry['cycle_counter']!r}; "
                                     f"allowed: {', '.join(CYCLE_COUNTERS)}")
        boards[name] = Board(name=name, **entry)
    return boards


def boards_for(target: str) -> list[Board]:
    return [b for b in load_boards().values() if b.target == target]


def resolve_board(target: str, name: str | None) -> Board:
    """The named board, or the target's first board; a board of another target is refused."""
    candidates = boards_for(target)
    if name is None:
        return candidates[0]
    for board in candidates:
        if board.name == name:
            return board
    raise InputError(f"unknown board {name!r} for target {target}; choose one of: "
                     + ", ".join(b.name for b in candidates))
