"""Per-layer latency over a device profile: a roofline with per-op-kind compute rates.

CPU (Linux boards, phones, MCUs), per layer:
  compute = (MACs / MACs-per-cycle[kind] + outputs · cycles-per-output) / (clock · thread speed-up · efficiency)
            (ops without multiplications: bytes touched · cycles-per-byte instead)
  memory  = activation bytes / activation bandwidth + weight bytes / weight bandwidth
  time    = max(compute, memory) + per-op dispatch overhead
The cycles-per-output term is what makes narrow layers slower per MAC (requantization and stores do not
shrink with the channel count), which is how small models run less efficiently on the same core.

Edge TPU: where each op runs is the Edge TPU compiler's partition as `edgemnv2.deploy.edgetpu.partition`
predicts it (CPU ops before the TPU segment, the segment, CPU ops after it). Accelerator time is MACs at a
per-kind share of the peak rate plus a per-op cost; CPU ops are costed on the device's host CPU profile;
parameters beyond the on-chip cache stream over the host link on every inference, as do the tensors
crossing the host/TPU boundary. Without a .tflite there is no partition and every layer counts on the TPU.

Each profile's `efficiency` is the one factor fitted to published figures
(`benchmarks/latency_calibration.py`); everything else comes from datasheets and kernel benchmarks.

A profile fitted to on-device per-layer times (`edgemnv2 devices calibrate`, `[cpu.per_kind.KIND]`, KIND the
profile's op kind: conv, pointwise, depthwise, fully_connected, add, mean, softmax ...) replaces the roofline for
the kinds it names: cycles = per-MAC · MACs inside the input + per-output · outputs + per-weight · weights
+ per-byte · activation bytes touched + per-op, measured cycles (memory stalls and dispatch included,
`efficiency` not applied).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from edgemnv2.profile.cost import LayerCost
from edgemnv2.profile.devices import DeviceProfile
from edgemnv2.profile.graph import MAC_KINDS, Layer, ModelGraph


@dataclass(frozen=True)
class LayerLatency:
    ms: float | None          # None: the estimator does not know this op
    bound: str                # "compute" | "memory" | "overhead" | "fitted" | "unknown"
    unit: str                 # "cpu" | "edgetpu"


@dataclass(frozen=True)
class EdgeTpuPlacement:
    parameter_bytes: int                 # parameters of the ops mapped to the accelerator
    parameter_cache_bytes: int
    streamed_bytes: int                  # the part that does not fit and streams every inference
    stream_ms: float
    io_ms: float                         # tensors crossing the host/TPU boundary over the host link
    cpu_fallback_ops: list[str] = field(default_factory=list)   # "index:name (reason)"
    boundary_bytes: int = 0


@dataclass(frozen=True)
class TpuPartition:
    """Where each layer runs on an Edge TPU target (from `edgemnv2.deploy.edgetpu.partition`)."""

    cpu_reasons: list[str | None]        # per layer: why it runs on the host CPU, None on the TPU
    boundary_bytes: int                  # bytes handed to and back from the TPU segment per inference


@dataclass(frozen=True)
class LatencyEstimate:
    layers: list[LayerLatency]
    total_ms: float | None
    edgetpu: EdgeTpuPlacement | None
    notes: list[str]


@dataclass(frozen=True)
class LayerFeatures:
    """What a per-kind cycle fit multiplies, for one operator."""

    name: str
    op: str                   # TFLite builtin
    kind: str                 # the profile's op kind: conv | pointwise | depthwise | fully_connected | add | mean ...
    macs: int                 # the seed's formula (every kernel tap)
    inside_macs: int          # taps that fall inside the input: kernels skip (CMSIS-NN 3x3 depthwise) the padding
    outputs: int              # output elements
    weights: int              # weight + bias elements
    touched_bytes: int        # activation bytes read + written


def layer_features(graph: ModelGraph, costs: list[LayerCost]) -> list[LayerFeatures]:
    return [_features(layer, cost) for layer, cost in zip(graph.layers, costs)]


def _features(layer: Layer, cost: LayerCost) -> LayerFeatures:
    return LayerFeatures(layer.name, layer.tflite_op, layer.op, cost.macs, _inside_macs(layer, cost.macs),
                         _elements(layer.output_shape), layer.params,
                         layer.activation_in_bytes + layer.activation_out_bytes)


def _inside_macs(layer: Layer, macs: int) -> int:
    """MACs less those on padding, with TensorFlow's SAME padding implied by the shapes (VALID pads nothing)."""
    if not (layer.kernel and layer.stride and len(layer.input_shape) == 4 and len(layer.output_shape) == 4 and macs):
        return macs
    taps = all_taps = 1
    for axis in (0, 1):
        n_in, n_out = layer.input_shape[axis + 1], layer.output_shape[axis + 1]
        k, s = layer.kernel[axis], layer.stride[axis]
        pad = max((n_out - 1) * s + k - n_in, 0) // 2
        taps *= sum(max(0, min(k, n_in + pad - o * s) - max(0, pad - o * s)) for o in range(n_out))
        all_taps *= n_out * k
    return macs // all_taps * taps


