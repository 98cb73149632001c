"""Layer tables without a .tflite: from a MobileNetV2 spec (alpha, resolution) or a Keras model file.

The spec path recomputes the architecture Keras builds (`keras.applications.MobileNetV2`: its
`_make_divisible`, expansion 6, the block table, the 1280-wide last conv kept for alpha <= 1) and
lays it out the way the TFLite converter does (batch norm and ReLU6 fused into the convolutions, the
stride-2 zero padding folded, global pooling as MEAN), assuming the int8 deployment `edgemnv2 convert`
produces (int8 weights, int32 biases, per-channel scales and zero points). So `profile --alpha 1.0
--resolution 224` gives the same rows as profiling the converted file, with no TensorFlow import.

The Keras path imports Keras lazily and maps each layer the same way, so any user model works.
MobileNetV1 tables are here too, only to compare the latency model with published V1 figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from edgemnv2.errors import ModelError
from edgemnv2.profile.graph import Layer, ModelGraph

_QUANT_BYTES_PER_CHANNEL = 4 + 8          # one float32 scale + one int64 zero point, as the schema stores them
_FLATBUFFER_BYTES_PER_TENSOR = 256        # metadata per tensor (name, shape, quantization table), measured on converted models
# MobileNetV2 inverted residual blocks as Keras builds them: (filters, stride, expansion).
MOBILENET_V2_BLOCKS = ((16, 1, 1), (24, 2, 6), (24, 1, 6), (32, 2, 6), (32, 1, 6), (32, 1, 6),
                       (64, 2, 6), (64, 1, 6), (64, 1, 6), (64, 1, 6), (96, 1, 6), (96, 1, 6), (96, 1, 6),
                       (160, 2, 6), (160, 1, 6), (160, 1, 6), (320, 1, 6))
MOBILENET_V1_BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
                       (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Keras' `_make_divisible`: round channels to a multiple of 8, never more than 10% down."""
    min_value = divisor if min_value is None else min_value
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return new_value


@dataclass
class _Builder:
    """Accumulates int8 layers with tensor ids, so pairs and lifetimes work as for a parsed file."""

    layers: list[Layer] = field(default_factory=list)
    tensor_bytes: dict[int, int] = field(default_factory=dict)
    constants: int = 0
    next_id: int = 0
    dtype: str = "int8"           # "float32" for float models (4-byte tensors and weights, no quantization)
    per_tensor: bool = False      # one weight scale per tensor (NPUs) instead of one per output channel

    @property
    def element_bytes(self) -> int:
        return 4 if self.dtype == "float32" else 1

    def tensor(self, shape: tuple[int, ...]) -> int:
        tid = self.next_id
        self.next_id += 1
        self.tensor_bytes[tid] = math.prod(shape) * self.element_bytes
        return tid

    def add(self, name: str, op: str, tflite_op: str, inputs: list[tuple[int, tuple[int, ...]]],
            out_shape: tuple[int, ...], *, kernel: tuple[int, int] | None = None,
            stride: tuple[int, int] | None = None, weights: int = 0, bias: int = 0, channels: int = 0,
            known: bool = True) -> tuple[int, tuple[int, ...]]:
        """Append a layer; weights/bias are element counts, channels the per-channel quantization count."""
        out = self.tensor(out_shape)
        scales = min(channels, 1) if self.per_tensor else channels
        quant_bytes = 0 if self.dtype == "float32" else scales * _QUANT_BYTES_PER_CHANNEL
        weight_bytes = 0
        if weights:
            weight_bytes += weights * self.element_bytes + quant_bytes
            self.constants += 1
        if bias:
            weight_bytes += bias * 4 + quant_bytes
            self.constants += 1
        self.layers.append(Layer(
            index=len(self.layers), name=name, op=op, tflite_op=tflite_op, known=known,
            input_shape=inputs[0][1], output_shape=out_shape, kernel=kernel, stride=stride,
            dtype=self.dtype, weight_dtype=self.dtype if weights else None, params=weights + bias,
            weight_bytes=weight_bytes,
            activation_in_bytes=sum(self.tensor_bytes[i] for i, _ in inputs),
            activation_out_bytes=self.tensor_bytes[out], inputs=tuple(i for i, _ in inputs), outputs=(out,)))
        return out, out_shape

    def conv(self, name: str, x: tuple[int, tuple[int, ...]], filters: int, kernel: int, stride: int,
             ) -> tuple[int, tuple[int, ...]]:
        _, h, w, c = x[1]
        shape = (1, math.ceil(h / stride), math.ceil(w / stride), filters)
        op = "pointwise" if kernel == 1 else "conv"
        return self.add(name, op, "CONV_2D", [x], shape, kernel=(kernel, kernel), stride=(stride, stride),
                        weights=filters * kernel * kernel * c, bias=filters, channels=filters)

    def depthwise(self, name: str, x: tuple[int, tuple[int, ...]], stride: int) -> tuple[int, tuple[int, ...]]:
        _, h, w, c = x[1]
        shape = (1, math.ceil(h / stride), math.ceil(w / stride), c)
        return self.add(name, "depthwise", "DEPTHWISE_CONV_2D", [x], shape, kernel=(3, 3), stride=(stride, stride),
                        weights=9 * c, bias=c, channels=c)

    def head(self, x: tuple[int, tuple[int, ...]], classes: int, pool: str) -> None:
        channels = x[1][-1]
        if pool == "mean":
            x = self.add("global_average_pooling2d", "mean", "MEAN", [x], (1, channels))
            x = self.add("predictions", "fully_connected", "FULLY_CONNECTED", [x], (1, classes),
                         weights=channels * classes, bias=classes, channels=classes)
        else:  # TF-Slim MobileNetV1: average pool, 1x1 conv logits, reshape
            x = self.add("AvgPool_1a", "pool", "AVERAGE_POOL_2D", [x], (1, 1, 1, channels),
                         kernel=(x[1][1], x[1][2]), stride=(2, 2))
            x = self.conv("Conv2d_1c_1x1", x, classes, 1, 1)
            x = self.add("Reshape", "reshape", "RESHAPE", [x], (1, classes))
        self.add("softmax", "softmax", "SOFTMAX", [x], x[1])

    def graph(self, source: str, first_input: int) -> ModelGraph:
        weight_bytes = sum(layer.weight_bytes for layer in self.layers)
        tensors = len(self.tensor_bytes) + self.constants
        return ModelGraph(source=source, source_kind="spec", layers=tuple(self.layers),
                          model_bytes=weight_bytes + tensors * _FLATBUFFER_BYTES_PER_TENSOR,
                          model_bytes_estimated=True, tensor_bytes=dict(self.tensor_bytes),
                          graph_inputs=(first_input,), graph_outputs=self.layers[-1].outputs)


