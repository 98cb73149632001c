"""Latency model vs published figures: fitted rows and held-out rows, per device profile.

Each device profile has one fitted factor (`efficiency`); this script
  1. fits it on the rows marked "fitted" (geometric mean of estimate/published = 1),
  2. prints every row with the profile AS SHIPPED (device, model, published, estimate, error, role),
  3. reports the mean absolute error on fitted and on held-out rows separately, and warns when a
     shipped `efficiency` differs from the fit by more than 2%.
Held-out rows are never used to set any profile value: they test whether the model predicts.

    python benchmarks/latency_calibration.py            # table on stdout
    python benchmarks/latency_calibration.py --markdown # the table for docs/devices.md
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from dataclasses import dataclass
from typing import Callable

from edgemnv2.profile.cost import graph_costs
from edgemnv2.profile.devices import DeviceProfile, load_device
from edgemnv2.profile.graph import Layer, ModelGraph
from edgemnv2.profile.latency import estimate
from edgemnv2.profile.spec import mobilenet_v1_graph, mobilenet_v2_graph

XNNPACK_2022 = "google/XNNPACK README, Raspberry Pi table (Feb 2022), via ../shared/reference/published_latency.md"
XNNPACK_2020 = "google/XNNPACK README, Raspberry Pi table (benchmarked Feb 12 2020, 32-bit Raspbian, float32)"
CORAL = "coral.ai/docs/edgetpu/benchmarks, Table 1"
ST_ZOO = "STMicroelectronics/stm32ai-modelzoo image_classification/mobilenetv2/README.md (STM32H747I-DISCO, 400 MHz, Cube.AI 10.0)"
ESP_NN = "espressif/esp-nn README, kernelwise ticks on ESP32-S3 (240 MHz)"
ESP_TFLM = "espressif/esp-tflite-micro README, performance comparison (ESP32-S3, 240 MHz, internal memory)"
PICO = "raspberrypi/pico-tflmicro benchmark_results.txt ('Original', total over the graph)"


@dataclass(frozen=True)
class Row:
    device: str
    model: str
    graph: Callable[[], ModelGraph]
    published_ms: float
    source: str
    fitted: bool


def single_layer(op: str, in_shape: tuple[int, int, int], filters: int, kernel: int) -> ModelGraph:
    """A one-operator int8 graph for ESP-NN's kernel rows (stride 1, no padding)."""
    h, w, c = in_shape
    out_h, out_w = h - kernel + 1, w - kernel + 1
    out_c = c if op == "depthwise" else filters
    weights = kernel * kernel * c if op == "depthwise" else filters * kernel * kernel * c
    layer = Layer(index=0, name=f"{op}", op=op, tflite_op="DEPTHWISE_CONV_2D" if op == "depthwise" else "CONV_2D",
                  known=True, input_shape=(1, h, w, c), output_shape=(1, out_h, out_w, out_c),
                  kernel=(kernel, kernel), stride=(1, 1), params=weights + out_c, weight_bytes=weights + 4 * out_c,
                  activation_in_bytes=h * w * c, activation_out_bytes=out_h * out_w * out_c, inputs=(0,), outputs=(1,))
    return ModelGraph(source=f"ESP-NN {op}", source_kind="spec", layers=(layer,), model_bytes=weights,
                      model_bytes_estimated=True, tensor_bytes={0: h * w * c, 1: out_h * out_w * out_c},
                      graph_inputs=(0,), graph_outputs=(1,))


def _cycles_ms(ticks: int, mhz: float = 240) -> float:
    return ticks / (mhz * 1e3)


ROWS: list[Row] = [
    Row("rpi4", "MobileNetV2 1.0/224 int8", lambda: mobilenet_v2_graph(1.0, 224), 17.0, XNNPACK_2022, True),
    Row("rpi4", "MobileNetV2 1.0/224 float32", lambda: mobilenet_v2_graph(1.0, 224, dtype="float32"), 46.0,
        XNNPACK_2022, False),
    Row("rpi4", "MobileNetV2 1.0/224 float32 (2020)", lambda: mobilenet_v2_graph(1.0, 224, dtype="float32"), 44.0,
        XNNPACK_2020, False),
    Row("rpi4", "MobileNetV1 1.0/224 float32 (2020)", lambda: mobilenet_v1_graph(1.0, 224, dtype="float32"), 75.0,
        XNNPACK_2020, False),
    Row("coral-usb", "MobileNetV2 1.0/224 int8", lambda: mobilenet_v2_graph(1.0, 224, 1001), 2.6, CORAL, True),
    Row("coral-usb", "MobileNetV1 1.0/224 int8", lambda: mobilenet_v1_graph(1.0, 224), 2.4, CORAL, False),
    Row("coral-devboard", "MobileNetV2 1.0/224 int8", lambda: mobilenet_v2_graph(1.0, 224, 1001), 2.6, CORAL, True),
    Row("coral-devboard", "MobileNetV1 1.0/224 int8", lambda: mobilenet_v1_graph(1.0, 224), 2.4, CORAL, False),
    Row("stm32h7", "MobileNetV2 0.35/128 int8, 1000 classes", lambda: mobilenet_v2_graph(0.35, 128), 116.13, ST_ZOO,
        True),
    Row("stm32h7", "MobileNetV2 0.35/128 int8, 5 classes (Flowers)", lambda: mobilenet_v2_graph(0.35, 128, 5), 94.34,
        ST_ZOO + " [sets the FC rate prior]", True),
    Row("stm32h7", "MobileNetV2 0.35/224 int8, 1000 classes", lambda: mobilenet_v2_graph(0.35, 224), 313.92, ST_ZOO,
        False),
    Row("stm32h7", "MobileNetV2 0.35/224 int8, 5 classes (Flowers)", lambda: mobilenet_v2_graph(0.35, 224, 5), 290.75,
        ST_ZOO, False),
    Row("stm32h7", "MobileNetV2 1.0/224 int8, 1000 classes", lambda: mobilenet_v2_graph(1.0, 224), 1106.64, ST_ZOO,
        False),
    Row("stm32h7", "MobileNetV2 1.4/224 int8, 1000 classes", lambda: mobilenet_v2_graph(1.4, 224), 2010.66, ST_ZOO,
        False),
    Row("esp32-s3", "kernel: 1x1 conv 10x10x64 -> 64", lambda: single_layer("pointwise", (10, 10, 64), 64, 1),
        _cycles_ms(428675), ESP_NN + " [sets the priors]", True),
    Row("esp32-s3", "kernel: 1x1 conv 8x8x16 -> 16", lambda: single_layer("pointwise", (8, 8, 16), 16, 1),
        _cycles_ms(32433), ESP_NN + " [sets the priors]", True),
    Row("esp32-s3", "kernel: 3x3 conv 10x10x3 -> 64", lambda: single_layer("conv", (10, 10, 3), 64, 3),
        _cycles_ms(1020923), ESP_NN + " [sets the priors]", True),
    Row("esp32-s3", "kernel: 3x3 depthwise 18x18x16", lambda: single_layer("depthwise", (18, 18, 16), 16, 3),
        _cycles_ms(203278), ESP_NN + " [sets the priors]", True),
    Row("esp32-s3", "person detection (MobileNetV1 0.25/96, 1 channel, 2 classes)",
        lambda: mobilenet_v1_graph(0.25, 96, classes=2, channels=1), 54.0, ESP_TFLM, False),
    Row("pico", "person detection (MobileNetV1 0.25/96, 1 channel, 2 classes)",
        lambda: mobilenet_v1_graph(0.25, 96, classes=2, channels=1), 782.0, PICO, True),
]

