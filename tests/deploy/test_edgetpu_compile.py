"""`edgemnv2 edgetpu compile`: the compiler's log parsed into the check report, the compiler found on PATH
(a stand-in script that prints a captured log, so the wrapper's real subprocess path runs), and the
one-line answer when it is not installed."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from edgemnv2.deploy import edgetpu
from edgemnv2.errors import ConversionError, ToolMissing

# Captured from edgetpu_compiler 16 (`-s`) on a fully int8 MobileNetV2 1.0/224 with uint8 I/O.
FULL_LOG = """Edge TPU Compiler version 16.0.384591198
Started a compilation timeout timer of 180 seconds.

Model compiled successfully in 1155 ms.

Input model: tf2_mobilenet_v2_1.0_224_ptq.tflite
Input size: 3.88MiB
Output model: tf2_mobilenet_v2_1.0_224_ptq_edgetpu.tflite
Output size: 4.11MiB
On-chip memory used for caching model parameters: 3.75MiB
On-chip memory remaining for caching model parameters: 4.31MiB
Off-chip memory used for streaming uncached model parameters: 0.00B
Number of Edge TPU subgraphs: 1
Total number of operations: 68
Operation log: tf2_mobilenet_v2_1.0_224_ptq_edgetpu.log

Operator                       Count      Status

QUANTIZE                       2          Mapped to Edge TPU
CONV_2D                        36         Mapped to Edge TPU
DEPTHWISE_CONV_2D              17         Mapped to Edge TPU
ADD                            10         Mapped to Edge TPU
MEAN                           1          Mapped to Edge TPU
RESHAPE                        1          Mapped to Edge TPU
SOFTMAX                        1          Mapped to Edge TPU
Compilation child process completed within timeout period.
Compilation succeeded!
"""

# The shape of a partial mapping (google-coral/edgetpu issue #427 reports this layout).
PARTIAL_LOG = """Edge TPU Compiler version 15.0.340273435

Model compiled successfully in 1379 ms.

Input model: model.tflite
Input size: 4.41MiB
Output model: model_edgetpu.tflite
Output size: 5.49MiB
On-chip memory used for caching model parameters: 1.92MiB
On-chip memory remaining for caching model parameters: 1.75KiB
Off-chip memory used for streaming uncached model parameters: 3.23MiB
Number of Edge TPU subgraphs: 1
Total number of operations: 136
Operation log: model_edgetpu.log

Model successfully compiled but not all operations are supported by the Edge TPU. A percentage of the model will instead run on the CPU, which is slower. If possible, consider updating your model to use only operations supported by the Edge TPU. For details, visit g.co/coral/model-reqs.
Number of operations that will run on Edge TPU: 135
Number of operations that will run on CPU: 1

Operator                       Count      Status

RESHAPE                        15         Mapped to Edge TPU
CONCATENATION                  3          Mapped to Edge TPU
MAX_POOL_2D                    3          Mapped to Edge TPU
ADD                            10         Mapped to Edge TPU
CUSTOM                         1          Operation is working on an unsupported data type
CONV_2D                        104        Mapped to Edge TPU
"""

FAILED_LOG = """Edge TPU Compiler version 16.0.384591198
Started a compilation timeout timer of 180 seconds.
ERROR: Attempting to use a delegate that only supports static-sized tensors with a graph that has dynamic-sized tensors.
Compilation failed: Model failed in Tflite interpreter. Please ensure model can be loaded/run in Tflite interpreter.
Compilation child process completed within timeout period.
Compilation failed!
"""


def test_parse_full_log() -> None:
    log = edgetpu.parse_compiler_log(FULL_LOG)
    assert log.succeeded and log.version == "16.0.384591198"
    assert (log.tpu_ops, log.cpu_ops, log.total_ops, log.subgraphs) == (68, 0, 68, 1)
    assert log.on_chip_bytes == round(3.75 * 2**20) and log.off_chip_bytes == 0
    assert log.on_chip_remaining_bytes == round(4.31 * 2**20)
    assert ("CONV_2D", 36, "Mapped to Edge TPU") in log.operators and len(log.operators) == 7
    report = edgetpu.report_from_log(Path("m.tflite"), log)
    assert report.compiled and report.fits_cache and report.first_cpu_op is None and report.cpu_ops == 0


def test_parse_partial_log() -> None:
    log = edgetpu.parse_compiler_log(PARTIAL_LOG)
    assert (log.tpu_ops, log.cpu_ops) == (135, 1)
    assert log.off_chip_bytes == round(3.23 * 2**20) and log.on_chip_remaining_bytes == round(1.75 * 1024)
    report = edgetpu.report_from_log(Path("m.tflite"), log)
    assert report.first_cpu_op == "CUSTOM" and report.first_cpu_reason == "Operation is working on an unsupported data type"
    assert report.fits_cache is False   # parameters streamed from host memory


def test_failed_compilation_is_one_line() -> None:
    log = edgetpu.parse_compiler_log(FAILED_LOG)
    assert not log.succeeded and log.error.startswith("ERROR: Attempting to use a delegate")
    with pytest.raises(ConversionError, match="edgetpu_compiler failed on m.tflite: ERROR: Attempting"):
        edgetpu.report_from_log(Path("m.tflite"), log)


@pytest.fixture()
def fake_compiler(tmp_path: Path, monkeypatch) -> Path:
    """An `edgetpu_compiler` on PATH that records its arguments and prints the captured log."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (tmp_path / "log.txt").write_text(FULL_LOG)
    script = bindir / "edgetpu_compiler"
    script.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {tmp_path}/args.txt\ncat {tmp_path}/log.txt\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return tmp_path


