"""Batch-level image augmentation for `tf.data` (and usable eagerly).

Geometric and photometric transforms use Keras preprocessing layers (they run inside `tf.data` on the TensorFlow
backend); blur, histogram equalization, CLAHE, low-light gamma and random erasing are small TF functions here.
All functions take and return float32 batches in 0..255 of shape (B, H, W, C).
"""

from __future__ import annotations

from typing import Callable, Optional

import cv2
import keras
import numpy as np
import tensorflow as tf

from fer_keras.keras_compat import StatelessSeedStream

F32 = "float32"


EPOCH_SEED_STRIDE = 1_000_003  # a prime: (seed, epoch) pairs of different seeds never share an epoch seed


def epoch_seed(seed, epoch):
    """The seed of one epoch of a run: everything random in that epoch (shuffle, augmentation, dropout) is keyed
    by it, so an epoch is the same whether or not the run was interrupted and resumed before it. Works on Python
    ints, NumPy and int64 tensors alike."""
    return seed * EPOCH_SEED_STRIDE + epoch


def _per_sample_mask(batch: tf.Tensor, prob: float, seed) -> tf.Tensor:
    b = tf.shape(batch)[0]
    u = tf.random.stateless_uniform([b], seed=seed) if seed is not None else tf.random.uniform([b])
    return tf.reshape(u < prob, [-1, 1, 1, 1])


def gaussian_blur(images: tf.Tensor, sigma: float = 0.8) -> tf.Tensor:
    """3x3 Gaussian blur of every image (depthwise conv, edges replicated)."""
    k = np.exp(-(np.arange(3) - 1) ** 2 / (2 * sigma ** 2))
    k2 = np.outer(k, k) / np.outer(k, k).sum()
    c = images.shape[-1]
    kernel = tf.constant(np.tile(k2[:, :, None, None], (1, 1, c, 1)), tf.float32)
    padded = tf.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
    return tf.nn.depthwise_conv2d(padded, kernel, [1, 1, 1, 1], "VALID")


def equalize(images: tf.Tensor) -> tf.Tensor:
    """Global histogram equalization per image and channel (values 0..255, float32 in and out)."""

    def eq_channel(ch):  # ch: (H, W) float32
        v = tf.cast(tf.clip_by_value(tf.round(ch), 0, 255), tf.int32)
        hist = tf.math.bincount(tf.reshape(v, [-1]), minlength=256, maxlength=256)
        cdf = tf.cast(tf.cumsum(hist), tf.float32)
        cdf_min = tf.reduce_min(tf.boolean_mask(cdf, cdf > 0))
        total = cdf[-1]
        lut = tf.where(total > cdf_min, (cdf - cdf_min) / tf.maximum(total - cdf_min, 1.0) * 255.0,
                       tf.range(256, dtype=tf.float32))
        return tf.gather(lut, v)

    def eq_image(img):  # (H, W, C)
        chans = tf.unstack(img, axis=-1, num=img.shape[-1])
        return tf.stack([eq_channel(c) for c in chans], axis=-1)

    return tf.map_fn(eq_image, images, fn_output_signature=tf.float32)


def clahe(images: tf.Tensor, clip_limit: float = 2.0, tiles: int = 4) -> tf.Tensor:
    """CLAHE through OpenCV (numpy_function): contrast-limited adaptive equalization per image and channel."""

    def _np(batch):
        op = cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=(tiles, tiles))
        out = np.empty_like(batch)
        u8 = np.clip(batch, 0, 255).astype(np.uint8)
        for i in range(batch.shape[0]):
            for c in range(batch.shape[-1]):
                out[i, :, :, c] = op.apply(u8[i, :, :, c])
        return out

    out = tf.numpy_function(_np, [images], tf.float32)
    return tf.ensure_shape(out, images.shape)


def low_light(images: tf.Tensor, max_gamma: float, seed=None) -> tf.Tensor:
    """Darkens each image with a random gamma in [1, max_gamma] (out = 255 * (x/255) ** gamma)."""
    b = tf.shape(images)[0]
    u = tf.random.stateless_uniform([b, 1, 1, 1], seed=seed) if seed is not None else tf.random.uniform([b, 1, 1, 1])
    gamma = 1.0 + u * (max_gamma - 1.0)
    return 255.0 * tf.pow(tf.clip_by_value(images / 255.0, 0.0, 1.0), gamma)


def random_erasing(images: tf.Tensor, seed=None, max_frac: float = 0.33) -> tf.Tensor:
    """Fills one random rectangle per image (side up to `max_frac` of the image) with its mean value."""
    shape = tf.shape(images)
    b, h, w = shape[0], shape[1], shape[2]
    r = tf.random.stateless_uniform([b, 4], seed=seed) if seed is not None else tf.random.uniform([b, 4])
    hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
    eh, ew = r[:, 0] * max_frac * hf + 1, r[:, 1] * max_frac * wf + 1
    y0, x0 = r[:, 2] * (hf - eh), r[:, 3] * (wf - ew)
    ys = tf.cast(tf.range(h), tf.float32)[None, :, None]
    xs = tf.cast(tf.range(w), tf.float32)[None, None, :]
    inside = ((ys >= y0[:, None, None]) & (ys < (y0 + eh)[:, None, None]) &
              (xs >= x0[:, None, None]) & (xs < (x0 + ew)[:, None, None]))[..., None]
    mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
    return tf.where(inside, mean, images)


