"""The real firmware end to end: `export --target mps2-an386|host` → `build` against ../shared/tflm → `board-sim
--firmware` (QEMU or the native build, UART on a pty) → `bench`, every output bit-exact with host TFLite Micro and
every operator timed. Each firmware is built once per session into one object cache; the model is the session's
int8 MobileNetV2 1.0/96 (shared ImageNet weights; random-weight models trip TFLite Micro's softmax checks). The
full 100-image runs are marked slow."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgemnv2.cli import cli
from edgemnv2.deploy.export import ExportRequest, export_project
from edgemnv2.errors import InputError
from edgemnv2.firmware.build import BuildRequest, build_project, tflm_sources
from edgemnv2.firmware.emulator import EmulatorOptions, FirmwareBoard
from edgemnv2.serial.bench import BenchOptions, Streamer, run_bench
from edgemnv2.serial.transport import Transport


@pytest.fixture(scope="session")
def object_cache(tmp_path_factory) -> Path:
    """One object cache for the session ($EDGEMNV2_CACHE_DIR when set, so developers keep theirs warm)."""
    given = os.environ.get("EDGEMNV2_CACHE_DIR")
    return Path(given) / "tflm-objects" if given else tmp_path_factory.mktemp("tflm-cache")


@pytest.fixture(scope="session")
def tflm_dir(shared_dir: Path) -> Path:
    return shared_dir / "tflm"


@pytest.fixture(scope="session")
def small_model(int8_mnv2_96: Path) -> Path:
    """Int8 MobileNetV2 1.0/96 (4 MB): every MobileNetV2 op; 154 M instructions with CMSIS-NN."""
    return int8_mnv2_96


def _export_and_build(tmp_path_factory, model: Path, target: str, cache: Path, tflm: Path, kernels: str | None = None):
    project = tmp_path_factory.mktemp(f"fw-{target}") / "fw"
    export_project(ExportRequest(target=target, model=model, out=project))
    return build_project(BuildRequest(project=project, tflm_dir=tflm, kernels=kernels, cache_dir=cache))


@pytest.fixture(scope="session")
def cm4_build(tmp_path_factory, small_model: Path, object_cache: Path, tflm_dir: Path):
    return _export_and_build(tmp_path_factory, small_model, "mps2-an386", object_cache, tflm_dir)


@pytest.fixture(scope="session")
def host_build(tmp_path_factory, small_model: Path, object_cache: Path, tflm_dir: Path):
    return _export_and_build(tmp_path_factory, small_model, "host", object_cache, tflm_dir)


def _bench(port: str, model: Path, images: Path, out: Path, count: int, timeout: float = 120.0):
    return run_bench(BenchOptions(port=port, model=model, images=images, out=out, count=count, timeout=timeout))


def _input_slots(port: str, model: Path) -> int:
    """The input_slots the firmware's INFO offers (bench streams with as many)."""
    transport = Transport(port, 921600)
    try:
        return Streamer(transport, 30.0, 3).handshake(hashlib.sha256(model.read_bytes()).digest(), 30.0).input_slots
    finally:
        transport.close()


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip() and '"status"' in line]


def _check_layers(records: list[dict], operators: int) -> None:
    """Every operator timed; per-layer µs sum to the whole inference within 2 %."""
    for record in records:
        layers = record["layer_us"]
        assert len(layers) == operators
        assert abs(sum(layers) - record["latency_us"]) <= 0.02 * record["latency_us"], (sum(layers), record)


def test_cortex_m4_build_is_small_and_cached(cm4_build, object_cache: Path, tflm_dir: Path) -> None:
    assert cm4_build.kernels == "cmsis-nn" and cm4_build.elf.is_file()
    # the model (4 MB, in PSRAM) is in text; the planned arena in bss
    assert cm4_build.size.text > 4_000_000 and cm4_build.size.bss > 400_000
    again = build_project(BuildRequest(project=cm4_build.project, tflm_dir=tflm_dir, cache_dir=object_cache))
    assert again.compiled == 0 and again.sources == cm4_build.sources and again.size == cm4_build.size


def test_only_the_models_kernels_are_compiled(tflm_dir: Path) -> None:
    ops = ["CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MEAN", "FULLY_CONNECTED", "SOFTMAX"]
    names = {p.name for p in tflm_sources(tflm_dir, ops, "reference")}
    assert {"conv.cc", "conv_common.cc", "depthwise_conv.cc", "reduce.cc", "softmax.cc"} <= names
    assert not names & {"lstm_eval.cc", "svdf.cc", "transpose_conv.cc", "test_helpers.cc"}
    cmsis = [p for p in tflm_sources(tflm_dir, ops, "cmsis-nn")]
    assert any(p.parent.name == "cmsis_nn" and p.name == "conv.cc" for p in cmsis)
    assert not any(p.parent.name == "LSTMFunctions" for p in cmsis)


