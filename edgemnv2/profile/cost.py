"""Multiplication counts by the seed's formulas (../shared/seed-mobilenetv2.txt).

With M input channels, N output channels, a Dk x Dk kernel and a Dp x Dp output:
  standard convolution   N · Dp² · Dk² · M
  depthwise convolution  M · Dp² · Dk²
  pointwise convolution  M · Dp² · N
  fully connected        inputs · outputs
Non-square kernels and outputs use Dk_h·Dk_w and Dp_h·Dp_w. Only these four kinds count toward
`macs` (MobileNetV2 1.0/224 with 1000 classes: 300,774,272); adds, pooling and softmax do additions
or lookups and are costed by the latency model from their bytes.

For a depthwise layer feeding a pointwise layer (a depthwise separable pair), the pointwise row also
carries what one standard Dk x Dk convolution from M to N channels would cost on the same output, and
the ratio separable/standard, which is exactly the seed's R = 1/N + 1/Dk².
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgemnv2.profile.graph import Layer, ModelGraph


@dataclass(frozen=True)
class LayerCost:
    macs: int
    standard_conv_macs: int | None = None   # pointwise row of a separable pair: the standard conv it replaces
    separable_macs: int | None = None       # depthwise + pointwise of that pair
    saving_ratio: float | None = None       # separable / standard = 1/N + 1/Dk²


def layer_macs(layer: Layer) -> int:
    """Multiplications of one layer by the seed's formulas; 0 for layers that multiply nothing."""
    out = layer.output_shape
    if layer.op in ("conv", "pointwise") and layer.kernel and len(out) == 4:
        m = layer.input_shape[-1]
        n = out[-1]
        return n * out[1] * out[2] * layer.kernel[0] * layer.kernel[1] * m
    if layer.op == "depthwise" and layer.kernel and len(out) == 4:
        # with a depth multiplier the output has M·multiplier channels, each one Dk² per position
        return out[-1] * out[1] * out[2] * layer.kernel[0] * layer.kernel[1]
    if layer.op == "fully_connected" and layer.input_shape and out:
        batch = math.prod(out[:-1]) if len(out) > 1 else 1
        return batch * layer.input_shape[-1] * out[-1]
    return 0


def graph_costs(graph: ModelGraph) -> list[LayerCost]:
    """Per-layer multiplications, with the standard-convolution comparison on separable pairs."""
    macs = [layer_macs(layer) for layer in graph.layers]
    produced_by = {t: i for i, layer in enumerate(graph.layers) for t in layer.outputs}
    costs = []
    for i, layer in enumerate(graph.layers):
        source = produced_by.get(layer.inputs[0]) if layer.op == "pointwise" and layer.inputs else None
        if source is not None and graph.layers[source].op == "depthwise":
            dw = graph.layers[source]
            m, n = layer.input_shape[-1], layer.output_shape[-1]
            dp = layer.output_shape[1] * layer.output_shape[2]
            dk2 = dw.kernel[0] * dw.kernel[1]
            standard = n * dp * dk2 * m
            separable = macs[source] + macs[i]
            costs.append(LayerCost(macs[i], standard, separable, separable / standard))
        else:
            costs.append(LayerCost(macs[i]))
    return costs


def seed_ratio(n: int, dk: int) -> float:
    """The seed's R = 1/N + 1/Dk²."""
    return 1 / n + 1 / dk**2
