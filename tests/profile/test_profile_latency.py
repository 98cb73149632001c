"""Latency model: held-out published figures within ±35%, Edge TPU cache and CPU fallback."""

from __future__ import annotations

import dataclasses

import pytest

from edgemnv2.profile.cost import graph_costs
from edgemnv2.profile.devices import load_device
from edgemnv2.profile.graph import Layer, ModelGraph
from edgemnv2.profile.latency import TpuPartition, estimate
from edgemnv2.profile.published import published_rows
from edgemnv2.profile.spec import mobilenet_v2_graph


def total_ms(graph: ModelGraph, key: str) -> float:
    return estimate(graph, graph_costs(graph), load_device(key)).total_ms


# The published rows (edgemnv2/profile/published_latency.toml, each with its source), as the benchmark reads them.
HELD_OUT = [r for r in published_rows() if r.role == "held-out"]
FITTED = [r for r in published_rows() if r.role == "fitted"]


@pytest.mark.parametrize("row", HELD_OUT, ids=[f"{r.device}-{r.published_ms:g}" for r in HELD_OUT])
def test_held_out_published_latency_within_35_percent(row):
    assert total_ms(row.graph(), row.device) == pytest.approx(row.published_ms, rel=0.35)


@pytest.mark.parametrize("row", FITTED, ids=[f"{r.device}-{r.published_ms:g}" for r in FITTED])
def test_fitted_rows_are_reproduced(row):
    assert total_ms(row.graph(), row.device) == pytest.approx(row.published_ms, rel=0.06)


def test_published_rows_cover_every_fitted_profile_and_hold_out_some():
    assert {r.device for r in FITTED} == {"rpi4", "coral-usb", "coral-devboard", "stm32h7", "pico",
                                          "qemu-an386-reference"}  # qemu-an386: per-kind cycles from its firmware
    assert len(HELD_OUT) >= 8 and all(r.source for r in published_rows())
    assert {r.model: r.published_ms for r in FITTED if r.device == "rpi4"} == {"MobileNetV2 1.0/224 int8": 17.0}


def test_latency_grows_with_work_and_falls_with_clock():
    small, large = mobilenet_v2_graph(0.35, 96), mobilenet_v2_graph(1.0, 224)
    assert total_ms(small, "stm32h7") < total_ms(large, "stm32h7")
    device = load_device("stm32h7")
    faster = dataclasses.replace(device, clock_mhz=800)
    graph = mobilenet_v2_graph(0.35, 128)
    assert estimate(graph, graph_costs(graph), faster).total_ms < estimate(graph, graph_costs(graph), device).total_ms


def test_edgetpu_streams_parameters_beyond_the_cache():
    small = estimate(g := mobilenet_v2_graph(1.0, 224), graph_costs(g), load_device("coral-usb"))
    assert small.edgetpu.streamed_bytes == 0
    big = mobilenet_v2_graph(1.4, 224, classes=5000)  # ~12 MB of parameters
    result = estimate(big, graph_costs(big), load_device("coral-usb"))
    assert result.edgetpu.streamed_bytes == result.edgetpu.parameter_bytes - result.edgetpu.parameter_cache_bytes > 0
    assert result.edgetpu.stream_ms > 10
    assert any("stream" in note for note in result.notes)


def test_edgetpu_cpu_layers_of_the_partition_run_on_the_host_and_the_boundary_is_paid():
    graph = mobilenet_v2_graph(0.35, 96)
    device = load_device("coral-usb")
    costs = graph_costs(graph)
    all_tpu = estimate(graph, costs, device)
    reasons = [None] * (len(graph.layers) - 1) + ["SOFTMAX on the CPU"]
    split = estimate(graph, costs, device, TpuPartition(reasons, boundary_bytes=10_000))
    assert all_tpu.edgetpu.boundary_bytes == 96 * 96 * 3 + 1000   # graph input + output, int8
    assert any("no .tflite to partition" in n for n in all_tpu.notes)
    assert [t.unit for t in split.layers][-1] == "cpu" and all(t.unit == "edgetpu" for t in split.layers[:-1])
    assert split.edgetpu.cpu_fallback_ops == [f"{graph.layers[-1].index}:{graph.layers[-1].name} (SOFTMAX on the CPU)"]
    assert split.edgetpu.io_ms == pytest.approx(10_000 / (device.edgetpu.host_link_mbps * 1e6) * 1e3)
    tpu_ms = sum(t.ms for t in split.layers if t.unit == "edgetpu")
    assert split.total_ms == pytest.approx(device.edgetpu.invoke_overhead_us * 1e-3 + split.edgetpu.io_ms
                                           + split.edgetpu.stream_ms + tpu_ms + split.layers[-1].ms)


def test_unknown_op_is_marked_not_estimated():
    graph = mobilenet_v2_graph(0.35, 96)
    odd = Layer(index=len(graph.layers), name="mystery", op="UNKNOWN(CUSTOM my-op)", tflite_op="CUSTOM:my-op",
                known=False, input_shape=(1, 1000), output_shape=(1, 1000))
    graph = dataclasses.replace(graph, layers=graph.layers + (odd,))
    result = estimate(graph, graph_costs(graph), load_device("rpi4"))
    assert result.layers[-1].ms is None and result.layers[-1].bound == "unknown"
    assert result.total_ms is not None and any("CUSTOM:my-op" in n for n in result.notes)


def test_edgetpu_fallback_uses_the_edgetpu_op_rules(dynamic_mnv2_035_96):
    """A float-activation model: the op rules (deploy/edgetpu_ops.toml) put the first op and all after on the CPU."""
    from edgemnv2.profile import profile

    [report] = profile(dynamic_mnv2_035_96, device="coral-usb")
    assert report.edgetpu.cpu_fallback_ops and report.edgetpu.cpu_fallback_ops[0].startswith("0:")
    assert all(row.unit == "cpu" for row in report.layers)
    assert any("run on the host CPU (the Edge TPU compiler's partition)" in note for note in report.notes)


def test_coral_profile_uses_the_compilers_partition_of_movenet(shared_dir):
    """CPU ops before and after the TPU segment run on the host; the boundary tensors cross the link."""
    from edgemnv2.deploy.edgetpu import partition, read_graph
    from edgemnv2.profile import profile

    model = shared_dir / "models" / "edgetpu" / "movenet_single_pose_lightning_ptq.tflite"
    [report] = profile(model, device="coral-usb")
    part = partition(read_graph(model))
    assert [row.unit == "cpu" for row in report.layers] == [p.device == "cpu" for p in part.placements]
    assert sum(row.unit == "cpu" for row in report.layers) == 59
    assert report.edgetpu.boundary_bytes == sum(t.bytes for t in part.tpu_inputs + part.tpu_outputs)
