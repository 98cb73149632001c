"""The profile report: computed once into dataclasses, then rendered (table, JSON, CSV, Markdown, plot).

Memory, by target kind:
  mcu      peak RAM = the TFLite Micro arena plan (`memory.plan_arena`: greedy head + persistent tail);
           the runtime's own RAM (stacks, heap) is `runtime_ram_bytes`, kept separate and added in the fit check.
  linux /  peak RAM = activation memory of a LiteRT arena (`memory.linux_activation_bytes`) + the model,
  edgetpu  which the runtime keeps in memory.
Without a .tflite (spec or Keras input) activations are planned from the layer table with the same greedy
planner; the persistent tail needs the flatbuffer and is left out (said in `memory.method`).
Flash = model bytes + the runtime's code size (a profile field).
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgemnv2 import atomic
from edgemnv2.profile.cost import graph_costs
from edgemnv2.profile.devices import DeviceProfile
from edgemnv2.profile.graph import ModelGraph
from edgemnv2.profile.latency import EdgeTpuPlacement, TpuPartition, estimate


@dataclass(frozen=True)
class LayerRow:
    index: int
    name: str
    op: str
    tflite_op: str
    known: bool
    input_shape: list[int]
    output_shape: list[int]
    kernel: list[int] | None
    stride: list[int] | None
    dtype: str
    macs: int
    params: int
    weight_bytes: int
    activation_in_bytes: int
    activation_out_bytes: int
    standard_conv_macs: int | None    # pointwise row of a depthwise separable pair
    separable_macs: int | None
    saving_ratio: float | None        # separable / standard = 1/N + 1/Dk²
    latency_ms: float | None
    bound: str
    unit: str
    live_bytes: int | None            # memory timeline: live activation bytes while this op runs


@dataclass(frozen=True)
class Totals:
    macs: int
    params: int
    weight_bytes: int
    model_bytes: int
    runtime_code_bytes: int
    flash_bytes: int                  # model + runtime code
    peak_ram_bytes: int               # arena (MCU) or activations + model (Linux)
    runtime_ram_bytes: int            # runtime RAM besides peak_ram_bytes (MCU stacks/heap), not included above
    latency_ms: float | None
    standard_conv_macs: int           # what the separable pairs would cost as standard convolutions
    separable_macs: int


@dataclass(frozen=True)
class MemoryPlan:
    method: str
    arena_bytes: int | None           # TFLM total (head + tail), MCU targets with a .tflite
    nonpersistent_bytes: int | None
    persistent_bytes: int | None
    activation_bytes: int             # activations alone (head, or the Linux arena)
    timeline: list[int]


@dataclass(frozen=True)
class FitCheck:
    fits: bool
    ram_needed_bytes: int
    ram_available_bytes: int
    flash_needed_bytes: int
    flash_available_bytes: int
    uses_external_ram: bool
    verdict: str


@dataclass(frozen=True)
class DeviceInfo:
    key: str
    name: str
    kind: str
    runtime: str
    cores: int
    threads: int
    clock_mhz: float
    simd: str
    ram_bytes: int
    psram_bytes: int
    flash_bytes: int
    runtime_code_bytes: int
    calibration: str
    sources: dict[str, str]


@dataclass(frozen=True)
class ProfileReport:
    model: str
    source_kind: str
    model_bytes_estimated: bool
    device: DeviceInfo
    totals: Totals
    fits: bool
    fit: FitCheck
    memory: MemoryPlan
    layers: list[LayerRow]
    edgetpu: EdgeTpuPlacement | None = None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ModelTotals:
    macs: int
    params: int
    weight_bytes: int
    model_bytes: int
    standard_conv_macs: int
    separable_macs: int


@dataclass(frozen=True)
class ModelReport:
    """What a model costs wherever it runs (`profile MODEL` without --device): per-layer multiplications,
    parameters, weights and activations, and the TFLite Micro arena plan; no latency, no fit verdict."""

    model: str
    source_kind: str
    model_bytes_estimated: bool
    totals: ModelTotals
    memory: MemoryPlan
    layers: list[LayerRow]
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------- compute


def _table_timeline(graph: ModelGraph) -> tuple[int, list[int]]:
    """Greedy-planned activations from tensor lifetimes in the layer table (no flatbuffer needed)."""
    from edgemnv2.profile.memory import BUFFER_ALIGNMENT, greedy_offsets

    sizes_by_tensor = graph.tensor_bytes or {}
    first: dict[int, int] = {t: -1 for t in graph.graph_inputs}
    last: dict[int, int] = {}
    for i, layer in enumerate(graph.layers):
        for t in layer.outputs:
            first.setdefault(t, i)
        for t in layer.inputs:
            first.setdefault(t, i)
            last[t] = i
    end = len(graph.layers) - 1
    for t in graph.graph_outputs:
        last[t] = end
    tensors = [t for t in first if t in sizes_by_tensor]
    sizes = [-(-sizes_by_tensor[t] // BUFFER_ALIGNMENT) * BUFFER_ALIGNMENT for t in tensors]
    firsts = [first[t] for t in tensors]
    lasts = [last.get(t, first[t]) for t in tensors]
    offsets = greedy_offsets(sizes, firsts, lasts)
    head = max((o + s for o, s in zip(offsets, sizes)), default=0)
    timeline = [sum(s for s, f, l in zip(sizes, firsts, lasts) if f <= i <= l) for i in range(len(graph.layers))]
    return head, timeline


def plan_memory(graph: ModelGraph, kind: str) -> MemoryPlan:
    """The memory plan for a target kind ("mcu" or a Linux-hosted kind)."""
    if graph.tflite is None:
        head, timeline = _table_timeline(graph)
        return MemoryPlan("greedy plan of the layer table's activations (no .tflite: persistent tail not included)",
                          None, None, None, head, timeline)
    from edgemnv2.profile.memory import linux_activation_bytes, plan_arena

    if kind == "mcu":
        plan = plan_arena(graph.tflite)
        return MemoryPlan("TFLite Micro arena plan (greedy head + persistent tail)", plan.peak_bytes,
                          plan.nonpersistent_bytes, plan.persistent_bytes, plan.nonpersistent_bytes,
                          list(plan.timeline))
    return MemoryPlan("LiteRT activation arena + model held in memory", None, None, None,
                      linux_activation_bytes(graph.tflite), _table_timeline(graph)[1])


def _edgetpu_partition(graph: ModelGraph) -> TpuPartition | None:
    """The Edge TPU compiler's partition of the .tflite (edgemnv2.deploy.edgetpu); None without a file."""
    path = Path(graph.source)
    if graph.tflite is None or graph.edgetpu_compiled or not path.is_file():
        return None
    from edgemnv2.deploy.edgetpu import partition, read_graph

    part = partition(read_graph(path))
    if len(part.placements) != len(graph.layers):
        return None
    return TpuPartition([None if p.device == "tpu" else p.reason for p in part.placements],
                        sum(t.bytes for t in part.tpu_inputs + part.tpu_outputs))


