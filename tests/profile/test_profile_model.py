"""`profile MODEL` without a device: the device-independent report agrees with every device's report."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from edgemnv2 import json_versions
from edgemnv2.cli import cli
from edgemnv2.profile import profile, profile_model


def test_without_a_device_it_reports_costs_weights_and_the_arena_plan(coral_v2_tflite: Path) -> None:
    result = CliRunner().invoke(cli, ["profile", str(coral_v2_tflite)])
    assert result.exit_code == 0, result.output
    table, summary = result.output.split("\n\n", 1)
    assert " ms " not in table.splitlines()[0] and "bound" not in table.splitlines()[0]  # no latency columns
    assert "multiplications: 300,775,552" in summary
    assert "TFLite Micro arena plan: 1.59 MiB (1,665,776 bytes" in summary
    assert "FITS" not in summary and "add --device KEY" in summary


def test_it_matches_the_device_reports(coral_v2_tflite: Path) -> None:
    alone = profile_model(coral_v2_tflite)
    mcu, linux = profile(coral_v2_tflite, device="stm32h7,rpi4")
    for report in (mcu, linux):
        assert (alone.totals.macs, alone.totals.params, alone.totals.weight_bytes, alone.totals.model_bytes) == (
            report.totals.macs, report.totals.params, report.totals.weight_bytes, report.totals.model_bytes)
        assert [r.macs for r in alone.layers] == [r.macs for r in report.layers]
    assert alone.memory == mcu.memory and alone.memory.arena_bytes == mcu.totals.peak_ram_bytes
    assert all(r.latency_ms is None for r in alone.layers)


def test_json_csv_markdown_and_spec(coral_v2_tflite: Path) -> None:
    data = json.loads(CliRunner().invoke(cli, ["profile", str(coral_v2_tflite), "--json"]).stdout)
    assert data["schema_version"] == json_versions.PROFILE_MODEL and "device" not in data
    assert data["memory"]["arena_bytes"] == 1_665_776 and len(data["layers"]) == 68
    csv = CliRunner().invoke(cli, ["profile", str(coral_v2_tflite), "--csv"]).stdout.splitlines()
    assert csv[0].startswith("index,name,op") and len(csv) == 69
    markdown = CliRunner().invoke(cli, ["profile", str(coral_v2_tflite), "--markdown"]).stdout
    assert markdown.startswith("| # | layer |") and "- TFLite Micro arena plan:" in markdown
    spec = CliRunner().invoke(cli, ["profile", "--alpha", "0.35", "--resolution", "96"])
    assert spec.exit_code == 0 and "activations: " in spec.output and "(sizes estimated)" in spec.output
