"""`edgemnv2 devices calibrate`: the non-negative least-squares fit recovers known per-kind cycles exactly from
synthetic bench results, writes a profile that loads back with the same numbers, and `profile --device-file`
then predicts what the fit predicts."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgemnv2.cli import cli
from edgemnv2.errors import InputError
from edgemnv2.profile.calibrate import calibrate, columns, design_row, nnls
from edgemnv2.profile.cost import graph_costs
from edgemnv2.profile.devices import KindCycles, load_device, load_device_file
from edgemnv2.profile.latency import estimate, layer_features
from edgemnv2.profile.spec import mobilenet_v2_graph
from edgemnv2.toml_text import dump_toml

TRUE = {"conv.cycles_per_mac": 4.1, "pointwise.cycles_per_mac": 1.4, "pointwise.cycles_per_output": 41.0,
        "pointwise.cycles_per_weight": 3.4, "depthwise.cycles_per_mac": 3.9, "depthwise.cycles_per_output": 39.0,
        "fully_connected.cycles_per_mac": 1.9, "add.cycles_per_byte": 27.0, "mean.cycles_per_byte": 150.0,
        "softmax.cycles_per_byte": 130.0, "cycles_per_op": 900.0}


def _results(path: Path, alpha: float, resolution: int, images: int = 2, with_ops: bool = True) -> Path:
    """A bench results file whose per-layer µs follow TRUE exactly (cpu_hz 1 GHz: µs x 1000 = cycles)."""
    graph = mobilenet_v2_graph(alpha, resolution)
    ops = layer_features(graph, graph_costs(graph))
    cols = columns({op.kind for op in ops})
    assert set(cols) == set(TRUE)
    cycles = [float(np.dot(design_row(op, cols), [TRUE[c] for c in cols])) for op in ops]
    header = {"kind": "edgemnv2-bench-results", "schema_version": 1, "model_sha256": f"{alpha}-{resolution}",
              "model": f"mnv2_{alpha}_{resolution}.tflite", "cpu_hz": 1_000_000_000}
    if with_ops:
        header["layers"] = {"ops": [dataclasses.asdict(op) for op in ops]}
    layer_us = [c / 1000 for c in cycles]
    records = [{"id": i, "status": "ok", "latency_us": sum(layer_us), "layer_us": layer_us} for i in range(images)]
    path.write_text("\n".join(json.dumps(r) for r in [header, *records]) + "\n")
    return path


def test_nnls_recovers_known_non_negative_coefficients() -> None:
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 1, (40, 6)) * np.array([1e6, 1e4, 1e3, 10, 1, 1e5])
    x = np.array([2.5, 0.0, 7.0, 300.0, 0.0, 1.25])
    assert np.allclose(nnls(a, a @ x), x, rtol=1e-8, atol=1e-8)


def test_nnls_keeps_the_bound_where_least_squares_goes_negative() -> None:
    a = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    b = np.array([2.0, -1.0, 1.0])  # unconstrained: x = (2, -1)
    x = nnls(a, b)
    assert x[1] == 0.0 and x[0] == pytest.approx(1.5)
    gradient = a.T @ (b - a @ x)
    assert gradient[1] <= 1e-12 and abs(gradient[0]) < 1e-12  # Karush-Kuhn-Tucker


def test_calibrate_recovers_per_kind_cycles_and_predicts_held_out_models(tmp_path: Path) -> None:
    fitted = _results(tmp_path / "r96.jsonl", 1.0, 96)
    held = [_results(tmp_path / "r160.jsonl", 1.0, 160), _results(tmp_path / "r035.jsonl", 0.35, 96)]
    out = tmp_path / "an386.toml"
    report = calibrate([fitted], load_device("qemu-an386"), out, held)
    for name, value in TRUE.items():
        assert report.coefficients[name] == pytest.approx(value, rel=1e-6), name
    assert [f.role for f in report.files] == ["fitted", "held-out", "held-out"]
    assert all(abs(f.error) < 1e-6 for f in report.files)
    pointwise = next(k for k in report.kinds if k.kind == "pointwise")
    assert pointwise.measured_cycles_per_mac > TRUE["pointwise.cycles_per_mac"]  # outputs and per-op cost on top
    # the TOML round trip: the written profile loads with the fitted tables and the base's other values
    device = load_device_file(out)
    assert device.cpu.per_kind == report.per_kind
    assert device.cpu.per_kind["depthwise"] == KindCycles(pytest.approx(3.9), pytest.approx(39.0), 0.0, 0.0,
                                                          pytest.approx(900.0))
    assert device.cpu.per_kind["mean"] == KindCycles(cycles_per_byte=pytest.approx(150.0),
                                                     cycles_per_op=pytest.approx(900.0))
    base = load_device("qemu-an386")
    assert (device.ram_bytes, device.cores, device.cpu.int8_macs_per_cycle) == \
        (base.ram_bytes, base.cores, base.cpu.int8_macs_per_cycle)
    assert "fitted by edgemnv2 devices calibrate to r96.jsonl" in device.calibration
    # profile with the calibrated file estimates what the fit predicts (cycles at 1000 MHz -> ms)
    graph = mobilenet_v2_graph(1.0, 160)
    total_ms = estimate(graph, graph_costs(graph), device).total_ms
    assert total_ms == pytest.approx(report.files[1].predicted_cycles / 1e6, rel=1e-9)


def test_cli_fits_and_reports_json(tmp_path: Path) -> None:
    fitted = _results(tmp_path / "r96.jsonl", 1.0, 96)
    held = _results(tmp_path / "r035.jsonl", 0.35, 96)
    out = tmp_path / "my.toml"
    result = CliRunner().invoke(cli, ["devices", "calibrate", str(fitted), "-d", "qemu-an386", "-o", str(out),
                                      "--held-out", str(held), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["schema_version"] == 1 and data["base"] == "qemu-an386" and out.is_file()
    assert set(data["per_kind"]) == {"conv", "depthwise", "pointwise", "fully_connected", "add", "mean", "softmax"}
    text = CliRunner().invoke(cli, ["devices", "calibrate", str(fitted), "-d", "qemu-an386", "-o", str(out)]).output
    assert "fitted cycles" in text and "r96.jsonl" in text and "+0.00%" in text
    profiled = CliRunner().invoke(cli, ["profile", "--alpha", "0.35", "--resolution", "96", "--device-file", str(out),
                                        "--json"])
    assert profiled.exit_code == 0, profiled.output
    predicted_ms = next(f for f in data["files"] if f["role"] == "held-out")["predicted_cycles"] / 1e6
    assert json.loads(profiled.output)["totals"]["latency_ms"] == pytest.approx(predicted_ms, rel=1e-6)


def test_results_without_ops_need_the_model(tmp_path: Path) -> None:
    bare = _results(tmp_path / "old.jsonl", 1.0, 96, with_ops=False)
    with pytest.raises(InputError, match="add --model with the model it was run with"):
        calibrate([bare], load_device("qemu-an386"), tmp_path / "x.toml")
    assert not (tmp_path / "x.toml").exists()


@pytest.mark.parametrize("args,message", [
    (["R", "-o", "X"], "give one base profile: --device KEY or --device-file F"),
    (["R", "-d", "qemu-an386", "--device-file", "R", "-o", "X"], "give one base profile"),
    (["NOT_RESULTS", "-d", "qemu-an386", "-o", "X"], "has no bench results header"),
    (["NEWER", "-d", "qemu-an386", "-o", "X"], "NEWER holds results schema 2, this edgemnv2 writes 1"),
    (["R", "-d", "coral-usb", "-o", "X"], "is an Edge TPU profile"),
    (["missing.jsonl", "-d", "qemu-an386", "-o", "X"], "cannot read bench results missing.jsonl"),
])
def test_bad_input_is_one_line_error(tmp_path: Path, args: list[str], message: str, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    _results(tmp_path / "R", 1.0, 96)
    (tmp_path / "NOT_RESULTS").write_text('{"some": "json"}\n')
    (tmp_path / "NEWER").write_text('{"kind": "edgemnv2-bench-results", "schema_version": 2}\n')
    result = CliRunner().invoke(cli, ["devices", "calibrate", *args])
    assert result.exit_code == 1 and message in str(result.exception), (result.output, result.exception)
    assert not (tmp_path / "X").exists()


def test_dump_toml_round_trips_profile_values() -> None:
    import tomllib

    data = {"name": 'a "quoted" name', "cores": 1, "clock_mhz": 1000.0, "flag": True, "cpu": {
        "int8_macs_per_cycle": {"conv": 0.3}, "per_kind": {"mean": {"cycles_per_byte": 1e-05}}},
        "sources": {"cpu.per_kind": "fit", "name": "ünïcode"}}
    assert tomllib.loads(dump_toml(data)) == data


def test_bundled_an386_profile_is_the_fit_to_the_measured_firmware(tmp_path: Path) -> None:
    """The bundled qemu-an386 profile's per-kind tables are what `devices calibrate` fits to the real 1.0/96
    CMSIS-NN run (per-layer means from benchmarks/firmware_per_layer.py --fixtures), and that fit predicts the
    measured instructions of the held-out 1.0/160 and 0.35/96 (random weights) runs within 15 %."""
    vectors = Path(__file__).parents[1] / "vectors" / "firmware"
    held = [vectors / "an386-160-cmsis.jsonl", vectors / "an386-035-cmsis.jsonl"]
    report = calibrate([vectors / "an386-96-cmsis.jsonl"], load_device("qemu-an386"), tmp_path / "fit.toml", held)
    bundled = load_device("qemu-an386").cpu.per_kind
    assert bundled.keys() == report.per_kind.keys()
    for kind, table in report.per_kind.items():
        assert dataclasses.asdict(bundled[kind]) == pytest.approx(dataclasses.asdict(table), rel=1e-5), kind
    assert [f.model for f in report.files] == ["mnv2_1.0_96_int8.tflite", "mnv2_1.0_160_int8.tflite",
                                               "mnv2_0.35_96_random_int8.tflite"]
    assert all(abs(f.error) < 0.15 for f in report.files), [(f.model, f.error) for f in report.files]
