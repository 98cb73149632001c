"""Per-layer times in the bench report: mean per op over images, and the sum checked against the whole."""

from __future__ import annotations

import dataclasses

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
