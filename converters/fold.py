"""Batch-norm folding inside a Keras model, keeping its architecture and its float outputs.

Equalization and bias correction work on each convolution's effective weights W and bias b (batch norm
folded in). Rather than rebuilding the graph without BatchNormalization layers, the fold happens in
place: the kernel becomes W and the BatchNormalization layer becomes "add b" (gamma = sqrt(1 + eps),
mean 0, variance 1, beta = b). The TFLite converter folds that BN back into the convolution, so the
converted model sees exactly W and b, and every layer name (and so every TFLite tensor name) is kept.

A `Unit` is one convolution (Conv2D, DepthwiseConv2D or Dense) with its optional BatchNormalization and
the activation after it (ReLU6 / ReLU / none), plus the layers that consume its output.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

CONV_TYPES = ("Conv2D", "DepthwiseConv2D", "Dense")
PASS_THROUGH = ("ZeroPadding2D",)  # layers between an activation and the next conv that keep channels


@dataclasses.dataclass
class Unit:
    """conv → [BN] → [ReLU(max_value)] with its folded weights readable and writable."""

    conv: Any
    bn: Any | None
    activation: Any | None  # a keras ReLU layer, or None for a linear output
    consumers: list[str]  # layer names reading the unit's output (after pass-through layers)

    @property
    def name(self) -> str:
        return self.conv.name

    @property
    def kind(self) -> str:
        return type(self.conv).__name__

    @property
    def clip(self) -> float | None:
        """The activation's upper bound (6 for ReLU6), None when unbounded or linear."""
        if self.activation is None or self.activation.max_value is None:
            return None
        return float(self.activation.max_value)

    @property
    def relu(self) -> bool:
        return self.activation is not None

    @property
    def kernel(self) -> np.ndarray:
        """Folded kernel; the output channel is the last axis (depthwise: axis 2, multiplier 1)."""
        return np.asarray(self.conv.kernel.numpy())

    @property
    def bias(self) -> np.ndarray:
        if self.bn is not None:
            return np.asarray(self.bn.beta.numpy())
        return np.asarray(self.conv.bias.numpy())

    def out_channel_kernel(self) -> np.ndarray:
        """Kernel as (..., out_channels) whatever the layer type (depthwise multiplier must be 1)."""
        k = self.kernel
        return k[..., 0] if self.kind == "DepthwiseConv2D" else k

    def set(self, kernel: np.ndarray, bias: np.ndarray) -> None:
        """Write folded weights back (kernel in the layer's own layout)."""
        self.conv.kernel.assign(kernel.astype(np.float32))
        if self.bn is not None:
            self.bn.beta.assign(bias.astype(np.float32))
        else:
            self.conv.bias.assign(bias.astype(np.float32))


def inbound_layer_names(layer_config: dict) -> list[str]:
    """Names of the layers a functional-model layer config reads from."""
    names: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            history = value.get("config", {}).get("keras_history") if value.get("class_name") == "__keras_tensor__" else None
            if history:
                names.append(history[0])
            for v in value.values():
                walk(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v)

    walk(layer_config.get("inbound_nodes", []))
    return names


def consumers_map(model: Any) -> dict[str, list[str]]:
    """layer name -> names of the layers that read its output."""
    readers: dict[str, list[str]] = {layer.name: [] for layer in model.layers}
    for config in model.get_config()["layers"]:
        for source in inbound_layer_names(config):
            readers.setdefault(source, []).append(config["name"])
    return readers


def functional(model: Any) -> Any:
    """`model` as a functional model over the same layers.

    Why: the transforms walk a functional config (each layer's inbound nodes); a Sequential model's config
    lists its layers without them, so its convolutions would look unconnected.
    """
    import keras

    if not isinstance(model, keras.Sequential):
        return model
    try:
        return keras.Model(model.inputs, model.outputs, name=model.name)
    except (AttributeError, ValueError) as exc:  # a Sequential model never built has no inputs
        raise ValueError(f"the Sequential model {model.name} has no defined input to rebuild it from") from exc


def fold_batch_norm(model: Any) -> tuple[Any, list[Unit]]:
    """A copy of `model` with every conv→BN pair folded (float outputs unchanged) and its units."""
    import keras

    model = functional(model)
    folded = keras.models.clone_model(model)
    folded.set_weights(model.get_weights())
    readers = consumers_map(folded)
    layers = {layer.name: layer for layer in folded.layers}
    units = []
    for layer in folded.layers:
        if type(layer).__name__ not in CONV_TYPES:
            continue
        if type(layer).__name__ == "DepthwiseConv2D" and layer.kernel.shape[-1] != 1:
            continue  # depth multiplier > 1 is not a per-channel op; leave it alone
        fused = getattr(layer, "activation", None)
        if fused not in (None, keras.activations.linear) and not (
                type(layer).__name__ == "Dense" and fused is keras.activations.softmax):
            continue  # a fused non-linearity inside the conv (a classifier's softmax comes after the bias: fine)
        bn = activation = None
        tail = layer.name
        nxt = readers.get(tail, [])
        if len(nxt) == 1 and type(layers[nxt[0]]).__name__ == "BatchNormalization":
            bn = layers[nxt[0]]
            _fold_one(layer, bn)
            tail = bn.name
            nxt = readers.get(tail, [])
        elif not layer.use_bias:
            continue  # no bias to correct and nowhere to put one
        if len(nxt) == 1 and type(layers[nxt[0]]).__name__ == "ReLU" and not layers[nxt[0]].negative_slope \
                and not layers[nxt[0]].threshold:
            activation = layers[nxt[0]]
            tail = activation.name
            nxt = readers.get(tail, [])
        while len(nxt) == 1 and type(layers[nxt[0]]).__name__ in PASS_THROUGH:
            nxt = readers.get(nxt[0], [])
        units.append(Unit(conv=layer, bn=bn, activation=activation, consumers=list(nxt)))
    return folded, units


def _fold_one(conv: Any, bn: Any) -> None:
    """W *= gamma / sqrt(var + eps); b = beta - mean * gamma / sqrt(var + eps) (+ conv bias); BN → add b."""
    if not (bn.scale and bn.center):
        raise ValueError(f"{bn.name}: folding needs a BatchNormalization with scale and center")
    gamma = bn.gamma.numpy() if bn.scale else np.ones(bn.moving_mean.shape, np.float32)
    beta = bn.beta.numpy() if bn.center else np.zeros(bn.moving_mean.shape, np.float32)
    factor = gamma.astype(np.float64) / np.sqrt(bn.moving_variance.numpy().astype(np.float64) + bn.epsilon)
    bias = beta - bn.moving_mean.numpy() * factor
    if getattr(conv, "use_bias", False):
        bias = bias + conv.bias.numpy() * factor
        conv.bias.assign(np.zeros_like(conv.bias.numpy()))
    kernel = conv.kernel.numpy()
    if type(conv).__name__ == "DepthwiseConv2D":
        kernel = kernel * factor.reshape(1, 1, -1, 1)
    else:
        kernel = kernel * factor
    conv.kernel.assign(kernel.astype(np.float32))
    bn.gamma.assign(np.full_like(gamma, np.sqrt(np.float32(1.0) + np.float32(bn.epsilon)), dtype=np.float32))
    bn.moving_mean.assign(np.zeros_like(gamma, dtype=np.float32))
    bn.moving_variance.assign(np.ones_like(gamma, dtype=np.float32))
    bn.beta.assign(bias.astype(np.float32))
