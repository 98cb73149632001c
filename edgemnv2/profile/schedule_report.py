"""`edgemnv2 profile --schedule`: peak RAM, extra MACs, latency and fit of each execution schedule.

Computed here into frozen dataclasses (`build_schedule_report`), rendered by `render_schedules` (table)
or as JSON by the CLI. The schedules themselves come from `schedule.py`; latency reuses the profile's
per-layer estimate, each layer scaled by the work its tiles recompute.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgemnv2.errors import InputError
from edgemnv2.profile.devices import DeviceProfile
from edgemnv2.profile.opgraph import OpGraph, read_opgraph
from edgemnv2.profile.schedule import SCHEDULES, Schedule, plan_schedule

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class ScheduleRow:
    schedule: str
    peak_ram_bytes: int
    arena_bytes: int
    persistent_bytes: int
    input_bytes: int
    output_bytes: int
    scratch_bytes: int
    lower_bound_bytes: int
    stack_bytes: int                          # the static engine's stack on Cortex-M4 (not in peak_ram_bytes)
    macs: int
    extra_macs: int
    extra_macs_ratio: float
    split_step: int | None
    tile_grid: list[int] | None
    inplace_steps: int
    latency_ms: dict[str, float | None]       # device key -> estimate
    timeline: list[int]                       # bytes live while each graph op runs


@dataclass(frozen=True)
class DeviceVerdict:
    device: str
    ram_available_bytes: int                  # device RAM minus the runtime's own RAM (stacks, heap)
    schedule: str | None                      # the first of tflm, inplace, patch that fits; None: none fits
    verdict: str


@dataclass(frozen=True)
class ScheduleReport:
    schema_version: int
    model: str
    ram_budget_bytes: int | None
    tflm_arena_bytes: int
    schedules: list[ScheduleRow]
    devices: list[DeviceVerdict] = field(default_factory=list)


def _work_ratios(s: Schedule, g: OpGraph) -> list[float]:
    """Per graph op: output pixels computed / the layer's output pixels (tiles recompute their overlap)."""
    ratios = [1.0] * len(g.ops)
    if s.patch is None:
        return ratios
    for step in s.steps[:s.patch.split_step]:
        rows, cols = s.patch.rows[step.output], s.patch.cols[step.output]
        shape = g.tensors[step.output].shape
        for op in step.ops:
            ratios[op] = sum(r.size for r in rows) * sum(c.size for c in cols) / (shape[1] * shape[2])
    return ratios


def _latency(model: Path, s: Schedule, g: OpGraph, devices: list[DeviceProfile]) -> dict[str, float | None]:
    from edgemnv2.profile.cost import graph_costs
    from edgemnv2.profile.graph import load_tflite
    from edgemnv2.profile.latency import estimate

    graph = load_tflite(model)
    costs = graph_costs(graph)
    ratios = _work_ratios(s, g)
    out: dict[str, float | None] = {}
    for device in devices:
        est = estimate(graph, costs, device)
        if est.total_ms is None or any(layer.ms is None for layer in est.layers):
            out[device.key] = est.total_ms
            continue
        out[device.key] = sum(layer.ms * r for layer, r in zip(est.layers, ratios))
    return out


def _row(model: Path, s: Schedule, g: OpGraph, devices: list[DeviceProfile]) -> ScheduleRow:
    return ScheduleRow(
        schedule=s.kind, peak_ram_bytes=s.peak_bytes, arena_bytes=s.arena_bytes, persistent_bytes=s.persistent_bytes,
        input_bytes=s.input_bytes, output_bytes=s.output_bytes, scratch_bytes=s.scratch_bytes,
        lower_bound_bytes=s.lower_bound_bytes, stack_bytes=s.stack_bytes, macs=s.macs, extra_macs=s.extra_macs,
        extra_macs_ratio=s.extra_macs_ratio, split_step=s.patch.split_step if s.patch else None,
        tile_grid=list(s.patch.grid) if s.patch else None, inplace_steps=len(s.inplace_steps),
        latency_ms=_latency(model, s, g, devices), timeline=list(s.timeline))


