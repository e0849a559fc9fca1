"""Image files: which extensions are images, a cheap header check, and the one decode + crop + resize that every
training, evaluation and preparation path uses (so a crop is the same whichever path made it).
"""

from __future__ import annotations

import functools
import os
from typing import Optional


import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from fer_keras.limits import MAX_IMAGE_PIXELS

# What tf.io.decode_image reads: the files the data readers list for training and evaluation.
TF_IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
# What predict and the face detectors read with OpenCV: also WebP and TIFF.
IMAGE_EXTS = TF_IMAGE_EXTS + (".webp", ".tif", ".tiff")

_FORMATS = ("JPEG", "PNG", "BMP", "GIF", "MPO")  # what tf.io.decode_image reads (MPO: multi-picture JPEG)


def check_header(path: str, min_side: int = 8, max_pixels: int = MAX_IMAGE_PIXELS, box=None) -> Optional[str]:
    """Cheap check from the file header (no decoding): the file exists, is a JPEG/PNG/BMP/GIF, its size is within
    [min_side, max_pixels] (a guard against 1x1 placeholders and decompression bombs), and a face box, if any,
    mostly lies inside it. Returns the problem, or None."""
    try:
        if os.path.getsize(path) == 0:
            return "empty file (0 bytes)"
        Image.MAX_IMAGE_PIXELS = None  # we apply our own limit below, with a clearer message
        with Image.open(path) as im:
            fmt, (w, h) = im.format, im.size
    except FileNotFoundError:
        return "file not found"
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return "not a JPEG/PNG/BMP/GIF image"
    if fmt not in _FORMATS:
        return f"unsupported image format {fmt} (use JPEG, PNG, BMP or GIF)"
    if min(w, h) < min_side:
        return f"image is {w}x{h}, smaller than {min_side} px on a side"
    if w * h > max_pixels:
        return f"image is {w}x{h} ({w * h / 1e6:.0f} MP), over data.max_image_pixels={max_pixels}"
    if box is not None and not np.any(np.isnan(box)):
        x, y, bw, bh = [float(v) for v in box]
        inter = max(0.0, min(x + bw, w) - max(x, 0.0)) * max(0.0, min(y + bh, h) - max(y, 0.0))
        if inter < 0.5 * bw * bh:
            return f"face box (x={x:g}, y={y:g}, w={bw:g}, h={bh:g}) lies mostly outside the {w}x{h} image"
    return None


def decode_resize(data, box, size, channels):
    """Decodes JPEG/PNG/BMP/GIF bytes, turns them upright by their EXIF orientation (`exif_orientation`, as predict's
    `read_rgb` does), crops `box` (x,y,w,h in the upright image; NaN = none), resizes to size x size; uint8 out.

    Grayscale, gray+alpha, RGB and RGBA inputs all give what decoding to RGB (alpha dropped) would give; channels=1
    then converts to luminance. An image already in the wanted channels and size (e.g. FER2013's 48 px gray JPEGs)
    is returned as decoded: bit-identical, without the float round trip.
    """
    return _decode_resize_fn()(data, box, size, channels)


@functools.lru_cache(maxsize=None)
def _decode_resize_fn():
    """The compiled `decode_resize`, built on first use: TensorFlow is imported here, not when this module is
    (the readers and the counting CLI list image files without TensorFlow; its import takes seconds)."""
    import tensorflow as tf

    def upright(img, data):
        # The tag is read by Pillow from the bytes already in memory, with the policy predict uses
        # (`_orientation_of`), so every path (training, evaluation, prepare, predict) sees a photo upright.
        orientation = tf.numpy_function(exif_orientation, [data], tf.int32, stateful=False)
        def swapped():  # rows <-> columns in NumPy: oneDNN logs an error line for a uint8 transpose on this CPU
            out = tf.numpy_function(lambda a: np.ascontiguousarray(a.transpose(1, 0, 2)), [img], tf.uint8,
                                    stateful=False)
            out.set_shape([None, None, img.shape[-1]])
            return out

        return tf.switch_case(tf.clip_by_value(orientation, 1, 8) - 1, [
            lambda: img, lambda: img[:, ::-1], lambda: img[::-1, ::-1], lambda: img[::-1],
            swapped, lambda: swapped()[:, ::-1], lambda: swapped()[::-1, ::-1], lambda: swapped()[::-1]])

    @tf.function(input_signature=[tf.TensorSpec([], tf.string), tf.TensorSpec([4], tf.float32),
                                  tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.int32)], reduce_retracing=True)
    def fn(data, box, size, channels):
        img = tf.io.decode_image(data, channels=0, expand_animations=False, dtype=tf.uint8)  # native channels
        img = upright(img, data)
        h, w, k = tf.shape(img)[0], tf.shape(img)[1], tf.shape(img)[2]
        if not tf.reduce_any(tf.math.is_nan(box)):
            x0 = tf.clip_by_value(tf.cast(box[0], tf.int32), 0, w - 1)
            y0 = tf.clip_by_value(tf.cast(box[1], tf.int32), 0, h - 1)
            x1 = tf.clip_by_value(tf.cast(box[0] + box[2], tf.int32), x0 + 1, w)
            y1 = tf.clip_by_value(tf.cast(box[1] + box[3], tf.int32), y0 + 1, h)
            img = img[y0:y1, x0:x1]
        if k == channels and tf.shape(img)[0] == size and tf.shape(img)[1] == size:
            return img
        rgb = img[..., :3] if k >= 3 else tf.tile(img[..., :1], [1, 1, 3])
        out = tf.cast(rgb, tf.float32)
        if tf.shape(img)[0] != size or tf.shape(img)[1] != size:
            out = tf.image.resize(out, [size, size], method="area", antialias=True)
        if channels == 1:
            out = tf.image.rgb_to_grayscale(out)
        return tf.cast(tf.clip_by_value(tf.round(out), 0, 255), tf.uint8)

    return fn


