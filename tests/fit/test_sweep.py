"""The sweep driver: content keys, the cache, staged artifacts, failure isolation, spec files, executors.

The executor here is a stand-in that fabricates artifacts, so the driver's logic runs without TensorFlow;
tests/fit/test_sweep_ray.py runs real conversions on a two-node Ray cluster.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgemnv2 import executors
from edgemnv2.errors import InputError
from edgemnv2.fit import apply_sweep, fit, plan_measurement
from edgemnv2.sweep import SweepInputs, Task, candidate, load_spec, plan, render_table, run_sweep


class FakeExecutor:
    """Returns a tiny fake artifact set per task; fails the candidates named in `fail`."""

    name = "fake"
    notes: tuple[str, ...] = ()

    def __init__(self, fail: set[int] = frozenset()) -> None:
        self.fail = fail
        self.ran: list[Task] = []

    def run(self, tasks: list[Task]) -> Iterator[tuple[Task, dict[str, Any]]]:
        for task in tasks:
            self.ran.append(task)
            if task.candidate.resolution in self.fail:
                yield task, {"error": "converter exploded"}
                continue
            top1 = task.candidate.resolution / 3  # larger inputs score higher, as in the published table
            validation = {"images": 3, "tflite_top1": top1, "tflite_top5": 100.0, "float_top1": top1,
                          "top1_agreement": 100.0, "mean_kl": 0.01}
            yield task, {"tflite": b"TFL3" + task.key.encode(), "sidecar": {"sha256": task.key, "file_size": 24},
                         "validation": validation, "seconds": 1.0, "peak_rss_bytes": 2**30, "node": "here"}


def test_keys_follow_content(val3: Path, calib4: Path, tmp_path: Path) -> None:
    inputs = SweepInputs(val3, calib4)
    a, b = candidate(0.35, 96, "none"), candidate(0.35, 96, "none", per_tensor=True)
    keys = [t.key for t, _ in plan([a, b, a], inputs)]
    assert keys[0] == keys[2] != keys[1]
    assert plan([a], SweepInputs(val3, calib4, random_seed=1))[0][0].key != keys[0]
    assert plan([a], SweepInputs(val3, calib4, limit=2))[0][0].key != keys[0]
    other = tmp_path / "val"
    other.mkdir()
    for f in val3.iterdir():
        (other / f.name).write_bytes(f.read_bytes())
    assert plan([a], SweepInputs(other, calib4))[0][0].key == keys[0]  # same content elsewhere: same key
    next(p for p in other.iterdir() if p.suffix == ".JPEG").write_bytes(b"\xff\xd8 changed")
    assert plan([a], SweepInputs(other, calib4))[0][0].key != keys[0]


def test_imagenet_weights_of_another_resolution_are_noted(val3: Path, calib4: Path) -> None:
    (task, note), = plan([candidate(1.0, 160)], SweepInputs(val3, calib4))
    assert task.weights_file and task.weights_file.endswith("_1.0_224.h5")
    assert note and "trained at 224" in note
    with pytest.raises(InputError, match="no ImageNet weights for MobileNetV2 0.5"):
        plan([candidate(0.5, 96)], SweepInputs(val3, calib4))


def test_cache_failures_and_staged_artifacts(val3: Path, calib4: Path, tmp_path: Path) -> None:
    cands = [candidate(0.35, 96, "none"), candidate(0.35, 128, "none"), candidate(0.35, 160, "none")]
    inputs = SweepInputs(val3, calib4)
    first = FakeExecutor(fail={128})
    report = run_sweep(cands, inputs, tmp_path / "out", first)
    assert [r.status for r in report.results] == ["measured", "failed", "measured"]
    assert report.failed[0].error == "converter exploded"
    done = report.results[0]
    assert done.model.read_bytes().startswith(b"TFL3")
    stored = json.loads((done.model.parent / "result.json").read_text())
    assert stored["key"] == done.key and stored["schema_version"] == 1
    assert sorted(p.name for p in done.model.parent.iterdir()) == ["model.tflite", "model.tflite.json", "result.json",
                                                                   "validation.json"]
    assert not any(p.name.endswith(".staging") for p in (tmp_path / "out").iterdir())
    # a rerun skips finished work and retries only the failure
    second = FakeExecutor()
    again = run_sweep(cands, inputs, tmp_path / "out", second)
    assert [r.status for r in again.results] == ["cached", "measured", "cached"]
    assert [t.candidate for t in second.ran] == [cands[1]]
    assert "1 cached" not in render_table(again) and "2 cached" in render_table(again)
    # a torn or foreign result.json is not trusted
    (done.model.parent / "result.json").write_text("{\"key\": \"someone else\"")
    third = FakeExecutor()
    run_sweep(cands[:1], inputs, tmp_path / "out", third)
    assert len(third.ran) == 1


def test_spec_file_grid_and_candidates(tmp_path: Path, val3: Path) -> None:
    spec = tmp_path / "sweep.toml"
    spec.write_text(f'data = "{val3}"\nlimit = 2\n[grid]\nalpha = [0.35, 0.5]\nresolution = [96]\n'
                    'per_tensor = [false, true]\nweights = "none"\n'
                    '[[candidate]]\nalpha = 1.0\nresolution = 224\ncalibration_method = "minmax"\n')
    cands, inputs = load_spec(spec)
    assert len(cands) == 5 and inputs.limit == 2 and inputs.data == val3
    assert cands[-1].option_dict == {"calibration_method": "minmax"} and cands[-1].weights == "imagenet"
    for text, message in [('data = "x"\nbogus = 1\n', "not a sweep spec key"),
                          ('data = "x"\n[grid]\nalpha = [1.0]\nresolution = [224]\nfoo = [1]\n', "not a convert option"),
                          ('data = "x"\n[grid]\nalpha = [1.0]\nresolution = [200]\n', "resolution 200"),
                          ('data = "x"\n[grid]\nalpha = [1.0]\nresolution = [224]\nper_tensor = ["yes"]\n', "must be bool"),
                          ('[grid]\nalpha = [1.0]\n', "'data'"), ('data = "x"\n', "no candidates"), ("data = [", "TOML")]:
        spec.write_text(text)
        with pytest.raises(InputError, match=message):
            load_spec(spec)
    with pytest.raises(InputError, match="does not exist"):
        load_spec(tmp_path / "missing.toml")


def test_choose_executor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert executors.choose("sequential").name == "sequential"
    assert executors.choose("auto").name == "ray (local)"
    assert executors.choose("ray", "127.0.0.1:1").name == "ray (127.0.0.1:1)"
    with pytest.raises(InputError, match="needs the Ray executor"):
        executors.choose("sequential", "127.0.0.1:1")
    real = executors.importlib.util.find_spec
    monkeypatch.setattr(executors.importlib.util, "find_spec", lambda name: None if name == "ray" else real(name))
    fallback = executors.choose("auto")
    assert fallback.name == "sequential" and "Ray is not installed" in fallback.notes[0]
    with pytest.raises(InputError, match="pip install 'edgemnv2\\[scale\\]'"):
        executors.choose("ray")


def test_fit_measures_the_best_variants_with_weights(val3: Path, calib4: Path, tmp_path: Path) -> None:
    report = fit("rpi4")
    chosen = plan_measurement(report, 5)
    assert [v.name for v in chosen.variants] == ["1.0/224", "1.0/192", "1.0/160", "1.0/128", "1.0/96"]
    assert any("alpha 1.4" in s for s in chosen.skipped)
    random = plan_measurement(report, 2, weights="none")
    assert [v.name for v in random.variants] == ["1.4/224", "1.3/224"]
    cands = [candidate(v.alpha, v.resolution) for v in chosen.variants]
    swept = run_sweep(cands, SweepInputs(val3, calib4), tmp_path / "out", FakeExecutor(fail={96}))
    measured = apply_sweep(report, swept, chosen)
    assert [r.variant.name for r in measured.rows[:4]] == ["1.0/224", "1.0/192", "1.0/160", "1.0/128"]
    assert all(r.accuracy_kind == "measured" for r in measured.rows[:4])
    assert any("1.0/96 could not be measured: converter exploded" in n for n in measured.notes)
    assert any(r.measured and r.measured.weights_note and "trained at 224" in r.measured.weights_note
               for r in measured.rows)


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from edgemnv2.cli import cli

    runner = CliRunner()
    for args, message in [(["fit", "-d", "rpi4", "--measure"], "--measure needs --data"),
                          (["fit", "-d", "rpi4", "--data", str(tmp_path)], "--data is for --measure"),
                          (["sweep", str(tmp_path / "none.toml")], "does not exist"),
                          (["sweep", str(tmp_path / "none.toml"), "--executor", "sequential", "--ray-address", "x:1"],
                           "does not exist")]:
        result = runner.invoke(cli, args)
        assert isinstance(result.exception, InputError) and message in str(result.exception), (args, result.output)
    result = runner.invoke(cli, ["fit", "-d", "rpi4", "--measure", "--data", str(tmp_path), "--top", "0"])
    assert result.exit_code == 2 and "--top" in result.output