def human_bytes(n: float) -> str:
    """Human size: KiB below 1 MiB, GiB from 1 GiB."""
    if n >= 2**30:
        return f"{n / 2**30:.1f} GiB"
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


def _fit(device: DeviceProfile, ram_needed: int, flash_needed: int) -> FitCheck:
    ram, psram, flash = device.ram_bytes, device.psram_bytes, device.flash_bytes
    ram_word = "SRAM" if device.is_mcu else "RAM"
    ram_ok = ram_needed <= ram
    external = not ram_ok and ram_needed <= ram + psram
    flash_ok = flash_needed <= flash
    fits = (ram_ok or external) and flash_ok

    def part(label: str, need: int, have: int) -> str:
        if need <= have:
            return f"{label} {human_bytes(need)} of {human_bytes(have)} ({(have - need) / have:.0%} free)"
        return f"{label} {human_bytes(need)} > {human_bytes(have)} (short by {human_bytes(need - have)})"

    ram_text = part(ram_word, ram_needed, ram)
    if external:
        ram_text += f", fits with the {human_bytes(psram)} external RAM (slower)"
    head = "FITS" if fits and not external else "FITS (external RAM)" if fits else "DOES NOT FIT"
    verdict = f"{head} {device.key}: {ram_text}; {part('flash', flash_needed, flash)}"
    return FitCheck(fits, ram_needed, ram, flash_needed, flash, external, verdict)


