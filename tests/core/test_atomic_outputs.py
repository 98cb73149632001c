"""What the commands write survives a full disk or a read-only destination: one line, exit 1, old files intact."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from edgemnv2.cli import cli
from edgemnv2.errors import OutputError


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_export_on_a_full_disk_keeps_the_previous_project(tmp_path: Path, int8_mnv2_96: Path, monkeypatch) -> None:
    from edgemnv2.deploy import export

    out = tmp_path / "proj"
    export_args = ["export", "--target", "pico", "--model", str(int8_mnv2_96), "--out", str(out)]
    assert CliRunner().invoke(cli, export_args).exit_code == 0
    (out / "build").mkdir()
    (out / "build" / "fw.uf2").write_bytes(b"the user's build")
    before = _tree(out)
    copies = []

    def copy_then_fill_the_disk(src, dst):
        copies.append(dst)
        if len(copies) > 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        Path(dst).write_bytes(Path(src).read_bytes())

    monkeypatch.setattr(export.shutil, "copyfile", copy_then_fill_the_disk)
    result = CliRunner().invoke(cli, export_args + ["--baud", "115200"])
    assert isinstance(result.exception, OutputError) and result.exception.exit_code == 1
    assert str(result.exception) == f"cannot write {out}: no space left on device; the previous proj is unchanged"
    assert _tree(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["proj"]

    monkeypatch.undo()
    assert CliRunner().invoke(cli, export_args + ["--baud", "115200"]).exit_code == 0
    after = _tree(out)
    assert after["build/fw.uf2"] == b"the user's build"  # the user's files stay, the project is the new one
    assert b"115200" in after["src/edgemnv2_config.h"] and after.keys() == before.keys()


def test_read_only_destination_is_one_line(tmp_path: Path, int8_mnv2_96: Path) -> None:
    """sysfs refuses new files even to root, so this holds on CI machines that run as root."""
    for args in (["profile", str(int8_mnv2_96), "--device", "rpi4", "--plot", "/sys/edgemnv2-plot.png"],
                 ["export", "--target", "linux-agent", "--model", str(int8_mnv2_96), "--out", "/sys/edgemnv2-proj"]):
        result = subprocess.run([sys.executable, "-m", "edgemnv2", *args], capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 1, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
        assert lines[0].startswith(f"Error: cannot write {args[-1]}: ") and lines[0].endswith("; nothing was written")
