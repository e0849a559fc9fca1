"""Test-time augmentation (TTA): the views a model's predictions are averaged over, in TensorFlow (evaluate, predict
with Keras) and in NumPy (predict with LiteRT), both made from one table of views.

A model can name its default views (`"tta": "crops"` in its labels.json / sidecar .json): evaluate_model.py and
predict use them unless `--tta` says otherwise.
"""

from __future__ import annotations

import numpy as np


def _crop_boxes(crop: float = 0.9) -> list:
    """The classic multi-crop: four corner crops and the centre crop, each `crop` of the side, as normalized
    (y1, x1, y2, x2) boxes."""
    lo, hi, c = 1.0 - crop, crop, (1 - crop) / 2
    return [(0.0, 0.0, hi, hi), (0.0, lo, hi, 1.0), (lo, 0.0, 1.0, hi), (lo, lo, 1.0, 1.0), (c, c, 1 - c, 1 - c)]


# Test-time augmentation: mode -> its views, each (box, mirrored); box None = the whole image, else a normalized
# (y1, x1, y2, x2) crop resized back to the input size. The one definition of the views: the TensorFlow views
# (evaluate, predict with Keras) and the NumPy views (predict with LiteRT) are both made from it.
TTA = {
    "none": [(None, False)],
    "flip": [(None, False), (None, True)],
    "crops": [(box, mirrored) for box in _crop_boxes() for mirrored in (False, True)],
}
TTA_MODES = tuple(TTA)


def _check_tta(mode: str) -> list:
    if mode not in TTA:
        raise ValueError(f"unknown tta {mode!r}; valid: {', '.join(TTA_MODES)}")
    return TTA[mode]


def tta_views(mode: str) -> list:
    """TensorFlow test-time augmentation views (see `TTA`), each a function of a batch (B,H,W,C) → same shape.

    `none`: the image; `flip`: the image and its horizontal mirror; `crops`: ten views, the classic multi-crop
    (four corner crops and the centre crop, 90% of the side, resized back to the input size) and their mirrors.
    """
    import tensorflow as tf

    def view(box, mirrored):
        def fn(x):
            if box is not None:
                n, size = tf.shape(x)[0], tf.shape(x)[1:3]
                x = tf.image.crop_and_resize(tf.cast(x, tf.float32), tf.tile([list(box)], [n, 1]), tf.range(n),
                                             size)
            return tf.image.flip_left_right(x) if mirrored else x
        return fn

    return [view(b, m) for b, m in _check_tta(mode)]


def crop_and_resize_np(x: np.ndarray, box) -> np.ndarray:
    """NumPy `tf.image.crop_and_resize` of every image of a batch (B,H,W,C) with one normalized box, back to
    (H, W): the same sampling grid (y1·(H-1) + i·(y2-y1) per row) and bilinear weights, in float32."""
    b, h, w, c = x.shape
    y1, x1, y2, x2 = box
    # TF's grid for a crop of the input's own size: in = y1 * (H - 1) + i * (y2 - y1) * (H - 1) / (H - 1)
    ys = y1 * (h - 1) + np.arange(h) * (y2 - y1)
    xs = x1 * (w - 1) + np.arange(w) * (x2 - x1)
    yt, xl = np.floor(ys).astype(int), np.floor(xs).astype(int)
    yb, xr = np.minimum(np.ceil(ys).astype(int), h - 1), np.minimum(np.ceil(xs).astype(int), w - 1)
    wy, wx = (ys - yt).astype(np.float32)[:, None, None], (xs - xl).astype(np.float32)[None, :, None]
    x = x.astype(np.float32)

    def across(rows):  # bilinear along x within the sampled rows
        left = rows[:, :, xl]
        return left + (rows[:, :, xr] - left) * wx

    top, bottom = across(x[:, yt]), across(x[:, yb])
    return top + (bottom - top) * wy


def tta_views_numpy(mode: str) -> list:
    """The views of `tta_views` in NumPy (no TensorFlow: predict's LiteRT backend), each (B,H,W,C) → float32."""

    def view(box, mirrored):
        def fn(x):
            x = crop_and_resize_np(x, box) if box is not None else x.astype(np.float32)
            return x[:, :, ::-1] if mirrored else x
        return fn

    return [view(b, m) for b, m in _check_tta(mode)]
