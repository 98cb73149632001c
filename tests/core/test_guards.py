"""Behaviour that must not drift silently: what `convert` does with no options, top-5, the sidecar format.

None of these runs TensorFlow: the defaults are read from the resolved options object, top-5 from
hand-made probabilities, the sidecar from its dataclass.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgemnv2 import quantization
from edgemnv2.convert import ConvertOptions
from edgemnv2.sidecar import SIDECAR_SCHEMA_VERSION, Sidecar, read_sidecar, sidecar_path
from edgemnv2.validate import topk_hits


def test_convert_with_no_options_resolves_to_the_measured_best() -> None:
    options = ConvertOptions()
    assert options.quantize == "int8" and options.io == "int8"          # full-integer model, int8 I/O
    assert options.per_tensor is False                                    # per-channel weights
    assert options.calibration_method == "mse"                            # MSE activation ranges
    assert options.bias_correction is False and options.adaround is False  # a no-op on on-grid weights
    assert options.equalize is False and options.int16_activations is None
    assert options.num_calibration == 100 and options.seed == 0 and options.crop_fraction == 0.875
    assert options.calibration is None and options.output is None        # shared images, <name>_int8.tflite
    assert quantization.custom(options)                                   # so convert quantizes itself
    assert quantization.integer_types(options) == ("int8", "int32")


@pytest.mark.parametrize("fields, method, bias", [
    ({"per_tensor": True}, "minmax", True),
    ({"per_tensor": True, "adaround": True}, "minmax", True),  # measured for AdaRound's rounding
    ({"int16_activations": "all", "io": "float32"}, "minmax", False),
    ({"quantize": "float16"}, "minmax", False),
    ({"calibration_method": "percentile", "bias_correction": False}, "percentile", False),
])
def test_defaults_follow_the_mode(fields: dict, method: str, bias: bool) -> None:
    options = ConvertOptions(**fields)
    assert (options.calibration_method, options.bias_correction) == (method, bias)


def test_plain_modes_use_the_converter_as_is() -> None:
    assert not quantization.custom(ConvertOptions(quantize="dynamic"))
    assert ConvertOptions(quantize="float16").io == "float32"


def test_top5_counts_a_label_anywhere_in_the_five_largest() -> None:
    probs = np.array([
        [0.30, 0.20, 0.15, 0.12, 0.10, 0.08, 0.05],   # label 4: fifth largest -> hit
        [0.30, 0.20, 0.15, 0.12, 0.10, 0.08, 0.05],   # label 5: sixth -> miss
        [0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.79],   # label 6: first -> hit
        [0.14, 0.14, 0.14, 0.14, 0.16, 0.14, 0.14],   # label 4 narrowly the largest -> hit
    ])
    labels = np.array([4, 5, 6, 4])
    assert topk_hits(probs, labels, 5).tolist() == [True, False, True, True]
    assert topk_hits(probs, labels, 1).tolist() == [False, False, True, True]
    assert topk_hits(probs[:, :3], np.array([2, 1, 0, 0]), 5).all()   # fewer classes than k: every label hits


def _sidecar() -> Sidecar:
    tensor = {"name": "input", "shape": [1, 96, 96, 3], "dtype": "int8", "scale": 0.0078, "zero_point": -1}
    return Sidecar(model="m.tflite", created="2026-01-01T00:00:00+00:00",
                   source={"kind": "mobilenet_v2", "alpha": 0.35, "resolution": 96}, resolution=96, alpha=0.35,
                   options={"quantize": "int8"}, calibration=None, file_size=10, sha256="0" * 64,
                   ops={"CONV_2D": 1}, op_count=1, fully_integer=True, input=tensor, output=tensor,
                   versions={"edgemnv2": "0.1.0"}, wall_time_s=1.0, stage_seconds={}, quantization=None)


def test_sidecar_round_trips_with_its_schema_version(tmp_path: Path) -> None:
    sidecar = _sidecar()
    data = sidecar.to_json()
    assert next(iter(data)) == "schema_version" and data["schema_version"] == SIDECAR_SCHEMA_VERSION
    assert Sidecar.from_json(json.loads(json.dumps(data))) == sidecar
    model = tmp_path / "m.tflite"
    sidecar_path(model).write_text(json.dumps(data))
    assert read_sidecar(model) == sidecar


def test_sidecar_from_a_newer_edgemnv2_or_incomplete_is_refused(tmp_path: Path) -> None:
    data = _sidecar().to_json()
    with pytest.raises(ValueError, match="newer"):
        Sidecar.from_json({**data, "schema_version": SIDECAR_SCHEMA_VERSION + 1})
    with pytest.raises(ValueError, match="lacks source"):
        Sidecar.from_json({k: v for k, v in data.items() if k != "source"})
    model = tmp_path / "m.tflite"
    sidecar_path(model).write_text("{not json")
    assert read_sidecar(model) is None