def build_report(graph: ModelGraph, device: DeviceProfile, memory: MemoryPlan | None = None) -> ProfileReport:
    """Costs, memory, latency and fit of `graph` on `device`."""
    costs = graph_costs(graph)
    memory = memory or plan_memory(graph, "mcu" if device.is_mcu else "linux")
    latency = estimate(graph, costs, device, _edgetpu_partition(graph) if device.kind == "edgetpu" else None)
    rows = _layer_rows(graph, costs, memory, [(lat.ms, lat.bound, lat.unit) for lat in latency.layers])

    if device.is_mcu:
        peak_ram = memory.arena_bytes if memory.arena_bytes is not None else memory.activation_bytes
        runtime_ram = device.runtime_ram_bytes
    else:
        peak_ram = memory.activation_bytes + graph.model_bytes
        runtime_ram = 0
    flash = graph.model_bytes + device.runtime_code_bytes
    totals = Totals(
        macs=sum(r.macs for r in rows), params=sum(r.params for r in rows),
        weight_bytes=sum(r.weight_bytes for r in rows), model_bytes=graph.model_bytes,
        runtime_code_bytes=device.runtime_code_bytes, flash_bytes=flash, peak_ram_bytes=peak_ram,
        runtime_ram_bytes=runtime_ram, latency_ms=latency.total_ms,
        standard_conv_macs=sum(r.standard_conv_macs or 0 for r in rows),
        separable_macs=sum(r.separable_macs or 0 for r in rows),
    )
    fit = _fit(device, peak_ram + runtime_ram, flash)
    notes = list(latency.notes) + _graph_notes(graph, rows)
    info = DeviceInfo(device.key, device.name, device.kind, device.runtime, device.cores, device.threads,
                      device.clock_mhz, device.simd, device.ram_bytes, device.psram_bytes, device.flash_bytes,
                      device.runtime_code_bytes, device.calibration, dict(device.sources))
    return ProfileReport(graph.source, graph.source_kind, graph.model_bytes_estimated, info, totals, fit.fits, fit,
                         memory, rows, latency.edgetpu, notes)


def _layer_rows(graph: ModelGraph, costs: list, memory: MemoryPlan,
                latencies: list[tuple[float | None, str, str]] | None = None) -> list[LayerRow]:
    """One row per layer; `latencies` (ms, bound, unit) per layer when a device is known."""
    timeline = memory.timeline if len(memory.timeline) == len(graph.layers) else [None] * len(graph.layers)
    latencies = latencies or [(None, "", "")] * len(graph.layers)
    return [LayerRow(
        index=layer.index, name=layer.name, op=layer.op, tflite_op=layer.tflite_op, known=layer.known,
        input_shape=list(layer.input_shape), output_shape=list(layer.output_shape),
        kernel=list(layer.kernel) if layer.kernel else None, stride=list(layer.stride) if layer.stride else None,
        dtype=layer.dtype, macs=cost.macs, params=layer.params, weight_bytes=layer.weight_bytes,
        activation_in_bytes=layer.activation_in_bytes, activation_out_bytes=layer.activation_out_bytes,
        standard_conv_macs=cost.standard_conv_macs, separable_macs=cost.separable_macs,
        saving_ratio=cost.saving_ratio, latency_ms=ms, bound=bound, unit=unit, live_bytes=live,
    ) for layer, cost, (ms, bound, unit), live in zip(graph.layers, costs, latencies, timeline)]


