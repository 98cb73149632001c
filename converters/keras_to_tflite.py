"""The plain backend: Keras model + calibration images → TFLite flatbuffer bytes via tf.lite.TFLiteConverter.

Kept free of edgemnv2's options and files so a benchmark can call the same converter settings
and so other backends (quantization tools) can sit beside it with the same signature.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from edgemnv2.runtime import silenced_output

QUANTIZE_MODES = ("int8", "float16", "dynamic", "none")
IO_TYPES = ("int8", "uint8", "float32")


def representative_dataset(images: np.ndarray) -> Iterator[list[np.ndarray]]:
    """Yield calibration images one at a time as the converter expects: [(1, H, W, 3) float32]."""
    for image in images:
        yield [np.ascontiguousarray(image[None], dtype=np.float32)]


def make_converter(model: Any, quantize: str, io: str, calibration: np.ndarray | None) -> Any:
    """A configured TFLiteConverter; int8 means full integer (int8 kernels only, no float fallback)."""
    import tensorflow as tf

    if quantize not in QUANTIZE_MODES:
        raise ValueError(f"quantize must be one of {QUANTIZE_MODES}, got {quantize!r}")
    if io not in IO_TYPES:
        raise ValueError(f"io must be one of {IO_TYPES}, got {io!r}")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if quantize == "none":
        return converter
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        if calibration is None or len(calibration) == 0:
            raise ValueError("int8 quantization needs calibration images")
        converter.representative_dataset = lambda: representative_dataset(calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        io_dtype = {"int8": tf.int8, "uint8": tf.uint8, "float32": tf.float32}[io]
        converter.inference_input_type = io_dtype
        converter.inference_output_type = io_dtype
    return converter


def convert_keras(model: Any, quantize: str = "int8", io: str = "int8",
                  calibration: np.ndarray | None = None, quiet: bool = True) -> bytes:
    """Convert a Keras model; exceptions from TensorFlow propagate (the caller words them for users)."""
    converter = make_converter(model, quantize, io, calibration)
    with silenced_output(quiet):
        return converter.convert()
