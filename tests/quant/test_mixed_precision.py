"""Per-layer int8/16x8 mixing (`--int16-activations auto|LAYER,...`) on a real MobileNetV2 1.0/96.

The float model is calibrated once (8 shared images); the mixed models are spliced from its int8 and
16x8 quantizations and run in LiteRT through `edgemnv2.runtime.open_model`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgemnv2_converters import calibration, mixed_precision

IMAGES = 8


@pytest.fixture(scope="module")
def quantized(shared_weights: Path, calib_dir: Path) -> dict:
    from edgemnv2 import data, logs, models
    from edgemnv2_converters.keras_to_tflite import silenced_output

    logs.configure(0)
    keras_model = models.load_keras_model(models.ModelSpec(1.0, 96, str(shared_weights)))
    images = data.load_images(calib_dir, 96, limit=IMAGES, seed=0, crop_fraction=0.875).images
    with silenced_output(True):
        calibrated = calibration.calibrate_float_model(keras_model, images)
        return {"images": images, "float": calibrated,
                "int8": calibration.quantize_calibrated(calibrated, io_type="float32"),
                "int16": calibration.quantize_calibrated(calibrated, activations="int16", io_type="float32")}


def _predict(content: bytes, images: np.ndarray, tmp_path: Path, name: str) -> np.ndarray:
    from edgemnv2 import runtime

    path = tmp_path / f"{name}.tflite"
    path.write_bytes(content)
    return runtime.open_model(path, backend="litert").predict(images).astype(np.float64)


def _sixteen_bit_tensors(content: bytes) -> set[str]:
    """Names of int16 tensors passed between compute ops (not just into/out of a requantizing QUANTIZE)."""
    from edgemnv2.tflite import load_graph

    graph = load_graph(content)
    produced, consumed = set(), set()
    for op in graph.ops:
        if op.name in ("QUANTIZE", "DEQUANTIZE"):
            continue
        produced.update(op.outputs)
        consumed.update(t for t in op.inputs if t >= 0)
    return {graph.tensors[t].name for t in produced & consumed if graph.tensors[t].dtype.name == "int16"}


def test_int16_tensors_exactly_at_chosen_layers(quantized, tmp_path: Path) -> None:
    from edgemnv2.convert import summarize_tflite

    candidates = mixed_precision.candidates(quantized["int8"], quantized["int16"])
    chosen = [t for t in candidates if "block_13_project_BN" in t or "expanded_conv_project_BN" in t]
    assert len(chosen) == 2
    mixed = mixed_precision.mix(quantized["int8"], quantized["int16"], chosen)
    assert _sixteen_bit_tensors(mixed.content) == set(chosen)
    assert summarize_tflite(mixed.content, ("int8", "int16", "int32", "int64")).non_integer_ops == ()
    assert summarize_tflite(mixed.content).non_integer_ops  # int16 is there, so plain int8 rules refuse it
    out = _predict(mixed.content, quantized["images"][:2], tmp_path, "mixed")
    q8 = _predict(quantized["int8"], quantized["images"][:2], tmp_path, "int8")
    assert out.shape == (2, 1000) and np.abs(out - q8).max() < 0.2  # the int8 softmax's 1/256 grid, nearly as int8


def test_every_layer_16_bit_reproduces_the_16x8_model(quantized, tmp_path: Path) -> None:
    """The splice is exact: with every tensor 16-bit the mixed model computes what the 16x8 model computes."""
    candidates = mixed_precision.candidates(quantized["int8"], quantized["int16"])
    mixed = mixed_precision.mix(quantized["int8"], quantized["int16"], candidates)
    images = quantized["images"][:3]
    assert np.array_equal(_predict(mixed.content, images, tmp_path, "all"),
                          _predict(quantized["int16"], images, tmp_path, "int16"))


def test_mixed_outputs_are_closer_to_float_than_int8(quantized, tmp_path: Path) -> None:
    from edgemnv2.layer_error import compare_layers
    from edgemnv2.validate import kl_divergence

    q8, q16, images = quantized["int8"], quantized["int16"], quantized["images"]
    allowed = set(mixed_precision.candidates(q8, q16))
    worst = [layer.tensor for layer in compare_layers(quantized["float"], q8, images).worst()
             if layer.tensor in allowed][:3]
    chosen = worst + mixed_precision.float_output_sources(q8)
    mixed = mixed_precision.mix(q8, q16, chosen)
    reference = _predict(quantized["float"], images, tmp_path, "float")
    kl_int8 = kl_divergence(reference, _predict(q8, images, tmp_path, "int8")).mean()
    kl_mixed = kl_divergence(reference, _predict(mixed.content, images, tmp_path, "mixed")).mean()
    assert kl_mixed < kl_int8


def test_a_graph_output_cannot_be_made_16_bit(quantized) -> None:
    from edgemnv2.tflite import load_graph

    graph = load_graph(quantized["int8"])
    output = graph.tensors[graph.outputs[0]].name
    with pytest.raises(ValueError, match="cannot be made 16-bit"):
        mixed_precision.mix(quantized["int8"], quantized["int16"], [output])


def test_stream_choice_is_the_linear_residual_stream(quantized, tmp_path: Path) -> None:
    """`--int16-activations stream`: every ADD's inputs and output and every activation-free conv output of
    MobileNetV2 (17 linear bottlenecks + 10 residual adds), none of its ReLU6 outputs; the spliced model runs."""
    from edgemnv2.quantization import residual_stream_tensors
    from edgemnv2.tflite import layer_name

    stream = residual_stream_tensors(quantized["int8"])
    layers = [layer_name(t) for t in stream]
    assert sum("project_BN" in name for name in layers) == 17
    assert sum("_add" in name for name in layers) == 10
    assert len(stream) == 27 and not any("relu" in name for name in layers)
    allowed = set(mixed_precision.candidates(quantized["int8"], quantized["int16"]))
    mixed = mixed_precision.mix(quantized["int8"], quantized["int16"], [t for t in stream if t in allowed])
    assert _sixteen_bit_tensors(mixed.content) == set(stream) & allowed
    assert _predict(mixed.content, quantized["images"][:1], tmp_path, "stream").shape == (1, 1000)
