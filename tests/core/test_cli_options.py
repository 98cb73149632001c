"""Options the commands share: `run` takes convert's model options, convert reports its stages as they start."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from edgemnv2.cli import cli


class _Stop(Exception):
    pass


def test_run_takes_the_model_options_of_convert(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from edgemnv2 import pipeline

    seen = {}

    def capture(spec, **kwargs):
        seen.update(spec=spec, **kwargs)
        raise _Stop

    monkeypatch.setattr(pipeline, "run_pipeline", capture)
    result = CliRunner().invoke(cli, ["run", "--alpha", "1.0", "--resolution", "96", "--weights", "none",
                                      "--weights-dir", str(tmp_path), "-o", str(tmp_path / "out")])
    assert isinstance(result.exception, _Stop), result.output
    spec = seen["spec"]
    assert (spec.alpha, spec.resolution, spec.weights, spec.weights_dir) == (1.0, 96, "none", tmp_path)
    assert seen["out_dir"] == tmp_path / "out" and "on_stage" in seen
    for command in ("run", "convert"):
        names = {opt for p in cli.get_command(None, command).params for opt in p.opts}  # type: ignore[arg-type]
        assert {"--alpha", "--resolution", "--weights", "--weights-dir", "-o", "--output"} <= names


def test_convert_reports_each_stage_as_it_starts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    from edgemnv2 import convert
    from edgemnv2.cli import options
    from edgemnv2.models import ModelSpec

    ran = []

    def check_output(source, options):
        ran.append("check_output")
        return tmp_path / "m.tflite"

    def build_model(source):
        raise _Stop

    monkeypatch.setattr(convert, "check_output", check_output)
    monkeypatch.setattr(convert, "build_model", build_model)
    monkeypatch.setattr(options, "progress_enabled", lambda: True)
    with pytest.raises(_Stop):
        convert.convert(ModelSpec(0.35, 96, "none"), on_stage=options.stage_lines())
    lines = capsys.readouterr().err.splitlines()
    assert ran == ["check_output"]
    assert [line.split(" (")[0] for line in lines] == ["convert [1/8] check output", "convert [2/8] list calibration",
                                                       "convert [3/8] build model"]
    monkeypatch.setattr(options, "progress_enabled", lambda: False)
    assert options.stage_lines() is None  # no progress asked: no lines
