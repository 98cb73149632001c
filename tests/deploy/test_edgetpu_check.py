"""`edgemnv2 edgetpu check`: Coral's rules applied to real models, and each rule on its own."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgemnv2.cli import cli
from edgemnv2.deploy import edgetpu
from edgemnv2.deploy.edgetpu import Graph, Op, Tensor
from edgemnv2.errors import DeviceProfileError, ModelError

INT8 = 9


def test_coral_mobilenet_v2_runs_entirely_on_the_tpu(coral_v2_tflite: Path) -> None:
    report = edgetpu.check_model(coral_v2_tflite)
    assert not report.compiled
    assert (report.tpu_ops, report.cpu_ops, report.first_cpu_op) == (68, 0, None)
    assert report.fits_cache and 3_000_000 < report.parameter_bytes < 4_000_000   # 3.5 M int8 weights + biases
    assert report.verdict.startswith("all 68 ops can run on the Edge TPU")


def test_dynamic_range_model_names_its_first_cpu_op(dynamic_mnv2_035_96: Path) -> None:
    report = edgetpu.check_model(dynamic_mnv2_035_96)
    assert report.first_cpu_op == "CONV_2D" and report.first_cpu_index == 0
    assert report.tpu_ops == 0 and report.cpu_ops == len(report.ops)
    assert report.ops[0].rule == "tensors_8bit" and "float32" in report.first_cpu_reason


def test_int8_model_from_the_converter_maps_fully(int8_mnv2_035_128: Path) -> None:
    report = edgetpu.check_model(int8_mnv2_035_128)
    assert report.cpu_ops == 0 and report.fits_cache


def test_compiled_model_is_recognised(shared_dir: Path) -> None:
    report = edgetpu.check_model(shared_dir / "models" / "mobilenet_v1_0.25_128_quant_edgetpu.tflite")
    assert report.compiled and report.tpu_ops == 1 and report.cpu_ops == 0
    assert report.ops[0].op == edgetpu.EDGETPU_CUSTOM_OP
    assert report.verdict.startswith("already compiled") and report.fits_cache is None


def test_cli_json_has_the_promised_keys(coral_v2_tflite: Path) -> None:
    res = CliRunner().invoke(cli, ["edgetpu", "check", str(coral_v2_tflite), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert {"compiled", "tpu_ops", "cpu_ops", "first_cpu_op", "parameter_bytes", "fits_cache"} <= set(data)
    assert data["tpu_ops"] == 68 and data["cpu_ops"] == 0 and data["first_cpu_op"] is None


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


# ---------------------------------------------------------------- the rules file

def test_every_rule_has_a_source_and_a_message() -> None:
    rules = edgetpu.load_rules()
    data = tomllib.loads(edgetpu.RULES_FILE.read_text())
    for rule in rules.ops.values():
        assert rule.source.url.startswith("https://coral.ai/") and rule.source.section and rule.source.retrieved
        for check in rule.checks:
            assert edgetpu.CHECKS[check].__doc__, check
    assert rules.cache_bytes == 8 * 2**20 and rules.cache_source.section == "#parameter-data-caching"
    assert set(data["general"]["checks"]) <= set(edgetpu.CHECKS)


def test_malformed_rules_name_file_key_and_allowed_values(tmp_path: Path) -> None:
    text = edgetpu.RULES_FILE.read_text().replace('checks = ["same_dilation"]', 'checks = ["same_dilatation"]', 1)
    bad = tmp_path / "rules.toml"
    bad.write_text(text)
    with pytest.raises(DeviceProfileError, match=r"rules\.toml: ops\.CONV_2D\.checks names unknown check 'same_dilatation'; known: .*same_dilation"):
        edgetpu.load_rules(bad)


# ---------------------------------------------------------------- single rules on hand-made graphs

def _t(i: int, shape, dtype=INT8, data=None, signature=None) -> Tensor:
    return Tensor(index=i, name=f"t{i}", dtype=dtype, shape=tuple(shape), signature=tuple(signature or shape),
                  data=data, quantized=True)


class _Opts:
    """Stands in for a tflite.*Options table."""

    def __init__(self, **values):
        self.values = values

    def __getattr__(self, name):
        return lambda: self.values[name]


def test_partitioning_stops_at_the_first_unsupported_op() -> None:
    tensors = tuple(_t(i, (1, 8, 8, 4)) for i in range(5))
    ops = (Op(0, "ADD", (0, 0), (1,), None, 0), Op(1, "HARD_SWISH", (1,), (2,), None, 0),
           Op(2, "ADD", (2, 2), (3,), None, 0), Op(3, "RELU", (3,), (4,), None, 0))
    placements = edgetpu.place_ops(Graph(tensors, ops), edgetpu.load_rules())
    assert placements[1].rule == "supported_operations" and "HARD_SWISH" in placements[1].reason
    placements = [p.device for p in placements]
    assert placements == ["tpu", "cpu", "cpu", "cpu"]   # ADD after HARD_SWISH still goes to the CPU


def test_rules_catch_their_violations() -> None:
    g = Graph(tensors=(_t(0, (1, 4, 4, 8)), _t(1, (1, 2, 2, 8)), _t(2, (1, 1000, 20)), _t(3, (1, 20000)),
                       _t(4, (4,), dtype=2, data=(2).to_bytes(4, "little") * 4), _t(5, (2, 1, 8, 8, 3)),
                       _t(6, (1, 10, 4, 8), signature=(1, -1, 4, 8))), ops=())
    dilated = Op(0, "CONV_2D", (0,), (1,), _Opts(DilationHFactor=2, DilationWFactor=1), 0)
    assert "dilation is 2 x 1" in edgetpu.CHECKS["same_dilation"](dilated, g)
    pool = Op(0, "MAX_POOL_2D", (0,), (1,), _Opts(FusedActivationFunction=1), 0)
    assert edgetpu.CHECKS["no_fused_activation"](pool, g)
    assert edgetpu.CHECKS["softmax_1d_max_16000"](Op(0, "SOFTMAX", (2,), (2,), None, 0), g)
    assert "20000 elements" in edgetpu.CHECKS["softmax_1d_max_16000"](Op(0, "SOFTMAX", (3,), (3,), None, 0), g)
    sliced = Op(0, "STRIDED_SLICE", (0, 4, 4, 4), (1,), _Opts(EllipsisMask=0, NewAxisMask=0), 0)
    assert "strides [2, 2, 2, 2]" in edgetpu.CHECKS["strided_slice_unit_strides"](sliced, g)
    assert edgetpu.CHECKS["rank_3_innermost"](Op(0, "ADD", (5,), (5,), None, 0), g)
    assert edgetpu.CHECKS["static_shapes"](Op(0, "ADD", (6,), (6,), None, 0), g)
    float_in = Graph(tensors=(_t(0, (1, 4), dtype=0), _t(1, (1, 4))), ops=())
    assert "float32" in edgetpu.CHECKS["tensors_8bit"](Op(0, "QUANTIZE", (0,), (1,), None, 0), float_in)


def test_float_input_quantize_stays_on_cpu_without_splitting_the_model() -> None:
    """A float-I/O int8 model: the input QUANTIZE runs on the CPU, the int8 body on the TPU, DEQUANTIZE on the CPU."""
    tensors = (_t(0, (1, 8, 8, 3), dtype=0), _t(1, (1, 8, 8, 3)), _t(2, (1, 8, 8, 3)), _t(3, (1, 8, 8, 3), dtype=0))
    ops = (Op(0, "QUANTIZE", (0,), (1,), None, 0), Op(1, "ADD", (1, 1), (2,), None, 0),
           Op(2, "DEQUANTIZE", (2,), (3,), None, 0))
    placements = edgetpu.place_ops(Graph(tensors, ops, inputs=(0,)), edgetpu.load_rules())
    assert [(p.device, p.rule) for p in placements] == [("cpu", "float_input_quantize"), ("tpu", None),
                                                        ("cpu", "supported_operations")]
