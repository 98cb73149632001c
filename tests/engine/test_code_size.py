"""Code size per object from a GNU ld map: the parser on a hand-written map in ld's own layout."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgemnv2.errors import BuildError
from edgemnv2.firmware.mapfile import read_map, size_by_object

_MAP = """Discarded input sections

 .text.unused   0x00000000       0x40 /c/ab/se_kernels-0123456789abcdef0123456789abcdef.o

Linker script and memory map

.model          0x21000000     0x1000
 .rodata.se_weights
                0x21000000      0xff0 /c/ab/se_model-0123456789abcdef0123456789abcdef.o
.text           0x000000c0      0x200
 .text.se_conv  0x000000c0       0x80 /c/ab/se_kernels-0123456789abcdef0123456789abcdef.o
                0x000000c0                se_conv
 *fill*         0x00000140        0x2 
 .text._ZN6tflite13ErrorReporter6ReportEPKcz
                0x00000144       0x1c /c/07/error_reporter-07aa42513ed5484a61b83568d673c901.o
 .text          0x00000160       0x30 /usr/lib/arm-none-eabi/newlib/libc.a(lib_a-memcpy.o)
 .rodata.p3     0x00000190       0x10 /c/ab/se_model-0123456789abcdef0123456789abcdef.o
 .text.empty    0x000001a0        0x0 /c/ab/se_model-0123456789abcdef0123456789abcdef.o
"""


def test_read_map_by_object(tmp_path: Path) -> None:
    path = tmp_path / "firmware.map"
    path.write_text(_MAP)
    sections = read_map(path)
    # the discarded section, the fill and the empty section are not counted; wrapped lines are
    assert [(s.name, s.size, s.obj, s.kind) for s in sections] == [
        (".rodata.se_weights", 0xff0, "se_model", "rodata"), (".text.se_conv", 0x80, "se_kernels", "code"),
        (".text._ZN6tflite13ErrorReporter6ReportEPKcz", 0x1c, "error_reporter", "code"),
        (".text", 0x30, "libc.a(lib_a-memcpy.o)", "code"), (".rodata.p3", 0x10, "se_model", "rodata")]
    assert size_by_object(sections)["se_model"] == {"rodata": 0xff0 + 0x10}
    path.write_text("not a map\n")
    with pytest.raises(BuildError, match="not a GNU ld map"):
        read_map(path)