def _graph_notes(graph: ModelGraph, rows: list[LayerRow]) -> list[str]:
    notes = []
    if graph.model_bytes_estimated:
        notes.append("model bytes estimated from the layer table (no .tflite yet)")
    if any(not r.known for r in rows):
        notes.append("rows marked known=false are ops the profiler does not know: no multiplications or latency")
    return notes


def build_model_report(graph: ModelGraph) -> ModelReport:
    """Costs, weights and the TFLite Micro arena plan of `graph`, for no device in particular."""
    memory = plan_memory(graph, "mcu")
    rows = _layer_rows(graph, graph_costs(graph), memory)
    totals = ModelTotals(macs=sum(r.macs for r in rows), params=sum(r.params for r in rows),
                         weight_bytes=sum(r.weight_bytes for r in rows), model_bytes=graph.model_bytes,
                         standard_conv_macs=sum(r.standard_conv_macs or 0 for r in rows),
                         separable_macs=sum(r.separable_macs or 0 for r in rows))
    return ModelReport(graph.source, graph.source_kind, graph.model_bytes_estimated, totals, memory, rows,
                       _graph_notes(graph, rows))


def build_reports(graph: ModelGraph, devices: list[DeviceProfile]) -> list[ProfileReport]:
    """One report per device, planning memory once per target kind."""
    plans: dict[str, MemoryPlan] = {}
    reports = []
    for device in devices:
        kind = "mcu" if device.is_mcu else "linux"
        if kind not in plans:
            plans[kind] = plan_memory(graph, kind)
        reports.append(build_report(graph, device, plans[kind]))
    return reports


# ---------------------------------------------------------------------------------------------- render


