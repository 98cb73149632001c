"""`edgemnv2 profile` / `edgemnv2 devices` end to end: outputs, JSON contract, memory, errors."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from edgemnv2.cli import cli
from edgemnv2.profile.memory import linux_activation_bytes, plan_arena


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgemnv2", *args], capture_output=True, text=True, timeout=120)


def invoke(*args: str):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_json_contract_on_a_microcontroller(coral_v2_tflite):
    data = json.loads(invoke("profile", str(coral_v2_tflite), "--device", "stm32h7", "--json").stdout)
    assert {"macs", "params", "weight_bytes", "flash_bytes", "peak_ram_bytes", "latency_ms"} <= set(data["totals"])
    assert {"name", "op", "macs", "params", "weight_bytes", "activation_in_bytes", "activation_out_bytes",
            "input_shape", "output_shape", "kernel", "stride", "known", "latency_ms"} <= set(data["layers"][0])
    assert isinstance(data["fits"], bool) and data["device"]["key"] == "stm32h7"
    assert data["totals"]["macs"] == sum(layer["macs"] for layer in data["layers"]) == 300_775_552
    plan = plan_arena(coral_v2_tflite)
    assert data["totals"]["peak_ram_bytes"] == plan.peak_bytes
    assert data["totals"]["runtime_ram_bytes"] > 0  # kept separate from the arena
    assert data["totals"]["flash_bytes"] == coral_v2_tflite.stat().st_size + data["device"]["runtime_code_bytes"]
    assert [layer["live_bytes"] for layer in data["layers"]] == plan.timeline


def test_linux_target_ram_is_activations_plus_model(coral_v2_tflite):
    data = json.loads(invoke("profile", str(coral_v2_tflite), "--device", "rpi4", "--json").stdout)
    expected = linux_activation_bytes(coral_v2_tflite) + coral_v2_tflite.stat().st_size
    assert data["totals"]["peak_ram_bytes"] == expected
    assert data["totals"]["latency_ms"] > 0 and data["fits"] is True


def test_spec_and_table_output():
    out = invoke("profile", "--alpha", "1.0", "--resolution", "224", "--device", "rpi4").stdout
    assert "300,774,272" in out and "FITS rpi4" in out and "depthwise" in out and "pointwise" in out


def test_all_devices_comparison_and_csv():
    out = invoke("profile", "--alpha", "0.35", "--resolution", "96", "--device", "all").stdout
    for key in ("rpi4", "coral-usb", "esp32-s3", "stm32h7", "pico", "nano33ble"):
        assert key in out
    rows = list(csv.DictReader(io.StringIO(
        invoke("profile", "--alpha", "0.35", "--resolution", "96", "--device", "all", "--csv").stdout)))
    assert len(rows) >= 10 and {r["fits"] for r in rows} <= {"True", "False"}


def test_layer_csv_and_markdown():
    rows = list(csv.DictReader(io.StringIO(
        invoke("profile", "--alpha", "0.35", "--resolution", "96", "-d", "esp32-s3", "--csv").stdout)))
    assert sum(int(r["macs"]) for r in rows) == 11_934_128  # conv + depthwise + FC (0.35/96)
    md = invoke("profile", "--alpha", "0.35", "--resolution", "96", "-d", "esp32-s3", "--markdown").stdout
    assert md.startswith("| # | layer | op |") and "- FITS" in md


def test_plot_writes_a_png(tmp_path):
    png = tmp_path / "layers.png"
    invoke("profile", "--alpha", "0.35", "--resolution", "96", "-d", "pico", "--plot", str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_device_file(tmp_path, rpi4_toml_text):
    board = tmp_path / "myboard.toml"
    board.write_text(rpi4_toml_text.replace("clock_mhz = 1500", "clock_mhz = 3000"), encoding="utf-8")
    mine = json.loads(invoke("profile", "--alpha", "1", "--resolution", "224", "--device-file", str(board),
                             "--json").stdout)
    stock = json.loads(invoke("profile", "--alpha", "1", "--resolution", "224", "-d", "rpi4", "--json").stdout)
    assert mine["device"]["key"] == "myboard"
    assert mine["totals"]["latency_ms"] < stock["totals"]["latency_ms"]


def test_edgetpu_compiled_model_is_a_marked_row(edgetpu_model):
    data = json.loads(invoke("profile", str(edgetpu_model), "-d", "coral-usb", "--json").stdout)
    [row] = data["layers"]
    assert row["op"] == "UNKNOWN(CUSTOM edgetpu-custom-op)" and row["known"] is False
    assert data["totals"]["latency_ms"] is None and data["edgetpu"]["parameter_bytes"] > 0


def test_devices_listing():
    out = invoke("devices").stdout
    assert "rpi4" in out and "esp32-s3" in out
    listing = json.loads(invoke("devices", "--json").stdout)["devices"]
    assert {"key", "kind", "ram_bytes", "flash_bytes", "calibration"} <= set(listing[0])


def test_tensorflow_is_not_imported(coral_v2_tflite):
    code = ("import sys; from edgemnv2.profile import profile; "
            f"profile({str(coral_v2_tflite)!r}, device='rpi4'); assert 'tensorflow' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize("args,message", [
    (["--device", "rpi9", "--alpha", "1", "--resolution", "224"], "unknown device 'rpi9'; known devices: coral-devboard"),
    (["--alpha", "1", "--resolution", "224", "--require-fit"], "--require-fit checks a device: give --device"),
    (["NOT_TFLITE", "--device", "rpi4"], "is not a TFLite model"),
    (["TRUNCATED", "--device", "rpi4"], "cannot be parsed"),
    (["missing.tflite", "--device", "rpi4"], "does not exist"),
    (["BAD_PROFILE"], "key 'cpu.int8_macs_per_cycle.depthwise' must be positive"),
])
def test_bad_input_is_one_line_and_exit_1(tmp_path, coral_v2_tflite, rpi4_toml_text, args, message):
    not_tflite = tmp_path / "photo.tflite"
    not_tflite.write_bytes(b"\xff\xd8\xff\xe0 this is a jpeg")
    truncated = tmp_path / "cut.tflite"
    truncated.write_bytes(coral_v2_tflite.read_bytes()[:5000])
    bad = tmp_path / "bad.toml"
    bad.write_text(rpi4_toml_text.replace("depthwise = 2.0", "depthwise = -1.0"), encoding="utf-8")
    args = [{"NOT_TFLITE": str(not_tflite), "TRUNCATED": str(truncated)}.get(a, a) for a in args]
    if args == ["BAD_PROFILE"]:
        args = ["--alpha", "1", "--resolution", "224", "--device-file", str(bad)]
    result = run("profile", *args)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], result.stderr


def test_require_fit_exits_3():
    result = run("profile", "--alpha", "1", "--resolution", "224", "-d", "pico", "--require-fit")
    assert result.returncode == 3 and "does not fit: pico" in result.stderr