def test_qemu_cortex_m4_firmware_through_bench(cm4_build, small_model: Path, shared_dir: Path, tmp_path: Path) -> None:
    with FirmwareBoard(cm4_build.project, EmulatorOptions(icount=True)) as board:
        assert board.path.startswith("/dev/pts/")
        assert _input_slots(board.path, small_model) == 2  # the next image uploads while one computes
        report = _bench(board.path, small_model, shared_dir / "data" / "imagenet-val", tmp_path / "r.jsonl", 2)
    assert report.received == 2 and report.exact_matches == 2, report
    records = _records(tmp_path / "r.jsonl")
    _check_layers(records, json.loads((cm4_build.project / "edgemnv2_project.json").read_text())["operator_count"])
    # -icount shift=0: cycles are instructions; CMSIS-NN 1.0/96 is ~154 M (../shared/tflm/README.md: 153.7 M)
    assert 120e6 < records[0]["cycles"] < 200e6
    assert board.proc is None  # stopped


def test_host_firmware_through_bench(host_build, small_model: Path, shared_dir: Path, tmp_path: Path) -> None:
    with FirmwareBoard(host_build.project) as board:
        assert _input_slots(board.path, small_model) == 2
        report = _bench(board.path, small_model, shared_dir / "data" / "imagenet-val", tmp_path / "r.jsonl", 3)
    assert report.received == 3 and report.exact_matches == 3, report
    _check_layers(_records(tmp_path / "r.jsonl"),
                  json.loads((host_build.project / "edgemnv2_project.json").read_text())["operator_count"])


def test_host_firmware_per_layer_table_calibrate_and_profile(host_build, small_model: Path, shared_dir: Path,
                                                             tmp_path: Path) -> None:
    """The per-layer flow on the fast build: bench's measured-vs-estimate table and JSONL header, a profile
    calibrated on those results, and `profile --device-file` predicting with it."""
    from edgemnv2.profile import profile
    from edgemnv2.profile.calibrate import calibrate
    from edgemnv2.profile.devices import load_device

    out = tmp_path / "r.jsonl"
    with FirmwareBoard(host_build.project) as board:
        report = run_bench(BenchOptions(port=board.path, model=small_model, images=shared_dir / "data" / "imagenet-val",
                                        out=out, count=2, timeout=120.0, device="qemu-an386"))
    table = report.layers.table
    assert table is not None and table.device == "qemu-an386" and table.estimated_us > 0
    assert [k.kind for k in table.kinds] == ["conv", "pointwise", "depthwise", "fully_connected", "add", "mean",
                                             "softmax"]
    assert all(k.measured_cycles_per_mac > 0 for k in table.kinds if k.macs)
    header = json.loads(out.read_text().splitlines()[0])
    assert header["model"] == small_model.name and header["cpu_hz"] == 1_000_000_000
    assert len(header["layers"]["ops"]) == len(table.ops)
    fit = calibrate([out], load_device("qemu-an386"), tmp_path / "host.toml")
    [own] = fit.files
    assert abs(own.error) < 0.05, own  # the per-op constant makes the fitted ops sum to the measured sum
    [profiled] = profile(small_model, device_file=tmp_path / "host.toml")
    assert profiled.totals.latency_ms == pytest.approx(own.predicted_cycles / 1e6, rel=1e-6)


def test_board_sim_firmware_cli_prints_the_pty_and_stops_qemu(cm4_build) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "edgemnv2", "board-sim", "--firmware", str(cm4_build.project)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    path = proc.stdout.readline().strip()
    assert path.startswith("/dev/pts/") and os.path.exists(path)
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert children, "QEMU is not running under board-sim"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0, proc.stderr.read()
    for pid in children:
        assert not os.path.exists(f"/proc/{pid}") or "zombie" in open(f"/proc/{pid}/status").read().lower()


def test_bad_inputs_are_one_line_errors(tmp_path: Path, cm4_build) -> None:
    runner = CliRunner()
    for args, message in ((["build", str(tmp_path)], "not an exported project"),
                          (["build", str(cm4_build.project), "--tflm-dir", str(tmp_path)],
                           "not a TensorFlow Lite Micro source tree"),
                          (["board-sim", "--firmware", str(tmp_path)], "not an exported project"),
                          (["board-sim"], "exactly one of --model")):
        result = subprocess.run([sys.executable, "-m", "edgemnv2", *args], capture_output=True, text=True, timeout=60)
        assert result.returncode == 1 and result.stderr.startswith("Error: ") and message in result.stderr, result
        assert "Traceback" not in result.stderr
    del runner
    with pytest.raises(InputError, match="CMSIS-NN kernels are Arm code"):
        build_project(BuildRequest(project=_host_project(tmp_path, cm4_build), kernels="cmsis-nn"))


def _host_project(tmp_path: Path, cm4_build) -> Path:
    manifest = json.loads((cm4_build.project / "edgemnv2_project.json").read_text())
    project = tmp_path / "host-manifest"
    project.mkdir()
    (project / "edgemnv2_project.json").write_text(json.dumps({**manifest, "target": "host"}))
    return project


@pytest.mark.slow
@pytest.mark.parametrize("target", ["mps2-an386", "mps3-an547", "host"])
def test_mobilenet_v2_96_full_run(target: str, tmp_path_factory, int8_mnv2_96: Path, object_cache: Path,
                                  tflm_dir: Path, shared_dir: Path, tmp_path: Path) -> None:
    build = _export_and_build(tmp_path_factory, int8_mnv2_96, target, object_cache, tflm_dir)
    with FirmwareBoard(build.project, EmulatorOptions(icount=target != "host")) as board:
        report = _bench(board.path, int8_mnv2_96, shared_dir / "data" / "imagenet-val", tmp_path / "r.jsonl", 100)
    assert report.received == 100 and report.exact_matches == 100, report
