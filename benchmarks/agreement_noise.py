"""How much less quantization noise a model needs for an agreement target, from its own near-ties.

An int8 model changes the float model's top-1 only where rounding noise on the gap between the float model's
two best logits exceeds that gap. This script measures both on the validation images: the float gap m (log
p1/p2 of the float softmax) and the noise d on it (the int8 model's logits, read at the input of its SOFTMAX,
gap between the same two classes, minus m). A Gaussian model of d with the measured robust spread then gives,
image by image, the chance that its top-1 flips, and so the expected disagreements and the chance of meeting
the target when the noise is scaled down by 1, 2, ... dB (6 dB is one more bit on every activation).

    python3 benchmarks/agreement_noise.py [--model out/mobilenet_v2_1.0_224_int8.tflite] [--data DIR] [--target 99]

The model must end in SOFTMAX (its input is the logits); a 1001-class model's background logit is dropped.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np  # noqa: E402

DB_STEPS = (0, 1, 2, 3, 4, 6, 8)
AS_VALIDATE = "as validate (float32 rint)"  # runtime.quantize_values, what validate and bench feed


def int8_logits(graph, raw_inputs: np.ndarray) -> tuple[np.ndarray, float]:
    """The dequantized input of the model's last SOFTMAX for every raw (already quantized) input image, and
    that tensor's step."""
    from ai_edge_litert.interpreter import Interpreter

    from edgemnv2.tflite import writer

    softmax = [op for op in graph.ops if op.builtin == "SOFTMAX"]
    if not softmax:
        sys.exit(f"{graph.source} has no SOFTMAX op: its logits cannot be read")
    logits = graph.tensors[softmax[-1].inputs[0]]
    if not logits.quantized:
        sys.exit(f"{graph.source}: the SOFTMAX input is not quantized; nothing to measure")
    interpreter = Interpreter(model_content=writer.with_outputs(graph.data, [softmax[-1].inputs[0]]))
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    out = next(d for d in interpreter.get_output_details() if d["name"] == logits.name)
    rows = []
    for raw in raw_inputs:
        interpreter.set_tensor(inp["index"], raw[None])
        interpreter.invoke()
        rows.append((interpreter.get_tensor(out["index"])[0].astype(np.float64) - logits.zero_point) * logits.scale)
    return np.array(rows), logits.scale


def input_roundings(model, images: np.ndarray) -> dict[str, np.ndarray]:
    """The raw inputs validate feeds, and, when every value sits on a rounding tie (the input grid is offset
    by half a step from the preprocessed pixels), the same inputs with every tie rounded up, then down."""
    variants = {AS_VALIDATE: model.quantize_input(images)}
    info = model.input
    if not info.quantized:
        return variants
    exact = images.astype(np.float64) / info.scale + info.zero_point
    if np.abs(np.abs(exact - np.floor(exact)) - 0.5).max() < 1e-3:
        limits = np.iinfo(info.dtype)
        below = np.floor(exact)  # each value is below + 0.5, give or take float error far smaller than 0.5
        for name, rounded in (("every tie up", below + 1), ("every tie down", below)):
            variants[name] = np.clip(rounded, limits.min, limits.max).astype(info.dtype)
    return variants


def flip_count_distribution(probabilities: np.ndarray) -> np.ndarray:
    """P(exactly k images flip), k = 0..n, for independent images (Poisson-binomial)."""
    dist = np.zeros(len(probabilities) + 1)
    dist[0] = 1.0
    for p in probabilities:
        dist[1:] = dist[1:] * (1 - p) + dist[:-1] * p
        dist[0] *= 1 - p
    return dist


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("out/mobilenet_v2_1.0_224_int8.tflite"))
    parser.add_argument("--reference", default="mobilenet_v2_1.0_224", help="float reference spec (as validate)")
    parser.add_argument("--data", type=Path, default=None, help="images (default ../shared/data/imagenet-val)")
    parser.add_argument("--target", type=float, default=99.0, help="agreement target in percent")
    args = parser.parse_args()
    if not args.model.is_file():
        sys.exit(f"{args.model} not found: make it with `edgemnv2 run` (or pass --model)")

    from edgemnv2 import data, models, runtime
    from edgemnv2.paths import shared_validation_dir
    from edgemnv2.tflite import reader
    from edgemnv2.validate import float_margins, run_float, to_probabilities

    folder = args.data or shared_validation_dir()
    graph = reader.parse(args.model.read_bytes(), str(args.model))
    images = data.load_images(folder, int(graph.tensors[graph.inputs[0]].shape[1])).images
    model = runtime.open_model(args.model)
    roundings = input_roundings(model, images)
    outputs = {name: model.dequantize_output(model.run_raw(raw)) for name, raw in roundings.items()}
    quantized, step = int8_logits(graph, roundings[AS_VALIDATE])
    keras_model = models.load_keras_model(models.parse_reference(args.reference))
    probs = to_probabilities(run_float(keras_model, images))
    dequantized = (roundings[AS_VALIDATE].astype(np.float32) - model.input.zero_point) * np.float32(model.input.scale)
    float_on_int8_input = np.flatnonzero(run_float(keras_model, dequantized).argmax(axis=1) != probs.argmax(axis=1))
    if quantized.shape[1] == probs.shape[1] + 1:  # 1001 classes, background first
        quantized = quantized[:, 1:]
        outputs = {name: out[:, 1:] for name, out in outputs.items()}
    order = np.argsort(probs, axis=1)
    top1, top2, rows = order[:, -1], order[:, -2], np.arange(len(images))
    margin = float_margins(probs)
    noise = (quantized[rows, top1] - quantized[rows, top2]) - margin
    sd = float(np.std(noise))
    robust_sd = float(1.4826 * np.median(np.abs(noise - np.median(noise))))
    n = len(images)
    observed = {name: np.flatnonzero(out.argmax(axis=1) != top1) for name, out in outputs.items()}
    allowed = math.floor(n * (1 - args.target / 100) + 1e-9)

    print(f"{args.model.name} vs {args.reference} on {n} images of {folder}")
    print(f"  {args.target:g}% agreement allows {allowed} differing images; the same model, its input rounded:")
    for name, differ in observed.items():
        print(f"    {name:<28} differs on {len(differ)} ({100 * (1 - len(differ) / n):.2f}% agreement): "
              + ", ".join(str(i) for i in differ))
    if model.input.quantized:
        print(f"    {'float model, that int8 input':<28} differs on {len(float_on_int8_input)} (its input "
              f"dequantized; no other rounding): " + ", ".join(str(i) for i in float_on_int8_input))
    print(f"  float top-1/top-2 margin below 0.1: {int(np.sum(margin < 0.1))} images, below 0.2: "
          f"{int(np.sum(margin < 0.2))}, below 0.5: {int(np.sum(margin < 0.5))}")
    print(f"  noise on that gap (int8 - float): mean {noise.mean():+.3f}, sd {sd:.3f}, robust sd (1.4826 MAD) "
          f"{robust_sd:.3f}; int8 logit step {step:.4f}")
    print(f"  Gaussian model, robust sd: noise scaled down by     expected differing   P(agreement >= {args.target:g}%)")
    for db in DB_STEPS:
        scaled = robust_sd * 10 ** (-db / 20)
        flips = 0.5 * np.vectorize(math.erfc)(margin / (scaled * math.sqrt(2)))
        chance = float(flip_count_distribution(flips)[:allowed + 1].sum())
        print(f"    {db:2d} dB (sd {scaled:.3f}){'':<26} {flips.sum():6.2f}   {chance:12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
