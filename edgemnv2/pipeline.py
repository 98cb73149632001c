"""The main job, stage after stage: convert → validate → profile.

With nothing given it converts MobileNetV2 1.0/224 with the ImageNet weights and calibration images of
the shared folder, validates the int8 model against the float one on the same images, and profiles it
for a Raspberry Pi 4. Each stage is the same library function its own command calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgemnv2.convert import ConvertOptions, ConvertResult, convert
from edgemnv2.models import ModelSpec
from edgemnv2.profile import profile
from edgemnv2.profile.report import ProfileReport
from edgemnv2.validate import ValidationReport, validate


@dataclass
class PipelineReport:
    conversion: ConvertResult
    validation: ValidationReport
    profiles: list[ProfileReport]


def run_pipeline(spec: ModelSpec, *, out_dir: Path, calibration: Path | None = None, data: Path | None = None,
                 device: str = "rpi4", min_agreement: float | None = 97.0, progress: bool = False) -> PipelineReport:
    """Convert `spec` to int8 in `out_dir`, validate it on `data` (default: the calibration images), profile it.

    Gates are evaluated by the caller (`report.validation.raise_for_gates()`), after the report is shown.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / f"{spec.name}_int8.tflite"
    conversion = convert(spec, ConvertOptions(quantize="int8", calibration=calibration, output=output),
                         progress=progress)
    validation = validate(conversion.output, spec, data if data is not None else calibration,
                          min_agreement=min_agreement, progress=progress)
    profiles = profile(conversion.output, device=device)
    return PipelineReport(conversion, validation, profiles)
