"""Keras ports of PyTorch networks: layers named after the PyTorch key prefixes, and the weight conversion.

A builder records, for every layer it makes, `(keras layer name, torch key prefix, kind)`; `convert` then copies a
state dict (read by `fer_keras.torch_weights`, no torch needed) into the model by that list, transposing kernels
from PyTorch's (out, in, kh, kw) to Keras' (kh, kw, in, out) layout. PyTorch pads a stride-2 convolution by k//2 on
every side; Keras' `same` pads asymmetrically, so strided convolutions get an explicit `ZeroPadding2D` and `valid`
padding and the port computes what the original does.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import keras
import numpy as np
from keras import layers

from fer_keras.errors import ModelError


class TorchPortBuilder:
    """Builds layers named after PyTorch key prefixes and records the mapping for the weight conversion."""

    def __init__(self, bn_eps: float):
        self.bn_eps = bn_eps
        self.conversion: List[Tuple[str, str, str]] = []  # (keras layer name, torch prefix, kind)

    @staticmethod
    def _name(prefix: str) -> str:
        return prefix.replace(".", "_").strip("_")

    def conv(self, x, filters, kernel, stride, prefix, depthwise=False, bias=False):
        pad = kernel // 2
        if stride > 1 and pad:
            x = layers.ZeroPadding2D(pad, name=self._name(prefix) + "_pad")(x)
            padding = "valid"
        else:
            padding = "same"
        name = self._name(prefix)
        if depthwise:
            x = layers.DepthwiseConv2D(kernel, stride, padding=padding, use_bias=bias, name=name)(x)
        else:
            x = layers.Conv2D(filters, kernel, stride, padding=padding, use_bias=bias, name=name)(x)
        self.conversion.append((name, prefix, ("depthwise" if depthwise else "conv") + ("+bias" if bias else "")))
        return x

    def bn(self, x, prefix):
        name = self._name(prefix)
        x = layers.BatchNormalization(epsilon=self.bn_eps, momentum=0.9, name=name)(x)
        self.conversion.append((name, prefix, "bn"))
        return x

    def conv_bn(self, x, filters, kernel, stride, conv_prefix, bn_prefix, relu=True, depthwise=False):
        x = self.bn(self.conv(x, filters, kernel, stride, conv_prefix, depthwise), bn_prefix)
        return layers.ReLU(6.0, name=self._name(bn_prefix) + "_relu6")(x) if relu else x

    def dense(self, x, units, prefix):
        name = self._name(prefix)
        x = layers.Dense(units, name=name)(x)
        self.conversion.append((name, prefix, "dense"))
        return x



def convert(state: Dict[str, np.ndarray], model: keras.Model, conversion, source: str = "weights") -> int:
    """Copies a PyTorch state dict into `model` by the `conversion` map; returns the number of layers set.

    Raises:
        ModelError: a key is missing or a shape differs (the file is not this architecture's).
    """
    suffixes = {"conv": ["weight"], "depthwise": ["weight"], "dense": ["weight", "bias"],
                "bn": ["weight", "bias", "running_mean", "running_var"]}
    for layer_name, prefix, kind in conversion:
        kind, _, bias = kind.partition("+")
        try:
            ws = [state[f"{prefix}.{s}"] for s in suffixes[kind] + (["bias"] if bias else [])]
        except KeyError as e:
            raise ModelError(f"{source}: no tensor {e.args[0]!r} (not a {model.name} weight file)") from None
        if kind == "conv":
            ws = [ws[0].transpose(2, 3, 1, 0), *ws[1:]]
        elif kind == "depthwise":
            ws = [ws[0].transpose(2, 3, 0, 1), *ws[1:]]
        elif kind == "dense":
            ws = [ws[0].T, ws[1]]
        layer = model.get_layer(layer_name)
        expected = [tuple(w.shape) for w in layer.get_weights()]
        if [tuple(w.shape) for w in ws] != expected:
            raise ModelError(f"{source}: {prefix} has shapes {[w.shape for w in ws]}, the {model.name} layer "
                             f"needs {expected}")
        layer.set_weights([w.astype(np.float32) for w in ws])
    return len(conversion)