def to_gray(images: tf.Tensor) -> tf.Tensor:
    """ITU-R 601 luma of every image, repeated in each channel (a 1-channel batch is returned unchanged)."""
    if images.shape[-1] != 3:
        return images
    luma = tf.tensordot(images, tf.constant([0.299, 0.587, 0.114], tf.float32), axes=[[3], [0]])[..., None]
    return tf.tile(luma, [1, 1, 1, 3])


def low_resolution(images: tf.Tensor, min_side: int, seed=None) -> tf.Tensor:
    """An area downscale of the batch to a random side in [min_side, side] and a bilinear upscale back: the
    detail of a small or distant face (one random side per call, so the batch keeps one shape)."""
    h, w = images.shape[1], images.shape[2]
    lo = min(int(min_side), int(h))
    u = tf.random.stateless_uniform([], seed=seed) if seed is not None else tf.random.uniform([])
    side = tf.cast(tf.round(lo + u * (h - lo)), tf.int32)
    small = tf.image.resize(images, tf.stack([side, tf.cast(tf.round(tf.cast(side, tf.float32) * w / h), tf.int32)]),
                            method="area")
    return tf.image.resize(small, [h, w], method="bilinear")


def jpeg(images: tf.Tensor, min_quality: int, seed=None) -> tf.Tensor:
    """JPEG-compresses every image at one random quality in [min_quality, 95] (TensorFlow's encoder)."""
    u = tf.random.stateless_uniform([], seed=seed) if seed is not None else tf.random.uniform([])
    quality = tf.cast(tf.round(min_quality + u * (95 - min_quality)), tf.int32)

    def one(img):
        u8 = tf.cast(tf.clip_by_value(tf.round(img), 0, 255), tf.uint8)
        return tf.cast(tf.reshape(tf.image.adjust_jpeg_quality(u8, quality), tf.shape(img)), tf.float32)

    return tf.map_fn(one, images, fn_output_signature=tf.float32)


def build_augmenter(aug, seed: int = 0) -> Optional[Callable[[tf.Tensor, tf.Tensor], tf.Tensor]]:
    """Returns `f(batch, seeds) -> batch` implementing `AugmentConfig`, or None when everything is off.

    All randomness derives from `seed` and the per-call `seeds`, never from hidden state that a restart would lose.
    """
    # float32 whatever the global (mixed) precision policy: augmentation is input processing, and bf16 would round
    # interpolated pixels and break the float32 custom ops below.
    layers = []
    if aug.flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed, dtype=F32))
    if aug.rotation > 0:
        layers.append(keras.layers.RandomRotation(aug.rotation / 360.0, fill_mode="reflect", seed=seed + 1, dtype=F32))
    if aug.zoom > 0:
        layers.append(keras.layers.RandomZoom(aug.zoom, fill_mode="reflect", seed=seed + 2, dtype=F32))
    if aug.translate > 0:
        layers.append(keras.layers.RandomTranslation(aug.translate, aug.translate, fill_mode="reflect",
                                                     seed=seed + 3, dtype=F32))
    if aug.brightness > 0:
        layers.append(keras.layers.RandomBrightness(aug.brightness, value_range=(0, 255), seed=seed + 4, dtype=F32))
    if aug.contrast > 0:
        layers.append(keras.layers.RandomContrast(aug.contrast, value_range=(0, 255), seed=seed + 5, dtype=F32))
    customs = [(aug.blur_prob, lambda x, s: gaussian_blur(x)), (aug.equalize_prob, lambda x, s: equalize(x)),
               (aug.clahe_prob, lambda x, s: clahe(x)),
               (aug.low_light_prob, lambda x, s: low_light(x, aug.low_light_gamma, s)),
               (aug.erasing_prob, lambda x, s: random_erasing(x, s)),
               (aug.gray_prob, lambda x, s: to_gray(x)),
               (aug.low_res_prob, lambda x, s: low_resolution(x, aug.low_res_min, s)),
               (aug.jpeg_prob, lambda x, s: jpeg(x, aug.jpeg_quality_min, s))]
    customs = [(p, f) for p, f in customs if p > 0]
    if not layers and not customs:
        return None

    def augment(batch: tf.Tensor, seeds: tf.Tensor) -> tf.Tensor:
        """`seeds`: int64 [2], e.g. (epoch-mixed seed, batch index): the same seeds give the same augmentation,
        so a resumed run sees exactly the batches an uninterrupted run would have seen, also when `tf.data` runs
        several calls in parallel (all draws are stateless)."""
        seeds = tf.cast(seeds, tf.int64)
        x = tf.cast(batch, tf.float32)
        for i, layer in enumerate(layers):
            draws = StatelessSeedStream(tf.stack([seeds[0] * 7919 + seed + i, seeds[1]]))
            transform = layer.get_random_transformation(x, training=True, seed=draws)
            x = layer.transform_images(x, transform, training=True)
        for i, (p, f) in enumerate(customs):
            s_apply = tf.stack([seeds[0] * 7919 + seed + 100 + i, seeds[1]])
            s_op = tf.stack([seeds[0] * 7919 + seed + 200 + i, seeds[1]])
            x = tf.where(_per_sample_mask(x, p, s_apply), f(x, s_op), x)
        return tf.clip_by_value(x, 0.0, 255.0)

    return augment