def _elements(shape: tuple[int, ...]) -> int:
    return math.prod(max(d, 1) for d in shape) if shape else 0


def _cpu_layer(layer: Layer, cost: LayerCost, device: DeviceProfile) -> LayerLatency:
    cpu = device.cpu
    if not layer.known:
        return LayerLatency(None, "unknown", "cpu")
    speedup = 1 + (device.threads - 1) * cpu.parallel_efficiency
    dtype_factor = cpu.float32_slowdown if layer.dtype in ("float32", "float16") else 1.0
    fitted = cpu.per_kind.get(layer.op)
    if fitted is not None:
        f = _features(layer, cost)
        cycles = fitted.cycles(f.inside_macs, f.outputs, f.weights, f.touched_bytes)
        return LayerLatency(cycles * dtype_factor / (device.clock_mhz * 1e3 * speedup), "fitted", "cpu")
    rate = device.clock_mhz * 1e6 * speedup * cpu.efficiency
    if layer.op in MAC_KINDS:
        cycles = cost.macs / cpu.int8_macs_per_cycle[layer.op] + _elements(layer.output_shape) * cpu.cycles_per_output
    elif layer.op == "reshape":
        cycles = 0.0  # a view: TFLite shares the buffer
    else:
        cycles = (layer.activation_in_bytes + layer.activation_out_bytes) * cpu.elementwise_cycles_per_byte
    compute_s = cycles * dtype_factor / rate
    memory_s = ((layer.activation_in_bytes + layer.activation_out_bytes) / (cpu.activation_bandwidth_mbps * 1e6)
                + layer.weight_bytes / (cpu.weight_bandwidth_mbps * 1e6))
    overhead_s = cpu.op_overhead_us * 1e-6
    bound = "compute" if compute_s >= memory_s else "memory"
    if overhead_s > max(compute_s, memory_s):
        bound = "overhead"
    return LayerLatency((max(compute_s, memory_s) + overhead_s) * 1e3, bound, "cpu")


def _tpu_layer(layer: Layer, cost: LayerCost, device: DeviceProfile) -> LayerLatency:
    tpu = device.edgetpu
    assert tpu is not None
    compute_s = 0.0
    if layer.op in MAC_KINDS:
        compute_s = cost.macs / (tpu.peak_macs_per_second * tpu.utilization[layer.op] * tpu.efficiency)
    overhead_s = tpu.op_overhead_us * 1e-6
    return LayerLatency((compute_s + overhead_s) * 1e3, "compute" if compute_s > overhead_s else "overhead", "edgetpu")


