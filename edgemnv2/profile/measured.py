"""Measured per-layer times beside the profile's estimate, per operator and per op kind.

The board's MicroProfiler times every operator (bench's `layer_us`). At the board's clock (INFO `cpu_hz`)
those are cycles — instructions under QEMU `-icount`, where `cpu_hz` is 1 GHz — and divided by each
kind's multiplications they are cycles per MAC: the numbers a device profile's per-kind rates stand for,
so measured and estimated can be compared where they differ, not only in total.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgemnv2.profile.cost import graph_costs
from edgemnv2.profile.devices import FITTED_KINDS, DeviceProfile
from edgemnv2.profile.graph import ModelGraph
from edgemnv2.profile.latency import LayerFeatures, estimate, layer_features


@dataclass(frozen=True)
class OpRow:
    index: int
    name: str
    op: str                          # TFLite builtin
    kind: str                        # the profile's op kind: conv | pointwise | depthwise | add | mean ...
    macs: int
    measured_us: float
    estimated_us: float | None       # None without a device, or for an op the estimator does not know


@dataclass(frozen=True)
class KindRow:
    kind: str
    ops: int
    macs: int
    measured_us: float
    estimated_us: float | None
    measured_cycles_per_mac: float | None    # None for kinds that multiply nothing
    estimated_cycles_per_mac: float | None


@dataclass(frozen=True)
class LayerTable:
    device: str | None               # the estimate's device profile (key), None: measured only
    cpu_hz: int
    ops: list[OpRow]
    kinds: list[KindRow]
    measured_us: float               # sum over ops
    estimated_us: float | None
    estimate_error: float | None     # estimated / measured - 1


def layer_table(graph: ModelGraph, measured_us: list[float], cpu_hz: int,
                device: DeviceProfile | None = None) -> LayerTable | None:
    """Per-op and per-kind rows; None when the board timed another number of ops than the graph has."""
    if len(measured_us) != len(graph.layers):
        return None
    costs = graph_costs(graph)
    features = layer_features(graph, costs)
    estimated: list[float | None] = [None] * len(features)
    if device is not None:
        estimated = [t.ms * 1e3 if t.ms is not None else None for t in estimate(graph, costs, device).layers]
    return table_of(features, measured_us, cpu_hz, estimated, device.key if device else None)


def table_of(features: list[LayerFeatures], measured_us: list[float], cpu_hz: int,
             estimated_us: list[float | None], device: str | None) -> LayerTable:
    ops = [OpRow(i, f.name, f.op, f.kind, f.macs, round(m, 3), None if e is None else round(e, 3))
           for i, (f, m, e) in enumerate(zip(features, measured_us, estimated_us))]
    cycles_per_us = cpu_hz / 1e6
    kinds = []
    seen = {r.kind for r in ops}
    for kind in [k for k in FITTED_KINDS if k in seen] + sorted(seen - set(FITTED_KINDS)):
        rows = [r for r in ops if r.kind == kind]
        macs = sum(r.macs for r in rows)
        measured = sum(r.measured_us for r in rows)
        estimated = None if any(r.estimated_us is None for r in rows) else sum(r.estimated_us for r in rows)
        kinds.append(KindRow(kind, len(rows), macs, round(measured, 3), _round(estimated),
                             round(measured * cycles_per_us / macs, 4) if macs else None,
                             round(estimated * cycles_per_us / macs, 4) if macs and estimated is not None else None))
    measured_total = sum(r.measured_us for r in ops)
    estimated_total = None if any(r.estimated_us is None for r in ops) else sum(r.estimated_us for r in ops)
    error = estimated_total / measured_total - 1 if estimated_total is not None and measured_total else None
    return LayerTable(device, cpu_hz, ops, kinds, round(measured_total, 3), _round(estimated_total), _round(error, 5))


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def render_layer_table(table: LayerTable) -> list[str]:
    """Per-kind rows (cycles per MAC measured vs estimated), then one row per op."""
    against = f"estimate: {table.device}" if table.device else "no estimate (give bench --device)"
    lines = [f"  by kind (cycles per MAC at the board's {table.cpu_hz / 1e6:g} MHz; {against})",
             "    kind              ops          MACs   measured µs  estimated µs   meas/MAC    est/MAC"]
    for k in table.kinds:
        lines.append(f"    {k.kind:<16} {k.ops:>4} {k.macs:>13,} {k.measured_us:>13.1f} {_fmt(k.estimated_us, '.1f', 13)}"
                     f" {_fmt(k.measured_cycles_per_mac, '.3f', 10)} {_fmt(k.estimated_cycles_per_mac, '.3f', 10)}")
    error = f" ({table.estimate_error:+.2%})" if table.estimate_error is not None else ""
    lines.append(f"    {'total':<16} {len(table.ops):>4} {sum(k.macs for k in table.kinds):>13,} "
                 f"{table.measured_us:>13.1f} {_fmt(table.estimated_us, '.1f', 13)}{error}")
    lines.append("    op  tflite op            kind                    MACs   measured µs  estimated µs  share")
    for r in table.ops:
        share = r.measured_us / table.measured_us if table.measured_us else 0.0
        lines.append(f"   {r.index:>3}  {r.op:<20} {r.kind:<16} {r.macs:>12,} {r.measured_us:>13.1f} "
                     f"{_fmt(r.estimated_us, '.1f', 13)} {share:>6.1%}")
    return lines


def _fmt(value: float | None, spec: str, width: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}{spec}}"
