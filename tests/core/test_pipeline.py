"""`edgemnv2 run`: convert + validate + profile in one command."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from edgemnv2.cli import cli


def test_run_converts_validates_and_profiles(tmp_path: Path, small_calib: Path) -> None:
    result = CliRunner().invoke(cli, ["run", "--resolution", "96", "--calibration", str(small_calib),
                                      "--data", str(small_calib), "--device", "pico", "--out-dir", str(tmp_path), "--min-agreement", "50",
                                      "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    model = Path(report["conversion"]["model"])
    assert model == tmp_path / "mobilenet_v2_1.0_96_int8.tflite" and model.is_file()
    assert report["conversion"]["fully_integer"]
    # one folder for both: a seeded 30% (1 of 4) is held out of calibration and is all that is validated
    assert report["conversion"]["calibration"]["count"] == 3
    assert report["validation"]["images"] == 1 and report["validation"]["passed"]
    assert "held out of calibration" in report["validation"]["note"]
    assert [(g["name"], g["threshold"]) for g in report["validation"]["gates"]] == [("min_agreement", 50.0)]
    (profile,) = report["profiles"]
    assert profile["device"]["key"] == "pico" and profile["totals"]["macs"] > 0