def _check(alpha: float, resolution: int) -> None:
    if not alpha > 0:
        raise ModelError(f"alpha must be positive (got {alpha:g}); MobileNetV2 uses 0.35, 0.5, 0.75, 1.0, 1.3 or 1.4")
    if resolution < 32:
        raise ModelError(f"resolution must be at least 32 pixels (got {resolution})")


def mobilenet_v2_graph(alpha: float = 1.0, resolution: int = 224, classes: int = 1000,
                       dtype: str = "int8", per_tensor: bool = False) -> ModelGraph:
    """The TFLite layer table of `keras.applications.MobileNetV2(alpha, (res, res, 3), classes)` (int8 or float32;
    `per_tensor`: int8 with one weight scale per tensor, as `convert --per-tensor` writes it)."""
    _check(alpha, resolution)
    b = _Builder(dtype=dtype, per_tensor=per_tensor)
    inp = b.tensor((1, resolution, resolution, 3))
    x = (inp, (1, resolution, resolution, 3))
    x = b.conv("Conv1", x, make_divisible(32 * alpha, 8), 3, 2)
    for block_id, (filters, stride, expansion) in enumerate(MOBILENET_V2_BLOCKS):
        prefix = f"block_{block_id}_" if block_id else "expanded_conv_"
        block_input = x
        in_channels = x[1][-1]
        out_channels = make_divisible(int(filters * alpha), 8)
        if block_id:
            x = b.conv(prefix + "expand", x, expansion * in_channels, 1, 1)
        x = b.depthwise(prefix + "depthwise", x, stride)
        x = b.conv(prefix + "project", x, out_channels, 1, 1)
        if in_channels == out_channels and stride == 1:
            x = b.add(prefix + "add", "add", "ADD", [block_input, x], x[1])
    last = make_divisible(1280 * alpha, 8) if alpha > 1.0 else 1280
    x = b.conv("Conv_1", x, last, 1, 1)
    b.head(x, classes, "mean")
    kind = f"{dtype}, per-tensor" if per_tensor else dtype
    return b.graph(f"MobileNetV2 alpha={alpha:g} resolution={resolution} (spec, {kind})", inp)


def mobilenet_v1_graph(alpha: float = 1.0, resolution: int = 224, classes: int = 1001, channels: int = 3,
                       head: str = "slim", dtype: str = "int8") -> ModelGraph:
    """MobileNetV1 as TF-Slim exported it for TFLite (head="slim") or with Keras' pooled dense head."""
    _check(alpha, resolution)
    b = _Builder(dtype=dtype)
    inp = b.tensor((1, resolution, resolution, channels))
    x = (inp, (1, resolution, resolution, channels))
    x = b.conv("Conv2d_0", x, int(32 * alpha), 3, 2)
    for i, (filters, stride) in enumerate(MOBILENET_V1_BLOCKS, start=1):
        x = b.depthwise(f"Conv2d_{i}_depthwise", x, stride)
        x = b.conv(f"Conv2d_{i}_pointwise", x, int(filters * alpha), 1, 1)
    b.head(x, classes, "pool" if head == "slim" else "mean")
    return b.graph(f"MobileNetV1 alpha={alpha:g} resolution={resolution} (spec, {dtype})", inp)