def _orientation_of(im) -> int:
    """The one EXIF policy (training and predict alike): the Orientation tag (0x0112) of any format Pillow reads
    it from (JPEG, PNG, WebP, TIFF), honoured when it is a number 1-8 (SHORT or LONG); a text value or anything
    else is ignored (1 = as stored)."""
    try:
        value = im.getexif().get(0x0112, 1)
    except Exception:  # an unreadable EXIF block: the pixels are still the image
        return 1
    return int(value) if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 8 else 1


def exif_orientation(data: bytes) -> np.int32:
    """The EXIF orientation (1-8; 1 = as stored) of encoded image bytes, 1 when there is none or it is unreadable."""
    import io

    try:
        with Image.open(io.BytesIO(bytes(data))) as im:
            return np.int32(_orientation_of(im))
    except Exception:  # a broken header is decode_image's to report, not this
        return np.int32(1)


def file_orientation(path: str) -> int:
    """`exif_orientation` of an image file, reading its header only."""
    try:
        with Image.open(path) as im:
            return _orientation_of(im)
    except Exception:
        return 1


def pil_orientation(im) -> int:
    """`exif_orientation` of an open PIL image (e.g. one passed to the API)."""
    return _orientation_of(im)


def upright_array(img: np.ndarray, orientation: int) -> np.ndarray:
    """An (H, W, C) or (H, W) image turned upright by its EXIF orientation (1-8), as `decode_resize` turns it."""
    def t(a):
        return a.transpose(1, 0, *range(2, a.ndim))

    ops = {1: lambda a: a, 2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: t, 6: lambda a: t(a)[:, ::-1], 7: lambda a: t(a)[::-1, ::-1], 8: lambda a: t(a)[::-1]}
    return np.ascontiguousarray(ops.get(int(orientation), ops[1])(img))


def decode_checked(path: str, box, cfg) -> tuple:
    """Header check, then `decode_resize` of one file: returns (uint8 image, None) or (None, problem).

    The one place that turns a file into a training crop, shared by `load_images` and `data.prepare`.
    """
    import tensorflow as tf  # see _decode_resize_fn

    problem = check_header(path, cfg.min_image_side, cfg.max_image_pixels, box)
    if problem:
        return None, problem
    try:
        with open(path, "rb") as f:
            data = f.read()
        img = decode_resize(tf.constant(data), tf.constant(box), tf.constant(cfg.image_size),
                            tf.constant(cfg.channels)).numpy()
        return img, None
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError, tf.errors.OutOfRangeError):
        return None, "cannot decode image (corrupt, truncated or unsupported)"


def resize_array(images: np.ndarray, size: int, channels: int) -> np.ndarray:
    """Resizes/convert an in-memory uint8 batch (N,H,W,C) to (N,size,size,channels) with OpenCV.

    Area interpolation both ways, as `decode_resize` (TensorFlow's area resize) does for training files: a model
    trained on 48 px faces upscaled to 112 px sees the same pixels in predict (bilinear upscaling here cost the
    fer2013 MobileNetV2 1.8 points of val accuracy, 65.7% against 67.6%).
    """
    n, h, w, c = images.shape
    if c == 1 and channels == 3:
        images = np.repeat(images, 3, axis=-1)
    elif c == 3 and channels == 1:
        images = (images.astype(np.float32) @ np.array([0.2989, 0.587, 0.114], np.float32))[..., None]
        images = np.clip(np.round(images), 0, 255).astype(np.uint8)
    if (h, w) == (size, size):
        return np.ascontiguousarray(images)
    out = np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) for im in images])
    return out.reshape(n, size, size, channels)
