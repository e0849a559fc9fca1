"""`python -m fer_keras.data.prepare`: convert any supported dataset into sharded TFRecords of face crops.

    python -m fer_keras.data.prepare --data ../shared/data/fer2013 --labels 7 --image-size 48 --channels 1 \\
        --out data/fer2013-48
    python train_model.py --config configs/fer2013.yaml --data data/fer2013-48

Crops are made exactly as training from the original files makes them (`decode_resize`: AffectNet face boxes
cropped, then area-resized, gray or RGB), so training from the shards sees the same pixels. The splits are the
dataset's own, or the seeded stratified split of the config, fixed at preparation time. Re-running the same command
skips finished shards (a shard appears under its final name only when complete); a different dataset or setting
for an existing folder is refused rather than mixed in. See `fer_keras/data/shards.py` for the layout.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import List, Tuple

import numpy as np

from fer_keras.errors import quiet_tensorflow_import

quiet_tensorflow_import()  # `python -m` imports this module before main: hide TensorFlow's load-time lines here
import tensorflow as tf  # noqa: E402

from fer_keras.data import shards as S
from fer_keras.data.images import decode_checked, resize_array
from fer_keras.data.pipeline import SampleTable, read_splits, shuffled_train
from fer_keras.data.readers import BadLog
from fer_keras.errors import DataError
from fer_keras.io_utils import atomic_path, atomic_write_text


def _crops(table: SampleTable, lo: int, hi: int, d, log: BadLog, workers: int) -> Tuple[List[int], np.ndarray]:
    """Decodes samples [lo, hi) of `table` to crops; bad files raise (or are skipped with skip_bad)."""
    if table.images is not None:
        return list(range(lo, hi)), resize_array(table.images[lo:hi], d.image_size, d.channels)
    boxes = table.boxes if table.boxes is not None else np.full((len(table), 4), np.nan, np.float32)

    def work(i):
        return (i, *decode_checked(table.sources[i], boxes[i], d))

    keep, imgs = [], []
    with ThreadPoolExecutor(max_workers=workers) as ex:
        for i, img, problem in ex.map(work, range(lo, hi)):
            if problem:
                log.bad(table.sources[i], problem)
            else:
                keep.append(i)
                imgs.append(img)
    shape = (0, d.image_size, d.image_size, d.channels)
    return keep, np.stack(imgs) if imgs else np.zeros(shape, np.uint8)


def write_shard(path: str, table: SampleTable, idx: List[int], images: np.ndarray, class_names: List[str],
                encoding: str) -> None:
    """Writes one shard and its `.idx.npz`; the shard gets its final name last, so it is never seen half-written."""
    idx_path = path[: -len(".tfrecord")] + ".idx.npz"
    with atomic_path(idx_path) as tmp:
        with open(tmp, "wb") as f:  # np.savez on a file object keeps the temp name as given
            np.savez(f, expression=table.expression[idx].astype(np.int16), valence=table.valence[idx],
                     arousal=table.arousal[idx], source=np.array([table.sources[i] for i in idx], dtype=str))
    with atomic_path(path) as tmp:
        with tf.io.TFRecordWriter(tmp) as w:
            for k, i in enumerate(idx):
                w.write(S.encode_record(images[k], class_names[table.expression[i]], float(table.valence[i]),
                                        float(table.arousal[i]), table.sources[i], encoding))


def _plan(d, bundle, encoding: str, shard_size: int) -> dict:
    """The settings that define the shards' content: a re-run into the same folder must have the same plan."""
    return {"kind": S.KIND, "source": os.path.abspath(bundle.source), "format": bundle.format,
            "preset": d.labels, "class_names": bundle.class_names, "image_size": d.image_size,
            "channels": d.channels, "encoding": encoding, "shard_size": shard_size,
            "split_seed": d.split_seed, "val_fraction": d.val_fraction, "test_fraction": d.test_fraction,
            "train_order": "seeded permutation",  # shards of class-sorted records made class-skewed batches
            "samples": {s: len(getattr(bundle, s)) for s in ("train", "val", "test") if getattr(bundle, s)}}