def estimate(graph: ModelGraph, costs: list[LayerCost], device: DeviceProfile,
             tpu_partition: TpuPartition | None = None) -> LatencyEstimate:
    """Per-layer and total latency of `graph` on `device` (ms).

    `tpu_partition` (Edge TPU targets): the compiler's partition of the .tflite; without it every layer
    counts on the TPU.
    """
    notes: list[str] = []
    if device.kind == "edgetpu":
        return _estimate_edgetpu(graph, costs, device, notes, tpu_partition)
    layers = [_cpu_layer(layer, cost, device) for layer, cost in zip(graph.layers, costs)]
    unknown = [l for l, t in zip(graph.layers, layers) if t.ms is None]
    if graph.edgetpu_compiled:
        notes.append("compiled for the Edge TPU: the CPU cannot run the edgetpu-custom-op; profile the model "
                     "from before edgetpu_compiler, or use an Edge TPU device")
    if unknown:
        notes.append(f"{len(unknown)} op(s) not estimated ({', '.join(sorted({l.tflite_op for l in unknown}))}); "
                     "the total leaves them out")
    known = [t.ms for t in layers if t.ms is not None]
    total = sum(known) if known and not graph.edgetpu_compiled else None
    return LatencyEstimate(layers, total, None, notes)


def _estimate_edgetpu(graph: ModelGraph, costs: list[LayerCost], device: DeviceProfile,
                      notes: list[str], tpu_partition: TpuPartition | None) -> LatencyEstimate:
    tpu = device.edgetpu
    assert tpu is not None
    link = tpu.host_link_mbps * 1e6
    io_bytes = sum((graph.tensor_bytes or {}).get(t, 0) for t in graph.graph_inputs + graph.graph_outputs)
    if graph.edgetpu_compiled:
        program = sum(l.weight_bytes for l in graph.layers if l.tflite_op.startswith("CUSTOM:edgetpu"))
        streamed = max(0, program - tpu.parameter_cache_bytes)
        notes.append("already compiled for the Edge TPU: layers are inside the edgetpu-custom-op, so per-layer "
                     "multiplications and latency are unknown; profile the .tflite from before edgetpu_compiler")
        placement = EdgeTpuPlacement(program, tpu.parameter_cache_bytes, streamed, streamed / link * 1e3,
                                     io_bytes / link * 1e3, boundary_bytes=io_bytes)
        return LatencyEstimate([LayerLatency(None, "unknown", "edgetpu") for _ in graph.layers], None, placement, notes)
    if tpu_partition is None:
        reasons: list[str | None] = [None] * len(graph.layers)
        boundary = io_bytes
        notes.append("no .tflite to partition: every layer counted on the Edge TPU (`edgemnv2 edgetpu check` "
                     "on the converted model says which ops the compiler leaves on the CPU)")
    else:
        reasons, boundary = tpu_partition.cpu_reasons, tpu_partition.boundary_bytes
    layers: list[LayerLatency] = []
    fallback: list[str] = []
    for layer, cost, reason in zip(graph.layers, costs, reasons):
        if reason is None:
            layers.append(_tpu_layer(layer, cost, device))
        else:
            fallback.append(f"{layer.index}:{layer.name} ({reason})")
            layers.append(_cpu_layer(layer, cost, device))
    parameter_bytes = sum(l.weight_bytes for l, t in zip(graph.layers, layers) if t.unit == "edgetpu")
    streamed = max(0, parameter_bytes - tpu.parameter_cache_bytes)
    on_tpu = any(t.unit == "edgetpu" for t in layers)
    placement = EdgeTpuPlacement(parameter_bytes, tpu.parameter_cache_bytes, streamed, streamed / link * 1e3,
                                 boundary / link * 1e3 if on_tpu else 0.0, fallback, boundary if on_tpu else 0)
    if streamed:
        notes.append(f"{streamed / 2**20:.1f} MiB of parameters exceed the {tpu.parameter_cache_bytes / 2**20:.1f} MiB "
                     "on-chip cache and stream from the host on every inference")
    if fallback:
        notes.append(f"{len(fallback)} op(s) run on the host CPU (the Edge TPU compiler's partition), the first "
                     f"{fallback[0]}")
    if any(t.ms is None for t in layers):
        notes.append("some CPU ops are unknown to the estimator; the total leaves them out")
    invoke_ms = tpu.invoke_overhead_us * 1e-3 if on_tpu else 0.0
    total = invoke_ms + placement.io_ms + placement.stream_ms + sum(t.ms for t in layers if t.ms is not None)
    return LatencyEstimate(layers, total, placement, notes)
