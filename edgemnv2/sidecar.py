"""The JSON sidecar `convert` writes beside every model (`<model>.tflite.json`): what was made, from what, how.

A leaf module (standard library only), so every stage that reads sidecars — validate, the per-layer
error, run — depends on it and not on the converter. `schema_version` changes whenever a field is
renamed, removed or changes meaning (adding a field keeps it); sidecars written before the field
existed had exactly version 1's fields.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SIDECAR_SCHEMA_VERSION = 1
SUFFIX = ".json"


@dataclass(frozen=True)
class Sidecar:
    model: str                          # file name of the .tflite beside it
    created: str                        # ISO 8601, UTC
    source: Mapping[str, Any]           # models.describe(): spec (alpha, resolution, weights) or user file + sha256
    resolution: int | None
    alpha: float | None
    options: Mapping[str, Any]          # the resolved ConvertOptions
    calibration: Mapping[str, Any] | None  # folder, count, requested, available, skipped, files_sha256, seed
    file_size: int
    sha256: str
    ops: Mapping[str, int]              # op histogram (custom ops by their custom code)
    op_count: int
    fully_integer: bool
    input: Mapping[str, Any]            # name, shape, dtype, scale, zero_point
    output: Mapping[str, Any]
    versions: Mapping[str, str]         # edgemnv2, tensorflow, numpy
    wall_time_s: float
    stage_seconds: Mapping[str, float]
    quantization: Mapping[str, Any] | None  # what the quantization stages did (methods, ranges, 16-bit layers)
    schema_version: int = SIDECAR_SCHEMA_VERSION

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types, `schema_version` first."""
        data = dataclasses.asdict(self)
        return {"schema_version": data.pop("schema_version"), **data}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Sidecar:
        """A sidecar from its JSON; ValueError names what is missing or which version is not understood."""
        version = data.get("schema_version", 1)
        if not isinstance(version, int) or version > SIDECAR_SCHEMA_VERSION:
            raise ValueError(f"sidecar schema_version {version!r} is newer than this edgemnv2 reads "
                             f"({SIDECAR_SCHEMA_VERSION})")
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in names if n != "schema_version" and n not in data]
        if missing:
            raise ValueError(f"sidecar lacks {', '.join(missing)}")
        return cls(**{n: data[n] for n in names if n in data})


def sidecar_path(model_path: Path) -> Path:
    model_path = Path(model_path)
    return model_path.with_name(model_path.name + SUFFIX)


def read_sidecar(model_path: Path) -> Sidecar | None:
    """The sidecar written next to a converted model, or None when there is none (or it is unreadable)."""
    path = sidecar_path(model_path)
    if not path.is_file():
        return None
    try:
        return Sidecar.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError, AttributeError):
        return None
