"""`edgemnv2 edgetpu check` against the compiler's own answer: Coral's compiled pairs are the ground truth.

Every op left beside the `edgetpu-custom-op` in a `*_edgetpu.tflite` is an op Coral's compiler put on the
CPU; the compiled file keeps the source's tensor names, so each CPU op is matched by kind and output names.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgemnv2.cli import cli
from edgemnv2.deploy import edgetpu
from edgemnv2.errors import ModelError

PAIRS = {  # source -> (CPU ops before the TPU segment, after it) in the compiled file
    "movenet_single_pose_lightning_ptq": (2, 57),
    "keras_lstm_mnist_ptq": (0, 0),
}


def _compiled_cpu_ops(path: Path) -> Counter:
    graph = edgetpu.read_graph(path)
    return Counter((op.kind, tuple(t.name for t in graph.outputs_of(op)))
                   for op in graph.ops if op.kind != edgetpu.EDGETPU_CUSTOM_OP)


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_static_check_predicts_the_compilers_partition_of_the_pair(shared_dir: Path, name: str) -> None:
    folder = shared_dir / "models" / "edgetpu"
    report = edgetpu.check_model(folder / f"{name}.tflite")
    compiled = folder / f"{name}_edgetpu.tflite"
    predicted = Counter((p.op, p.outputs) for p in report.ops if p.device == "cpu")
    assert predicted == _compiled_cpu_ops(compiled)            # the same ops, by kind and output names
    truth = edgetpu.check_model(compiled)
    assert truth.compiled and (truth.cpu_before, truth.cpu_after) == PAIRS[name]
    assert (report.cpu_ops, report.cpu_before, report.cpu_after) == (truth.cpu_ops, *PAIRS[name])
    assert report.tpu_ops == len(report.ops) - truth.cpu_ops
    # what crosses the boundary is what the compiled custom op reads and writes
    assert {b.name for b in report.tpu_inputs} == {b.name for b in truth.tpu_inputs}
    assert {b.name for b in report.tpu_outputs} == {b.name for b in truth.tpu_outputs}


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_check_against_the_compiled_file_says_identical(shared_dir: Path, name: str) -> None:
    folder = shared_dir / "models" / "edgetpu"
    res = CliRunner().invoke(cli, ["edgetpu", "check", str(folder / f"{name}.tflite"), "--json",
                                   "--against", str(folder / f"{name}_edgetpu.tflite")])
    assert res.exit_code == 0, res.output
    against = json.loads(res.output)["against"]
    assert against["matches"] and not against["cpu_only_in_compiled"] and not against["cpu_only_predicted"]


def test_check_against_lists_every_op_placed_differently(shared_dir: Path) -> None:
    folder = shared_dir / "models" / "edgetpu"
    compiled = edgetpu.check_model(folder / "movenet_single_pose_lightning_ptq_edgetpu.tflite")
    v15 = edgetpu.check_model(folder / "movenet_single_pose_lightning_ptq.tflite", compiler_version="15")
    comparison = edgetpu.compare(v15, compiled)
    assert not comparison.matches and not comparison.cpu_only_in_compiled
    assert len(comparison.cpu_only_predicted) == 98 and comparison.cpu_only_predicted[0] == "#2 SUB"
    text = edgetpu.render_text(dataclasses.replace(v15, against=comparison))
    assert "the prediction differs" in text and "mapped there, predicted on the CPU (98): #2 SUB" in text
    with pytest.raises(ModelError, match="is not a model compiled by edgetpu_compiler"):
        edgetpu.compare(v15, v15)


def test_movenet_names_the_leading_cpu_op_and_where_the_cpu_takes_over(shared_dir: Path) -> None:
    report = edgetpu.check_model(shared_dir / "models" / "edgetpu" / "movenet_single_pose_lightning_ptq.tflite")
    assert (report.tpu_ops, report.cpu_ops, report.tpu_segments) == (98, 59, 1)
    assert (report.first_cpu_index, report.first_cpu_op) == (0, "CAST") and "supported operations" in report.first_cpu_reason
    assert (report.fallback_index, report.fallback_op) == (89, "ARG_MAX")
    assert [p.op for p in report.ops if p.segment == "before"] == ["CAST", "QUANTIZE"]
    assert "input 0 'Cast' is float32" in report.ops[1].reason              # the float QUANTIZE after CAST
    assert all(p.device == "tpu" for p in report.ops if p.op == "RESIZE_BILINEAR")
    v15 = edgetpu.check_model(shared_dir / "models" / "edgetpu" / "movenet_single_pose_lightning_ptq.tflite",
                              compiler_version="15")
    assert v15.tpu_ops == 0 and v15.compiler_version == "15"


def test_coral_mobilenet_v2_runs_entirely_on_the_tpu(coral_v2_tflite: Path) -> None:
    report = edgetpu.check_model(coral_v2_tflite)
    assert not report.compiled
    assert (report.tpu_ops, report.cpu_ops, report.first_cpu_op) == (68, 0, None)
    assert report.fits_cache and report.streamed_bytes == 0 and 3_000_000 < report.parameter_bytes < 4_000_000
    assert report.verdict.startswith("all 68 ops can run on the Edge TPU")


def test_compiled_mobilenet_v1_pair(shared_dir: Path) -> None:
    report = edgetpu.check_model(shared_dir / "models" / "mobilenet_v1_0.25_128_quant_edgetpu.tflite")
    assert report.compiled and (report.tpu_ops, report.cpu_ops) == (1, 0)
    assert report.ops[0].op == edgetpu.EDGETPU_CUSTOM_OP
    assert report.verdict.startswith("already compiled") and report.fits_cache is None
    source = edgetpu.check_model(shared_dir / "models" / "mobilenet_v1_0.25_128_quant.tflite")
    assert source.cpu_ops == 0 and source.tpu_ops == 31


def test_parameters_beyond_the_cache_stream_and_the_report_says_which(coral_v2_tflite: Path) -> None:
    small_cache = dataclasses.replace(edgetpu.load_rules(), cache_bytes=2 * 2**20)
    report = edgetpu.check_model(coral_v2_tflite, small_cache)
    assert report.fits_cache is False and report.cached_bytes <= 2 * 2**20
    assert report.streamed_bytes == report.parameter_bytes - report.cached_bytes > 0
    assert report.streamed_ops and report.streamed_ops == tuple(sorted(report.streamed_ops))
    assert "stream from host memory" in edgetpu.render_text(report)


def test_dynamic_range_model_names_its_first_cpu_op(dynamic_mnv2_035_96: Path) -> None:
    report = edgetpu.check_model(dynamic_mnv2_035_96)
    assert report.first_cpu_op == "CONV_2D" and report.first_cpu_index == 0
    assert report.tpu_ops == 0 and report.cpu_ops == len(report.ops)
    assert report.ops[0].rule == "tensors_8bit" and "float32" in report.first_cpu_reason


def test_int8_model_from_the_converter_maps_fully(int8_mnv2_035_128: Path) -> None:
    report = edgetpu.check_model(int8_mnv2_035_128)
    assert report.cpu_ops == 0 and report.fits_cache


def test_cli_json_is_versioned_and_places_every_op(shared_dir: Path) -> None:
    model = shared_dir / "models" / "edgetpu" / "movenet_single_pose_lightning_ptq.tflite"
    res = CliRunner().invoke(cli, ["edgetpu", "check", str(model), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["schema_version"] == edgetpu.SCHEMA_VERSION and data["compiler_version"] == "16"
    assert (data["tpu_ops"], data["cpu_ops"], data["cpu_before"], data["cpu_after"]) == (98, 59, 2, 57)
    assert len(data["ops"]) == 157 and {o["segment"] for o in data["ops"]} == {"before", "tpu", "after"}
    assert data["ops"][89]["status"] == "Operation not supported"


def test_cli_text_shows_the_segments_and_the_boundary(shared_dir: Path) -> None:
    model = shared_dir / "models" / "edgetpu" / "movenet_single_pose_lightning_ptq.tflite"
    res = CliRunner().invoke(cli, ["edgetpu", "check", str(model), "--ops"])
    assert res.exit_code == 0, res.output
    assert "98 on the Edge TPU, 59 on the CPU (2 before the TPU segment, 57 after it)" in res.output
    assert "First CPU op: #0 CAST" in res.output and "CPU takes over: #89 ARG_MAX" in res.output
    assert "Boundary:    host -> TPU 1 tensor (108.0 KiB), TPU -> host 5 tensors" in res.output
    assert "CPU after   More than one subgraph is not supported" in res.output


def test_unknown_compiler_version_is_one_line(coral_v2_tflite: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "edgemnv2", "edgetpu", "check", str(coral_v2_tflite),
                          "--compiler-version", "9"], capture_output=True, text=True, timeout=60)
    assert res.returncode != 0 and res.stderr.count("\n") == 1
    assert res.stderr.startswith("Error: no Edge TPU compiler model for version '9'; known: 15, 16")


def test_strict_gate_exits_3_when_ops_fall_back(dynamic_mnv2_035_96: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "edgemnv2", "edgetpu", "check", str(dynamic_mnv2_035_96), "--strict"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 3 and "First CPU op: #0 CONV_2D" in res.stdout
    assert res.stderr.strip().startswith("Error: --strict:")


def test_not_a_tflite_file_is_one_clear_line(tmp_path: Path) -> None:
    bad = tmp_path / "model.tflite"
    bad.write_bytes(b"this is not a flatbuffer at all")
    res = subprocess.run([sys.executable, "-m", "edgemnv2", "edgetpu", "check", str(bad)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and res.stderr.strip().count("\n") == 0 and "not a TFLite model" in res.stderr
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(b"\x00" * 4 + b"TFL3" + b"\xff" * 16)
    with pytest.raises(ModelError):
        edgetpu.check_model(truncated)
