"""Video-clip datasets (DFEW and generic clip folders): readers, frame sampling, clip-level scoring.

A clip is a folder of frames. Frame models (any image model) train on `data.frames_per_clip` random frames per clip
per epoch and are scored per clip by averaging their log-probabilities over all frames (= averaging logits, up to
a per-frame constant that softmax ignores). Temporal models (registered with `temporal=True`) see fixed-length clips
of `model.frames` frames.

Layouts:
    DFEW:   <root>/Clip/clip_224x224_16f/<clip_id>/*.jpg
            <root>/EmoLabel_DataSplit/{train,test}(single-labeled)/set_<fold>.csv   (clip id, label 1-7)
    clips:  <root>/<class>/<clip_id>/*.jpg   or   <root>/{train,val,test}/<class>/<clip_id>/*.jpg
"""

from __future__ import annotations

import csv
import os
from typing import List

import numpy as np

from fer_keras.data.readers import IMAGE_EXTS, READERS, BadLog, RawTable, _split_name, resolve_path
from fer_keras.errors import DataError, reading
from fer_keras.labels import DFEW_ORDER, normalize_name

DFEW_CLIP_DIRS = ("clip_224x224_16f", "clip_224x224", "clip_16f")


def _frames(folder: str) -> List[str]:
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTS))


def _add_clip(folder, name, split, log, sources, names, frames, splits) -> None:
    """Appends one clip (its frame list) to the reader's columns; a clip without frames is bad input."""
    fr = _frames(folder)
    if not fr:
        log.bad(folder, "clip has no frames")
        return
    sources.append(folder), names.append(name), frames.append(fr), splits.append(split)


def _clip_root(path: str) -> str:
    for d in DFEW_CLIP_DIRS:
        p = os.path.join(path, "Clip", d)
        if os.path.isdir(p):
            return p
    if os.path.isdir(os.path.join(path, "Clip")):
        return os.path.join(path, "Clip")
    raise DataError(f"{path}: no Clip/clip_224x224_16f folder (DFEW part-2 layout)")


def dfew_split_csv(path: str, split: str, fold: int) -> str:
    return os.path.join(path, "EmoLabel_DataSplit", f"{split}(single-labeled)", f"set_{fold}.csv")


def _table(sources, names, frames, splits, dropped, origin) -> RawTable:
    nan = np.full(len(names), np.nan, np.float32)
    return RawTable(sources, names, nan, nan.copy(), splits=splits, dropped=dropped, origin=origin, frames=frames)


@READERS.register("dfew")
def read_dfew(path: str, cfg, log: BadLog) -> RawTable:
    """DFEW part 2: clips of 16 frames and the 5-fold single-label splits (`data.fold`, 1-5)."""
    if not 1 <= cfg.fold <= 5:
        raise DataError(f"data.fold must be 1..5 for DFEW, got {cfg.fold}")
    clip_root = _clip_root(path)
    sources, names, frames, splits, dropped = [], [], [], [], {}
    for split in ("train", "test"):
        csv_path = dfew_split_csv(path, split, cfg.fold)
        if not os.path.isfile(csv_path):
            raise DataError(f"{csv_path}: split file not found (fold {cfg.fold})")
        with reading(csv_path), open(csv_path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
        for row_no, row in enumerate(rows, start=1):
            where = f"{csv_path}:{row_no}"
            if len(row) < 2:
                log.bad(where, "expected 'clip id,label'")
                continue
            clip_id, label = row[0].strip(), row[1].strip()
            if row_no == 1 and not label.lstrip("-").isdigit():
                continue  # header
            try:
                idx = int(label) - 1  # DFEW labels are 1-based
            except ValueError:
                log.bad(where, f"label {label!r} is not an integer 1-7")
                continue
            if not 0 <= idx < 7:
                log.bad(where, f"label {label} is out of range 1..7")
                continue
            name = DFEW_ORDER[idx]
            # Clip ids are names under the clip root: `../x` or an absolute path must not reach other folders.
            folder = resolve_path(clip_root, clip_id.zfill(5) if clip_id.isdigit() else clip_id, where,
                                  cfg.allow_outside_root, log)
            if folder is None:
                continue
            if not os.path.isdir(folder):
                folder = os.path.join(clip_root, clip_id)
            if not os.path.isdir(folder):
                log.bad(where, f"clip folder {clip_id} not found under {clip_root}")
                continue
            _add_clip(folder, name, split, log, sources, names, frames, splits)
    return _table(sources, names, frames, splits, dropped, path)


@READERS.register("clips")
def read_clip_folders(path: str, cfg, log: BadLog) -> RawTable:
    """`<root>/<class>/<clip_id>/*.jpg`, optionally under `train/`, `val/`, `test/` split folders."""
    if not os.path.isdir(path):
        raise DataError(f"{path}: not a folder")
    subdirs = sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)))
    split_dirs = [(d, _split_name(d)) for d in subdirs if _split_name(d)]
    roots = [(os.path.join(path, d), s) for d, s in split_dirs] or [(path, "")]
    sources, names, frames, splits = [], [], [], []
    for root, split in roots:
        for cls in sorted(os.listdir(root)):
            cdir = os.path.join(root, cls)
            if not os.path.isdir(cdir) or cls.startswith("."):
                continue
            name = normalize_name(cls)
            if name is None:
                log.bad(cdir, f"unknown class folder {cls!r}")
                continue
            for clip in sorted(os.listdir(cdir)):
                folder = os.path.join(cdir, clip)
                if os.path.isdir(folder):
                    _add_clip(folder, name, split, log, sources, names, frames, splits)
    if not sources and not len(log):
        raise DataError(f"{path}: no clips found (expected <root>/<class>/<clip_id>/*.jpg)")
    return _table(sources, names, frames, splits if any(splits) else None, {}, path)


# === tf.data for clips ===

def _padded_frames(frames: List[List[str]]):
    n = np.array([len(f) for f in frames], np.int32)
    width = int(n.max()) if len(n) else 1
    paths = np.array([f + [""] * (width - len(f)) for f in frames], dtype=object).astype(str)
    return paths, n


def frame_dataset(table, size: int, channels: int):
    """Every frame of every clip, in order: elements (image, clip index)."""
    import tensorflow as tf

    from fer_keras.data.pipeline import decode_resize

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
    import tensorflow as tf

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
    import tensorflow as tf

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
    import tensorflow as tf

    from fer_keras.data.augment import build_augmenter, epoch_seed as _epoch_seed
    from fer_keras.data.pipeline import decode_resize

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


def is_clip_table(table) -> bool:
    return getattr(table, "frames", None) is not None


def missing_frame_count(table, expected: int) -> int:
    """How many clips have fewer frames than `expected` (e.g. DFEW's 16)."""
    return int(sum(len(f) < expected for f in table.frames)) if is_clip_table(table) else 0

