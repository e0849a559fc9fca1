"""Sharded TFRecords of face crops: the on-disk format `python -m fer_keras.data.prepare` writes.

Layout of a prepared folder:

    manifest.json                      what it holds: source, preset, size, channels, encoding, counts, shards
    plan.json                          the settings the shards were written with (a re-run must match them)
    train-00000-of-00014.tfrecord      2,048 crops each (the last one fewer), uint8 at the prepared size
    train-00000-of-00014.idx.npz       labels and sources of that shard's records, in record order
    val-00000-of-00002.tfrecord ...

A shard is written under a temporary name and renamed when complete, after its `.idx.npz`; a shard file with its
final name is therefore always whole, and a re-run skips it. The folder reads back as data format `tfrecord`
(detected from `manifest.json`): labels come from the `.idx.npz` files without touching the images, and the images
stream from the shards with `interleave` unless the split fits `data.cache_budget_mb`, in which case it is decoded
into memory once (the same as image folders).
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Dict, List, Optional

import numpy as np

from fer_keras.data.readers import READERS, BadLog, RawTable
from fer_keras.errors import DataError
from fer_keras.labels import map_name

if TYPE_CHECKING:  # TensorFlow is imported where it is used: reading the format registry must not start it
    import tensorflow as tf

MANIFEST = "manifest.json"
PLAN = "plan.json"
KIND = "fer_keras-tfrecord-shards"
ENCODINGS = ("raw", "png")


# === Records ===

def encode_record(image: np.ndarray, name: str, valence: float, arousal: float, source: str,
                  encoding: str = "raw") -> bytes:
    """Serializes one crop (uint8 HxWxC) and its labels as a `tf.train.Example`."""
    import tensorflow as tf  # here, not at import: reading the format registry must not start TensorFlow

    data = image.tobytes() if encoding == "raw" else tf.io.encode_png(image).numpy()
    feats = {
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[data])),
        "expression": tf.train.Feature(bytes_list=tf.train.BytesList(value=[name.encode()])),
        "va": tf.train.Feature(float_list=tf.train.FloatList(value=[valence, arousal])),
        "source": tf.train.Feature(bytes_list=tf.train.BytesList(value=[source.encode()])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString()


def _features() -> dict:
    import tensorflow as tf

    return {"image": tf.io.FixedLenFeature([], tf.string), "expression": tf.io.FixedLenFeature([], tf.string),
            "va": tf.io.FixedLenFeature([2], tf.float32), "source": tf.io.FixedLenFeature([], tf.string)}


def read_manifest(path: str) -> dict:
    """The manifest of a prepared folder; a DataError when it is missing or not one of ours."""
    mpath = os.path.join(path, MANIFEST)
    try:
        with open(mpath, encoding="utf-8") as f:
            manifest = json.load(f)
    except FileNotFoundError:
        raise DataError(f"{path}: no {MANIFEST} (not a folder written by `python -m fer_keras.data.prepare`, "
                        "or its preparation has not finished)") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{mpath}: not valid JSON ({e.msg}, line {e.lineno})") from None
    if manifest.get("kind") != KIND:
        raise DataError(f"{mpath}: kind is {manifest.get('kind')!r}, expected {KIND!r}")
    return manifest


# === Reader (data format `tfrecord`) ===

@READERS.register("tfrecord")
def read_shards(path: str, cfg, log: BadLog) -> RawTable:
    """Reads the labels of a prepared folder (from the `.idx.npz` files, not the images).

    The returned table has `shards` (split → shard files) and the prepared `image_size`/`channels`, which the
    pipeline checks against the config.
    """
    manifest = read_manifest(path)
    names: List[str] = manifest["class_names"]
    sources, expr, val, aro, splits = [], [], [], [], []
    shards: Dict[str, List[str]] = {}
    for entry in manifest["shards"]:
        f = os.path.join(path, entry["file"])
        idx_path = f[: -len(".tfrecord")] + ".idx.npz"
        if not os.path.isfile(f) or not os.path.isfile(idx_path):
            raise DataError(f"{f}: listed in {MANIFEST} but missing (re-run prepare to rewrite it)")
        with np.load(idx_path) as idx:
            n = len(idx["expression"])
            if n != entry["count"]:
                raise DataError(f"{idx_path}: {n} records, the manifest says {entry['count']}")
            expr.extend(names[int(i)] for i in idx["expression"])
            val.append(idx["valence"])
            aro.append(idx["arousal"])
            sources.extend(str(s) for s in idx["source"])
        splits.extend([entry["split"]] * n)
        shards.setdefault(entry["split"], []).append(f)
    info = {"image_size": manifest["image_size"], "channels": manifest["channels"],
            "encoding": manifest["encoding"], "class_names": names}
    return RawTable(sources, expr, np.concatenate(val) if val else np.zeros(0, np.float32),
                    np.concatenate(aro) if aro else np.zeros(0, np.float32), splits=splits, origin=path,
                    shards=shards, shard_info=info)


# === Streaming ===

def _parse_fn(info: dict, preset: str):
    """A tf function: serialized Example → (uint8 image, preset index or -1, va)."""
    import tensorflow as tf

    features = _features()
    size, ch, enc = info["image_size"], info["channels"], info["encoding"]
    names = info["class_names"]
    mapped = [map_name(n, preset) for n in names]
    lookup = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(names), tf.constant([-1 if m is None else m for m in mapped],
                                                                             tf.int32)), default_value=-1)

    def parse(serialized):  # a batch of records: one parse_example call instead of one per record
        ex = tf.io.parse_example(serialized, features)
        if enc == "raw":
            img = tf.reshape(tf.io.decode_raw(ex["image"], tf.uint8), [-1, size, size, ch])
        else:
            img = tf.map_fn(lambda b: tf.ensure_shape(tf.io.decode_png(b, channels=ch), [size, size, ch]),
                            ex["image"], fn_output_signature=tf.uint8)
        return img, lookup.lookup(ex["expression"]), ex["va"]

    return parse


def shard_dataset(files: List[str], info: dict, preset: str, shuffle_seed=None, cycle_length: int = 4
                  ) -> tf.data.Dataset:
    """Streams `(image, {"expression", "valence_arousal"})` from shards, dropping classes the preset drops.

    Args:
        files: shard files in their written order.
        info: the reader's `shard_info` (size, channels, encoding, class names).
        preset: the label preset to map the stored class names to.
        shuffle_seed: None reads the shards in order, one after another (record order = the table's order, for
            evaluation and exact reproducibility); a seed (int or scalar tensor) shuffles the shard order and
            interleaves `cycle_length` shards in parallel (training).
    """
    import tensorflow as tf

    parse = _parse_fn(info, preset)
    if shuffle_seed is None:
        ds = tf.data.TFRecordDataset(files, num_parallel_reads=None)
    else:
        order = tf.data.Dataset.from_tensor_slices(files).shuffle(len(files), seed=shuffle_seed)
        ds = order.interleave(tf.data.TFRecordDataset, cycle_length=min(cycle_length, len(files)),
                              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(256).map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).unbatch()
    ds = ds.filter(lambda img, e, va: e >= 0)
    return ds.map(lambda img, e, va: (img, {"expression": e, "valence_arousal": va}))


def read_all_images(files: List[str], info: dict, preset: str) -> np.ndarray:
    """Decodes every kept record of `files` into one uint8 array (for splits that fit the cache budget)."""
    ds = shard_dataset(files, info, preset).map(lambda x, y: x).batch(4096)
    parts = [b.numpy() for b in ds]
    size, ch = info["image_size"], info["channels"]
    return np.concatenate(parts) if parts else np.zeros((0, size, size, ch), np.uint8)


def shard_name(split: str, i: int, n: int) -> str:
    return f"{split}-{i:05d}-of-{n:05d}.tfrecord"


def check_prepared_shape(info: Optional[dict], image_size: int, channels: int, path: str) -> None:
    """Prepared crops are used as they are: the config must ask for the size and channels they were written at."""
    if info and (info["image_size"], info["channels"]) != (image_size, channels):
        raise DataError(f"{path}: prepared at {info['image_size']} px x {info['channels']} channel(s), but the "
                        f"config asks for data.image_size={image_size}, data.channels={channels} "
                        "(set those, or prepare again at the size you want)")