def _n(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _shape(shape: list[int]) -> str:
    return "x".join(str(d) for d in shape[1:]) if len(shape) > 1 else "x".join(map(str, shape))


def _ms(value: float | None) -> str:
    return "?" if value is None else f"{value:.3f}" if value < 1 else f"{value:.2f}"


_TABLE_COLUMNS = ("#", "layer", "op", "input", "output", "k/s", "MACs", "params", "weights B", "act out B",
                  "std conv MACs", "R", "ms", "bound")


def _table_cells(r: LayerRow) -> list[str]:
    ks = f"{r.kernel[0]}x{r.kernel[1]}/{r.stride[0]}" if r.kernel and r.stride else ""
    return [str(r.index), r.name if len(r.name) <= 34 else "…" + r.name[-33:], r.op, _shape(r.input_shape),
            _shape(r.output_shape), ks, _n(r.macs) if r.macs else "", _n(r.params) if r.params else "",
            _n(r.weight_bytes) if r.weight_bytes else "", _n(r.activation_out_bytes),
            _n(r.standard_conv_macs) if r.standard_conv_macs else "",
            f"{r.saving_ratio:.3f}" if r.saving_ratio else "", _ms(r.latency_ms), r.bound]


def grid(header: tuple[str, ...] | list[str], rows: list[list[str]], right: set[int]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    lines = []
    for cells in [list(header), *rows]:
        lines.append("  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))))
        if len(lines) == 1:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def _saving(t: Totals | ModelTotals) -> str:
    return (f"; separable pairs {t.separable_macs:,} vs {t.standard_conv_macs:,} as standard convolutions "
            f"({t.separable_macs / t.standard_conv_macs:.3f}x)") if t.standard_conv_macs else ""


def model_summary_lines(report: ModelReport) -> list[str]:
    """Totals and the TFLite Micro arena plan: the lines under the device-independent per-layer table."""
    t, m = report.totals, report.memory
    if m.arena_bytes is not None:
        memory = (f"TFLite Micro arena plan: {human_bytes(m.arena_bytes)} ({m.arena_bytes:,} bytes: activations "
                  f"{human_bytes(m.nonpersistent_bytes or 0)} + persistent {human_bytes(m.persistent_bytes or 0)})")
    else:
        memory = f"activations: {human_bytes(m.activation_bytes)} ({m.method})"
    lines = [f"model: {report.model}" + (" (sizes estimated)" if report.model_bytes_estimated else ""),
             f"multiplications: {t.macs:,}{_saving(t)}",
             f"params: {t.params:,}; weights {human_bytes(t.weight_bytes)}; model {human_bytes(t.model_bytes)}",
             memory]
    lines += [f"note: {n}" for n in report.notes]
    lines.append("latency, peak RAM and fit on a device: add --device KEY or --device all (see `edgemnv2 devices`)")
    return lines


def summary_lines(report: ProfileReport) -> list[str]:
    """Totals, memory, latency and the fit verdict: the lines under the per-layer table."""
    t = report.totals
    d = report.device
    saving = _saving(t)
    ram_extra = f" + runtime {human_bytes(t.runtime_ram_bytes)}" if t.runtime_ram_bytes else ""
    lines = [
        f"model: {report.model}" + (" (sizes estimated)" if report.model_bytes_estimated else ""),
        f"device: {d.key} - {d.name}; {d.runtime}",
        f"multiplications: {t.macs:,}{saving}",
        f"params: {t.params:,}; weights {human_bytes(t.weight_bytes)}; flash {human_bytes(t.flash_bytes)} "
        f"(model {human_bytes(t.model_bytes)} + runtime {human_bytes(t.runtime_code_bytes)})",
        f"peak RAM: {human_bytes(t.peak_ram_bytes)}{ram_extra} ({report.memory.method})",
        f"latency: {_ms(t.latency_ms)} ms (estimate; {d.calibration})",
    ]
    if report.edgetpu:
        e = report.edgetpu
        lines.append(f"edge tpu: parameters {human_bytes(e.parameter_bytes)} of {human_bytes(e.parameter_cache_bytes)} cache"
                     f" ({human_bytes(e.streamed_bytes)} streamed per inference); {len(e.cpu_fallback_ops)} op(s) on the CPU;"
                     f" {human_bytes(e.boundary_bytes)} cross the host/TPU boundary ({e.io_ms:.2f} ms)")
    lines += [f"note: {n}" for n in report.notes]
    lines.append(report.fit.verdict)
    return lines


def _table(report: ProfileReport | ModelReport) -> tuple[tuple[str, ...], list[list[str]], list[str]]:
    """Columns, cells and summary lines; without a device there is no latency (the last two columns)."""
    width = len(_TABLE_COLUMNS) - (2 if isinstance(report, ModelReport) else 0)
    rows = [_table_cells(r)[:width] for r in report.layers]
    lines = model_summary_lines(report) if isinstance(report, ModelReport) else summary_lines(report)
    return _TABLE_COLUMNS[:width], rows, lines


def render_table(report: ProfileReport | ModelReport) -> str:
    columns, rows, lines = _table(report)
    return grid(columns, rows, right={0, 6, 7, 8, 9, 10, 11, 12}) + "\n\n" + "\n".join(lines)


def render_markdown(report: ProfileReport | ModelReport) -> str:
    columns, rows, lines = _table(report)
    out = ["| " + " | ".join(columns) + " |", "|" + "|".join("---:" if i in {0, 6, 7, 8, 9, 10, 11, 12}
                                                           else "---" for i in range(len(columns))) + "|"]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |" for cells in rows]
    return "\n".join(out) + "\n\n" + "\n".join(f"- {line}" for line in lines)


_CSV_FIELDS = [f for f in LayerRow.__dataclass_fields__]


def render_csv(report: ProfileReport | ModelReport) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=_CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in report.layers:
        values = asdict(row)
        for key in ("input_shape", "output_shape", "kernel", "stride"):
            values[key] = "x".join(map(str, values[key])) if values[key] else ""
        writer.writerow(values)
    return buffer.getvalue()


def comparison_rows(reports: list[ProfileReport]) -> list[list[str]]:
    return [[r.device.key, r.device.kind, _ms(r.totals.latency_ms), human_bytes(r.totals.peak_ram_bytes),
             human_bytes(r.fit.ram_available_bytes), human_bytes(r.totals.flash_bytes), human_bytes(r.fit.flash_available_bytes),
             "yes" if r.fits and not r.fit.uses_external_ram else "ext RAM" if r.fits else "NO", r.device.runtime]
            for r in reports]


_COMPARISON_COLUMNS = ("device", "kind", "latency ms", "peak RAM", "RAM", "flash need", "flash", "fits", "runtime")


def render_comparison(reports: list[ProfileReport], markdown: bool = False) -> str:
    rows = comparison_rows(reports)
    first = reports[0]
    head = (f"model: {first.model}; multiplications {first.totals.macs:,}; params {first.totals.params:,}; "
            f"model {human_bytes(first.totals.model_bytes)}")
    if markdown:
        lines = ["| " + " | ".join(_COMPARISON_COLUMNS) + " |", "|" + "---|" * len(_COMPARISON_COLUMNS)]
        lines += ["| " + " | ".join(cells) + " |" for cells in rows]
        return head + "\n\n" + "\n".join(lines)
    return head + "\n\n" + grid(_COMPARISON_COLUMNS, rows, right={2, 3, 4, 5, 6})


def render_comparison_csv(reports: list[ProfileReport]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["device", "kind", "latency_ms", "peak_ram_bytes", "ram_bytes", "flash_bytes_needed",
                     "flash_bytes", "fits", "uses_external_ram"])
    for r in reports:
        writer.writerow([r.device.key, r.device.kind, "" if r.totals.latency_ms is None else f"{r.totals.latency_ms:.4f}",
                         r.totals.peak_ram_bytes, r.fit.ram_available_bytes, r.totals.flash_bytes,
                         r.fit.flash_available_bytes, r.fits, r.fit.uses_external_ram])
    return buffer.getvalue()


def render_plot(report: ProfileReport | ModelReport, path: Path) -> Path:
    """Per-layer multiplications and the memory timeline, one chart (matplotlib imported only here)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [r.index for r in report.layers]
    colors = {"conv": "tab:red", "pointwise": "tab:blue", "depthwise": "tab:green", "fully_connected": "tab:purple"}
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 7), sharex=True)
    top.bar(x, [r.macs / 1e6 for r in report.layers], color=[colors.get(r.op, "tab:gray") for r in report.layers])
    top.set_ylabel("multiplications (M)")
    device = report.device if isinstance(report, ProfileReport) else None
    top.set_title(f"{report.model}: {report.totals.macs / 1e6:.1f} M multiplications" + (
        f" on {device.key}, {_ms(report.totals.latency_ms)} ms estimated" if device else ""))
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colors.values()]
    top.legend(handles, list(colors), loc="upper right", fontsize=8)
    live = [r.live_bytes or 0 for r in report.layers]
    bottom.step(x, [b / 1024 for b in live], where="mid", color="tab:orange")
    bottom.fill_between(x, [b / 1024 for b in live], step="mid", alpha=0.3, color="tab:orange")
    peak = report.totals.peak_ram_bytes if device else report.memory.arena_bytes or report.memory.activation_bytes
    bottom.axhline(peak / 1024, color="black", linestyle="--", linewidth=1,
                   label=f"{'peak RAM' if device else 'TFLite Micro arena'} {human_bytes(peak)}")
    if device and device.kind == "mcu":
        bottom.axhline(device.ram_bytes / 1024, color="tab:red", linewidth=1,
                       label=f"{device.key} SRAM {human_bytes(device.ram_bytes)}")
    bottom.set_ylabel("live activations (KiB)")
    bottom.set_xlabel("layer (op index)")
    bottom.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    atomic.save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path

