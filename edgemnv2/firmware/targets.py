"""Build targets (emulated Cortex-M boards and the host) from `targets.toml`, as frozen dataclasses."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from edgemnv2.errors import DeviceProfileError, InputError
from edgemnv2.resources import data_file

TARGETS_FILE = data_file("firmware/targets.toml")
KERNEL_SETS = ("cmsis-nn", "reference")


@dataclass(frozen=True)
class Region:
    name: str
    origin: int
    length: int
    attrs: str
    what: str


@dataclass(frozen=True)
class BuildTarget:
    name: str
    title: str
    compiler: str                      # "arm-none-eabi" or "host"
    cpu_flags: tuple[str, ...]
    board_files: tuple[str, ...]       # under firmware_templates/
    kernels_default: str
    source: str
    qemu_machine: str | None = None
    memory: tuple[Region, ...] = ()
    code_region: str | None = None
    data_region: str | None = None
    arena_region: str | None = None
    model_region: str | None = None
    model_fallback: str | None = None
    code_reserve_bytes: int = 0
    stack_bytes: int = 16384
    board: dict[str, Any] = field(default_factory=dict, compare=False)   # [X.board], read by deploy/boards.py

    @property
    def bare_metal(self) -> bool:
        return self.compiler != "host"

    def region(self, name: str) -> Region:
        return next(r for r in self.memory if r.name == name)


@lru_cache(maxsize=1)
def load_targets(path: Path = TARGETS_FILE) -> dict[str, BuildTarget]:
    data = tomllib.loads(path.read_text())
    targets = {}
    for name, entry in data.items():
        entry = dict(entry)
        try:
            memory = tuple(Region(name=r, **v) for r, v in entry.pop("memory", {}).items())
            target = BuildTarget(name=name, memory=memory, cpu_flags=tuple(entry.pop("cpu_flags")),
                                 board_files=tuple(entry.pop("board_files")), **entry)
        except (TypeError, KeyError) as exc:
            raise DeviceProfileError(f"{path}: build target [{name}] is malformed: {exc}") from None
        if target.kernels_default not in KERNEL_SETS:
            raise DeviceProfileError(f"{path}: [{name}] kernels_default must be one of {KERNEL_SETS}")
        targets[name] = target
    return targets


def build_target(name: str) -> BuildTarget:
    targets = load_targets()
    if name not in targets:
        raise InputError(f"unknown build target {name!r}; choose one of: {', '.join(targets)}")
    return targets[name]
