"""`edgemnv2 profile`: per-layer multiplications, memory, latency and fit of a model on target devices.

Stages, data flowing one way: graph.py / spec.py (model -> layers) -> cost.py (the seed's formulas)
-> memory.py (TFLM arena plan) -> latency.py (roofline over a devices.py profile) -> report.py
(report dataclasses -> table, JSON, CSV, Markdown, plot). Nothing here imports TensorFlow, except
reading a Keras file, which has to.
"""

from __future__ import annotations

from pathlib import Path

from edgemnv2.errors import InputError
from edgemnv2.profile.devices import DeviceProfile, load_all, load_device, load_device_file
from edgemnv2.profile.graph import ModelGraph, load_tflite
from edgemnv2.profile.report import ModelReport, ProfileReport, build_model_report, build_reports

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


def load_graph(model: Path | None = None, alpha: float | None = None, resolution: int | None = None,
               classes: int = 1000) -> ModelGraph:
    """Layers of a .tflite file, a Keras file, or a MobileNetV2 spec (alpha/resolution)."""
    if model is not None and (alpha is not None or resolution is not None):
        raise InputError("give either a model file or --alpha/--resolution, not both")
    if model is None:
        if alpha is None and resolution is None:
            raise InputError("nothing to profile: give a .tflite or Keras file, or --alpha and --resolution")
        from edgemnv2.profile.spec import mobilenet_v2_graph

        return mobilenet_v2_graph(1.0 if alpha is None else alpha, 224 if resolution is None else resolution, classes)
    model = Path(model)
    if model.suffix.lower() in KERAS_SUFFIXES:
        from edgemnv2.profile.spec import keras_graph

        return keras_graph(model)
    return load_tflite(model)


def resolve_devices(device: str | None = None, device_file: Path | None = None) -> list[DeviceProfile]:
    """Profiles named by --device (a key or "all") and/or --device-file."""
    devices: list[DeviceProfile] = []
    if device == "all":
        devices = load_all()
    elif device:
        devices = [load_device(key.strip()) for key in device.split(",") if key.strip()]
    if device_file is not None:
        devices.append(load_device_file(device_file))
    if not devices:
        from edgemnv2.profile.devices import known_devices

        raise InputError(f"no target device: give --device ({', '.join(known_devices())}, or all) or --device-file")
    return devices


def profile(model: Path | None = None, *, alpha: float | None = None, resolution: int | None = None,
            classes: int = 1000, device: str | None = None, device_file: Path | None = None) -> list[ProfileReport]:
    """Profile one model on one or more devices (the library side of `edgemnv2 profile`)."""
    graph = load_graph(model, alpha, resolution, classes)
    return build_reports(graph, resolve_devices(device, device_file))


def profile_model(model: Path | None = None, *, alpha: float | None = None, resolution: int | None = None,
                  classes: int = 1000) -> ModelReport:
    """The device-independent profile: costs, weights, activations and the TFLite Micro arena plan."""
    return build_model_report(load_graph(model, alpha, resolution, classes))
