"""CustomCNN: a small residual CNN with multi-scale blocks and CBAM/SE attention, built for 48-64 px faces on CPU.

Each block runs parallel 3x3 convolutions with different dilations (1, 2, ...: receptive fields of 3, 5, ... px),
fuses them with a 1x1 convolution, applies channel + spatial attention (CBAM) or channel attention (SE), and adds a
residual shortcut. Stages halve the resolution with max pooling.
"""

from __future__ import annotations

import keras
from keras import layers

from fer_keras.errors import ConfigError
from fer_keras.models.heads import add_heads
from fer_keras.models.layers import ChannelPool, ImagePreprocess
from fer_keras.models.registry import MODELS

# === Layers ===


def _conv_bn_relu(x, filters, kernel, name, dilation=1, relu=True):
    x = layers.Conv2D(filters, kernel, padding="same", dilation_rate=dilation, use_bias=False,
                      kernel_initializer="he_normal", name=f"{name}_conv")(x)
    # momentum 0.9 (not Keras' 0.99): moving statistics settle within a few hundred steps on small datasets.
    x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x) if relu else x


def channel_attention(x, name, ratio=8, use_max=True):
    """SE (avg pool only) or CBAM's channel attention (avg + max pool through one shared MLP)."""
    c = x.shape[-1]
    hidden = max(c // ratio, 4)
    fc1 = layers.Dense(hidden, activation="relu", name=f"{name}_fc1")
    fc2 = layers.Dense(c, name=f"{name}_fc2")
    avg = fc2(fc1(layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_avg")(x)))
    if use_max:
        mx = fc2(fc1(layers.GlobalMaxPooling2D(keepdims=True, name=f"{name}_max")(x)))
        avg = layers.Add(name=f"{name}_add")([avg, mx])
    gate = layers.Activation("sigmoid", name=f"{name}_gate")(avg)
    return layers.Multiply(name=f"{name}_scale")([x, gate])


def spatial_attention(x, name, kernel=7):
    """CBAM's spatial attention: a 7x7 conv over the channel-wise mean and max."""
    s = ChannelPool(name=f"{name}_pool")(x)
    s = layers.Conv2D(1, kernel, padding="same", activation="sigmoid", name=f"{name}_conv")(s)
    return layers.Multiply(name=f"{name}_scale")([x, s])


def multiscale_block(x, filters, dilations, attention, name):
    """Parallel dilated 3x3 branches → 1x1 fusion → attention → residual add → ReLU."""
    branch_filters = max(filters // len(dilations), 8)
    branches = [_conv_bn_relu(x, branch_filters, 3, f"{name}_d{d}", dilation=d) for d in dilations]
    y = layers.Concatenate(name=f"{name}_cat")(branches) if len(branches) > 1 else branches[0]
    y = _conv_bn_relu(y, filters, 3, f"{name}_fuse", relu=False)
    if attention in ("cbam", "se"):
        y = channel_attention(y, f"{name}_ca", use_max=attention == "cbam")
    if attention == "cbam":
        y = spatial_attention(y, f"{name}_sa")
    shortcut = x
    if x.shape[-1] != filters:
        shortcut = _conv_bn_relu(x, filters, 1, f"{name}_proj", relu=False)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.Activation("relu", name=f"{name}_out")(y)


# === Functional Model ===


def custom_cnn_features(inputs, cfg):
    """The CustomCNN trunk: raw 0-255 images → pooled features (shared by CustomCNN and TemporalCNN)."""
    if len(cfg.widths) != len(cfg.blocks):

        raise ConfigError(f"model.widths {cfg.widths} and model.blocks {cfg.blocks} must have the same length")
    x = ImagePreprocess("unit", name="preprocess")(inputs)
    x = _conv_bn_relu(x, cfg.widths[0], 3, "stem1")
    x = _conv_bn_relu(x, cfg.widths[0], 3, "stem2")
    for s, (width, n) in enumerate(zip(cfg.widths, cfg.blocks)):
        x = layers.MaxPooling2D(2, name=f"stage{s}_pool")(x)
        for b in range(n):
            x = multiscale_block(x, width, list(cfg.dilations), cfg.attention, f"stage{s}_block{b}")
    return layers.GlobalAveragePooling2D(name="gap")(x)


@MODELS.register("CustomCNN", default_size=48, cpu_size=48, bf16_on_cpu=True)
def custom_cnn(cfg, num_classes, input_shape):
    """CustomCNN with `cfg.widths` per stage, `cfg.blocks` blocks per stage, `cfg.dilations` branches and
    `cfg.attention` (cbam | se | none). Takes raw 0-255 images, gray or RGB."""
    inputs = keras.Input(input_shape, name="image")
    outputs = add_heads(custom_cnn_features(inputs, cfg), num_classes, cfg.dropout, cfg.head_units)
    return keras.Model(inputs, outputs, name="customcnn_fer")


@MODELS.register("TemporalCNN", default_size=48, cpu_size=48, bf16_on_cpu=False, temporal=True)
def temporal_cnn(cfg, num_classes, input_shape):
    """A clip model: the CustomCNN trunk on every frame (TimeDistributed), a temporal 1-D convolution over the
    frame features, and average pooling over time. Input: (model.frames, H, W, C) raw 0-255 frames."""
    frame_in = keras.Input(input_shape, name="frame")
    encoder = keras.Model(frame_in, custom_cnn_features(frame_in, cfg), name="frame_encoder")
    inputs = keras.Input((cfg.frames,) + tuple(input_shape), name="clip")
    x = layers.TimeDistributed(encoder, name="per_frame")(inputs)
    x = layers.Conv1D(x.shape[-1], 3, padding="same", activation="relu", name="temporal_conv")(x)
    features = layers.GlobalAveragePooling1D(name="temporal_pool")(x)
    outputs = add_heads(features, num_classes, cfg.dropout, cfg.head_units)
    return keras.Model(inputs, outputs, name="temporalcnn_fer")
