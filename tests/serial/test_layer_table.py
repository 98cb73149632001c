"""Per-layer times in the bench report: mean per op over images, and the sum checked against the whole."""

from __future__ import annotations

import dataclasses

import pytest

from edgemnv2.serial.bench import BenchReport, LayerTimes, render_report


def _record(latency: int, layers: list[int] | None) -> dict:
    record = {"status": "ok", "latency_us": latency}
    if layers is not None:
        record["layer_us"] = layers
    return record


def test_mean_per_op_and_gap_to_whole_inference() -> None:
    times = LayerTimes.of([_record(100, [10, 80]), _record(120, [30, 80]), _record(500, None)])
    assert times is not None
    assert times.images == 2
    assert times.mean_us == [20.0, 80.0]
    assert times.sum_us == 100.0
    assert times.whole_us == 110.0
    assert abs(times.gap_fraction - 10 / 110) < 1e-4


def test_no_table_without_per_layer_times_or_with_mixed_op_counts() -> None:
    assert LayerTimes.of([_record(100, None)]) is None
    assert LayerTimes.of([_record(100, [50, 50]), _record(100, [100])]) is None


def test_rendered_in_the_bench_summary() -> None:
    fields = {f.name: None for f in dataclasses.fields(BenchReport)}
    fields.update(port="/dev/pts/1", baud=115200, board="b", runtime="r", protocol_version=1, out="r.jsonl",
                  total=1, received=1, received_this_run=1, errors=0, missing=0, compared=0, stopped=None,
                  layers=LayerTimes.of([_record(100, [25, 73])]))
    text = render_report(BenchReport(**fields))
    assert "per layer    2 ops, mean over 1 images: sum 98 µs vs whole inference 100 µs (2.00% between ops)" in text
    assert "    1        73.0   74.5%" in text


def test_measured_beside_the_estimate_per_op_and_per_kind() -> None:
    from edgemnv2.profile.devices import load_device
    from edgemnv2.profile.spec import mobilenet_v2_graph

    graph = mobilenet_v2_graph(0.35, 96)
    n = len(graph.layers)
    records = [_record(n * 12, [10.0] * n), _record(n * 12, [14.0] * n)]
    times = LayerTimes.of(records, graph, 1_000_000_000, load_device("qemu-an386"))
    table = times.table
    assert table.device == "qemu-an386" and len(table.ops) == n and table.measured_us == pytest.approx(12.0 * n)
    assert sum(k.ops for k in table.kinds) == n and [k.kind for k in table.kinds] == ["conv", "pointwise", "depthwise", "fully_connected", "add", "mean",
                                                                 "softmax"]
    pointwise = next(k for k in table.kinds if k.kind == "pointwise")
    # 12 µs per op at 1 GHz = 12,000 instructions per op
    assert pointwise.measured_cycles_per_mac == pytest.approx(12_000 * pointwise.ops / pointwise.macs, rel=1e-3)
    assert pointwise.estimated_us == pytest.approx(sum(r.estimated_us for r in table.ops if r.kind == "pointwise"))
    assert table.estimate_error == pytest.approx(table.estimated_us / table.measured_us - 1, abs=1e-5)
    fields = {f.name: None for f in dataclasses.fields(BenchReport)}
    fields.update(port="/dev/pts/1", baud=115200, board="b", runtime="r", protocol_version=1, out="r.jsonl",
                  total=2, received=2, received_this_run=2, errors=0, missing=0, compared=0, stopped=None, layers=times)
    text = render_report(BenchReport(**fields))
    assert "by kind (cycles per MAC at the board's 1000 MHz; estimate: qemu-an386)" in text
    assert "    0  CONV_2D              conv" in text
    # without a device: measured only; another op count than the graph's: no table
    assert LayerTimes.of(records, graph, 1_000_000_000).table.estimated_us is None
    assert LayerTimes.of([_record(10, [5, 5])], graph, 1_000_000_000).table is None
