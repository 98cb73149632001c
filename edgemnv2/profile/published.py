"""Published on-device latencies (published_latency.toml) as frozen rows, each able to build its graph.

One copy of the figures: benchmarks/latency_calibration.py fits the profiles' efficiencies to the "fitted"
rows and the tests hold the estimator against the "held-out" ones, both reading this module.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from edgemnv2.errors import DeviceProfileError
from edgemnv2.profile.graph import Layer, ModelGraph
from edgemnv2.profile.spec import mobilenet_v1_graph, mobilenet_v2_graph
from edgemnv2.resources import data_file

PUBLISHED_FILE = "profile/published_latency.toml"
ROLES = ("fitted", "prior", "held-out")
_FAMILIES = {"mobilenet_v2": mobilenet_v2_graph, "mobilenet_v1": mobilenet_v1_graph}
_SPEC_KEYS = {"alpha", "resolution", "classes", "channels", "dtype"}
_LAYERS = ("pointwise", "conv", "depthwise")


@dataclass(frozen=True)
class PublishedRow:
    device: str
    model: str
    graph_spec: tuple[tuple[str, Any], ...]   # the row's `graph` table, as sorted items
    published_ms: float
    source: str                               # the document, in full
    role: str                                 # fitted | prior | held-out
    note: str = ""

    def graph(self) -> ModelGraph:
        spec = dict(self.graph_spec)
        if "layer" in spec:
            return single_layer(spec["layer"], tuple(spec["input"]), spec["filters"], spec["kernel"])
        return _FAMILIES[spec.pop("family")](**spec)


def single_layer(op: str, in_shape: tuple[int, int, int], filters: int, kernel: int) -> ModelGraph:
    """A one-operator int8 graph for a kernel benchmark row (stride 1, no padding)."""
    h, w, c = in_shape
    out_h, out_w = h - kernel + 1, w - kernel + 1
    out_c = c if op == "depthwise" else filters
    weights = kernel * kernel * c if op == "depthwise" else filters * kernel * kernel * c
    layer = Layer(index=0, name=op, op=op, tflite_op="DEPTHWISE_CONV_2D" if op == "depthwise" else "CONV_2D",
                  known=True, input_shape=(1, h, w, c), output_shape=(1, out_h, out_w, out_c),
                  kernel=(kernel, kernel), stride=(1, 1), params=weights + out_c, weight_bytes=weights + 4 * out_c,
                  activation_in_bytes=h * w * c, activation_out_bytes=out_h * out_w * out_c, inputs=(0,), outputs=(1,))
    return ModelGraph(source=f"kernel {op}", source_kind="spec", layers=(layer,), model_bytes=weights,
                      model_bytes_estimated=True, tensor_bytes={0: h * w * c, 1: out_h * out_w * out_c},
                      graph_inputs=(0,), graph_outputs=(1,))


def _graph_spec(graph: Any, where: str) -> tuple[tuple[str, Any], ...]:
    if not isinstance(graph, dict):
        raise DeviceProfileError(f"{where}: graph must be a table")
    if "layer" in graph:
        if graph["layer"] not in _LAYERS or set(graph) != {"layer", "input", "filters", "kernel"}:
            raise DeviceProfileError(f"{where}: a layer graph is {{layer = {'|'.join(_LAYERS)}, input, filters, "
                                     f"kernel}}, got {graph}")
    elif graph.get("family") not in _FAMILIES or not set(graph) - {"family"} <= _SPEC_KEYS:
        raise DeviceProfileError(f"{where}: graph needs family = {'|'.join(_FAMILIES)} and only "
                                 f"{sorted(_SPEC_KEYS)}, got {graph}")
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in graph.items()))


@lru_cache(maxsize=1)
def published_rows() -> tuple[PublishedRow, ...]:
    """Every row of the packaged file, checked (a bad row names its number and what is wrong)."""
    data = tomllib.loads(data_file(PUBLISHED_FILE).read_text(encoding="utf-8"))
    sources = data.get("sources", {})
    rows = []
    for number, row in enumerate(data.get("row", []), 1):
        where = f"{PUBLISHED_FILE} row {number} ({row.get('model', '?')})"
        if row.get("source") not in sources or row.get("role") not in ROLES:
            raise DeviceProfileError(f"{where}: source must be one of {sorted(sources)} and role one of {ROLES}")
        if ("published_ms" in row) == ("published_ticks" in row):
            raise DeviceProfileError(f"{where}: give published_ms or published_ticks (with clock_mhz)")
        ms = row["published_ms"] if "published_ms" in row else row["published_ticks"] / (row["clock_mhz"] * 1e3)
        rows.append(PublishedRow(device=row["device"], model=row["model"], graph_spec=_graph_spec(row["graph"], where),
                                 published_ms=float(ms), source=sources[row["source"]], role=row["role"],
                                 note=row.get("note", "")))
    return tuple(rows)