def keras_graph(path: Path) -> ModelGraph:
    """Layer table of a Keras model file, mapped as the TFLite converter would fuse it (imports Keras)."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        import keras
    except ImportError:
        raise ModelError(f"profiling a Keras file ({path}) needs TensorFlow/Keras (pip install "
                         "'edgemnv2[tf]'); profile the converted .tflite instead") from None
    if not Path(path).exists():
        raise ModelError(f"model file {path} does not exist")
    try:
        model = keras.models.load_model(str(path), compile=False, safe_mode=True)
    except Exception as exc:
        raise ModelError(f"{path} is not a loadable Keras model ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    return _walk_keras(model, str(path))


_FUSED = {"BatchNormalization", "ReLU", "Activation", "ZeroPadding2D", "Dropout"}


def _walk_keras(model, source: str) -> ModelGraph:
    """Map Keras layers to converter-style rows: BN, ReLU and padding fold into the preceding op."""
    b = _Builder()
    produced: dict[int, tuple[int, tuple[int, ...]]] = {}  # id(KerasTensor) -> (tensor id, shape)

    def shape_of(t) -> tuple[int, ...]:
        return tuple(1 if d is None else int(d) for d in t.shape)

    def source_of(t) -> tuple[int, tuple[int, ...]]:
        key = id(t)
        if key not in produced:
            produced[key] = (b.tensor(shape_of(t)), shape_of(t))
        return produced[key]

    first_input = source_of(model.inputs[0])[0]
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "InputLayer":
            continue
        ins = layer.input if isinstance(layer.input, list) else [layer.input]
        out = layer.output
        x = [source_of(t) for t in ins]
        if kind in _FUSED:
            if kind == "Activation" and getattr(layer.activation, "__name__", "") == "softmax":
                produced[id(out)] = b.add(layer.name, "softmax", "SOFTMAX", x, shape_of(out))
            else:
                produced[id(out)] = x[0]  # fused into the producer: same tensor (padding folded too)
            continue
        out_shape = shape_of(out)
        if kind == "Conv2D":
            kh, kw = layer.kernel_size
            c = x[0][1][-1]
            n = layer.filters
            y = b.add(layer.name, "pointwise" if (kh, kw) == (1, 1) else "conv", "CONV_2D", x, out_shape,
                      kernel=(kh, kw), stride=tuple(layer.strides), weights=n * kh * kw * c, bias=n, channels=n)
        elif kind == "DepthwiseConv2D":
            kh, kw = layer.kernel_size
            c = out_shape[-1]
            y = b.add(layer.name, "depthwise", "DEPTHWISE_CONV_2D", x, out_shape, kernel=(kh, kw),
                      stride=tuple(layer.strides), weights=kh * kw * c, bias=c, channels=c)
        elif kind == "Dense":
            n = layer.units
            y = b.add(layer.name, "fully_connected", "FULLY_CONNECTED", x, out_shape,
                      weights=x[0][1][-1] * n, bias=n if layer.use_bias else 0, channels=n)
            if getattr(layer.activation, "__name__", "") == "softmax":
                y = b.add(layer.name + "_softmax", "softmax", "SOFTMAX", [y], out_shape)
        elif kind == "Add":
            y = b.add(layer.name, "add", "ADD", x, out_shape)
        elif kind in ("GlobalAveragePooling2D",):
            y = b.add(layer.name, "mean", "MEAN", x, out_shape)
        elif kind in ("AveragePooling2D", "MaxPooling2D"):
            y = b.add(layer.name, "pool", "AVERAGE_POOL_2D" if kind.startswith("Average") else "MAX_POOL_2D",
                      x, out_shape, kernel=tuple(layer.pool_size), stride=tuple(layer.strides))
        elif kind in ("Reshape", "Flatten"):
            y = b.add(layer.name, "reshape", "RESHAPE", x, out_shape)
        elif kind == "Concatenate":
            y = b.add(layer.name, "concat", "CONCATENATION", x, out_shape)
        else:
            y = b.add(layer.name, f"UNKNOWN(keras {kind})", f"KERAS:{kind}", x, out_shape, known=False)
        produced[id(out)] = y
    graph = b.graph(source, first_input)
    return ModelGraph(source=source, source_kind="keras", layers=graph.layers, model_bytes=graph.model_bytes,
                      model_bytes_estimated=True, tensor_bytes=graph.tensor_bytes,
                      graph_inputs=graph.graph_inputs, graph_outputs=graph.graph_outputs)
