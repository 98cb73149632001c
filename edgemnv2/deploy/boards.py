"""Boards that `edgemnv2 export` renders firmware for and `edgemnv2 flash` flashes, as frozen dataclasses.

No board fact is written here or in a second file: a real board is a device profile
(edgemnv2/profile/devices/KEY.toml) with a `[board]` table, so `export --board KEY`, `flash --board KEY`
and `profile --device KEY` name the same hardware and read one clock, one RAM and one flash size; an
emulated board (QEMU) or the host build is a build target (edgemnv2/firmware/targets.toml) with a
`[X.board]` table, its memory taken from the target's memory map. Old board names resolve through the
profiles' `aliases`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from edgemnv2.errors import DeviceProfileError, InputError
from edgemnv2.firmware.targets import TARGETS_FILE, BuildTarget, load_targets
from edgemnv2.profile.devices import DeviceProfile, canonical_key, load_all

CYCLE_COUNTERS = ("dwt", "ccount", "time_us", "cmsdk_timer", "systick", "clock_monotonic")
# The [board] table of a device profile: only facts the profile does not already hold.
_PROFILE_BOARD_REQUIRED = ("target", "mcu", "core", "cycle_counter", "source")
_PROFILE_BOARD_OPTIONAL = ("max_payload", "window", "fqbn", "idf_target", "pico_board", "openocd_target")
# The [X.board] table of a build target: the same, plus the clock the firmware reports (and memory for the
# host, which has no memory map).
_TARGET_BOARD_REQUIRED = ("mcu", "core", "cpu_hz", "cycle_counter", "source")
_TARGET_BOARD_OPTIONAL = ("max_payload", "window", "ram_bytes", "flash_bytes")
# The [board] table of a Linux board: the `edgemnv2 deploy` family that copies to it (deploy/remote.py).
_LINUX_BOARD_KEYS = ("deploy", "source")


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


def _checked(table: dict[str, Any], path: Path, where: str, required: tuple[str, ...],
             optional: tuple[str, ...]) -> dict[str, Any]:
    """The table's keys checked against what this kind of board table may hold; errors name file and table."""
    missing = [k for k in required if k not in table]
    unknown = sorted(set(table) - set(required) - set(optional))
    if missing or unknown:
        problems = ([f"lacks keys {missing}"] if missing else []) + (
            [f"has keys {unknown} that do not belong there"] if unknown else [])
        raise DeviceProfileError(f"{path}: {where} {' and '.join(problems)} (allowed: {sorted(required + optional)})")
    if table["cycle_counter"] not in CYCLE_COUNTERS:
        raise DeviceProfileError(f"{path}: {where} key cycle_counter = {table['cycle_counter']!r}; "
                                 f"allowed: {', '.join(CYCLE_COUNTERS)}")
    return table


def _from_profile(device: DeviceProfile) -> Board:
    facts = _checked(dict(device.board or {}), device.path, "[board]", _PROFILE_BOARD_REQUIRED,
                     _PROFILE_BOARD_OPTIONAL)
    return Board(name=device.key, title=device.name, cpu_hz=round(device.clock_mhz * 1e6),
                 ram_bytes=device.ram_bytes, flash_bytes=device.flash_bytes, psram_bytes=device.psram_bytes,
                 **facts)


def _regions_bytes(spec: BuildTarget, *names: str | None) -> int:
    return sum(spec.region(n).length for n in dict.fromkeys(n for n in names if n))


def _from_target(spec: BuildTarget, path: Path) -> Board:
    """An emulated board: RAM = the data and arena regions, flash = where the model may go."""
    facts = _checked(dict(spec.board), path, f"[{spec.name}.board]", _TARGET_BOARD_REQUIRED, _TARGET_BOARD_OPTIONAL)
    if spec.memory:
        if "ram_bytes" in facts or "flash_bytes" in facts:
            raise DeviceProfileError(f"{path}: [{spec.name}.board] gives ram_bytes/flash_bytes, which come from "
                                     f"[{spec.name}.memory]")
        facts["ram_bytes"] = _regions_bytes(spec, spec.data_region, spec.arena_region)
        facts["flash_bytes"] = _regions_bytes(spec, spec.model_region, spec.model_fallback)
    elif "ram_bytes" not in facts or "flash_bytes" not in facts:
        raise DeviceProfileError(f"{path}: [{spec.name}.board] needs ram_bytes and flash_bytes (no memory map)")
    return Board(name=spec.name, target=spec.name, title=spec.title, **facts)


@lru_cache(maxsize=1)
def load_boards() -> dict[str, Board]:
    """Every firmware board by key: device profiles with a [board] table, then the emulated build targets."""
    boards = {d.key: _from_profile(d) for d in load_all() if d.board is not None and "deploy" not in d.board}
    for spec in load_targets().values():
        if spec.name in boards:
            raise DeviceProfileError(f"{TARGETS_FILE}: board {spec.name!r} is also a device profile")
        boards[spec.name] = _from_target(spec, Path(str(TARGETS_FILE)))
    return boards


@lru_cache(maxsize=1)
def linux_boards() -> dict[str, str]:
    """Device key -> `deploy` family, for the profiles whose [board] table names one."""
    families = {}
    for device in load_all():
        table = device.board or {}
        if "deploy" in table:
            unknown = sorted(set(table) - set(_LINUX_BOARD_KEYS))
            if unknown or "source" not in table:
                raise DeviceProfileError(f"{device.path}: a Linux board's [board] holds exactly "
                                         f"{list(_LINUX_BOARD_KEYS)}, got {sorted(table)}")
            families[device.key] = table["deploy"]
    return families


def boards_for(target: str) -> list[Board]:
    return [b for b in load_boards().values() if b.target == target]


def resolve_board(target: str, name: str | None) -> Board:
    """The named board (key or old name), or the target's first board; a board of another target is refused."""
    candidates = boards_for(target)
    if name is None:
        return candidates[0]
    for board in candidates:
        if board.name == canonical_key(name):
            return board
    raise InputError(f"unknown board {name!r} for target {target}; choose one of: "
                     + ", ".join(b.name for b in candidates))
