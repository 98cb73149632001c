"""The plain TFLite converter vs each quantization method, side by side, on held-out images.

Protocol (there are only 100 labelled ImageNet images in ../shared/data/imagenet-calib): 2-fold. The
images are split into even- and odd-numbered files (sorted order); each method calibrates on one half
and is measured on the other, then the halves swap, so every figure covers 100 held-out predictions
and no image is ever measured by a model calibrated on it. Agreement and top-1 are against the float
Keras model on the same images; mean KL uses edgemnv2.validate's definition (softmax tail that int8
rounds to zero refilled); time is the conversion (transform + calibrate + quantize) summed over folds.

    PYTHONPATH=... python3 benchmarks/quant_methods.py [--resolution 224] [--methods plain,mse,...]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

# name -> ConvertOptions fields; unset fields take convert's defaults (mse + bias correction for per-channel,
# minmax + bias correction for per-tensor), so every row that is not the default spells out what it turns off.
PLAIN = {"calibration_method": "minmax", "bias_correction": False}  # the converter's own int8
METHODS: dict[str, dict] = {
    "plain": PLAIN,
    "percentile": {**PLAIN, "calibration_method": "percentile"},
    "mse": {**PLAIN, "calibration_method": "mse"},
    "bias-correction": {**PLAIN, "bias_correction": True},
    "equalize": {**PLAIN, "equalize": True},
    "default (mse+bias-correction)": {},
    "int16-all (16x8)": {"int16_activations": "all", "io": "float32"},
    "per-tensor": {**PLAIN, "per_tensor": True},
    "per-tensor+equalize": {**PLAIN, "per_tensor": True, "equalize": True},
    "per-tensor+eq+bias-corr": {"per_tensor": True, "equalize": True, "bias_correction": True},
    "per-tensor+eq+bc+mse": {"per_tensor": True, "equalize": True, "bias_correction": True,
                             "calibration_method": "mse"},
}

def build(model, images: np.ndarray, fields: dict, source) -> tuple[bytes, float]:
    """Run the convert stages that matter (transform, quantize, verify) on in-memory images."""
    from edgemnv2 import data, quantization
    from edgemnv2.convert import ConvertJob, ConvertOptions, quantize, verify

    options = ConvertOptions(**fields)
    job = ConvertJob(source=source, options=options, model=model,
                     calibration=data.ImageSet(images=images, labels=np.full(len(images), -1), files=[]))
    started = time.perf_counter()
    quantization.transform_float_model(job)
    quantize(job)
    seconds = time.perf_counter() - started
    verify(job)  # fully integer or it raises
    job.quantization.pop("_float_twin_bytes", None)
    assert job.tflite is not None
    return job.tflite, seconds


def predict(tflite: bytes, images: np.ndarray) -> tuple[np.ndarray, float]:
    from edgemnv2 import runtime

    with tempfile.NamedTemporaryFile(suffix=".tflite") as handle:
        handle.write(tflite)
        handle.flush()
        model = runtime.open_model(Path(handle.name))
        out = model.predict(images)
        return out, model.output.scale


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated names from: " + ", ".join(METHODS))
    args = parser.parse_args()
    from edgemnv2 import logs

    logs.configure(0)
    from edgemnv2 import data, models
    from edgemnv2.paths import shared_calibration_dir
    from edgemnv2.validate import fill_rounded_tail, kl_divergence, run_float, to_probabilities

    names = [n.strip() for n in args.methods.split(",") if n.strip()]
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        parser.error(f"unknown method(s) {unknown}")
    source = models.ModelSpec(1.0, args.resolution, "imagenet")
    keras_model = models.load_keras_model(source)
    imageset = data.load_images(shared_calibration_dir(), args.resolution)
    images, labels = imageset.images, imageset.labels
    float_probs = to_probabilities(run_float(keras_model, images))
    folds = [np.arange(len(images)) % 2 == k for k in (0, 1)]  # fold k calibrates on half k

    print(f"MobileNetV2 1.0/{args.resolution}, shared weights; 2-fold: calibrate on 50 images, measure on the "
          f"other 50, swap; {len(images)} held-out predictions per row. float top-1 "
          f"{100 * np.mean(float_probs.argmax(1) == labels):.1f}%", flush=True)
    print(f"{'method':<26} {'agreement':>9} {'top-1':>6} {'mean KL':>8} {'convert s':>9}  vs plain")
    plain_kl = None
    for name in names:
        held_out = np.zeros_like(float_probs)
        seconds = 0.0
        for calib in folds:
            tflite, took = build(keras_model, images[calib], METHODS[name], source)
            seconds += took
            out, scale = predict(tflite, images[~calib])
            held_out[~calib] = to_probabilities(fill_rounded_tail(out, scale) if scale else out)
        agree = 100 * np.mean(held_out.argmax(1) == float_probs.argmax(1))
        top1 = 100 * np.mean(held_out.argmax(1) == labels)
        kl = float(np.mean(kl_divergence(float_probs, held_out)))
        if name == "plain":
            plain_kl = kl
        ratio = f"KL x{kl / plain_kl:.2f}" if plain_kl else ""
        print(f"{name:<26} {agree:>8.1f}% {top1:>5.1f}% {kl:>8.4f} {seconds:>9.1f}  {ratio}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
