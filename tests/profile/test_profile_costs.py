"""Multiplication counts: the seed's formulas, checked against references computed independently."""

from __future__ import annotations

import pytest

from edgemnv2.profile.cost import graph_costs, seed_ratio
from edgemnv2.profile.graph import load_tflite
from edgemnv2.profile.spec import make_divisible, mobilenet_v2_graph


def keras_reference_macs(alpha: float, resolution: int) -> int:
    """Multiplications from a Keras MobileNetV2's own layer shapes (no edgemnv2 code involved)."""
    import keras

    model = keras.applications.MobileNetV2(input_shape=(resolution, resolution, 3), alpha=alpha, weights=None)
    total = 0
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "Conv2D":
            _, h, w, n = layer.output.shape
            kh, kw = layer.kernel_size
            total += h * w * n * kh * kw * layer.input.shape[-1]
        elif kind == "DepthwiseConv2D":
            _, h, w, c = layer.output.shape
            kh, kw = layer.kernel_size
            total += h * w * c * kh * kw
        elif kind == "Dense":
            total += layer.input.shape[-1] * layer.units
    return total


def test_mobilenet_v2_1_0_224_is_300_774_272():
    graph = mobilenet_v2_graph(1.0, 224)
    costs = graph_costs(graph)
    assert sum(c.macs for c in costs) == 300_774_272


@pytest.mark.parametrize("alpha,resolution", [(1.0, 224), (0.35, 96), (1.4, 224)])
def test_spec_macs_match_keras_layer_shapes(alpha, resolution):
    graph = mobilenet_v2_graph(alpha, resolution)
    rows = graph_costs(graph)
    assert sum(c.macs for c in rows) == keras_reference_macs(alpha, resolution)


def test_tflite_macs_match_litert_tensor_shapes(coral_v2_tflite):
    """Reference from LiteRT's own op and tensor details (a parser independent of ours)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(coral_v2_tflite))
    tensors = {t["index"]: t["shape"].tolist() for t in interpreter.get_tensor_details()}
    reference = 0
    for op in interpreter._get_ops_details():
        out = tensors[op["outputs"][0]]
        if op["op_name"] == "CONV_2D":
            w = tensors[op["inputs"][1]]
            reference += out[1] * out[2] * out[3] * w[1] * w[2] * w[3]
        elif op["op_name"] == "DEPTHWISE_CONV_2D":
            w = tensors[op["inputs"][1]]
            reference += out[1] * out[2] * out[3] * w[1] * w[2]
        elif op["op_name"] == "FULLY_CONNECTED":
            w = tensors[op["inputs"][1]]
            reference += w[0] * w[1]
    graph = load_tflite(coral_v2_tflite)
    assert sum(c.macs for c in graph_costs(graph)) == reference
    # 1001 classes as a 1x1 conv logits layer: 1280 more than the 1000-class Keras model
    assert reference == 300_774_272 + 1280


def test_converted_model_rows_equal_spec_rows(int8_mnv2_96):
    """The same per-layer table from the converted file and from the spec (real weights, 1.0/96)."""
    from_file = load_tflite(int8_mnv2_96)
    from_spec = mobilenet_v2_graph(1.0, 96)
    fields = ("op", "input_shape", "output_shape", "kernel", "stride", "params", "weight_bytes",
              "activation_in_bytes", "activation_out_bytes")
    assert len(from_file.layers) == len(from_spec.layers)
    for a, b in zip(from_file.layers, from_spec.layers):
        assert [getattr(a, f) for f in fields] == [getattr(b, f) for f in fields], (a.name, b.name)
    assert [c.macs for c in graph_costs(from_file)] == [c.macs for c in graph_costs(from_spec)]


def test_separable_pairs_follow_the_seed_ratio():
    graph = mobilenet_v2_graph(1.0, 224)
    pairs = [(layer, cost) for layer, cost in zip(graph.layers, graph_costs(graph)) if cost.standard_conv_macs]
    assert len(pairs) == 17  # every inverted residual block has one depthwise -> project pair
    for layer, cost in pairs:
        n = layer.output_shape[-1]
        assert cost.saving_ratio == pytest.approx(seed_ratio(n, 3), rel=1e-12)
        assert cost.standard_conv_macs == n * layer.output_shape[1] * layer.output_shape[2] * 9 * layer.input_shape[-1]


def test_make_divisible_matches_keras_rule():
    assert make_divisible(32 * 0.35) == 16
    assert make_divisible(int(16 * 0.35)) == 8
    assert make_divisible(1280 * 1.4) == 1792
    assert make_divisible(int(24 * 0.75)) == 24  # 18 rounds to 16, which is < 0.9*18, so up to 24


def test_keras_file_gives_the_spec_table(tmp_path):
    """A saved Keras MobileNetV2 profiles to the same rows as the spec (BN/ReLU6/padding fused)."""
    import keras

    from edgemnv2.profile import load_graph

    path = tmp_path / "mnv2.keras"
    keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, weights=None).save(path)
    from_keras = load_graph(path)
    from_spec = mobilenet_v2_graph(0.35, 96)
    fields = ("op", "input_shape", "output_shape", "kernel", "stride", "params", "weight_bytes")
    assert [[getattr(x, f) for f in fields] for x in from_keras.layers] == \
        [[getattr(x, f) for f in fields] for x in from_spec.layers]
