"""The real firmware's per-layer timings, end to end, with the commands a user types.

For each run: `edgemnv2 convert` (when the model is missing) → `edgemnv2 export --target T` → `edgemnv2 build`
→ `edgemnv2 board-sim --firmware ... [--icount]` → `edgemnv2 bench ...` (every output compared with host
TFLite Micro; with a device profile, the per-layer table measured vs estimated). The 1.0/96 CMSIS-NN run goes
first: `edgemnv2 devices calibrate` fits its per-layer times into WORK/qemu-an386-calibrated.toml, the held-out
runs (1.0/160, 0.35/96) are benched against that file (their per-layer estimate was never fitted to them), and
a last `devices calibrate ... --held-out` prints how well the fit predicts each. Every command is printed
before it runs.

    nice python benchmarks/firmware_per_layer.py --work-dir /tmp/fpl                       # every run below
    nice python benchmarks/firmware_per_layer.py --work-dir /tmp/fpl --runs 96-cmsis 160-cmsis 035-cmsis
    python benchmarks/firmware_per_layer.py --work-dir /tmp/fpl --fixtures tests/vectors/firmware   # no runs

`--fixtures DIR` writes each results file of the work dir as DIR/an386-NAME.jsonl, its header and one record of
the per-layer means (what `devices calibrate` reads; tests/profile/test_calibrate.py checks the bundled
qemu-an386 profile against them).

Runs (`--count` overrides the images of each):
    96-cmsis   MobileNetV2 1.0/96, mps2-an386, CMSIS-NN, -icount   100 images   (fits the calibration)
    96-host    MobileNetV2 1.0/96, host firmware                   100 images
    96-ref     MobileNetV2 1.0/96, mps2-an386, reference, -icount   10 images
    224-cmsis  MobileNetV2 1.0/224, mps2-an386 (model in PSRAM)     10 images
    160-cmsis  MobileNetV2 1.0/160, mps2-an386, CMSIS-NN             3 images   (held out)
    035-cmsis  MobileNetV2 0.35/96, random weights, CMSIS-NN         3 images   (held out)
QEMU's UART moves a few KB/s (a 96x96 image uploads in 3-8 s), so bench is told a 28800 baud link for the QEMU
runs: its ACK timeouts follow --baud, and at the default 921600 it would resend windows that are still queued
in the pty (docs/firmware.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from edgemnv2.models import ModelSpec

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EDGEMNV2_SHARED") or REPO.parent / "shared")
EDGEMNV2 = [sys.executable, "-m", "edgemnv2"]


@dataclass(frozen=True)
class Run:
    model: ModelSpec  # weights imagenet | none
    target: str
    kernels: str
    count: int
    device: str | None  # the per-layer estimate's profile
    timeout: float
    baud: int = 28800   # about what the link really moves (QEMU's UART), for bench's ACK timeouts


M96, M160, M224, M035 = ModelSpec(1.0, 96), ModelSpec(1.0, 160), ModelSpec(1.0, 224), ModelSpec(0.35, 96, "none")
RUNS = {
    "96-cmsis": Run(M96, "mps2-an386", "cmsis-nn", 100, "qemu-an386", 300),
    "96-host": Run(M96, "host", "reference", 100, None, 60, 921600),
    "96-ref": Run(M96, "mps2-an386", "reference", 10, "qemu-an386-reference", 900),
    "224-cmsis": Run(M224, "mps2-an386", "cmsis-nn", 10, "qemu-an386", 900),
    "160-cmsis": Run(M160, "mps2-an386", "cmsis-nn", 3, "qemu-an386", 600),
    "035-cmsis": Run(M035, "mps2-an386", "cmsis-nn", 3, "qemu-an386", 300),
}
FIT_RUN, HELD_OUT_RUNS = "96-cmsis", ("160-cmsis", "035-cmsis")


def sh(args: list[str]) -> None:
    print("$ " + shlex.join(["edgemnv2", *args[3:]] if args[:3] == EDGEMNV2 else args), flush=True)
    subprocess.run(args, check=True)


def model_path(work: Path, model: ModelSpec) -> Path:
    weights = "int8" if model.weights == "imagenet" else "random_int8"
    path = work / "models" / f"mnv2_{model.alpha}_{model.resolution}_{weights}.tflite"
    if not path.is_file():
        sh([*EDGEMNV2, "convert", "--alpha", str(model.alpha), "--resolution", str(model.resolution),
            "--weights", str(model.weights), "-o", str(path)])
    return path


def firmware(work: Path, run: Run, model: Path) -> Path:
    project = work / f"fw-{run.target}-{model.stem}"
    if not (project / "edgemnv2_project.json").is_file():
        sh([*EDGEMNV2, "export", "--target", run.target, "--model", str(model), "-o", str(project)])
    sh([*EDGEMNV2, "build", str(project), "--kernels", run.kernels])
    return project


def bench(work: Path, name: str, run: Run, count: int | None, device_file: Path | None = None) -> Path:
    model = model_path(work, run.model)
    project = firmware(work, run, model)
    results = work / f"{name}.jsonl"
    sim = [*EDGEMNV2, "board-sim", "--firmware", str(project), "--kernels", run.kernels]
    sim += ["--icount"] if run.target != "host" else []
    print("$ " + shlex.join(["edgemnv2", *sim[3:]]) + " &", flush=True)
    board = subprocess.Popen(sim, stdout=subprocess.PIPE, text=True)
    try:
        port = board.stdout.readline().strip()
        if not port:
            raise SystemExit(f"board-sim printed no port (exit {board.wait()})")
        args = [*EDGEMNV2, "bench", "--port", port, "--model", str(model), "--images",
                str(SHARED / "data" / "imagenet-val"), "--count", str(count or run.count), "--baud", str(run.baud), "--timeout",
                str(run.timeout), "-o", str(results), "--force"]
        if device_file is not None:
            args += ["--device-file", str(device_file)]
        elif run.device:
            args += ["-d", run.device]
        sh(args)
    finally:
        board.terminate()
        board.wait(timeout=60)
    return results


def fixture(results: Path, out: Path) -> None:
    """The header and one record of per-layer means (the fit reads means; outputs and per-image fields dropped)."""
    header, *records = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    timed = [r for r in records if r.get("status") == "ok" and r.get("layer_us")]
    mean = {"id": 0, "status": "ok", "images": len(timed),
            "latency_us": round(sum(r["latency_us"] for r in timed) / len(timed), 3),
            "layer_us": [round(sum(col) / len(timed), 3) for col in zip(*(r["layer_us"] for r in timed))]}
    keep = {k: header[k] for k in ("kind", "schema_version", "model_sha256", "model", "cpu_hz", "layers")}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(keep) + "\n" + json.dumps(mean) + "\n")
    print(f"wrote {out} ({len(timed)} images of {results.name})")


def calibrate(work: Path, fitted: Path, held_out: list[Path]) -> Path:
    calibrated = work / "qemu-an386-calibrated.toml"
    sh([*EDGEMNV2, "devices", "calibrate", str(fitted), "-d", "qemu-an386", "-o", str(calibrated),
        *[a for path in held_out for a in ("--held-out", str(path))]])
    return calibrated


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", type=Path, required=True, help="models, projects and results go here")
    parser.add_argument("--runs", nargs="+", choices=sorted(RUNS), default=list(RUNS))
    parser.add_argument("--count", type=int, default=None, help="images per run instead of each run's own")
    parser.add_argument("--fixtures", type=Path, default=None, help="write the calibration runs' test fixtures here")
    args = parser.parse_args()
    work = args.work_dir.resolve()
    if args.fixtures:
        for name in (FIT_RUN, *HELD_OUT_RUNS):
            fixture(work / f"{name}.jsonl", args.fixtures / f"an386-{name}.jsonl")
        return 0
    (work / "models").mkdir(parents=True, exist_ok=True)
    names = sorted(args.runs, key=lambda n: n != FIT_RUN)  # the fit first: the held-out runs are benched against it
    results: dict[str, Path] = {}
    calibrated = work / "qemu-an386-calibrated.toml"
    for name in names:
        held = name in HELD_OUT_RUNS and calibrated.is_file()
        results[name] = bench(work, name, RUNS[name], args.count, calibrated if held else None)
        if name == FIT_RUN:
            calibrate(work, results[name], [])
    fitted = results.get(FIT_RUN, work / f"{FIT_RUN}.jsonl")
    held_out = [results[n] for n in HELD_OUT_RUNS if n in results]
    if held_out and fitted.is_file():
        calibrate(work, fitted, held_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