def _check_plan(out: str, plan: dict) -> None:
    path = os.path.join(out, S.PLAN)
    if not os.path.exists(path):
        if os.path.isdir(out) and os.listdir(out):
            raise DataError(f"{out}: folder exists and is not a prepare output folder; choose a new --out")
        os.makedirs(out, exist_ok=True)
        atomic_write_text(path, json.dumps(plan, indent=2))
        return
    with open(path, encoding="utf-8") as f:
        old = json.load(f)
    diff = [k for k in plan if old.get(k) != plan[k]]
    if diff:
        k = diff[0]
        raise DataError(f"{out}: holds shards prepared with {k}={old.get(k)!r}, this run has {k}={plan[k]!r}; "
                        "choose a new --out (finished shards are never overwritten)")


def prepare(cfg, out: str, shard_size: int = 2048, encoding: str = "raw", workers: int = 4,
            log_fn=print) -> dict:
    """Converts `cfg.data` into shards under `out` and returns the manifest (see module docstring).

    Args:
        cfg: a `Config`; `cfg.data` says what to read, the preset, crop size and channels.
        out: output folder (created; a finished or partly finished folder of the same plan is resumed).
        shard_size: records per shard.
        encoding: `raw` (uint8 bytes: fastest to read) or `png` (lossless, smaller for large crops).
        workers: decoding threads.
    """
    d = cfg.data
    if encoding not in S.ENCODINGS:
        raise DataError(f"unknown encoding {encoding!r}; valid: {', '.join(S.ENCODINGS)}")
    if shard_size < 1:
        raise DataError(f"--shard-size must be >= 1, got {shard_size}")
    log = BadLog(skip=d.skip_bad)
    bundle = read_splits(d, log)
    if bundle.train is not None:
        bundle.train = shuffled_train(bundle.train, d.split_seed)
    for s in ("train", "val", "test"):
        t = getattr(bundle, s)
        if t is not None and t.frames is not None:
            raise DataError(f"{bundle.source}: clip datasets (frames per clip) are read directly, not sharded")
        if t is not None and t.shards is not None:
            raise DataError(f"{bundle.source}: already prepared TFRecords")
    plan = _plan(d, bundle, encoding, shard_size)
    _check_plan(out, plan)
    entries, written, skipped, t0 = [], 0, 0, time.time()
    counts = {}
    for s in ("train", "val", "test"):
        table = getattr(bundle, s)
        if table is None or not len(table):
            continue
        n = math.ceil(len(table) / shard_size)
        for i in range(n):
            path = os.path.join(out, S.shard_name(s, i, n))
            idx_path = path[: -len(".tfrecord")] + ".idx.npz"
            if os.path.isfile(path) and os.path.isfile(idx_path):
                skipped += 1
            else:
                idx, images = _crops(table, i * shard_size, min((i + 1) * shard_size, len(table)), d, log, workers)
                write_shard(path, table, idx, images, bundle.class_names, encoding)
                written += 1
                log_fn(f"{s}: shard {i + 1}/{n} written ({len(idx)} crops, {time.time() - t0:.0f} s)")
            with np.load(idx_path) as z:
                labels = z["expression"]
            entries.append({"file": os.path.basename(path), "split": s, "count": int(len(labels))})
            c = counts.setdefault(s, np.zeros(len(bundle.class_names), np.int64))
            c += np.bincount(labels, minlength=len(bundle.class_names))
    manifest = {
        "kind": S.KIND, "version": 1, "created": _dt.datetime.now().isoformat(timespec="seconds"),
        "source": plan["source"], "format": bundle.format, "preset": d.labels, "class_names": bundle.class_names,
        "image_size": d.image_size, "channels": d.channels, "encoding": encoding, "shard_size": shard_size,
        "counts": {s: dict(zip(bundle.class_names, c.tolist())) for s, c in counts.items()},
        "samples": {s: int(c.sum()) for s, c in counts.items()},
        "skipped_bad": len(log), "skipped_examples": [f"{w}: {why}" for w, why in log.items[:20]],
        "dropped": bundle.dropped, "shards": entries,
    }
    atomic_write_text(os.path.join(out, S.MANIFEST), json.dumps(manifest, indent=2))
    log_fn(f"{out}: {written} shards written, {skipped} already there; "
           + ", ".join(f"{s} {n}" for s, n in manifest["samples"].items())
           + (f"; {len(log)} bad samples skipped" if len(log) else ""))
    return manifest


if __name__ == "__main__":  # `python -m fer_keras.data.prepare` runs the CLI, cli_prepare.py (no import back to it)
    import runpy

    runpy.run_module("fer_keras.cli_prepare", run_name="__main__")