def build_schedule_report(model: Path, schedule: str, devices: list[DeviceProfile] | None = None,
                          ram_budget: int | None = None, split: int | None = None,
                          grid: tuple[int, int] | None = None) -> ScheduleReport:
    """Plan the asked schedule(s); "auto" plans all three and gives each device the first that fits.

    The patch schedule is searched for `ram_budget`, or else for each MCU device's RAM (less the runtime's
    own), so each device gets the cheapest tiling that fits it; one row per distinct tiling.
    """
    if schedule not in SCHEDULES + ("auto",):
        raise InputError(f"unknown schedule {schedule!r}: choose {', '.join(SCHEDULES)} or auto")
    model = Path(model)
    devices = [d for d in (devices or []) if d.is_mcu]
    available = {d.key: d.ram_bytes - d.runtime_ram_bytes for d in devices}
    graph = read_opgraph(model)
    kinds = SCHEDULES if schedule == "auto" else (schedule,)
    tflm = plan_schedule(model, "tflm", graph=graph)
    plans = [tflm] if "tflm" in kinds else []
    if "inplace" in kinds:
        plans.append(plan_schedule(model, "inplace", graph=graph))
    patch_for: dict[int | None, Schedule] = {}
    if "patch" in kinds:
        budgets: list[int | None] = sorted(set(available.values())| ({ram_budget} if ram_budget is not None else set()))
        if split is not None:
            budgets = [ram_budget]
        for budget in budgets or [None]:
            patch_for[budget] = plan_schedule(model, "patch", budget, split, grid, graph=graph)
        floor = min((s.peak_bytes for s in plans if s.kind == "inplace"), default=None)
        for s in sorted(patch_for.values(), key=lambda s: s.macs):
            if floor is not None and s.peak_bytes >= floor and split is None:
                continue   # tiling buys nothing over the inplace schedule at this budget
            if all((s.patch.split_step, s.patch.grid) != (p.patch.split_step, p.patch.grid)   # type: ignore[union-attr]
                   for p in plans if p.patch is not None):  # one row per distinct tiling
                plans.append(s)
    rows = [_row(model, s, graph, devices) for s in plans]
    by_plan = {id(s): r for s, r in zip(plans, rows)}

    def choose(budget: int) -> ScheduleRow | None:
        own = patch_for.get(budget) or next(iter(patch_for.values()), None)
        match = next((p for p in plans if p.patch is not None and own is not None and own.patch is not None
                      and (p.patch.split_step, p.patch.grid) == (own.patch.split_step, own.patch.grid)), None)
        options = [s for s in plans if s.patch is None] + ([match] if match is not None else [])
        fitting = [s for s in options if s.peak_bytes <= budget]
        return by_plan[id(min(fitting, key=lambda s: SCHEDULES.index(s.kind)))] if fitting else None

    verdicts = [_verdict(key, budget, choose(budget), rows) for key, budget in available.items()]
    if ram_budget is not None:
        verdicts.append(_verdict(f"--ram-budget {ram_budget}", ram_budget, choose(ram_budget), rows))
    return ScheduleReport(SCHEMA_VERSION, str(model), ram_budget, tflm.peak_bytes, rows, verdicts)


def _describe(r: ScheduleRow) -> str:
    extra = f", +{r.extra_macs_ratio:.1%} MACs" if r.extra_macs else ""
    return f"peak {_kib(r.peak_ram_bytes)}{extra}"


def _verdict(name: str, available: int, row: ScheduleRow | None, rows: list[ScheduleRow]) -> DeviceVerdict:
    if row is not None:
        text = f"FITS {name} with the {row.schedule} schedule: {_describe(row)} of {_kib(available)}"
    else:
        best = min(rows, key=lambda r: r.peak_ram_bytes)
        text = (f"DOES NOT FIT {name} with {'any planned schedule' if len(rows) > 1 else 'the ' + rows[0].schedule + ' schedule'}"
                f": lowest {best.schedule} {_describe(best)} > {_kib(available)}")
    return DeviceVerdict(name, available, row.schedule if row else None, text)


def _kib(n: int) -> str:
    return f"{n / 1024:,.1f} KiB"


def render_schedules(report: ScheduleReport) -> str:
    """The schedule table and one verdict line per device."""
    from edgemnv2.profile.report import grid

    keys = sorted({k for r in report.schedules for k in r.latency_ms})
    header = ["schedule", "peak RAM B", "vs TFLM", "arena B", "persistent B", "scratch B", "stack B", "MACs",
              "extra MACs",
              "split/tiles"] + [f"ms {k}" for k in keys]
    rows = []
    for r in report.schedules:
        tiles = f"step {r.split_step}, {r.tile_grid[0]}x{r.tile_grid[1]}" if r.tile_grid else ""
        latency = [("?" if r.latency_ms.get(k) is None else f"{r.latency_ms[k]:.1f}") for k in keys]
        rows.append([r.schedule, f"{r.peak_ram_bytes:,}", f"{r.peak_ram_bytes / report.tflm_arena_bytes:.1%}",
                     f"{r.arena_bytes:,}", f"{r.persistent_bytes:,}", f"{r.scratch_bytes:,}",
                     f"{r.stack_bytes:,}" if r.stack_bytes else "", f"{r.macs:,}",
                     f"+{r.extra_macs_ratio:.2%}", tiles] + latency)
    lines = [f"model: {report.model}", grid(header, rows, right=set(range(1, 9)) | set(range(10, 10 + len(keys))))]
    lines += [v.verdict for v in report.devices]
    return "\n".join(lines)
