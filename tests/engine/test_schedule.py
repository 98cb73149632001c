"""Schedules with exact memory: hand-checked small graphs, then the MobileNetV2 targets."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from edgemnv2.cli import cli
from edgemnv2.errors import InputError
from edgemnv2.profile.opgraph import Op, OpGraph, Tensor
from edgemnv2.profile.schedule import (Interval, build_steps, plan_inplace, plan_patch, plan_patch_at,
                                       plan_schedule, split_points, tile_intervals)


def _graph(tensors: list[tuple[str, tuple[int, ...]]], ops: list[Op], inputs=(0,), outputs=None) -> OpGraph:
    """A graph from (name, shape) activations; constants are appended as needed by the ops' weights."""
    ts = [Tensor(i, name, shape, "int8", 1, False, 0, (0.1,), (0,)) for i, (name, shape) in enumerate(tensors)]
    return OpGraph("hand.tflite", tuple(ts), tuple(ops), tuple(inputs),
                   tuple(outputs if outputs is not None else (len(tensors) - 1,)), None)


def _weights(tensors: list, shape: tuple[int, ...]) -> int:
    tensors.append(Tensor(len(tensors), f"w{len(tensors)}", shape, "int8", 1, True, 1))
    return len(tensors) - 1


def _chain():
    """8x8x4 -> 1x1 conv to 8 -> 3x3 depthwise (SAME) -> 1x1 conv to 4."""
    acts = [("in", (1, 8, 8, 4)), ("expand", (1, 8, 8, 8)), ("dw", (1, 8, 8, 8)), ("out", (1, 8, 8, 4))]
    ts = [Tensor(i, n, s, "int8", 1, False, 0, (0.1,), (0,)) for i, (n, s) in enumerate(acts)]
    w = [_weights(ts, (8, 1, 1, 4)), _weights(ts, (1, 3, 3, 8)), _weights(ts, (4, 1, 1, 8))]
    ops = (Op(0, "CONV_2D", (0, w[0], -1), (1,), kernel=(1, 1)),
           Op(1, "DEPTHWISE_CONV_2D", (1, w[1], -1), (2,), kernel=(3, 3), padding="SAME"),
           Op(2, "CONV_2D", (2, w[2], -1), (3,), kernel=(1, 1)))
    return OpGraph("chain.tflite", tuple(ts), ops, (0,), (3,), None)


def test_inplace_chain_peak_by_hand():
    g = _chain()
    s = plan_inplace(g)
    # expand writes over its 256 B input (one 4 B pixel scratch), depthwise over the 512 B expansion
    # (one 64 B channel plane), project over that (8 B pixel scratch): 512 + 64 at the depthwise.
    assert s.inplace_steps == (0, 1, 2)
    assert s.timeline_by_step == (512 + 4, 512 + 64, 512 + 8)
    assert s.peak_bytes == 576 and s.lower_bound_bytes == 576
    assert s.offsets[0] == s.offsets[1] == s.offsets[2] == s.offsets[3]
    assert s.scratch[1] == (512, 64)
    assert s.macs == s.base_macs == 64 * (8 * 4 + 8 * 9 + 4 * 8)


def test_residual_add_runs_in_place_on_the_dying_input():
    acts = [("x", (1, 4, 4, 8)), ("y", (1, 4, 4, 8)), ("sum", (1, 4, 4, 8))]
    ts = [Tensor(i, n, s, "int8", 1, False, 0, (0.1,), (0,)) for i, (n, s) in enumerate(acts)]
    w = _weights(ts, (8, 3, 3, 8))
    ops = (Op(0, "CONV_2D", (0, w, -1), (1,), kernel=(3, 3), padding="SAME"), Op(1, "ADD", (0, 1), (2,)))
    s = plan_inplace(OpGraph("res.tflite", tuple(ts), ops, (0,), (2,), None))
    # a 3x3 conv cannot run in place: x and y (128 B each) live together, then the add reuses one of them
    assert s.inplace_steps == (1,) and s.peak_bytes == 256
    assert s.offsets[2] in (s.offsets[0], s.offsets[1])


def test_tile_regions_through_a_strided_conv_by_hand():
    acts = [("in", (1, 8, 8, 1)), ("c", (1, 4, 4, 2)), ("p", (1, 4, 4, 2))]
    ts = [Tensor(i, n, s, "int8", 1, False, 0, (0.1,), (0,)) for i, (n, s) in enumerate(acts)]
    w1, w2 = _weights(ts, (2, 3, 3, 1)), _weights(ts, (2, 1, 1, 2))
    ops = (Op(0, "CONV_2D", (0, w1, -1), (1,), kernel=(3, 3), stride=(2, 2), padding="SAME"),
           Op(1, "CONV_2D", (1, w2, -1), (2,), kernel=(1, 1)))
    g = OpGraph("s2.tflite", tuple(ts), ops, (0,), (2,), None)
    steps = build_steps(g)
    assert steps[0].pad == (0, 0)     # SAME, 8 -> 4 with stride 2: total padding 1, all after
    assert split_points(g, steps) == [1]
    rows = tile_intervals(g, steps, 1, 2, axis=0)
    # output rows [0,2) read input rows 0*2 .. 1*2+2 = [0,5); rows [2,4) read [4,8) (the 9th row is padding)
    assert rows[1] == (Interval(0, 2), Interval(2, 4))
    assert rows[0] == (Interval(0, 5), Interval(4, 8))
    s = plan_patch_at(g, 1, (2, 2), steps)
    # row 4 and column 4 of the input are read by two tiles each, but the conv's outputs are not
    # recomputed: the split tensor is the tiled conv's own output, so no extra MACs
    assert s.extra_macs == 0


