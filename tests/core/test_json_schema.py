"""Every `--json` document is an object whose first key is `schema_version` (edgemnv2/json_versions.py).

The cheap commands run for real on Coral's int8 model (no TensorFlow); the commands that need TensorFlow or a
board go through the same `emit_json`, whose contract is checked directly.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgemnv2 import fit, json_versions
from edgemnv2.cli import cli
from edgemnv2.cli.options import versioned
from edgemnv2.deploy import edgetpu
from edgemnv2.profile import schedule_report


@pytest.fixture(scope="module")
def pico_project(tmp_path_factory, coral_v2_tflite: Path) -> Path:
    out = tmp_path_factory.mktemp("pico") / "fw"
    result = CliRunner().invoke(cli, ["export", "--target", "pico", "--model", str(coral_v2_tflite), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize("args, version", [
    (["devices"], json_versions.DEVICES),
    (["profile", "{model}"], json_versions.PROFILE_MODEL),
    (["profile", "{model}", "--device", "rpi4"], json_versions.PROFILE),
    (["profile", "{model}", "--device", "rpi4,pico"], json_versions.PROFILE),
    (["profile", "--alpha", "0.35", "--resolution", "96", "--device", "esp32-s3"], json_versions.PROFILE),
    (["profile", "{model}", "--schedule", "auto", "--device", "stm32h7"], schedule_report.SCHEMA_VERSION),
    (["edgetpu", "check", "{model}"], edgetpu.SCHEMA_VERSION),
    (["fit", "--device", "rpi4", "--max-latency-ms", "20"], fit.SCHEMA_VERSION),
    (["export", "--target", "esp-idf", "--model", "{model}", "-o", "{tmp}/esp"], json_versions.EXPORT),
    (["flash", "--target", "pico", "--project", "{pico}", "--dry-run"], json_versions.FLASH),
    (["deploy", "--target", "rpi", "--host", "pi@raspberrypi.local", "--model", "{model}", "--dry-run"],
     json_versions.DEPLOY),
], ids=["devices", "profile-no-device", "profile", "profile-devices", "profile-spec", "profile-schedule", "edgetpu-check", "fit",
        "export", "flash", "deploy"])
def test_json_starts_with_schema_version(args: list[str], version: int, coral_v2_tflite: Path, tmp_path: Path,
                                         pico_project: Path) -> None:
    fmt = {"model": str(coral_v2_tflite), "tmp": str(tmp_path), "pico": str(pico_project)}
    result = CliRunner().invoke(cli, [a.format(**fmt) for a in args] + ["--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert next(iter(document)) == "schema_version" and document["schema_version"] == version


def test_versioned_puts_the_version_first_and_refuses_a_mismatch() -> None:
    assert list(versioned({"a": 1, "schema_version": 3}, 3)) == ["schema_version", "a"]
    assert versioned({"a": Path("x")}, 1) == {"schema_version": 1, "a": "x"}
    with pytest.raises(ValueError, match="carries schema_version 2"):
        versioned({"schema_version": 2}, 1)
    with pytest.raises(TypeError, match="object"):
        versioned([1, 2], 1)
