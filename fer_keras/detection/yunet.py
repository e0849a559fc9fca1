"""A Keras port of YuNet (libfacedetection), weights converted from its PyTorch state dict without torch.

Architecture (as `../shared/models/yunet/reference` defines it; written here from that description):
- `ConvDPUnit(in, out)`: 1x1 conv (bias) → 3x3 depthwise conv (bias) → BatchNorm → ReLU (the head's last units
  have no BatchNorm/ReLU).
- backbone: a stride-2 3x3 conv head (16 ch) + `ConvDPUnit(16, 16)`, then five `Conv4layerBlock`s (two
  `ConvDPUnit`s each, 64 ch), 2x2 max pooling after stages 0, 2, 3, 4; stages 3, 4, 5 are the stride-8/16/32 levels.
- neck (TFPN): top-down, each level's `ConvDPUnit` output upsampled (nearest) and added to the level below.
- head, per level: a shared `ConvDPUnit(64, 64)`, then `ConvDPUnit`s to 1 class logit, 4 box values, 1 objectness
  logit and 10 landmark values.
Decoding (anchor-free, one point prior per cell at (col, row) * stride): centre = (col + dx, row + dy) * stride,
size = exp(dw, dh) * stride, landmarks = (col + lx, row + ly) * stride; score = sqrt(sigmoid(cls) *
sigmoid(obj)), as OpenCV's `FaceDetectorYN` computes it. Input: BGR 0-255, no normalisation, padded to a multiple
of 32. The port equals the ONNX model run by OpenCV (tests/test_yunet_port.py states the tolerance).
"""

from __future__ import annotations

import os
import threading
from typing import Dict, List, Tuple

import keras
import numpy as np
from keras import layers

from fer_keras.detection.yunet_lite import OUTPUTS, STRIDES, YuNetOutputs
from fer_keras.errors import ConfigError
from fer_keras.tflite import keras_to_tflite
from fer_keras.io_utils import atomic_write_bytes
from fer_keras.models.torch_port import TorchPortBuilder, convert
from fer_keras.torch_weights import load_state_dict


def _dp_unit(x, b: TorchPortBuilder, cin: int, cout: int, prefix: str, bn_relu: bool = True):
    x = b.conv(x, cout, 1, 1, f"{prefix}.conv1", bias=True)
    x = b.conv(x, cout, 3, 1, f"{prefix}.conv2", depthwise=True, bias=True)
    if bn_relu:
        x = b.bn(x, f"{prefix}.bn")
        x = layers.ReLU(name=b._name(prefix) + "_relu")(x)
    return x


def build_yunet(input_shape=(None, None, 3), channels: int = 64) -> Tuple[keras.Model, List[Tuple[str, str, str]]]:
    """The YuNet-n network (BGR 0-255 in, any size that is a multiple of 32) with raw outputs per level:
    `cls_8`, `obj_8`, `bbox_8`, `kps_8`, ... (logits for cls/obj).

    Returns:
        (model, conversion): `conversion` maps Keras layers to the PyTorch state-dict prefixes (`load_yunet`).
    """
    b = TorchPortBuilder(bn_eps=1e-5)
    inputs = keras.Input(input_shape, name="image")
    x = b.conv(inputs, 16, 3, 2, "backbone.model0.conv1", bias=True)
    x = layers.ReLU(name="backbone_model0_relu1")(b.bn(x, "backbone.model0.bn1"))
    x = _dp_unit(x, b, 16, 16, "backbone.model0.conv2")
    x = layers.MaxPooling2D(2, name="pool0")(x)
    feats = []
    cin = 16
    for i in range(1, 6):
        x = _dp_unit(x, b, cin, cin, f"backbone.model{i}.conv1")
        x = _dp_unit(x, b, cin, channels, f"backbone.model{i}.conv2")
        cin = channels
        if i >= 3:
            feats.append(x)
        if i in (2, 3, 4):
            x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
    for i in range(len(feats) - 1, 0, -1):  # TFPN, top-down
        feats[i] = _dp_unit(feats[i], b, channels, channels, f"neck.lateral_convs.{i}")
        up = layers.UpSampling2D(2, interpolation="nearest", name=f"neck_up{i}")(feats[i])
        feats[i - 1] = layers.Add(name=f"neck_add{i - 1}")([feats[i - 1], up])
    feats[0] = _dp_unit(feats[0], b, channels, channels, "neck.lateral_convs.0")
    outputs = {}
    for i, (f, stride) in enumerate(zip(feats, STRIDES)):
        h = _dp_unit(f, b, channels, channels, f"bbox_head.multi_level_share_convs.{i}.0")
        for name, n in (("cls", 1), ("bbox", 4), ("obj", 1), ("kps", 10)):
            y = _dp_unit(h, b, channels, n, f"bbox_head.multi_level_{name}.{i}", bn_relu=False)
            outputs[f"{name}_{stride}"] = layers.Identity(name=f"{name}_{stride}")(y)
    return keras.Model(inputs, outputs, name="yunet"), b.conversion


