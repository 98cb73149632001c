"""Honest measurement: Wilson intervals, exact McNemar, the paired `validate --compare` report, held-out images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgemnv2 import data
from edgemnv2.models import ModelSpec
from edgemnv2.validate import mcnemar_exact, paired_rate, render_text, validate, wilson_interval


def test_wilson_interval_matches_hand_computed_values() -> None:
    # 0/10: upper bound z^2 / (n + z^2) = 3.8415 / 13.8415
    zero = wilson_interval(0, 10)
    assert zero.low == 0.0 and zero.high == pytest.approx(27.753, abs=1e-3)
    # 5/10: centre 0.5, half-width 1.96 / 1.38415 * sqrt(0.025 + 3.8415 / 400)
    half = wilson_interval(5, 10)
    assert (half.low, half.high) == (pytest.approx(23.659, abs=1e-3), pytest.approx(76.341, abs=1e-3))
    # 297/300 (99%): centre 0.996402 / 1.012805, half-width 1.935184 * sqrt(3.3e-5 + 3.841459 / 360000)
    high = wilson_interval(297, 300)
    assert (high.low, high.high) == (pytest.approx(97.102, abs=1e-3), pytest.approx(99.659, abs=1e-3))
    assert wilson_interval(10, 10).high == 100.0
    with pytest.raises(ValueError):
        wilson_interval(0, 0)


def test_mcnemar_exact_matches_hand_computed_values() -> None:
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(0, 2) == pytest.approx(0.5)  # 2 * (1/2)^2
    assert mcnemar_exact(1, 5) == pytest.approx(2 * (1 + 6) / 64)  # 0.21875
    assert mcnemar_exact(5, 1) == mcnemar_exact(1, 5)
    assert mcnemar_exact(0, 10) == pytest.approx(2 / 1024)
    assert mcnemar_exact(3, 3) == 1.0  # capped


def test_paired_rate_counts_discordant_images() -> None:
    first = np.array([True, True, False, True, False])
    second = np.array([True, False, False, False, True])
    rate = paired_rate("top1_agreement", first, second)
    assert (rate.model, rate.other) == (60.0, 40.0)
    assert (rate.only_model, rate.only_other) == (2, 1)
    assert rate.p_value == pytest.approx(mcnemar_exact(2, 1))
    assert rate.model_ci == wilson_interval(3, 5)


def test_holdout_split_is_seeded_and_disjoint(calib_dir: Path) -> None:
    files = data.list_images(calib_dir)
    calib, held = data.holdout_split(files, 0.3, seed=0)
    assert len(held) == 30 and len(calib) == 70 and not set(calib) & set(held)
    assert data.holdout_split(files, 0.3, seed=0) == (calib, held)
    assert data.holdout_split(files, 0.3, seed=1)[1] != held
    names = tuple(data.relative_name(f, calib_dir) for f in calib)
    loaded = data.load_images(calib_dir, 32, exclude=names)
    assert [f.name for f in loaded.files] == [f.name for f in held]


def test_compare_report_pairs_two_models_on_the_same_images(int8_mnv2_96: Path, dynamic_mnv2_035_96: Path,
                                                            shared_weights: Path, calib_dir: Path) -> None:
    reference = ModelSpec(1.0, 96, "imagenet", shared_weights.parent)
    report = validate(int8_mnv2_96, reference, calib_dir, limit=12, compare=dynamic_mnv2_035_96)
    comparison = report.comparison
    assert comparison is not None and [r.name for r in comparison.rates] == ["top1_agreement", "top1"]
    agreement = comparison.rates[0]
    assert agreement.model == report.top1_agreement and agreement.model_ci == report.top1_agreement_ci
    # the random-weight 0.35 model disagrees with the float 1.0 model almost everywhere
    assert agreement.other < agreement.model
    assert agreement.only_model - agreement.only_other == round((agreement.model - agreement.other) * 12 / 100)
    assert agreement.p_value == mcnemar_exact(agreement.only_model, agreement.only_other)
    assert comparison.differing_images == len(comparison.differing_files) > 0
    text = render_text(report)
    assert "paired with mnv2_0.35_96_dynamic.tflite" in text and "McNemar exact p =" in text
    assert report.float_top1_ci is not None and report.float_top1_ci.low <= report.float_top1 <= report.float_top1_ci.high

    same = validate(int8_mnv2_96, reference, calib_dir, limit=4, compare=int8_mnv2_96).comparison
    assert same is not None and same.differing_images == 0 and same.rates[0].p_value == 1.0


def test_validate_cli_compare_prints_and_writes_the_paired_report(int8_mnv2_96: Path, dynamic_mnv2_035_96: Path,
                                                                  shared_weights: Path, calib_dir: Path,
                                                                  tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from edgemnv2.cli import cli

    out = tmp_path / "report.json"
    args = ["validate", str(int8_mnv2_96), "--reference", "mobilenet_v2_1.0_96", "--weights-dir",
            str(shared_weights.parent), "--data", str(calib_dir), "--limit", "4", "--compare", str(dynamic_mnv2_035_96)]
    result = CliRunner().invoke(cli, [*args, "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "paired with mnv2_0.35_96_dynamic.tflite on the same images:" in result.output
    assert "McNemar exact p =" in result.output and "top-1 differs between the two on" in result.output
    comparison = json.loads(out.read_text())["comparison"]
    assert comparison["other"] == str(dynamic_mnv2_035_96)
    agreement = comparison["rates"][0]
    assert agreement["name"] == "top1_agreement" and agreement["p_value"] == pytest.approx(
        mcnemar_exact(agreement["only_model"], agreement["only_other"]))
    assert comparison["differing_images"] == len(comparison["differing_files"])
