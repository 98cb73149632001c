"""Each Edge TPU rule on its own, on small hand-made graphs: the case it allows and the case it refuses.

Every check registered in `edgetpu_rules.CHECKS` must appear in CASES, so a new rule comes with its test.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest

from edgemnv2.deploy import edgetpu, edgetpu_rules
from edgemnv2.tflite import Buffer, Op, OpCode, Quantization, Tensor, dtype
from edgemnv2.tflite import Subgraph as Graph
from edgemnv2.deploy.edgetpu_rules import CHECKS, load_rules, unsupported
from edgemnv2.errors import DeviceProfileError

RULES = load_rules()


def t(i: int, shape, kind: str = "int8", values=None, signature=None, quantized: bool = True,
      variable: bool = False) -> Tensor:
    """Tensor `i`; `values` makes it a constant of that content."""
    raw = None if values is None else np.asarray(values, dtype=dtype(kind).numpy).reshape(shape).tobytes()
    return Tensor(index=i, name=f"t{i}", dtype=dtype(kind), shape=tuple(shape), shape_signature=tuple(signature or shape),
                  quantization=Quantization(scale=(0.1,), zero_point=(0,)) if quantized else None,
                  buffer=None if raw is None else Buffer(index=i + 1, start=0, size=len(raw), file=raw),
                  is_variable=variable)


def make_op(index: int, kind: str, inputs, outputs, options=None) -> Op:
    return Op(index, OpCode(kind, 0, None, 1), tuple(inputs), tuple(outputs), options or {}, None)


def graph(*tensors: Tensor, ops=()) -> Graph:
    return Graph(tensors=tuple(tensors), ops=tuple(ops), inputs=(0,), outputs=())


def op(kind: str, inputs, outputs, **options) -> Op:
    return make_op(0, kind, inputs, outputs, options)


def conv(*extra: Tensor, weights_constant: bool = True, **options):
    g = graph(t(0, (1, 8, 8, 4)), t(1, (4, 3, 3, 4), values=np.zeros(144) if weights_constant else None),
              t(2, (4,), "int32", values=np.zeros(4)), t(3, (1, 8, 8, 4)), *extra)
    return op("CONV_2D", (0, 1, 2), (3,), **options), g


def mean(axes, shape=(1, 7, 7, 8)):
    g = graph(t(0, shape), t(1, (len(axes),), "int32", values=axes), t(2, (1, 8)))
    return op("MEAN", (0, 1), (2,)), g


def lstm(cell_state: str = "int16"):
    tensors = [t(0, (1, 28, 28))] + [t(i, (20, 28), values=np.zeros(560)) for i in range(1, 9)]
    tensors += [t(i, (1,)) for i in range(9, 12)]
    tensors += [t(i, (20,), "int32", values=np.zeros(20)) for i in range(12, 16)]
    tensors += [t(16, (1,)), t(17, (1,)), t(18, (1, 20), variable=True), t(19, (1, 20), cell_state, variable=True),
                t(20, (1, 28, 20))]
    inputs = list(range(0, 9)) + [-1, -1, -1] + list(range(12, 16)) + [-1, -1, 18, 19]
    return op("UNIDIRECTIONAL_SEQUENCE_LSTM", inputs, (20,)), graph(*tensors)


# check name -> (an op that passes, an op that breaks it, words the failure names)
CASES = {
    "tensors_8bit": (conv(), op("ADD", (0, 0), (1,)), "float32 without quantization"),
    "static_shapes": (op("ADD", (0, 0), (1,)), op("ADD", (2, 2), (1,)), "dynamic shape [1, -1, 4, 8]"),
    "rank_3_innermost": (op("ADD", (0, 0), (1,)), op("ADD", (3, 3), (3,)), "shape [2, 1, 8, 8, 3]"),
    "constant_parameters": (conv(), conv(weights_constant=False), "computed at run time"),
    "same_dilation": (conv(dilation_h_factor=2, dilation_w_factor=2), conv(dilation_h_factor=2, dilation_w_factor=1),
                      "dilation is 2 x 1"),
    "no_fused_activation": (op("MAX_POOL_2D", (0,), (1,), fused_activation_function=0),
                            op("MAX_POOL_2D", (0,), (1,), fused_activation_function=1), "fused activation 1"),
    "concat_constant_is_zero_pad": (op("CONCATENATION", (0, 4), (1,)), op("CONCATENATION", (0, 5), (1,)),
                                    "not all zeros"),
    "fc_default_weights_format": (op("FULLY_CONNECTED", (0,), (1,), weights_format=0),
                                  op("FULLY_CONNECTED", (0,), (1,), weights_format=1), "weights format 1"),
    "output_1d": (op("FULLY_CONNECTED", (0,), (6,)), op("FULLY_CONNECTED", (0,), (0,)), "has shape [1, 4, 4, 8]"),
    "no_batch_axis": (mean([1, 2]), mean([0]), "reduces the batch axis 0"),
    "z_reduction_multiple_of_4": (mean([3]), mean([3], shape=(1, 7, 7, 6)), "reduces 6 channels"),
    "no_batch_padding": (op("PAD", (0, 7), (1,)), op("PAD", (0, 8), (1,)), "pads the batch axis by [1, 0]"),
    "no_batch_split": (op("SPLIT", (9, 0), (1,)), op("SPLIT", (10, 0), (1,)), "splits the batch axis 0"),
    "prelu_alpha_1d": (op("PRELU", (0, 11), (0,)), op("PRELU", (0, 0), (0,)), "alpha has shape [1, 4, 4, 8]"),
    "batch_of_one": (op("RESIZE_BILINEAR", (0,), (1,)), op("RESIZE_BILINEAR", (12,), (1,)), "has batch 2"),
    "softmax_1d_max_16000": (op("SOFTMAX", (6,), (6,)), op("SOFTMAX", (13,), (13,)), "20000 elements"),
    "squeeze_leading_ones": (op("SQUEEZE", (14,), (6,), squeeze_dims=(0, 1)), op("SQUEEZE", (15,), (6,)),
                             "squeezes axis 1 of [5, 1, 8]"),
    "strided_slice_unit_strides": (op("STRIDED_SLICE", (0, 16, 16, 16), (1,)),
                                   op("STRIDED_SLICE", (0, 16, 16, 17), (1,)), "strides [2, 2, 2, 2]"),
}

# Tensors the CASES refer to by index (besides the ones conv() and mean() build themselves).
SHARED = graph(
    t(0, (1, 4, 4, 8)), t(1, (1, 4, 4, 8), "float32", quantized=False), t(2, (1, 10, 4, 8), signature=(1, -1, 4, 8)),
    t(3, (2, 1, 8, 8, 3)), t(4, (1, 4, 4, 8), values=np.zeros(128)), t(5, (1, 4, 4, 8), values=np.ones(128)),
    t(6, (1, 8)), t(7, (4, 2), "int32", values=[0, 0, 1, 1, 1, 1, 0, 0]),
    t(8, (4, 2), "int32", values=[1, 0, 1, 1, 1, 1, 0, 0]), t(9, (), "int32", values=3), t(10, (), "int32", values=0),
    t(11, (1, 1, 8), values=np.zeros(8)), t(12, (2, 4, 4, 8)), t(13, (1, 20000)), t(14, (1, 1, 8)), t(15, (5, 1, 8)),
    t(16, (4,), "int32", values=[1, 1, 1, 1]), t(17, (4,), "int32", values=[2, 2, 2, 2]))


def _run(name: str, case) -> str | None:
    rule_op, g = case if isinstance(case, tuple) else (case, SHARED)
    rule = RULES.ops.get(rule_op.kind) or RULES.ops["ADD"]
    return CHECKS[name].func(rule_op, g, rule)


def test_every_check_has_a_case() -> None:
    assert set(CASES) == set(CHECKS)


@pytest.mark.parametrize("name", sorted(CASES))
def test_rule_allows_the_good_case_and_names_what_breaks_the_bad_one(name: str) -> None:
    good, bad, words = CASES[name]
    assert _run(name, good) is None
    detail = _run(name, bad)
    assert detail is not None and words in detail, detail


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_message_is_the_docstring_and_the_rule_is_in_the_data_file(name: str) -> None:
    assert CHECKS[name].message and not CHECKS[name].message.startswith(name)
    used = set(RULES.general) | {c for rule in RULES.ops.values() for c in rule.checks}
    assert name in used


def test_unlisted_operator_is_not_supported_with_the_table_as_source() -> None:
    verdict = unsupported(op("GATHER_ND", (0, 0), (1,)), SHARED, RULES)
    assert verdict.rule == "supported_operations" and verdict.status == edgetpu_rules.NOT_SUPPORTED
    assert "#supported-operations" in verdict.reason


def test_unsupported_reports_the_compiler_status_and_the_rule_message() -> None:
    verdict = unsupported(op("ADD", (1, 1), (1,)), SHARED, RULES)
    assert verdict.status == edgetpu_rules.DATA_TYPE and verdict.reason.startswith(CHECKS["tensors_8bit"].message)
    assert unsupported(*conv(), RULES) is None


def test_lstm_int32_biases_and_int16_cell_state_are_allowed_only_where_the_table_says() -> None:
    assert unsupported(*lstm(), RULES) is None
    verdict = unsupported(*lstm(cell_state="float32"), RULES)
    assert verdict.rule == "tensors_8bit" and "input 19" in verdict.reason
    bias_elsewhere = op("ADD", (0, 14), (1,))
    g = graph(t(0, (1, 8)), t(1, (1, 8)), *[t(i, (1,)) for i in range(2, 14)], t(14, (8,), "int32", values=np.zeros(8)))
    assert unsupported(bias_elsewhere, g, RULES).rule == "tensors_8bit"


def test_every_rule_names_a_source() -> None:
    for rule in RULES.ops.values():
        assert rule.source.where.startswith("https://coral.ai/") and rule.source.section and rule.source.retrieved
        if rule.wide_inputs:
            assert rule.wide_inputs_source is not None and rule.wide_inputs_source.section
    for compiler in RULES.compilers.values():
        assert compiler.source.where and compiler.source.section and compiler.description
    assert RULES.cache_bytes == 8 * 2**20 and RULES.cache_source.section == "#parameter-data-caching"
    assert RULES.compiler(None).version == "16" and RULES.compiler("15.0.340273435").partition == "first-unsupported"


def test_malformed_rules_name_file_key_and_allowed_values(tmp_path: Path) -> None:
    text = edgetpu.RULES_FILE.read_text()
    bad = tmp_path / "rules.toml"
    bad.write_text(text.replace('checks = ["same_dilation"]', 'checks = ["same_dilatation"]', 1))
    with pytest.raises(DeviceProfileError, match=r"rules\.toml: ops\.CONV_2D\.checks names unknown check "
                                                 r"'same_dilatation'; known: .*same_dilation"):
        load_rules(bad)
    bad.write_text(text.replace('partition = "dependencies"', 'partition = "greedy"'))
    with pytest.raises(DeviceProfileError, match=r"compilers\.16\.partition = 'greedy' is not one of dependencies"):
        load_rules(bad)
    with pytest.raises(DeviceProfileError, match=r"no Edge TPU compiler model for version '14'; known: 15, 16"):
        RULES.compiler("14")
    assert tomllib.loads(text)["partitioning"]["default_compiler"] == "16"


# ---------------------------------------------------------------- the partition on hand-made chains

def _chain(kinds: list[str], first_float: bool = False) -> Graph:
    """op i reads tensor i and writes tensor i+1; unsupported kinds are simply not in the table."""
    tensors = [t(0, (1, 8, 8, 4), "float32" if first_float else "int8", quantized=not first_float)]
    tensors += [t(i, (1, 8, 8, 4)) for i in range(1, len(kinds) + 1)]
    ops = [make_op(i, kind, (i,), (i + 1,)) for i, kind in enumerate(kinds)]
    return Graph(tuple(tensors), tuple(ops), inputs=(0,), outputs=(len(kinds),))


def test_v16_keeps_leading_cpu_ops_in_front_and_starts_the_segment_after_them() -> None:
    part = edgetpu.partition(_chain(["CAST", "RELU", "RELU", "ARG_MAX", "RELU"]))
    assert [(p.device, p.segment) for p in part.placements] == [
        ("cpu", "before"), ("tpu", "tpu"), ("tpu", "tpu"), ("cpu", "after"), ("cpu", "after")]
    assert part.placements[4].rule == "one_segment" and "#3 ARG_MAX" in part.placements[4].reason
    assert [b.name for b in part.tpu_inputs] == ["t1"] and [b.name for b in part.tpu_outputs] == ["t3"]


def test_v16_maps_a_branch_that_does_not_need_a_cpu_op_even_after_one_in_execution_order() -> None:
    tensors = tuple(t(i, (1, 8, 8, 4)) for i in range(5))
    ops = (make_op(0, "RELU", (0,), (1,)), make_op(1, "ARG_MAX", (1,), (2,)), make_op(2, "RELU", (1,), (3,)),
           make_op(3, "ADD", (2, 3), (4,)))
    part = edgetpu.partition(Graph(tensors, ops, inputs=(0,), outputs=(4,)))
    assert [p.device for p in part.placements] == ["tpu", "cpu", "tpu", "cpu"]
    assert part.placements[3].status == edgetpu_rules.ONE_SUBGRAPH
    assert {b.name for b in part.tpu_outputs} == {"t1", "t3"}


def test_v15_sends_the_first_unsupported_op_and_everything_after_it_to_the_cpu() -> None:
    placements = edgetpu.partition(_chain(["RELU", "HARD_SWISH", "RELU"]), compiler_version="15").placements
    assert [p.device for p in placements] == ["tpu", "cpu", "cpu"]
    assert placements[1].rule == "supported_operations" and "#1 HARD_SWISH" in placements[2].reason
    placements = edgetpu.partition(_chain(["CAST", "RELU"]), compiler_version="15").placements
    assert [p.device for p in placements] == ["cpu", "cpu"]


def test_v15_keeps_a_float_input_quantize_in_front_without_splitting() -> None:
    g = _chain(["QUANTIZE", "RELU", "DEQUANTIZE"], first_float=True)
    placements = edgetpu.partition(g, compiler_version="15").placements
    assert [(p.device, p.segment, p.rule) for p in placements] == [
        ("cpu", "before", "float_input_quantize"), ("tpu", "tpu", None), ("cpu", "after", "supported_operations")]


def test_the_docs_rule_table_lists_every_rule_and_operator_with_its_source() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "edgetpu.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    for name in CHECKS:
        assert f"`{name}`" in rows and RULES.general_source.where in rows[f"`{name}`"], name
    for op in RULES.ops:
        assert op in rows, op
    for version in RULES.compilers:
        assert f"partition, compiler {version}" in rows