def test_patch_recomputes_overlap_exactly():
    g = _chain()
    steps = build_steps(g)
    assert split_points(g, steps) == [1, 2]
    s = plan_patch_at(g, 2, (2, 1), steps)   # expand + depthwise in two row bands of 4 output rows
    # the depthwise needs 5 rows of the expansion per band: rows 3 and 4 are computed twice
    assert s.patch.rows[1] == (Interval(0, 5), Interval(3, 8))
    assert s.extra_macs == 2 * 8 * (8 * 4)   # two recomputed expansion rows, 8 px each, 32 MACs per px
    assert s.patch.workspace_bytes == 5 * 8 * 8   # one expansion band; the depthwise writes the split tensor
    # while tiling: input 256 + split tensor 512 + workspace 320; afterwards the project runs in place
    assert s.peak_bytes == 256 + 512 + 320
    assert s.timeline_by_step == (256 + 512 + 320, 256 + 512 + 320, 512 + 8)


def test_fused_pad_becomes_conv_padding():
    acts = [("in", (1, 8, 8, 2)), ("padded", (1, 9, 9, 2)), ("dw", (1, 4, 4, 2))]
    ts = [Tensor(i, n, s, "int8", 1, False, 0, (0.1,), (3,)) for i, (n, s) in enumerate(acts)]
    pads = _weights(ts, (4, 2))
    w = _weights(ts, (1, 3, 3, 2))
    ops = (Op(0, "PAD", (0, pads), (1,), pads=((0, 0), (0, 1), (0, 1), (0, 0))),
           Op(1, "DEPTHWISE_CONV_2D", (1, w, -1), (2,), kernel=(3, 3), stride=(2, 2)))
    g = OpGraph("pad.tflite", tuple(ts), ops, (0,), (2,), None)
    steps = build_steps(g)
    assert len(steps) == 1 and steps[0].ops == (0, 1) and steps[0].inputs == (0,) and steps[0].pad == (0, 0)
    s = plan_inplace(g, steps)
    assert s.peak_bytes == 128 + 64       # the depthwise in place over its input + one channel plane, no 162 B pad


def test_bad_split_and_grid_are_one_line_errors():
    g = _chain()
    with pytest.raises(InputError, match="valid split points are 1, 2 "):
        plan_patch_at(g, 7, (2, 2))
    with pytest.raises(InputError, match="does not fit"):
        plan_patch_at(g, 2, (9, 1))


