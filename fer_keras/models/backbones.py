"""ImageNet backbones from `keras.applications` (VGG, ResNet, EfficientNet(V2), ConvNeXt, MobileNetV3) with the two
task heads; the registered names are the keys of `APPLICATIONS`.

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


# name -> (keras.applications builder, preprocessing mode, default size, CPU config size, bf16 on CPU, note).
# Preprocessing: `caffe` for VGG/ResNet (BGR, ImageNet mean); `none` where the Keras model normalises 0-255 input
# itself (EfficientNet, EfficientNetV2, ConvNeXt, MobileNetV3 with include_preprocessing). `bf16_on_cpu`: measured
# at 64 px on the project's CPU, `python benchmarks/run_all.py --only backbones` (README "Models at 64 px",
# benchmarks/RESULTS.md 1b): bf16 is faster for VGG and ResNet50, within 5% for ResNet101/152 and ConvNeXtTiny, and
# 1.4-2x slower for EfficientNet, EfficientNetV2 and MobileNetV3.
APPLICATIONS = {
    "VGG16": ("VGG16", "caffe", 224, 64, True, "VGG16 (14.7M headless)"),
    "VGG19": ("VGG19", "caffe", 224, 64, True, "VGG19 (20.0M headless)"),
    "ResNet50": ("ResNet50", "caffe", 224, 96, True, "ResNet50 (23.6M headless)"),
    "ResNet101": ("ResNet101", "caffe", 224, 96, True, "ResNet-101 (42.7M headless)"),
    "ResNet152": ("ResNet152", "caffe", 224, 96, True, "ResNet-152 (58.4M headless)"),
    "EfficientNetB0": ("EfficientNetB0", "none", 224, 96, False, "EfficientNetB0 (4.0M headless)"),
    "EfficientNetB1": ("EfficientNetB1", "none", 240, 96, False, "EfficientNetB1 (6.6M headless)"),
    "EfficientNetB2": ("EfficientNetB2", "none", 260, 96, False, "EfficientNetB2 (7.8M headless)"),
    "EfficientNetB3": ("EfficientNetB3", "none", 300, 96, False, "EfficientNetB3 (10.8M headless)"),
    "EfficientNetV2B0": ("EfficientNetV2B0", "none", 224, 96, False, "EfficientNetV2-B0 (5.9M headless)"),
    "ConvNeXtTiny": ("ConvNeXtTiny", "none", 224, 64, True, "ConvNeXt-Tiny (27.8M headless)"),
    "MobileNetV3Small": ("MobileNetV3Small", "none", 224, 64, False, "MobileNetV3-Small (0.9M headless)"),
    "MobileNetV3Large": ("MobileNetV3Large", "none", 224, 64, False, "MobileNetV3-Large (3.0M headless)"),
}


def _register(name: str, app: str, mode: str, default_size: int, cpu_size: int, bf16: bool, note: str):
    def build(cfg, num_classes, input_shape):
        return _application_model(getattr(keras.applications, app), mode, name, cfg, num_classes, input_shape)

    build.__name__ = name.lower()
    build.__doc__ = f"{note} from keras.applications + the two heads; preprocessing `{mode}` inside the model."
    MODELS.register(name, default_size=default_size, cpu_size=cpu_size, bf16_on_cpu=bf16)(build)


for _name, _spec in APPLICATIONS.items():
    _register(_name, *_spec)