# Profiles whose efficiency is fitted here (esp32-s3 keeps 1.0: its kernel rows set its rates directly).
FITTED_DEVICES = ("rpi4", "coral-usb", "coral-devboard", "stm32h7", "pico")


def estimate_ms(graph: ModelGraph, device: DeviceProfile) -> float:
    result = estimate(graph, graph_costs(graph), device)
    assert result.total_ms is not None
    return result.total_ms


def with_efficiency(device: DeviceProfile, value: float) -> DeviceProfile:
    if device.kind == "edgetpu":
        return dataclasses.replace(device, edgetpu=dataclasses.replace(device.edgetpu, efficiency=value))
    return dataclasses.replace(device, cpu=dataclasses.replace(device.cpu, efficiency=value))


def shipped_efficiency(device: DeviceProfile) -> float:
    return device.edgetpu.efficiency if device.kind == "edgetpu" else device.cpu.efficiency


def fit(device_key: str, graphs: dict[str, ModelGraph]) -> float:
    """Efficiency with geometric-mean(estimate / published) = 1 over the device's fitted rows (bisection)."""
    device = load_device(device_key)
    rows = [r for r in ROWS if r.device == device_key and r.fitted]

    def log_bias(eff: float) -> float:
        d = with_efficiency(device, eff)
        return sum(math.log(estimate_ms(graphs[r.model + r.device], d) / r.published_ms) for r in rows) / len(rows)

    low, high = 1e-3, 1e3
    for _ in range(100):  # estimate falls as efficiency rises
        mid = math.sqrt(low * high)
        if log_bias(mid) > 0:
            low = mid
        else:
            high = mid
    return math.sqrt(low * high)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--markdown", action="store_true", help="print the docs/devices.md table")
    args = parser.parse_args()

    graphs = {r.model + r.device: r.graph() for r in ROWS}
    problems = []
    fits = {}
    for key in FITTED_DEVICES:
        fits[key] = fit(key, graphs)
        shipped = shipped_efficiency(load_device(key))
        if abs(shipped / fits[key] - 1) > 0.02:
            problems.append(f"{key}: shipped efficiency {shipped:.4g} but the fit gives {fits[key]:.4g}")

    results = []
    for r in ROWS:
        est = estimate_ms(graphs[r.model + r.device], load_device(r.device))
        results.append((r, est, est / r.published_ms - 1))

    if args.markdown:
        print("| device | model | published ms | our estimate ms | error | role | source |")
        print("|---|---|---:|---:|---:|---|---|")
        for r, est, err in results:
            print(f"| {r.device} | {r.model} | {r.published_ms:.4g} | {est:.4g} | {err:+.0%} | "
                  f"{'fitted' if r.fitted else 'held-out'} | {r.source} |")
    else:
        print(f"{'device':<15} {'model':<58} {'published':>10} {'estimate':>10} {'error':>7}  role")
        for r, est, err in results:
            print(f"{r.device:<15} {r.model:<58} {r.published_ms:>10.4g} {est:>10.4g} {err:>+7.0%}  "
                  f"{'fitted' if r.fitted else 'held-out'}")
        print()
        for key, value in fits.items():
            print(f"fitted efficiency {key}: {value:.4g} (shipped {shipped_efficiency(load_device(key)):.4g})")
    fitted_err = [abs(e) for r, _, e in results if r.fitted]
    held_err = [abs(e) for r, _, e in results if not r.fitted]
    summary = (f"mean |error|: fitted rows {sum(fitted_err) / len(fitted_err):.1%} (n={len(fitted_err)}), "
               f"held-out rows {sum(held_err) / len(held_err):.1%} (n={len(held_err)}); "
               f"held-out within ±35%: {sum(e <= 0.35 for e in held_err)}/{len(held_err)}")
    print(("\n" if args.markdown else "") + summary)
    for problem in problems:
        print("WARNING: " + problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
