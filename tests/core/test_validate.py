"""Validation: metrics against the float reference, 1001-class models, gates after the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgemnv2.errors import GateFailed, InputError, ModelError
from edgemnv2.models import ModelSpec
from edgemnv2.validate import (align_classes, fill_rounded_tail, float_margins, kl_divergence, near_ties,
                               render_text, to_probabilities, validate)

from .conftest import error_line, run_cli


@pytest.fixture(scope="module")
def report_96(int8_mnv2_96: Path, shared_weights: Path, calib_dir: Path):
    return validate(int8_mnv2_96, ModelSpec(1.0, 96, "imagenet", shared_weights.parent), calib_dir, limit=24,
                    min_agreement=50.0, max_top1_drop=20.0, per_image=True)


def test_real_int8_model_tracks_its_float_reference(report_96) -> None:
    assert report_96.images == 24 and report_96.labelled and report_96.classes == 1000
    assert report_96.top1_agreement >= 80.0
    assert report_96.float_top1 >= 40.0  # real ImageNet weights at 96 px, not random
    assert 0.0 <= report_96.mean_kl < 0.5
    assert report_96.max_abs_diff >= report_96.mean_abs_diff > 0.0
    assert report_96.tflite_top5 >= report_96.tflite_top1
    assert report_96.passed and [g.name for g in report_96.gates] == ["max_top1_drop", "min_agreement"]
    assert len(report_96.rows) == 24 and report_96.rows[0].file.endswith(".JPEG")
    assert report_96.tflite_images_per_second > 0
    ties = report_96.near_ties
    differing = [r for r in report_96.rows if r.float_top1 != r.tflite_top1]
    assert (ties is None) == (not differing) == (report_96.top1_agreement == 100.0)
    if ties is not None:  # the rows and the near-tie summary describe the same images
        assert sorted(d.file for d in ties.disagreements) == sorted(r.file for r in differing)
        assert ties.images_within == sum(r.float_margin <= ties.largest_disagreeing_margin for r in report_96.rows)
        assert "close to a tie" in render_text(report_96)


def test_coral_1001_class_model_drops_background(coral_v2_tflite: Path, shared_weights: Path, calib_dir: Path) -> None:
    report = validate(coral_v2_tflite, ModelSpec(1.0, 224, "imagenet", shared_weights.parent), calib_dir, limit=8)
    assert report.dropped_background and report.input["dtype"] == "uint8"
    assert report.top1_agreement >= 75.0  # the shared .h5 was rebuilt from this very model


def test_missed_gate_raises_only_when_asked(int8_mnv2_96: Path, shared_weights: Path, calib_dir: Path) -> None:
    report = validate(int8_mnv2_96, ModelSpec(1.0, 96, "imagenet", shared_weights.parent), calib_dir, limit=4,
                      min_agreement=100.0, max_top1_drop=-100.0)
    assert not report.passed
    with pytest.raises(GateFailed, match="top-1 dropped"):
        report.raise_for_gates()


def test_reference_resolution_must_match(int8_mnv2_96: Path, calib_dir: Path) -> None:
    with pytest.raises(ModelError, match="is 224x224 but"):
        validate(int8_mnv2_96, "mobilenet_v2_1.0_224", calib_dir)


def test_top1_gate_needs_labels(int8_mnv2_96: Path, shared_weights: Path, tmp_path: Path, calib_dir: Path) -> None:
    for src in sorted(calib_dir.iterdir())[:2]:
        (tmp_path / src.name.split("_", 1)[1]).write_bytes(src.read_bytes())  # strip the synset prefix
    with pytest.raises(InputError, match="needs labelled images"):
        validate(int8_mnv2_96, ModelSpec(1.0, 96, "imagenet", shared_weights.parent), tmp_path, max_top1_drop=1.0)


def test_probability_helpers() -> None:
    logits = np.array([[2.0, 1.0, -1.0]])
    np.testing.assert_allclose(to_probabilities(logits).sum(), 1.0)
    quantized = np.array([[0.75, 0.0, 0.0]])  # 0.25 rounded away on a 1/4 grid
    filled = fill_rounded_tail(quantized, step=0.25)
    np.testing.assert_allclose(filled, [[0.75, 0.125, 0.125]])
    assert kl_divergence(np.array([[0.5, 0.5]]), np.array([[0.5, 0.5]]))[0] == pytest.approx(0.0, abs=1e-9)
    aligned, dropped = align_classes(np.zeros((2, 1001)), 1000)
    assert dropped and aligned.shape == (2, 1000)
    with pytest.raises(ModelError, match="cannot be compared"):
        align_classes(np.zeros((2, 10)), 1000)


def test_near_ties_name_the_disagreements_and_how_many_images_are_as_close() -> None:
    probs = np.array([[0.50, 0.45, 0.05], [0.9, 0.05, 0.05], [0.3, 0.6, 0.1], [0.40, 0.35, 0.25]])
    margins = float_margins(probs)
    np.testing.assert_allclose(margins, np.log([0.50 / 0.45, 0.9 / 0.05, 0.6 / 0.3, 0.40 / 0.35]))
    np.testing.assert_allclose(float_margins(to_probabilities(np.array([[3.0, 1.0, 2.5]]))), [0.5])  # logit gap
    ties = near_ties(["a", "b", "c", "d"], np.array([0, 0, 1, 0]), np.array([1, 0, 1, 2]), margins)
    assert [d.file for d in ties.disagreements] == ["a", "d"]  # smallest margin first
    assert ties.largest_disagreeing_margin == pytest.approx(np.log(0.40 / 0.35))
    assert ties.images_within == 2 and ties.disagreements[1].tflite_top1 == 2
    assert near_ties(["a"], np.array([3]), np.array([3]), np.array([0.1])) is None


def test_cli_gate_failure_exits_3_after_writing_report(int8_mnv2_96: Path, shared_weights: Path,
                                                      calib_dir: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    proc = run_cli("validate", str(int8_mnv2_96), "--reference", "mobilenet_v2_1.0_96", "--weights-dir",
                   str(shared_weights.parent), "--data", str(calib_dir), "--limit", "3", "--min-agreement", "100",
                   "--max-top1-drop", "-100", "--output", str(report))
    assert proc.returncode == 3, proc.stderr
    assert "top-1 agreement" in proc.stdout  # the summary was printed first
    assert "top-1 dropped" in error_line(proc)
    assert json.loads(report.read_text())["passed"] is False
