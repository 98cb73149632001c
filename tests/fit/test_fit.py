"""`edgemnv2 fit`: variants profiled from their specs, ranked by published (or measured) accuracy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgemnv2.cli import cli
from edgemnv2.errors import GateFailed, InputError
from edgemnv2.fit import Limits, Measured, Variant, apply_measurements, fit, load_published, parse_bytes
from edgemnv2.profile.cost import graph_costs
from edgemnv2.profile.spec import mobilenet_v2_graph


@pytest.mark.parametrize("text, value", [("524288", 524288), ("512K", 524288), ("512KiB", 524288), ("512 kb", 524288),
                                         ("1M", 2**20), ("1.5MiB", 3 * 2**19), ("2G", 2 * 2**30), ("100B", 100)])
def test_parse_bytes(text: str, value: int) -> None:
    assert parse_bytes(text) == value


@pytest.mark.parametrize("text", ["", "12X", "-1K", "K", "0", "1.2.3M"])
def test_parse_bytes_rejects(text: str) -> None:
    with pytest.raises(InputError):
        parse_bytes(text)


def test_published_table_is_the_slim_table() -> None:
    source, table = load_published()
    assert len(table) == 22 and "tensorflow/models" in source.url
    assert table[(1.0, 224)].top1 == 71.8 and table[(1.0, 224)].top5 == 91.0
    assert table[(0.35, 96)].top1 == 45.5 and table[(1.4, 224)].top1 == 75.0
    assert (1.4, 96) not in table  # published at 224 only
    # the published MACs agree with the spec's count (in millions, as the table rounds them)
    for (alpha, resolution), row in table.items():
        graph = mobilenet_v2_graph(alpha, resolution)
        macs = sum(c.macs for c in graph_costs(graph)) / 1e6
        assert abs(macs - row.macs_millions) <= max(1.0, 0.02 * row.macs_millions), (alpha, resolution, macs)


def _dominates(a, b) -> bool:
    return (a.accuracy >= b.accuracy and a.latency_ms <= b.latency_ms
            and (a.accuracy > b.accuracy or a.latency_ms < b.latency_ms))


def test_esp32_ranking_respects_limits_and_pareto() -> None:
    report = fit("esp32-s3", limits=Limits(max_latency_ms=500))
    assert len(report.rows) == 30
    ranked = [r for r in report.rows if r.rank]
    assert ranked and all(r.fits and r.latency_ms <= 500 for r in ranked)
    assert [r.rank for r in ranked] == list(range(1, len(ranked) + 1))
    assert [r.accuracy for r in ranked] == sorted((r.accuracy for r in ranked), reverse=True)
    for row in report.rows:
        if not row.fits:
            assert row.reasons and row.rank is None and not row.pareto
    for row in ranked:  # the front is exactly the undominated fitting rows
        assert row.pareto == (not any(_dominates(o, row) for o in ranked))
    assert report.best is ranked[0] and report.best.variant.name in report.recommendation
    assert ranked[0].pareto


def test_user_limits_exclude_variants() -> None:
    free = fit("rpi4")
    tight = fit("rpi4", limits=Limits(max_ram_bytes=parse_bytes("2M"), max_flash_bytes=parse_bytes("3M")))
    assert sum(r.fits for r in tight.rows) < sum(r.fits for r in free.rows)
    assert all(r.ram_bytes <= 2 * 2**20 and r.flash_bytes <= 3 * 2**20 for r in tight.rows if r.fits)
    assert any("--max-ram" in reason for r in tight.rows for reason in r.reasons)


def test_nothing_fits_names_the_closest() -> None:
    report = fit("nano33ble")
    assert report.best is None and not any(r.fits for r in report.rows)
    assert report.recommendation.startswith("Nothing in the MobileNetV2 family fits nano33ble")
    assert report.rows[0].variant.name in report.recommendation


def test_external_ram_counts_unless_refused() -> None:
    with_psram = fit("esp32-s3", alphas=(1.0,), resolutions=(224,))
    without = fit("esp32-s3", alphas=(1.0,), resolutions=(224,), limits=Limits(external_ram=False))
    assert with_psram.rows[0].fits and with_psram.rows[0].uses_external_ram
    assert not without.rows[0].fits


def test_per_tensor_variants_are_smaller_and_share_the_prior() -> None:
    per_channel = mobilenet_v2_graph(0.35, 96)
    per_tensor = mobilenet_v2_graph(0.35, 96, per_tensor=True)
    assert per_tensor.model_bytes < per_channel.model_bytes
    assert [l.params for l in per_tensor.layers] == [l.params for l in per_channel.layers]
    report = fit("rpi4", alphas=(0.35,), resolutions=(96,), per_tensor=True)
    assert {r.variant.per_tensor for r in report.rows} == {False, True}
    assert report.rows[0].variant.per_tensor is False  # ties go to per-channel


def _measured(top1: float, imagenet: bool = True) -> Measured:
    return Measured(images=300, top1=top1, top5=95.0, float_top1=top1 + 0.5, agreement=98.0, mean_kl=0.05,
                    top1_ci=(top1 - 5, top1 + 4), imagenet_weights=imagenet, weights_note=None, model="m.tflite")


def test_measurements_replace_priors_and_rank_first() -> None:
    report = fit("rpi4")
    small = Variant(1.0, 96)
    measured = apply_measurements(report, {small: _measured(80.0)})
    first = measured.rows[0]
    assert first.variant == small and first.accuracy == 80.0 and first.accuracy_kind == "measured"
    assert "measured top-1 80.0%" in measured.recommendation
    assert any("n=300" in note for note in measured.notes)
    random = apply_measurements(report, {small: _measured(0.3, imagenet=False)})
    row = next(r for r in random.rows if r.variant == small)
    assert row.accuracy_kind == "published" and row.accuracy == 60.3 and row.measured is not None


def test_bad_inputs_are_one_line() -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["fit", "--device", "rpi9"])
    assert result.exit_code == 1 and "unknown device 'rpi9'" in str(result.exception)
    result = runner.invoke(cli, ["fit", "--device", "rpi4", "--max-ram", "12X"])
    assert result.exit_code == 2 and "not a byte size" in result.output
    with pytest.raises(InputError, match="not in the family"):
        fit("rpi4", alphas=(0.9,))
    with pytest.raises(InputError, match="one device"):
        fit("all")


def test_cli_json_markdown_and_plot(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["fit", "--device", "esp32-s3", "--max-latency-ms", "500", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["schema_version"] == 1 and len(data["rows"]) == 30
    assert data["best"] == data["rows"][0]["name"] and data["rows"][0]["accuracy_kind"] == "published"
    result = runner.invoke(cli, ["fit", "--device", "stm32h7", "--markdown", "--plot", str(tmp_path / "p.png")])
    assert result.exit_code == 0, result.output
    assert "| rank | variant |" in result.output and "**Recommendation:" in result.output
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = runner.invoke(cli, ["fit", "--device", "nano33ble"])
    assert isinstance(result.exception, GateFailed) and GateFailed.exit_code == 3  # main() turns it into exit 3
    assert "Nothing in the MobileNetV2 family fits" in result.output


def test_fit_does_not_import_tensorflow(tmp_path: Path) -> None:
    probe = ("import sys\nsys.argv = ['edgemnv2', 'fit', '--device', 'esp32-s3', '--plot', sys.argv[1]]\n"
             "from edgemnv2.cli import main\ntry:\n    main()\nfinally:\n"
             "    print('TF', 'tensorflow' in sys.modules, 'keras' in sys.modules, file=sys.stderr)\n")
    proc = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "f.png")], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "TF False False" in proc.stderr
