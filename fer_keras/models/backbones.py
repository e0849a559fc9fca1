"""ImageNet backbones from `keras.applications` (VGG16, ResNet50, EfficientNetB0) with the two task heads.

`weights`: `imagenet` downloads Keras' ImageNet weights (needs the network), `none` starts from random weights,
and a path loads a local `.h5` / `.weights.h5` file of the *headless* backbone. Each backbone's own
`preprocess_input` is done inside the model by `ImagePreprocess`, so every model takes raw 0-255 images, and a
single grayscale channel is repeated to RGB.
"""

from __future__ import annotations

import os

import keras
from keras import layers

from fer_keras.errors import ModelError
from fer_keras.models.heads import add_heads
from fer_keras.models.layers import ImagePreprocess
from fer_keras.models.registry import MODELS


def _resolve_weights(weights):
    w = None if weights is None else str(weights)
    if w is None or w.lower() in ("none", "null", "random", ""):
        return None, None
    if w.lower() == "imagenet":
        return "imagenet", None
    if not os.path.isfile(w):
        raise ModelError(f"weights file not found: {w} (use model.weights=imagenet|none|<path to .h5>)")
    return None, w


def set_backbone_trainable(backbone: keras.Model, freeze: bool, fine_tune_last: int) -> None:
    """Freezes the backbone, optionally unfreezing its last `fine_tune_last` layers (BatchNorm stays frozen,
    as in Keras' transfer-learning guide, so small fine-tuning batches do not wreck its statistics)."""
    backbone.trainable = True
    for layer in backbone.layers:
        layer.trainable = not freeze
    if not freeze:
        return
    if fine_tune_last > 0:
        for layer in backbone.layers[-fine_tune_last:]:
            if not isinstance(layer, layers.BatchNormalization):
                layer.trainable = True


def _application_model(app_fn, preprocess_mode: str, model_name: str, cfg, num_classes, input_shape):
    h, w, c = input_shape
    if min(h, w) < 32:
        raise ModelError(f"{model_name} needs images of at least 32x32, got {h}x{w} (set data.image_size)")
    weights, local = _resolve_weights(cfg.weights)
    inputs = keras.Input(input_shape, name="image")
    x = ImagePreprocess(preprocess_mode, to_rgb=True, name="preprocess")(inputs)
    try:
        backbone = app_fn(include_top=False, weights=weights, input_shape=(h, w, 3), pooling="avg")
    except Exception as e:  # download failures, incompatible shapes for ImageNet weights
        raise ModelError(f"cannot build {model_name} backbone with weights={cfg.weights}: {e}") from None
    if local:
        try:
            backbone.load_weights(local)
        except Exception as e:
            raise ModelError(f"{local}: cannot load as {model_name} backbone weights ({str(e).splitlines()[0]})"
                             ) from None
    set_backbone_trainable(backbone, cfg.freeze_backbone, cfg.fine_tune_last)
    # A frozen backbone runs BatchNorm in inference mode, even while the heads train.
    features = backbone(x, training=False) if cfg.freeze_backbone else backbone(x)
    outputs = add_heads(features, num_classes, cfg.dropout, cfg.head_units)
    return keras.Model(inputs, outputs, name=f"{model_name.lower()}_fer")


@MODELS.register("VGG16", default_size=224, cpu_size=64, bf16_on_cpu=True)
def vgg16(cfg, num_classes, input_shape):
    """VGG16 (138M with its top; 14.7M headless) + heads. Caffe-style preprocessing."""
    return _application_model(keras.applications.VGG16, "caffe", "VGG16", cfg, num_classes, input_shape)


@MODELS.register("ResNet50", default_size=224, cpu_size=96, bf16_on_cpu=True)
def resnet50(cfg, num_classes, input_shape):
    """ResNet50 (23.6M headless) + heads. Caffe-style preprocessing."""
    return _application_model(keras.applications.ResNet50, "caffe", "ResNet50", cfg, num_classes, input_shape)


@MODELS.register("EfficientNetB0", default_size=224, cpu_size=96, bf16_on_cpu=False)
def efficientnet_b0(cfg, num_classes, input_shape):
    """EfficientNetB0 (4.0M headless) + heads. The Keras model rescales/normalizes 0-255 input itself."""
    return _application_model(keras.applications.EfficientNetB0, "none", "EfficientNetB0", cfg, num_classes,
                              input_shape)
