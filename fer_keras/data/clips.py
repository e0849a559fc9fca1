"""Video-clip datasets (DFEW and generic clip folders): the readers (their `tf.data` side: `clip_pipeline.py`).

A clip is a folder of frames.

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

from fer_keras.data.images import TF_IMAGE_EXTS
from fer_keras.data.readers import READERS, BadLog, RawTable, split_name, resolve_path
from fer_keras.errors import DataError, reading
from fer_keras.labels import DFEW_ORDER, normalize_name

DFEW_CLIP_DIRS = ("clip_224x224_16f", "clip_224x224", "clip_16f")


def _frames(folder: str) -> List[str]:
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.lower().endswith(TF_IMAGE_EXTS))


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
    split_dirs = [(d, split_name(d)) for d in subdirs if split_name(d)]
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
