"""The main job, stage after stage: convert → validate → profile.

With nothing given it converts MobileNetV2 1.0/224 with the ImageNet weights and calibration images of
the shared folder, validates the int8 model against the float one on the shared validation images (never
the calibration ones), and profiles it for a Raspberry Pi 4. Given one folder for both, it holds a seeded
part of it out of calibration and validates on that part only. Each stage is the same library function its own command calls.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgemnv2 import data as data_mod
from edgemnv2.convert import ConvertOptions, ConvertResult, convert
from edgemnv2.models import ModelSpec
from edgemnv2.profile import profile, resolve_devices
from edgemnv2.profile.report import ProfileReport
from edgemnv2.validate import ValidationReport, validate


HOLDOUT_FRACTION = 0.3  # share of a folder given for both calibration and validation that only validates
HOLDOUT_SEED = 0


@dataclass
class PipelineReport:
    conversion: ConvertResult
    validation: ValidationReport
    profiles: list[ProfileReport]


def run_pipeline(spec: ModelSpec, *, out_dir: Path, calibration: Path | None = None, data: Path | None = None,
                 device: str = "rpi4", min_agreement: float | None = 97.0, progress: bool = False,
                 on_stage: Callable[[int, int, str], None] | None = None) -> PipelineReport:
    """Convert `spec` to int8 in `out_dir`, validate it on `data` (default: the shared validation images), profile it.

    Gates are evaluated by the caller (`report.validation.raise_for_gates()`), after the report is shown.
    """
    from edgemnv2.paths import shared_calibration_dir, shared_validation_dir

    resolve_devices(device)  # an unknown device or a bad profile fails now, not after minutes of conversion
    calib_dir = Path(calibration) if calibration is not None else shared_calibration_dir()
    data_dir = Path(data) if data is not None else shared_validation_dir()
    data_mod.list_images(data_dir)  # so does a missing or empty validation folder
    held_out: tuple[str, ...] = ()
    calibrated_on: tuple[str, ...] = ()
    note = None
    if data_dir.resolve() == calib_dir.resolve():
        files = data_mod.list_images(calib_dir)
        calib_files, held_files = data_mod.holdout_split(files, HOLDOUT_FRACTION, HOLDOUT_SEED)
        held_out = tuple(data_mod.relative_name(f, calib_dir) for f in held_files)
        calibrated_on = tuple(data_mod.relative_name(f, calib_dir) for f in calib_files)
        note = (f"one folder for calibration and validation: {len(held_files)} of its {len(files)} images "
                f"(seeded, seed {HOLDOUT_SEED}) were held out of calibration and only they are validated on")
    output = out_dir / f"{spec.name}_int8.tflite"  # convert checks it can be written before it starts
    conversion = convert(spec, ConvertOptions(quantize="int8", calibration=calib_dir, output=output,
                                              exclude_calibration=held_out), progress=progress, on_stage=on_stage)
    validation = validate(conversion.output, spec, data_dir, min_agreement=min_agreement, exclude=calibrated_on,
                          note=note, progress=progress)
    profiles = profile(conversion.output, device=device)
    return PipelineReport(conversion, validation, profiles)