def load_yunet(path: str, input_shape=(None, None, 3)) -> keras.Model:
    """YuNet with the weights of a PyTorch `yunet_n.pth` state dict (read without torch)."""
    model, conversion = build_yunet(input_shape)
    convert(load_state_dict(path), model, conversion, path)
    return model


def inference_model(model):
    """The per-level outputs (`cls_8`, `obj_8`, `bbox_8`, `kps_8`, ...) of a YuNet, training model or not, as
    `decode` reads them."""
    names = [f"{n}_{s}" for s in STRIDES for n in OUTPUTS]
    return keras.Model(model.input, {n: model.get_layer(n).output for n in names}, name="yunet")


def load_trained(path: str):
    """A YuNet saved by a detection run (`model.keras`) or a PyTorch state dict (`.pth`), as the inference model."""
    if path.endswith(".pth"):
        return load_yunet(path)
    try:
        return inference_model(keras.saving.load_model(path, compile=False))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: cannot load the YuNet model ({str(e).splitlines()[0]})") from None


class KerasYuNetDetector(YuNetOutputs):
    """YuNet as a Keras model (the port above), behind the detectors' interface; the trainable path to a low-light
    YuNet. Same pre-processing as `YuNetDetector`: photos under `upscale_to` px are upscaled, over `max_side`
    downscaled, and padded to a multiple of 32 (`YuNetOutputs`)."""

    def __init__(self, weights, min_score: float = 0.5, nms_threshold: float = 0.3, max_side: int = 1280,
                 upscale_to: int = 640, top_k: int = 750):
        """`weights`: a PyTorch state dict (`yunet_n.pth`), a YuNet saved by a detection run (`.keras`), or a
        YuNet Keras model (its weights are used as they are when called, e.g. during training)."""
        import tensorflow as tf

        if isinstance(weights, str):
            if not os.path.isfile(weights):
                raise ConfigError(f"{weights}: YuNet weights not found")
            self.model = load_trained(weights)
        else:
            self.model = inference_model(weights)
        self.min_score, self.nms_threshold, self.max_side, self.upscale_to, self.top_k = \
            min_score, nms_threshold, max_side, upscale_to, top_k
        self._fn = tf.function(lambda x: self.model(x, training=False), reduce_retracing=True)
        self._lock = threading.Lock()

    def raw_outputs(self, padded: np.ndarray) -> Dict[str, np.ndarray]:
        with self._lock:
            return {k: np.asarray(v)[0] for k, v in self._fn(padded[None]).items()}


def export_tflite(model, path: str, weights: str = "float32") -> str:
    """Writes a YuNet (`inference_model`) as a TFLite file for `yunet_lite.LiteRTYuNetDetector`: BGR 0-255 images
    of any size (multiples of 32), the per-level outputs named as `decode` reads them.

    Args:
        weights: `float32`, `float16` (weights stored in half precision) or `int8` (dynamic-range quantised weights;
            activations stay float).
    """
    import tensorflow as tf

    if weights not in ("float32", "float16", "int8"):
        raise ConfigError(f"YuNet TFLite weights {weights!r}: expected float32, float16 or int8")
    data = keras_to_tflite(model, lambda images: model(images, training=False),
                           [tf.TensorSpec((1, None, None, 3), tf.float32, name="images")], path,
                           "dynamic" if weights == "int8" else weights)
    atomic_write_bytes(path, data)
    return path
