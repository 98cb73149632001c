"""Latency model vs published figures: fitted rows and held-out rows, per device profile.

The rows are edgemnv2/profile/published_latency.toml (each with its source). Each device profile has one
fitted factor (`efficiency`); this script
  1. fits it on the rows with role "fitted" (geometric mean of estimate/published = 1),
  2. prints every row with the profile AS SHIPPED (device, model, published, estimate, error, role),
  3. reports the mean absolute error on fitted and on held-out rows separately, and warns when a
     shipped `efficiency` differs from the fit by more than 2%.
Held-out rows are never used to set any profile value: they test whether the model predicts.

    python benchmarks/latency_calibration.py            # table on stdout
    python benchmarks/latency_calibration.py --markdown # the table for docs/devices.md
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys

from edgemnv2.profile.cost import graph_costs
from edgemnv2.profile.devices import DeviceProfile, load_device
from edgemnv2.profile.graph import ModelGraph
from edgemnv2.profile.latency import estimate
from edgemnv2.profile.published import PublishedRow, published_rows

ROWS: tuple[PublishedRow, ...] = published_rows()   # edgemnv2/profile/published_latency.toml, with sources
# Profiles whose efficiency is fitted here: those with a "fitted" row (esp32-s3's "prior" kernel rows set its
# rates directly and it keeps efficiency 1.0).
FITTED_DEVICES = tuple(dict.fromkeys(r.device for r in ROWS if r.role == "fitted"))


def estimate_ms(graph: ModelGraph, device: DeviceProfile) -> float:
    result = estimate(graph, graph_costs(graph), device)
    assert result.total_ms is not None
    return result.total_ms


def with_efficiency(device: DeviceProfile, value: float) -> DeviceProfile:
    if device.kind == "edgetpu":
        return dataclasses.replace(device, edgetpu=dataclasses.replace(device.edgetpu, efficiency=value))
    return dataclasses.replace(device, cpu=dataclasses.replace(device.cpu, efficiency=value))


def shipped_efficiency(device: DeviceProfile) -> float:
    return device.edgetpu.efficiency if device.kind == "edgetpu" else device.cpu.efficiency


def fit(device_key: str, graphs: dict[str, ModelGraph]) -> float:
    """Efficiency with geometric-mean(estimate / published) = 1 over the device's fitted rows (bisection)."""
    device = load_device(device_key)
    rows = [r for r in ROWS if r.device == device_key and r.role == "fitted"]

    def log_bias(eff: float) -> float:
        d = with_efficiency(device, eff)
        return sum(math.log(estimate_ms(graphs[r.model + r.device], d) / r.published_ms) for r in rows) / len(rows)

    low, high = 1e-3, 1e3
    for _ in range(100):  # estimate falls as efficiency rises
        mid = math.sqrt(low * high)
        if log_bias(mid) > 0:
            low = mid
        else:
            high = mid
    return math.sqrt(low * high)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--markdown", action="store_true", help="print the docs/devices.md table")
    args = parser.parse_args()

    graphs = {r.model + r.device: r.graph() for r in ROWS}
    problems = []
    fits = {}
    for key in FITTED_DEVICES:
        fits[key] = fit(key, graphs)
        shipped = shipped_efficiency(load_device(key))
        if abs(shipped / fits[key] - 1) > 0.02:
            problems.append(f"{key}: shipped efficiency {shipped:.4g} but the fit gives {fits[key]:.4g}")

    results = []
    for r in ROWS:
        est = estimate_ms(graphs[r.model + r.device], load_device(r.device))
        results.append((r, est, est / r.published_ms - 1))

    if args.markdown:
        print("| device | model | published ms | our estimate ms | error | role | source |")
        print("|---|---|---:|---:|---:|---|---|")
        for r, est, err in results:
            source = r.source + (f" [{r.note}]" if r.note else "")
            print(f"| {r.device} | {r.model} | {r.published_ms:.4g} | {est:.4g} | {err:+.0%} | {r.role} | {source} |")
    else:
        print(f"{'device':<15} {'model':<58} {'published':>10} {'estimate':>10} {'error':>7}  role")
        for r, est, err in results:
            print(f"{r.device:<15} {r.model:<58} {r.published_ms:>10.4g} {est:>10.4g} {err:>+7.0%}  {r.role}")
        print()
        for key, value in fits.items():
            print(f"fitted efficiency {key}: {value:.4g} (shipped {shipped_efficiency(load_device(key)):.4g})")
    fitted_err = [abs(e) for r, _, e in results if r.role != "held-out"]
    held_err = [abs(e) for r, _, e in results if r.role == "held-out"]
    summary = (f"mean |error|: fitted and prior rows {sum(fitted_err) / len(fitted_err):.1%} (n={len(fitted_err)}), "
               f"held-out rows {sum(held_err) / len(held_err):.1%} (n={len(held_err)}); "
               f"held-out within ±35%: {sum(e <= 0.35 for e in held_err)}/{len(held_err)}")
    print(("\n" if args.markdown else "") + summary)
    for problem in problems:
        print("WARNING: " + problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
