"""Code size per object file, from the GNU ld map `edgemnv2 build` writes (build/KERNELS/firmware.map).

`arm-none-eabi-size` gives one ELF's totals; comparing a runtime's code with another's needs the bytes each
object contributes after `--gc-sections`, which only the linker's map records (input sections it kept, with
their sizes and object files). Objects in the build cache are named `STEM-HASH.o`, archive members
`lib.a(member.o)`.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from edgemnv2.errors import BuildError

_MAP_START = "Linker script and memory map"
_PLACED = re.compile(r"^\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S.*)$")
_CACHED = re.compile(r"^(.*)-[0-9a-f]{32}$")


@dataclass(frozen=True)
class InputSection:
    """One input section the linker kept."""

    name: str        # e.g. .text.se_conv, .rodata.p12
    size: int
    obj: str         # object file's stem (cache hash stripped) or `lib.a(member.o)`

    @property
    def kind(self) -> str:
        """code (.text*), rodata (.rodata*), data, bss or other."""
        for prefix, kind in ((".text", "code"), (".rodata", "rodata"), (".data", "data"), (".bss", "bss")):
            if self.name == prefix or self.name.startswith(prefix + "."):
                return kind
        return "other"


def _object_name(path: str) -> str:
    if "(" in path:        # an archive member: libc.a(lib_a-memcpy.o)
        return Path(path.split("(")[0]).name + "(" + path.split("(", 1)[1]
    stem = Path(path).stem
    match = _CACHED.match(stem)
    return match.group(1) if match else stem


def read_map(path: Path) -> list[InputSection]:
    """Every input section placed in the image (discarded ones are listed before the memory map, not read)."""
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    if _MAP_START not in text:
        raise BuildError(f"{path} is not a GNU ld map (no {_MAP_START!r})")
    sections: list[InputSection] = []
    pending: str | None = None
    for line in text.split(_MAP_START, 1)[1].splitlines():
        if line.startswith(" .") or line.startswith(" COMMON"):
            parts = line.split()
            if len(parts) >= 4 and parts[1].startswith("0x") and parts[2].startswith("0x"):
                if int(parts[2], 16):
                    sections.append(InputSection(parts[0], int(parts[2], 16), _object_name(" ".join(parts[3:]))))
                pending = None
            else:
                pending = parts[0] if len(parts) == 1 else None
            continue
        placed = _PLACED.match(line) if pending else None
        if placed and int(placed.group(2), 16):
            sections.append(InputSection(pending, int(placed.group(2), 16), _object_name(placed.group(3))))
        pending = None
    return sections


def size_by_object(sections: list[InputSection]) -> dict[str, dict[str, int]]:
    """{object: {kind: bytes}}."""
    table: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for s in sections:
        table[s.obj][s.kind] += s.size
    return {k: dict(v) for k, v in table.items()}
