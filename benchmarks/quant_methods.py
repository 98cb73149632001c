"""The plain TFLite converter vs each quantization method, side by side, on images no method calibrated on.

Every method calibrates on the same images (default ../shared/data/imagenet-calib, 100) and is measured on
the validation folder (default ../shared/data/imagenet-val, 300 other ImageNet images). When both folders are
the same, a seeded 30% of it is held out of calibration and only that part is measured (the table says so).
Agreement and top-1 are against the float Keras model on the same images, with 95% Wilson intervals; mean KL
uses edgemnv2.validate's definition (the softmax tail int8 rounds to zero refilled); time is the conversion
work (transform + calibrate + quantize) in this process, on whatever the machine's load is.

    python3 benchmarks/quant_methods.py [--resolution 224] [--methods plain,mse,...] [--calibration DIR] [--data DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np  # noqa: E402

# name -> ConvertOptions fields; unset fields take convert's defaults (quantization.resolved_defaults), so every
# row that is not the default spells out what it turns off.
PLAIN = {"calibration_method": "minmax", "bias_correction": False, "equalize": False}  # the converter's own int8
METHODS: dict[str, dict] = {
    "plain": PLAIN,
    "percentile": {**PLAIN, "calibration_method": "percentile"},
    "mse": {**PLAIN, "calibration_method": "mse"},
    "bias-correction": {**PLAIN, "bias_correction": True},
    "equalize": {**PLAIN, "equalize": True},
    "default": {},
    "int16-all (16x8)": {"int16_activations": "all", "io": "float32"},
    "int16-stream": {"int16_activations": "stream"},
    "per-tensor": {**PLAIN, "per_tensor": True},
    "per-tensor+equalize": {**PLAIN, "per_tensor": True, "equalize": True},
    "per-tensor+eq+bias-corr": {"per_tensor": True, "equalize": True, "bias_correction": True},
    "per-tensor+eq+bc+mse": {"per_tensor": True, "equalize": True, "bias_correction": True,
                             "calibration_method": "mse"},
    "per-tensor+eq+bc+percentile": {"per_tensor": True, "equalize": True, "bias_correction": True,
                                    "calibration_method": "percentile"},
    "adaround": {"adaround": True},
    "per-tensor+eq+adaround": {"per_tensor": True, "equalize": True, "adaround": True},  # + bias correction
    "per-tensor+eq+adaround+flips": {"per_tensor": True, "equalize": True, "adaround": True,
                                     "adaround_augment": "flips"},
    "per-tensor+eq+adaround+crops": {"per_tensor": True, "equalize": True, "adaround": True,
                                     "adaround_augment": "crops"},
    "per-tensor+eq+adaround+flips+crops": {"per_tensor": True, "equalize": True, "adaround": True,
                                           "adaround_augment": "flips,crops"},
    "per-tensor+eq+adaround-no-bc": {"per_tensor": True, "equalize": True, "adaround": True,
                                     "bias_correction": False},
}
HOLDOUT_FRACTION = 0.3  # as `edgemnv2 run` does when one folder is given for both
HOLDOUT_SEED = 0


def build(model, images: np.ndarray, fields: dict, source) -> tuple[bytes, float]:
    """Run the convert stages that matter (transform, quantize, verify) on in-memory images."""
    from edgemnv2 import data
    from edgemnv2.convert import ConvertOptions, quantize_in_memory

    calibration = data.ImageSet(images=images, labels=np.full(len(images), -1), files=[])
    return quantize_in_memory(source, ConvertOptions(**fields), model, calibration)


def predict(tflite: bytes, images: np.ndarray) -> tuple[np.ndarray, float]:
    from edgemnv2 import runtime

    with tempfile.NamedTemporaryFile(suffix=".tflite") as handle:
        handle.write(tflite)
        handle.flush()
        model = runtime.open_model(Path(handle.name))
        out = model.predict(images)
        return out, model.output.scale


def image_sets(calibration: Path, validation: Path, resolution: int):
    """(calibration images, validation images, note): disjoint, a seeded hold-out when one folder is both."""
    from edgemnv2 import data

    if calibration.resolve() != validation.resolve():
        return data.load_images(calibration, resolution), data.load_images(validation, resolution), ""
    files = data.list_images(calibration)
    calib_files, held = data.holdout_split(files, HOLDOUT_FRACTION, HOLDOUT_SEED)
    names = lambda fs: tuple(data.relative_name(f, calibration) for f in fs)  # noqa: E731
    note = f" (one folder: {len(held)} of {len(files)} images held out of calibration, seed {HOLDOUT_SEED})"
    return (data.load_images(calibration, resolution, exclude=names(held)),
            data.load_images(calibration, resolution, exclude=names(calib_files)), note)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated names from: " + ", ".join(METHODS))
    parser.add_argument("--calibration", type=Path, default=None, help="calibration images (default imagenet-calib)")
    parser.add_argument("--data", type=Path, default=None, help="images to measure on (default imagenet-val)")
    args = parser.parse_args()
    from edgemnv2 import logs

    logs.configure(0)
    from edgemnv2 import models
    from edgemnv2.paths import shared_calibration_dir, shared_validation_dir
    from edgemnv2.validate import fill_rounded_tail, kl_divergence, run_float, to_probabilities, wilson_interval

    names = [n.strip() for n in args.methods.split(",") if n.strip()]
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        parser.error(f"unknown method(s) {unknown}")
    calib_dir, val_dir = args.calibration or shared_calibration_dir(), args.data or shared_validation_dir()
    source = models.ModelSpec(1.0, args.resolution, "imagenet")
    keras_model = models.load_keras_model(source)
    calib, val, note = image_sets(calib_dir, val_dir, args.resolution)
    float_probs = to_probabilities(run_float(keras_model, val.images))
    n = len(val.images)
    float_top1 = 100 * np.mean(float_probs.argmax(1) == val.labels)
    print(f"MobileNetV2 1.0/{args.resolution}, shared weights; calibrated on {len(calib.images)} images of "
          f"{calib_dir}, measured on {n} images of {val_dir}{note}; float top-1 {float_top1:.1f}%; "
          "[95% Wilson intervals]", flush=True)
    width = max(26, *(len(name) for name in names))
    print(f"{'method':<{width}} {'agreement':>9} {'95% CI':>13} {'top-1':>6} {'drop':>5} {'mean KL':>8} {'convert s':>9}")
    for name in names:
        tflite, seconds = build(keras_model, calib.images, METHODS[name], source)
        out, scale = predict(tflite, val.images)
        probs = to_probabilities(fill_rounded_tail(out, scale) if scale else out)
        agrees = int(np.sum(probs.argmax(1) == float_probs.argmax(1)))
        ci = wilson_interval(agrees, n)
        top1 = 100 * np.mean(probs.argmax(1) == val.labels)
        kl = float(np.mean(kl_divergence(float_probs, probs)))
        print(f"{name:<{width}} {100 * agrees / n:>8.1f}% [{ci.low:4.1f}, {ci.high:5.1f}] {top1:>5.1f}% "
              f"{float_top1 - top1:>+5.1f} {kl:>8.4f} {seconds:>9.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
