"""A real sweep on a two-node Ray cluster started on this machine, against the same sweep run sequentially.

The cluster is two `ray start --block` processes (a head and a node joining it, one CPU each, their own temp
folder and auth token); the finalizer stops exactly those two (SIGTERM: each stops its own node's processes),
even when the test fails. `ray stop` is not used: it stops every Ray process of the machine, other users'
included. The default suite sends two candidates that fail in the workers; the slow test converts 0.35/96
with seeded random weights (plain converter, three images) on the cluster and sequentially and compares.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# `ray start` in this interpreter, so the nodes' workers import this checkout's edgemnv2
RAY = [sys.executable, "-c", "import sys; from ray.scripts.scripts import main; sys.argv[0] = 'ray'; main()"]
STARTED = "Ray runtime started"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(args: list[str], env: dict[str, str], attempts: int = 2) -> subprocess.Popen:
    """`ray start ... --block`, returned once it reports the node started (its own output is the event).

    Ray gives a new node 30 s to register (hard-coded); on a machine loaded by other jobs that can pass, so a
    start that timed out is cleaned up (its session, by id) and tried once more."""
    proc = subprocess.Popen([*RAY, "start", *args, "--block", "--disable-usage-stats"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if STARTED in line:
            return proc
    proc.wait()
    proc.stdout.close()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    if attempts > 1 and any("timed out during startup" in line for line in seen):
        return _start(args, env, attempts - 1)
    raise AssertionError("ray start failed:\n" + "".join(seen[-20:]))


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the session this test started, by its id
            proc.wait()
    proc.stdout.close()


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[tuple[str, dict[str, str]]]:
    temp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("RAY_ADDRESS", None)
    port = _free_port()
    nodes: list[subprocess.Popen] = []
    try:
        nodes.append(_start(["--head", f"--port={port}", "--num-cpus=1", f"--temp-dir={temp}",
                             "--include-dashboard=false"], env))
        nodes.append(_start([f"--address=127.0.0.1:{port}", "--num-cpus=1"], env))
        yield f"127.0.0.1:{port}", env
    finally:
        for proc in reversed(nodes):
            _stop(proc)
        shutil.rmtree(temp, ignore_errors=True)


def _sweep(spec: Path, out: Path, env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edgemnv2", "sweep", str(spec), "--out-dir", str(out), "--json",
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _comparable(results: list[dict]) -> list[dict]:
    """Everything but timings and the paths of the output folder."""
    timing = {"float_seconds", "tflite_seconds", "tflite_images_per_second", "model", "data"}
    out = []
    for r in results:
        validation = {k: v for k, v in r["validation"].items() if k not in timing}
        validation["reference"] = {k: v for k, v in validation["reference"].items() if k != "weights_file"}
        out.append({"key": r["key"], "status": r["status"], "sha256": r["conversion"]["sha256"],
                    "validation": validation})
    return out


def test_two_node_ray_sweep_reports_each_failure(ray_cluster, tmp_path: Path, val3: Path, calib4: Path) -> None:
    """Default suite: the cluster runs the tasks and every failure comes back as its own line (no TensorFlow:
    the options are refused in the worker before anything is built)."""
    address, env = ray_cluster
    spec = tmp_path / "sweep.toml"
    spec.write_text(f'data = "{val3}"\ncalibration = "{calib4}"\n[grid]\nalpha = [0.35]\nresolution = [96, 128]\n'
                    'weights = "none"\nquantize = "float16"\nio = "uint8"\n')
    proc = _sweep(spec, tmp_path / "ray", env, "--ray-address", address)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 1
    report = json.loads(out)
    assert [r["status"] for r in report["results"]] == ["failed", "failed"]
    assert all(r["error"] == "--io uint8 needs --quantize int8 (float16 models keep float32 I/O)"
               for r in report["results"])
    assert report["executor"] == f"ray ({address})" and any("2 node(s)" in n for n in report["notes"])
    assert [line for line in err.splitlines() if line.startswith("Error: ")] == [
        "Error: 2 of 2 candidates failed; first: 0.35/96 weights=none io=uint8 quantize=float16: --io uint8 needs "
        "--quantize int8 (float16 models keep float32 I/O)"]
    assert not (tmp_path / "ray").exists() or not any((tmp_path / "ray").iterdir())  # nothing cached for failures


@pytest.mark.slow  # two real conversions on the cluster and two in a sequential sweep: minutes on a loaded machine
def test_two_node_ray_sweep_equals_sequential(ray_cluster, tmp_path: Path, val3: Path, calib4: Path) -> None:
    address, env = ray_cluster
    spec = tmp_path / "sweep.toml"
    spec.write_text(f'data = "{val3}"\ncalibration = "{calib4}"\n[grid]\nalpha = [0.35]\nresolution = [96]\n'
                    'weights = "none"\nnum_calibration = 4\ncalibration_method = "minmax"\nbias_correction = false\n'
                    "per_tensor = [false, true]\n")
    on_ray = _sweep(spec, tmp_path / "ray", env, "--ray-address", address)
    sequential = _sweep(spec, tmp_path / "seq", env, "--executor", "sequential")
    ray_out, ray_err = on_ray.communicate(timeout=900)
    seq_out, seq_err = sequential.communicate(timeout=900)
    assert on_ray.returncode == 0, ray_err
    assert sequential.returncode == 0, seq_err
    ray_report, seq_report = json.loads(ray_out), json.loads(seq_out)
    assert ray_report["executor"] == f"ray ({address})" and seq_report["executor"] == "sequential"
    assert [r["status"] for r in ray_report["results"]] == ["measured", "measured"]
    assert _comparable(ray_report["results"]) == _comparable(seq_report["results"])
    assert ray_report["results"][0]["conversion"]["sha256"] != ray_report["results"][1]["conversion"]["sha256"]
    assert len({r["node"] for r in ray_report["results"]}) == 2, "one task per node (one CPU each)"
    kept = Path(ray_report["results"][0]["model"]).with_name("random.weights.h5")
    assert kept.is_file() and json.loads(Path(str(ray_report["results"][0]["model"]) + ".json").read_text()
                                         )["source"]["weights_file"] == str(kept)
    assert any("2 node(s)" in note for note in ray_report["notes"])
    # a rerun on the cluster finds everything in the cache and runs nothing
    again = _sweep(spec, tmp_path / "ray", env, "--ray-address", address)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert [r["status"] for r in json.loads(out)["results"]] == ["cached", "cached"]
