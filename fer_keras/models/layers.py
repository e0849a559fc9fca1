"""Custom Keras layers of fer_keras. All are registered serializables, so `.keras` files load without Lambdas."""

from __future__ import annotations

import keras
from keras import ops

# Mean/std of the ImageNet-trained keras.applications backbones (RGB, 0-255 scale).
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)


@keras.saving.register_keras_serializable(package="fer_keras")
class ImagePreprocess(keras.layers.Layer):
    """Turns raw 0-255 images into what a backbone expects, inside the model.

    Args:
        mode: `caffe` (VGG/ResNet: RGB→BGR, ImageNet mean subtracted), `torch` (scale to 0-1, ImageNet mean/std),
            `tf` (scale to [-1, 1]), `unit` (scale to 0-1), `none` (pass through; EfficientNet normalizes itself).
        to_rgb: repeat a single grayscale channel to 3 channels (for ImageNet-style backbones).
    """

    MODES = ("caffe", "torch", "tf", "unit", "none")

    def __init__(self, mode: str = "unit", to_rgb: bool = False, **kwargs):
        kwargs.setdefault("dtype", "float32")  # normalize in float32 even under mixed precision
        super().__init__(**kwargs)
        if mode not in self.MODES:
            raise ValueError(f"unknown preprocessing mode {mode!r}; valid: {self.MODES}")
        self.mode = mode
        self.to_rgb = to_rgb

    def call(self, x):
        x = ops.cast(x, "float32")
        if self.to_rgb and x.shape[-1] == 1:
            x = ops.concatenate([x, x, x], axis=-1)
        if self.mode == "caffe":
            x = x[..., ::-1] - ops.convert_to_tensor(_CAFFE_MEAN_BGR, "float32") if x.shape[-1] == 3 else x - 116.779
        elif self.mode == "torch":
            x = x / 255.0
            if x.shape[-1] == 3:
                x = (x - ops.convert_to_tensor(_TORCH_MEAN)) / ops.convert_to_tensor(_TORCH_STD)
        elif self.mode == "tf":
            x = x / 127.5 - 1.0
        elif self.mode == "unit":
            x = x / 255.0
        return x

    def compute_output_shape(self, input_shape):
        if self.to_rgb and input_shape[-1] == 1:
            return tuple(input_shape[:-1]) + (3,)
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "to_rgb": self.to_rgb}


@keras.saving.register_keras_serializable(package="fer_keras")
class ChannelPool(keras.layers.Layer):
    """Concatenates the channel-wise mean and max of a feature map (the input of CBAM's spatial attention)."""

    def call(self, x):
        return ops.concatenate([ops.mean(x, axis=-1, keepdims=True), ops.max(x, axis=-1, keepdims=True)], axis=-1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (2,)
