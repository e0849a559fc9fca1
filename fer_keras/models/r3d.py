"""R3D: a 3-D residual clip model (Tran et al. 2018, "A Closer Look at Spatiotemporal Convolutions"), the video
baseline of the DFEW paper (R3D-18 on 16-frame clips), with the two task heads.

R3D-18 is `model.blocks=[2, 2, 2, 2]` with `model.widths=[64, 128, 256, 512]`; on a 2-core CPU use the small
widths of configs/dfew_r3d.yaml. Every convolution is 3-D: a (3, 7, 7) stem with spatial stride 2, then stages of
basic blocks (two 3x3x3 convolutions and a shortcut), each later stage halving time and space.
"""

from __future__ import annotations

import keras
from keras import layers

from fer_keras.errors import ConfigError
from fer_keras.models.heads import add_heads
from fer_keras.models.layers import ImagePreprocess
from fer_keras.models.registry import MODELS


def _conv3d_bn(x, filters, kernel, strides, name, relu=True):
    x = layers.Conv3D(filters, kernel, strides=strides, padding="same", use_bias=False,
                      kernel_initializer="he_normal", name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x) if relu else x


def basic_block_3d(x, filters, strides, name):
    """Two 3x3x3 convolutions + shortcut (a 1x1x1 projection when the shape changes) → ReLU."""
    y = _conv3d_bn(x, filters, 3, strides, f"{name}_a")
    y = _conv3d_bn(y, filters, 3, 1, f"{name}_b", relu=False)
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = _conv3d_bn(x, filters, 1, strides, f"{name}_proj", relu=False)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.Activation("relu", name=f"{name}_out")(y)


@MODELS.register("R3D", default_size=112, cpu_size=48, bf16_on_cpu=False, temporal=True)
def r3d(cfg, num_classes, input_shape):
    """R3D with `cfg.widths` per stage and `cfg.blocks` basic blocks per stage. Input: (model.frames, H, W, C) raw
    0-255 frames; time is halved by every stage after the first (stride 2), as in R3D-18."""
    if len(cfg.widths) != len(cfg.blocks):

        raise ConfigError(f"model.widths {cfg.widths} and model.blocks {cfg.blocks} must have the same length")
    inputs = keras.Input((cfg.frames,) + tuple(input_shape), name="clip")
    x = ImagePreprocess("unit", name="preprocess")(inputs)
    x = _conv3d_bn(x, cfg.widths[0], (3, 7, 7), (1, 2, 2), "stem")
    for s, (width, n) in enumerate(zip(cfg.widths, cfg.blocks)):
        for b in range(n):
            x = basic_block_3d(x, width, 2 if (s > 0 and b == 0) else 1, f"stage{s}_block{b}")
    features = layers.GlobalAveragePooling3D(name="gap")(x)
    outputs = add_heads(features, num_classes, cfg.dropout, cfg.head_units)
    return keras.Model(inputs, outputs, name="r3d_fer")
