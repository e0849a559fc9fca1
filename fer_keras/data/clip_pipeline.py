"""`tf.data` for video clips: frame sampling, clip batches for frame and temporal models, clip-level scoring.

A clip is a folder of frames (read by `clips.py`). Frame models (any image model) train on `data.frames_per_clip`
random frames per clip per epoch and are scored per clip by averaging their log-probabilities over all frames
(= averaging logits, up to a per-frame constant that softmax ignores). Temporal models (registered with
`temporal=True`) see fixed-length clips of `model.frames` frames.
"""

from __future__ import annotations

from typing import List

import numpy as np
import tensorflow as tf

from fer_keras.data.augment import build_augmenter, epoch_seed as _epoch_seed
from fer_keras.data.images import decode_resize


def _padded_frames(frames: List[List[str]]):
    n = np.array([len(f) for f in frames], np.int32)
    width = int(n.max()) if len(n) else 1
    paths = np.array([f + [""] * (width - len(f)) for f in frames], dtype=object).astype(str)
    return paths, n


def frame_dataset(table, size: int, channels: int):
    """Every frame of every clip, in order: elements (image, clip index)."""
    paths = [p for f in table.frames for p in f]
    clip_idx = np.concatenate([np.full(len(f), i, np.int32) for i, f in enumerate(table.frames)]) \
        if table.frames else np.zeros(0, np.int32)
    nan_box = tf.constant([np.nan] * 4, tf.float32)
    ds = tf.data.Dataset.from_tensor_slices((np.array(paths, dtype=str), clip_idx))
    return ds.map(lambda p, i: (tf.ensure_shape(decode_resize(tf.io.read_file(p), nan_box, size, channels),
                                                [size, size, channels]), i),
                  num_parallel_calls=tf.data.AUTOTUNE)


def sample_indices(n_frames, k: int, seed, training: bool):
    """`k` frame indices of a clip with `n_frames` frames: evenly spaced (evaluation) or one random frame per
    equal segment (training, TSN-style); clips shorter than k repeat frames."""
    n = tf.cast(n_frames, tf.float32)
    starts = tf.range(k, dtype=tf.float32) * n / k
    if training:
        offsets = tf.random.stateless_uniform([k], seed=seed) * (n / k)
    else:
        offsets = tf.fill([k], n / (2 * k))
    return tf.minimum(tf.cast(tf.floor(starts + offsets), tf.int32), tf.cast(n_frames, tf.int32) - 1)


def augment_clips(aug, clips, seeds):
    """Augments a (B, T, H, W, C) batch with one draw per clip: the frames are stacked along the channel axis, so
    every frame of a clip gets the same flip, rotation, zoom, shift, brightness and contrast (independent draws per
    frame made 3-D models see jittering, half-mirrored clips)."""
    b, t, h, w, c = (tf.shape(clips)[k] for k in range(5))
    x = tf.transpose(clips, [0, 2, 3, 1, 4])
    x = tf.reshape(x, tf.stack([b, h, w, t * c]))
    x = tf.ensure_shape(x, [None, clips.shape[2], clips.shape[3],
                            None if clips.shape[1] is None or clips.shape[4] is None else
                            clips.shape[1] * clips.shape[4]])
    x = aug(x, seeds)
    return tf.transpose(tf.reshape(x, tf.stack([b, h, w, t, c])), [0, 3, 1, 2, 4])


def clip_dataset(table, cfg, training: bool, temporal: bool, seed: int = 0, epoch=None, batch_size=None):
    """Training/evaluation dataset of clips.

    Frame models + training: `data.frames_per_clip` random frames per clip per epoch, each a separate sample.
    Temporal models: one (T, H, W, C) sample per clip with T = `model.frames`.
    Evaluation of frame models uses `frame_dataset` + `clip_probabilities` instead.
    """
    d = cfg.data
    size, ch = d.image_size, d.channels
    bs = batch_size or d.batch_size
    paths, n = _padded_frames(table.frames)
    targets = {"expression": table.expression.astype(np.int32), "valence_arousal": table.va}
    base = tf.data.Dataset.from_tensor_slices((paths, n, targets))
    nan_box = tf.constant([np.nan] * 4, tf.float32)
    k = cfg.model.frames if temporal else d.frames_per_clip
    aug = build_augmenter(cfg.augment, seed) if training else None

    def load(p):
        return tf.ensure_shape(decode_resize(tf.io.read_file(p), nan_box, size, ch), [size, size, ch])

    def one_epoch(_):
        e = epoch.read_value() if epoch is not None else tf.constant(0, tf.int64)
        epoch_seed = _epoch_seed(tf.cast(seed, tf.int64), e)
        ds = base.enumerate()
        if training:
            ds = ds.shuffle(max(len(table), 1), seed=epoch_seed, reshuffle_each_iteration=False)

        def pick(i, item):
            p, nf, y = item
            idx = sample_indices(nf, k, tf.stack([epoch_seed, i]), training)
            return tf.gather(p, idx), y

        ds = ds.map(pick)
        if temporal:
            ds = ds.map(lambda p, y: (tf.ensure_shape(tf.map_fn(load, p, fn_output_signature=tf.uint8),
                                                      [k, d.image_size, d.image_size, d.channels]), y),
                        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        else:
            ds = ds.flat_map(lambda p, y: tf.data.Dataset.from_tensor_slices(p).map(lambda q: (load(q), y)))
            if training:
                ds = ds.shuffle(min(d.shuffle_buffer, max(len(table) * k, 1)), seed=epoch_seed + 1,
                                reshuffle_each_iteration=False)
        ds = ds.batch(bs)
        if aug is not None:
            if temporal:
                ds = ds.enumerate().map(lambda i, xy: (augment_clips(aug, xy[0], tf.stack([epoch_seed, i])),
                                                       xy[1]))
            else:
                ds = ds.enumerate().map(lambda i, xy: (aug(xy[0], tf.stack([epoch_seed, i])), xy[1]),
                                        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return ds

    ds = tf.data.Dataset.from_tensors(0).flat_map(one_epoch)
    steps = -(-len(table) * (1 if temporal else k) // bs)
    ds = ds.apply(tf.data.experimental.assert_cardinality(steps))
    return ds.prefetch(tf.data.AUTOTUNE)


def clip_probabilities(model, table, cfg, batch_size: int = 64):
    """Clip-level predictions of a frame model: softmax of the mean log-probability over all frames of each clip
    (equivalent to averaging logits), and the mean valence/arousal."""
    ds = frame_dataset(table, cfg.data.image_size, cfg.data.channels).batch(batch_size)
    out = model.predict(ds.map(lambda x, i: x), verbose=0)
    clip_idx = np.concatenate([i.numpy() for _, i in ds]) if len(table) else np.zeros(0, np.int32)
    logp = np.log(np.clip(np.asarray(out["expression"], np.float64), 1e-12, 1.0))
    n = len(table)
    k = logp.shape[1]
    sums = np.zeros((n, k))
    np.add.at(sums, clip_idx, logp)
    counts = np.bincount(clip_idx, minlength=n)[:, None]
    mean = sums / np.maximum(counts, 1)
    probs = np.exp(mean - mean.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    va = np.zeros((n, 2))
    np.add.at(va, clip_idx, np.asarray(out["valence_arousal"], np.float64))
    return {"expression": probs, "valence_arousal": va / np.maximum(counts, 1)}