def test_coral_mobilenet_v2_targets(coral_v2_tflite):
    """Must show: 1.0/224 patch <= 25 % of TFLM's 1,665,776 B arena with <= 15 % extra MACs; inplace below it."""
    tflm = plan_schedule(coral_v2_tflite, "tflm")
    assert tflm.peak_bytes == 1_665_776
    inplace = plan_schedule(coral_v2_tflite, "inplace")
    assert inplace.peak_bytes < tflm.peak_bytes
    patch = plan_schedule(coral_v2_tflite, "patch", ram_budget=tflm.peak_bytes // 4)
    assert patch.peak_bytes <= tflm.peak_bytes / 4 and patch.extra_macs_ratio <= 0.15
    # the timeline never exceeds the placed arena, which is exact (offsets do not overlap while live)
    assert max(patch.timeline) <= patch.peak_bytes and patch.lower_bound_bytes <= patch.peak_bytes


def test_patch_search_meets_budget_with_fewest_macs(coral_v2_tflite):
    from edgemnv2.profile.opgraph import read_opgraph

    g = read_opgraph(coral_v2_tflite)
    steps = build_steps(g)
    chosen = plan_patch(g, 300_000, steps)
    assert chosen.peak_bytes <= 300_000
    for split in (chosen.patch.split_step, 13, 14):
        for grid in ((2, 2), (3, 3), (3, 4)):
            other = plan_patch_at(g, split, grid, steps)
            if other.peak_bytes <= 300_000:
                assert other.macs >= chosen.macs


def test_profile_schedule_cli(coral_v2_tflite):
    result = CliRunner().invoke(cli, ["profile", str(coral_v2_tflite), "--schedule", "auto", "-d", "stm32h7",
                                      "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["schema_version"] == 1 and data["tflm_arena_bytes"] == 1_665_776
    kinds = [row["schedule"] for row in data["schedules"]]
    assert kinds[:2] == ["tflm", "inplace"] and "patch" in kinds
    verdict = data["devices"][0]
    assert verdict["device"] == "stm32h7" and verdict["schedule"] == "patch" and "FITS stm32h7" in verdict["verdict"]
    text = CliRunner().invoke(cli, ["profile", str(coral_v2_tflite), "--schedule", "patch", "--patch-split", "14",
                                    "--tiles", "4x4"]).output
    assert "step 14, 4x4" in text and "294,444" in text


@pytest.mark.parametrize("args, message", [
    (["--schedule", "patch", "--tiles", "4x4"], "--patch-split and --tiles together"),
    (["--schedule", "patch", "--patch-split", "14", "--tiles", "four"], "ROWSxCOLS"),
    (["--schedule", "tflm", "--patch-split", "14", "--tiles", "4x4"], "use --schedule patch or auto"),
    (["--ram-budget", "1000"], "go with --schedule"),
    (["--schedule", "patch", "--patch-split", "8", "--tiles", "2x2"], "cannot split"),
])
def test_profile_schedule_errors(coral_v2_tflite, args, message):
    result = CliRunner().invoke(cli, ["profile", str(coral_v2_tflite), *args])
    assert isinstance(result.exception, InputError) and message in str(result.exception)


def test_profile_schedule_error_is_one_line(coral_v2_tflite):
    proc = subprocess.run([sys.executable, "-m", "edgemnv2", "profile", str(coral_v2_tflite), "--schedule", "patch",
                           "--patch-split", "8", "--tiles", "2x2"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stderr.startswith("Error: cannot split") and proc.stderr.count("\n") == 1


@pytest.mark.slow
def test_mobilenet_v2_035_224_fits_256_kib(tmp_path, calib_dir):
    """Must show: MobileNetV2 0.35/224 (random weights) has a schedule within 256 KiB (Nano 33 BLE)."""
    from edgemnv2 import logs
    from edgemnv2.convert import ConvertOptions, convert
    from edgemnv2.models import ModelSpec

    logs.configure(0)
    model = tmp_path / "mnv2_0.35_224.tflite"
    convert(ModelSpec(0.35, 224, "none"), ConvertOptions(calibration=calib_dir, num_calibration=4, output=model))
    chosen = plan_schedule(model, "auto", ram_budget=256 * 1024)
    assert chosen.peak_bytes <= 256 * 1024 and chosen.kind == "patch"


def test_cmsis_scratch_per_target_by_hand():
    """CMSIS-NN's *_get_buffer_size on each target's code path: Cortex-M4 (DSP), Cortex-M55 (MVE), host (C)."""
    from edgemnv2.profile.schedule import cmsis_scratch

    stem = ("conv", (3, 3), (1, 1), (0, 0), 3, 32)       # 27 columns -> 28 aligned
    assert [cmsis_scratch(*stem, t) for t in ("mps2-an386", "mps3-an547", "host")] == [2 * 28 * 2, 4 * 2 * 16, 2 * 28 * 2]
    dw3 = ("depthwise", (3, 3), (1, 1), (1, 1), 96, 96)  # arm_depthwise_conv_3x3_s8 without MVE: no buffer
    assert [cmsis_scratch(*dw3, t) for t in ("mps2-an386", "mps3-an547", "host")] == [0, 4 * 124 * 9, 0]
    dw5 = ("depthwise", (5, 5), (1, 1), (2, 2), 16, 16)  # the s8_opt path: im2col of int16 on DSP
    assert [cmsis_scratch(*dw5, t) for t in ("mps2-an386", "mps3-an547", "host")] == [16 * 25 * 2, 4 * 124 * 25, 0]
    assert cmsis_scratch("pointwise", (1, 1), (1, 1), (0, 0), 16, 32, "mps2-an386") == 0   # 1x1 fast, gcc
    with pytest.raises(InputError, match="code path"):
        cmsis_scratch(*stem, "arduino")


def test_cmsis_plan_differs_per_target_only_in_scratch():
    g = _chain()
    m4 = plan_schedule(b"", "inplace", graph=g, kernels="cmsis-nn", with_stack=False)
    m55 = plan_schedule(b"", "inplace", graph=g, kernels="cmsis-nn", stack_target="mps3-an547", with_stack=False)
    # no in-place conv kernels with CMSIS-NN: expand and dw are both live at the depthwise
    assert not m4.inplace_steps and plan_inplace(g).inplace_steps
    assert m4.arena_bytes == 2 * 8 * 8 * 8
    # with MVE the depthwise asks for 4 x 124 x 9 bytes, live at that step only
    assert m55.arena_bytes == 2 * 8 * 8 * 8 + 4 * 124 * 9 and m55.scratch[1][1] == 4 * 124 * 9