def test_compile_passes_options_through(fake_compiler: Path, coral_v2_tflite: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "edgemnv2", "edgetpu", "compile", str(coral_v2_tflite), "--json",
                          "--", "-a", "-m", "13"], capture_output=True, text=True, timeout=60, env=os.environ.copy())
    assert res.returncode == 0, res.stderr
    args = (fake_compiler / "args.txt").read_text().split("\n")
    assert args[:4] == ["-a", "-m", "13", "-s"] and args[4] == str(coral_v2_tflite)
    report = json.loads(res.stdout)
    assert report["compiled"] and report["tpu_ops"] == 68 and report["source"] == "edgetpu_compiler"


def test_missing_compiler_is_one_line(coral_v2_tflite: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}   # nothing on PATH
    res = subprocess.run([sys.executable, "-m", "edgemnv2", "edgetpu", "compile", str(coral_v2_tflite)],
                         capture_output=True, text=True, timeout=60, env=env)
    assert res.returncode == 1
    assert res.stderr.strip().startswith("Error: edgetpu_compiler is not on PATH") and "\n" not in res.stderr.strip()
    assert "apt-get install edgetpu-compiler" in res.stderr
    with pytest.raises(ToolMissing):
        edgetpu.compile_model(coral_v2_tflite, compiler="edgetpu_compiler_that_does_not_exist")


def test_compile_reads_where_each_op_landed_from_the_model_it_wrote(fake_compiler: Path, shared_dir: Path) -> None:
    """The stand-in 'writes' Coral's compiled MoveNet; the report places its CPU ops before/after the segment."""
    written = fake_compiler / "movenet_edgetpu.tflite"
    compiled = shared_dir / "models" / "edgetpu" / "movenet_single_pose_lightning_ptq_edgetpu.tflite"
    log = (PARTIAL_LOG.replace("Output model: model_edgetpu.tflite", f"Output model: {written}")
           .replace("on Edge TPU: 135", "on Edge TPU: 98").replace("on CPU: 1", "on CPU: 59"))
    (fake_compiler / "log.txt").write_text(log)
    script = fake_compiler / "bin" / "edgetpu_compiler"
    script.write_text(script.read_text().replace("cat ", f"cp {compiled} {written}\ncat "))
    report, _log, _text = edgetpu.compile_model(shared_dir / "models" / "edgetpu" / "movenet_single_pose_lightning_ptq.tflite")
    assert (report.tpu_ops, report.cpu_ops) == (98, 59)              # the log's counts
    assert (report.cpu_before, report.cpu_after, report.fallback_op) == (2, 57, "ARG_MAX")   # the file's placement
    assert len(report.ops) == 60 and report.ops[2].op == edgetpu.EDGETPU_CUSTOM_OP
    assert any(str(written) in note for note in report.notes)
