"""From a dataset on disk to `tf.data` pipelines with the targets the models expect.

Every element is `(image, {"expression": int32, "valence_arousal": float32[2]})`, images uint8 0-255 at the
configured size and channel count (augmented batches become float32). VA is NaN where the dataset has no label: the
losses and metrics mask those samples, so FER2013-style data trains the expression head only.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from fer_keras.config import DataConfig, check_sources
from fer_keras.data import shards as _shards
from fer_keras.data.augment import build_augmenter, epoch_seed as _epoch_seed
from fer_keras.data.demo import default_demo_path
from fer_keras.data.formats import BadLog, RawTable, detect_format, read_table
from fer_keras.data.images import check_header, decode_checked, decode_resize, resize_array
from fer_keras.errors import DataError
from fer_keras.labels import map_name, preset_classes

AUTOTUNE = tf.data.AUTOTUNE


@dataclass
class SampleTable:
    """Samples of one split with labels mapped to the active preset."""

    sources: List[str]
    expression: np.ndarray  # int32 index into class_names
    valence: np.ndarray  # float32, NaN = missing
    arousal: np.ndarray
    images: Optional[np.ndarray] = None  # (N,S,S,C) uint8 at the configured size, when in memory
    boxes: Optional[np.ndarray] = None
    raw_index: Optional[np.ndarray] = None  # rows of the reader's RawTable these samples came from
    frames: Optional[List[List[str]]] = None  # clip data: frame paths per clip (sources are clip folders)
    shards: Optional[List[str]] = None  # prepared TFRecords holding exactly this split's samples, in order
    shard_info: Optional[dict] = None  # their image_size, channels, encoding, class_names
    source_id: Optional[np.ndarray] = None  # multi-source runs: int32 index into DataBundle.source_names
    soft: Optional[np.ndarray] = None  # (N, classes) soft targets (data votes or a teacher), NaN rows = none

    def __len__(self) -> int:
        return len(self.expression)

    @property
    def va(self) -> np.ndarray:
        return np.stack([self.valence, self.arousal], axis=1).astype(np.float32)

    def subset(self, idx) -> "SampleTable":
        idx = np.asarray(idx, dtype=np.int64)
        return SampleTable([self.sources[i] for i in idx], self.expression[idx], self.valence[idx],
                           self.arousal[idx], None if self.images is None else self.images[idx],
                           None if self.boxes is None else self.boxes[idx],
                           frames=None if self.frames is None else [self.frames[i] for i in idx],
                           shard_info=self.shard_info,  # shards hold whole splits: a subset must re-attach them
                           source_id=None if self.source_id is None else self.source_id[idx],
                           soft=None if self.soft is None else self.soft[idx])

    def class_counts(self, num_classes: int) -> List[int]:
        return np.bincount(self.expression, minlength=num_classes).astype(int).tolist()


@dataclass
class DataBundle:
    """The splits of one dataset plus what a run directory records about them."""

    train: Optional[SampleTable]
    val: Optional[SampleTable]
    test: Optional[SampleTable]
    class_names: List[str]
    bad: BadLog = field(default_factory=BadLog)
    dropped: Dict[str, int] = field(default_factory=dict)
    source: str = ""
    format: str = ""
    source_names: Optional[List[str]] = None  # multi-source runs: the sources, in `source_id` order
    source_weights: Optional[List[float]] = None  # their sampling weights in the training mix (sum 1)

    def source_tables(self, split: str) -> Dict[str, SampleTable]:
        """The samples of `split` per source (multi-source runs), in source order; empty sources left out."""
        t = getattr(self, split)
        if t is None or t.source_id is None or not self.source_names:
            return {}
        return {n: t.subset(np.where(t.source_id == i)[0]) for i, n in enumerate(self.source_names)
                if np.any(t.source_id == i)}

    def summary(self) -> dict:
        def split_summary(t: SampleTable) -> dict:
            return {"samples": len(t), "class_counts": dict(zip(self.class_names, t.class_counts(k))),
                    "with_valence_arousal": int(np.sum(np.isfinite(t.valence) & np.isfinite(t.arousal)))}

        k = len(self.class_names)
        splits = {s: split_summary(getattr(self, s)) for s in ("train", "val", "test") if getattr(self, s) is not None}
        out = {"source": self.source, "format": self.format, "class_names": self.class_names, "splits": splits,
               "dropped": self.dropped, "skipped_bad": len(self.bad),
               "skipped_examples": [f"{w}: {why}" for w, why in self.bad.items[:20]]}
        if self.source_names:
            per = {s: self.source_tables(s) for s in ("train", "val", "test")}
            out["sources"] = {n: {"weight": self.source_weights[i],
                                  "splits": {s: split_summary(t[n]) for s, t in per.items() if n in t}}
                              for i, n in enumerate(self.source_names)}
        return out


# === Label mapping and splits ===

def to_preset(raw: RawTable, preset: str, dropped: Dict[str, int]) -> SampleTable:
    """Maps canonical names to preset indices; samples the preset drops (e.g. contempt for 7) are counted.

    The kept rows of `raw` are recorded in the result's `raw_index` (to carry per-sample split names over).
    """
    cache: Dict[str, Optional[int]] = {}
    keep, expr = [], []
    for i, n in enumerate(raw.names):
        if n not in cache:
            cache[n] = map_name(n, preset)
        j = cache[n]
        if j is None:
            key = f"class '{n}' not in the {preset}-class preset"
            dropped[key] = dropped.get(key, 0) + 1
            continue
        keep.append(i), expr.append(j)
    sub = raw.subset(keep)
    return SampleTable(sub.sources, np.array(expr, np.int32), sub.valence.astype(np.float32),
                       sub.arousal.astype(np.float32), sub.images, sub.boxes, raw_index=np.array(keep, np.int64),
                       frames=sub.frames, shard_info=sub.shard_info,
                       soft=None if sub.soft is None else soft_to_preset(sub.soft, sub.soft_names, preset))


def soft_to_preset(soft: np.ndarray, names: Sequence[str], preset: str) -> np.ndarray:
    """Soft labels over canonical classes `names` as probabilities over the preset's classes: the shares of
    classes that merge (e.g. fear into sad for 5 classes) are added, classes the preset drops are removed and the
    rest renormalised; a row with nothing left is NaN (no soft label: the hard label is used)."""
    k = len(preset_classes(preset))
    mapping = np.zeros((len(names), k), np.float64)
    for i, n in enumerate(names):
        j = map_name(n, preset)
        if j is not None:
            mapping[i, j] = 1.0
    out = np.asarray(soft, np.float64) @ mapping
    total = out.sum(axis=1, keepdims=True)
    return np.where(total > 0, out / np.maximum(total, 1e-12), np.nan).astype(np.float32)


def stratified_split(labels: np.ndarray, fractions: List[float], seed: int) -> List[np.ndarray]:
    """Splits indices into len(fractions)+1 parts, stratified by label, deterministic for a seed.

    Each class is shuffled and cut at the cumulative fractions, so every part keeps the class proportions (classes
    too small for a part simply contribute nothing to it).
    """
    rng = np.random.default_rng(seed)
    parts: List[List[int]] = [[] for _ in range(len(fractions) + 1)]
    for c in np.unique(labels):
        idx = rng.permutation(np.where(labels == c)[0])
        n = len(idx)
        cuts = [int(round(n * f)) for f in np.cumsum(fractions)]
        bounds = [0] + cuts + [n]
        # parts[0] is the remainder (train): take the held-out parts from the front of each class.
        held = [idx[bounds[i]:bounds[i + 1]] for i in range(len(fractions))]
        parts[0].extend(idx[bounds[len(fractions)]:].tolist())
        for i, h in enumerate(held):
            parts[i + 1].extend(h.tolist())
    return [np.sort(np.array(p, np.int64)) for p in parts]


def grouped_split(groups: Sequence[str], fractions: List[float], seed: int) -> List[np.ndarray]:
    """Like `stratified_split`, but whole groups go to one part: the groups are shuffled (seeded) and each held-out
    part takes groups until it holds its fraction of the samples; the rest is parts[0] (train)."""
    groups = np.asarray(groups)
    names, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    order = np.random.default_rng(seed).permutation(len(names))
    part_of = np.zeros(len(names), np.int64)
    n, filled, k = len(groups), 0, 0
    targets = np.cumsum(fractions) * n
    for g in order:
        while k < len(fractions) and filled >= targets[k]:
            k += 1
        if k == len(fractions):
            break
        part_of[g] = k + 1
        filled += counts[g]
    return [np.where(part_of[inverse] == i)[0] for i in range(len(fractions) + 1)]


def split_groups(table: SampleTable, pattern: str) -> List[str]:
    """The group of each sample: the first group of `pattern` searched in its file name (the whole name when the
    pattern does not match, so such a file is a group of its own)."""
    rx = re.compile(pattern)
    out = []
    for p in table.sources:
        name = os.path.basename(str(p))
        m = rx.search(name)
        out.append(m.group(1) if m else name)
    return out


def _validation_mode(table: SampleTable, mode: str) -> str:
    if mode != "auto":
        return mode
    total = sum(os.path.getsize(p) for p in table.sources if os.path.isfile(p))
    return "full" if total < (1 << 30) else "header"


def load_images(table: SampleTable, cfg, log: BadLog) -> SampleTable:
    """Validates image files and, where the decoded split fits `cache_budget_mb`, decodes it into memory.

    `validate_images`: `full` decodes every file (what passes here decodes identically inside tf.data, since both
    use `decode_resize`), `header` only checks the file signature (for data too large to decode up front),
    `none` trusts the files. Bad files raise a DataError naming the file, or are skipped with `skip_bad`.
    """
    if table.images is not None:
        table.images = resize_array(table.images, cfg.image_size, cfg.channels)
        return table
    if table.shard_info is not None:
        return _load_shard_images(table, cfg)
    if table.frames is not None:
        return _check_clip_frames(table, cfg, log)
    mode = _validation_mode(table, cfg.validate_images)
    nbytes = len(table) * cfg.image_size ** 2 * cfg.channels
    keep_in_memory = cfg.cache in ("auto", "memory") and (cfg.cache == "memory" or nbytes <= cfg.cache_budget_mb << 20)
    ok = np.ones(len(table), bool)
    decoded: List[Optional[np.ndarray]] = [None] * len(table)
    boxes = table.boxes if table.boxes is not None else np.full((len(table), 4), np.nan, np.float32)

    def header(i):
        return check_header(table.sources[i], cfg.min_image_side, cfg.max_image_pixels, boxes[i])

    if mode == "header":
        for i, p in enumerate(table.sources):
            problem = header(i)
            if problem:
                log.bad(p, problem)
                ok[i] = False
    elif mode == "full":

        def work(i):
            return (i, *decode_checked(table.sources[i], boxes[i], cfg))

        with ThreadPoolExecutor(max_workers=4) as ex:
            for i, img, problem in ex.map(work, range(len(table))):
                if problem:
                    log.bad(table.sources[i], problem)
                    ok[i] = False
                elif keep_in_memory:
                    decoded[i] = img
    if not ok.all():
        idx = np.where(ok)[0]
        table = table.subset(idx)
        decoded = [decoded[i] for i in idx]
    if mode == "full" and keep_in_memory and len(table):
        table.images = np.stack(decoded)
    return table


def find_undecodable(tables: Sequence[Optional[SampleTable]], cfg, budget_seconds: float = 120.0
                     ) -> Optional[tuple]:
    """Finds a file that fails to decode, after tf.data stopped on one (its error does not name the file).

    Decodes the files of `tables` in order, as `validate_images=full` would, until one fails or `budget_seconds`
    have passed. Returns (path, problem), or None when no file failed within the budget.
    """
    deadline = time.monotonic() + budget_seconds
    for table in tables:
        if table is None or table.images is not None or table.frames is not None or table.shards is not None:
            continue  # decoded already, or frames/shards that are checked their own way
        boxes = table.boxes if table.boxes is not None else np.full((len(table), 4), np.nan, np.float32)
        with ThreadPoolExecutor(max_workers=4) as ex:
            for start in range(0, len(table), 256):
                if time.monotonic() > deadline:
                    return None
                idx = range(start, min(start + 256, len(table)))
                for i, (_, problem) in zip(idx, ex.map(lambda i: decode_checked(table.sources[i], boxes[i], cfg),
                                                       idx)):
                    if problem:
                        return table.sources[i], problem
    return None


def _load_shard_images(table: SampleTable, cfg) -> SampleTable:
    """Prepared shards were validated when written; decode them into memory only when the split fits the budget."""
    _shards.check_prepared_shape(table.shard_info, cfg.image_size, cfg.channels, table.shards[0] if table.shards
                                 else "prepared data")
    nbytes = len(table) * cfg.image_size ** 2 * cfg.channels
    if table.shards and cfg.cache in ("auto", "memory") and (cfg.cache == "memory" or
                                                           nbytes <= cfg.cache_budget_mb << 20):
        images = _shards.read_all_images(table.shards, table.shard_info, cfg.labels)
        if len(images) != len(table):
            raise DataError(f"{os.path.dirname(table.shards[0])}: shards hold {len(images)} records of this split, "
                            f"their .idx.npz files {len(table)} (prepare again into a new folder)")
        table.images = images
    return table


def _check_clip_frames(table: SampleTable, cfg, log: BadLog) -> SampleTable:
    """Header-checks every frame (`data.validate_images=full`: decodes it, as the error hint of a frame that fails
    mid-epoch says): bad frames are dropped (and logged with --skip-bad, else an error); a clip left without frames
    is bad itself. Without `full`, frames are decoded in tf.data, not here."""
    keep = []
    no_box = np.full(4, np.nan, np.float32)
    for i, frames in enumerate(table.frames):
        good = []
        for f in frames:
            if cfg.validate_images == "full":
                problem = decode_checked(f, no_box, cfg)[1]
            else:
                problem = check_header(f, cfg.min_image_side, cfg.max_image_pixels) \
                    if cfg.validate_images != "none" else None
            if problem:
                log.bad(f, problem)
            else:
                good.append(f)
        table.frames[i] = good
        if good:
            keep.append(i)
        else:
            log.bad(table.sources[i], "clip has no readable frames")
    return table.subset(keep) if len(keep) < len(table) else table


# === Loading a dataset ===

def load_data(d: DataConfig, log: Optional[BadLog] = None, require_train: bool = True) -> DataBundle:
    """Reads, maps, splits and validates the dataset described by `d` (a config's `data` section).

    Splits: the dataset's own train/val/test when it has them (folders, Usage column, AffectNet CSVs), explicit
    `val_path`/`test_path` when given, otherwise a stratified split with `val_fraction`/`test_fraction`.
    Images are then validated and, where a split fits `data.cache_budget_mb`, decoded into memory.
    """
    if getattr(d, "sources", None):
        return _load_sources(d, log)
    bundle = read_splits(d, log, require_train=require_train)
    for s in ("train", "val", "test"):
        if getattr(bundle, s) is not None:
            setattr(bundle, s, load_images(getattr(bundle, s), d, bundle.bad))
    if bundle.train is None:  # evaluation of test-only data (require_train=False)
        return bundle
    if len(bundle.train) == 0 and require_train:
        raise DataError(f"{bundle.source}: every training sample was bad or dropped")
    bundle.train = shuffled_train(bundle.train, d.split_seed)
    return bundle


def load_all(d: DataConfig, log: Optional[BadLog] = None) -> DataBundle:
    """Every sample of the dataset `d` describes, whatever its splits, as one test split (train and val empty).

    For scoring a whole dataset (`evaluate_model.py --split all`), e.g. a labelled test-only folder that has no
    train split to cut anything from. Multi-source configs: all samples of every source.
    """
    log = log or BadLog(skip=d.skip_bad)
    if getattr(d, "sources", None):
        bundle = _load_sources(d, log)
        parts = [t for t in (bundle.train, bundle.val, bundle.test) if t is not None and len(t)]
        table = concat_tables([(0, t) for t in parts], ["all"])
        table.source_id = np.concatenate([t.source_id for t in parts])  # keep each sample's own source
        return DataBundle(table.subset(np.zeros(0, np.int64)), None, table, bundle.class_names, log,
                          bundle.dropped, bundle.source, bundle.format, source_names=bundle.source_names,
                          source_weights=bundle.source_weights)
    path, fmt, raw, table, dropped = _read_mapped(d, log)
    if len(table) == 0:
        raise DataError(f"{path}: no samples after reading and label mapping (preset {d.labels}: "
                        f"{', '.join(preset_classes(d.labels))})")
    table = load_images(table, d, log)
    return DataBundle(table.subset(np.zeros(0, np.int64)), None, table, preset_classes(d.labels), log, dropped,
                      path, fmt)


def source_data_config(d, s):
    """The `DataConfig` that reads one source `s` of `d.sources`: its path, format and split settings, the rest
    (size, channels, preset, validation) from `d`."""
    return dataclasses.replace(d, path=s.path, format=s.format, val_fraction=s.val_fraction,
                               test_fraction=s.test_fraction, split_seed=s.split_seed,
                               split_group_pattern=s.split_group_pattern, val_path=None, test_path=None, sources=[])


def read_source_splits(d, s, log: Optional[BadLog] = None) -> DataBundle:
    """`read_splits` of one source: the splits a multi-source run makes of it (images untouched). A source with
    `use: val` is all validation: every sample it has, whatever splits it carries, and no train or test."""
    if s.use == "val":
        log = log or BadLog(skip=d.skip_bad)
        path, fmt, _, table, dropped = _read_mapped(source_data_config(d, s), log)
        if len(table) == 0:
            raise DataError(f"{path}: source '{s.name}' has no samples of the preset's classes after reading and "
                            f"label mapping (preset {d.labels})")
        return DataBundle(None, table, None, preset_classes(d.labels), log, dropped, path, fmt)
    return read_splits(source_data_config(d, s), log, heldout_as_test=s.heldout_as_test,
                       heldout_test_fraction=s.heldout_test_fraction)


def _load_sources(d, log: Optional[BadLog] = None) -> DataBundle:
    """`load_data` for `data.sources`: each source read, split and validated on its own (with its own split
    fractions and seed), then the splits concatenated with a per-sample `source_id`."""
    check_sources(d)  # also for configs built in code rather than by load_config
    log = log or BadLog(skip=d.skip_bad)
    parts, dropped = [], {}
    for s in d.sources:
        sd = source_data_config(d, s)
        b = read_source_splits(d, s, log)
        for split in ("train", "val", "test"):
            if getattr(b, split) is not None:
                setattr(b, split, load_images(getattr(b, split), sd, b.bad))
        if s.use == "train" and (b.train is None or len(b.train) == 0):
            raise DataError(f"{s.path}: every training sample of source '{s.name}' was bad or dropped")
        dropped.update({f"{s.name}: {k}": v for k, v in b.dropped.items()})
        parts.append(b)
    splits = {}
    for split in ("train", "val", "test"):
        tables = [(i, getattr(b, split)) for i, b in enumerate(parts) if getattr(b, split) is not None]
        splits[split] = concat_tables(tables, [s.name for s in d.sources]) if tables else None
    total = sum(s.weight for s in d.sources if s.use == "train")
    bundle = DataBundle(splits["train"], splits["val"], splits["test"], preset_classes(d.labels), log, dropped,
                        " + ".join(s.path for s in d.sources), "sources",
                        source_names=[s.name for s in d.sources],
                        source_weights=[s.weight / total if s.use == "train" else 0.0 for s in d.sources])
    bundle.train = shuffled_train(bundle.train, d.split_seed)
    return bundle


def concat_tables(tables, names: List[str]) -> SampleTable:
    """Concatenates (source index, SampleTable) pairs into one table with `source_id`.

    Every part must be decoded in memory, or every part streamed from image files: a mix of the two (or of
    prepared shards or clips) is refused with the source's name, since one tf.data stream reads one kind.
    """
    in_memory = [t.images is not None for _, t in tables]
    for i, t in tables:
        if t.shards is not None or t.frames is not None:
            raise DataError(f"data.sources: source '{names[i]}' is prepared shards or clips; mixing reads image "
                            "datasets (folders, CSV, npy, FER2013, AffectNet)")
    if any(in_memory) and not all(in_memory):
        big = names[tables[in_memory.index(False)][0]]
        raise DataError(f"data.sources: source '{big}' does not fit data.cache_budget_mb while another does; "
                        "raise the budget or set data.cache=none to stream every source")
    ts = [t for _, t in tables]
    boxes = None
    if any(t.boxes is not None for t in ts) and not all(in_memory):
        boxes = np.concatenate([t.boxes if t.boxes is not None else np.full((len(t), 4), np.nan, np.float32)
                                for t in ts]).astype(np.float32)
    soft = None
    if any(t.soft is not None for t in ts):  # sources without soft labels get NaN rows (their hard labels count)
        k = next(t.soft.shape[1] for t in ts if t.soft is not None)
        soft = np.concatenate([t.soft if t.soft is not None else np.full((len(t), k), np.nan, np.float32)
                               for t in ts]).astype(np.float32)
    return SampleTable(
        [p for t in ts for p in t.sources], np.concatenate([t.expression for t in ts]).astype(np.int32),
        np.concatenate([t.valence for t in ts]).astype(np.float32),
        np.concatenate([t.arousal for t in ts]).astype(np.float32),
        np.concatenate([t.images for t in ts]) if all(in_memory) else None, boxes,
        source_id=np.concatenate([np.full(len(t), i, np.int32) for i, t in tables]), soft=soft)


def shuffled_train(table: SampleTable, seed: int) -> SampleTable:
    """The training split in one seeded random order (prepared shards already are; returned as they are).

    Readers return samples in folder/file order, usually grouped by class. A bounded shuffle buffer over a
    class-sorted stream yields class-skewed batches: on FER2013 the model then tracked the drifting class mix (train
    accuracy fell as the learning rate decayed while val accuracy rose). `data.prepare` writes shards in this order.
    """
    if table.shards is not None:
        return table
    return table.subset(np.random.default_rng(seed).permutation(len(table)))


def _read_mapped(d, log: BadLog):
    """Reads the dataset of `d` (the built-in demo data when `d.path` is unset) and maps it to the preset.

    Returns:
        (path, format, the reader's RawTable, the mapped SampleTable, counts of dropped samples by reason).
    """
    path, fmt = d.path, d.format
    if path is None:

        path, fmt = default_demo_path(d.demo_per_class, d.demo_size), "csv"
    fmt = detect_format(path) if fmt == "auto" else fmt
    raw = read_table(path, fmt, d, log)
    dropped = dict(raw.dropped)
    return path, fmt, raw, to_preset(raw, d.labels, dropped), dropped


def read_splits(d, log: Optional[BadLog] = None, heldout_as_test: bool = False, heldout_test_fraction: float = 0.0,
                require_train: bool = True) -> DataBundle:
    """`load_data` without touching the images: annotations read, labels mapped to the preset, splits made.

    Args:
        d: a `DataConfig`.
        log: where skipped samples go (default: a new `BadLog` honouring `d.skip_bad`).
        heldout_as_test: the dataset's own val split becomes the test split (e.g. FER2013's PublicTest), and val
            is cut from train with `d.val_fraction`, so checkpoints are never chosen on the reported split.
        heldout_test_fraction: or this fraction of the dataset's own val split (seeded, stratified) becomes the
            test split and the rest stays val: for a model that already trained on all of train.
    """
    log = log or BadLog(skip=d.skip_bad)
    path, fmt, raw, table, dropped = _read_mapped(d, log)
    classes = preset_classes(d.labels)
    splits: Dict[str, Optional[SampleTable]] = {"train": None, "val": None, "test": None}
    if raw.splits is not None:
        arr = np.array([raw.splits[i] for i in table.raw_index])
        if heldout_as_test:
            if np.any(arr == "test"):
                raise DataError(f"{path}: has a test split of its own; heldout_as_test is for data whose only "
                                "held-out split is val")
            arr = np.where(arr == "val", "test", arr)
        for s in splits:
            idx = np.where(arr == s)[0]
            if len(idx):
                splits[s] = table.subset(idx)
                if raw.shards is not None:
                    splits[s].shards = raw.shards.get(s, [])
        if heldout_test_fraction > 0 and splits["val"] is not None and splits["test"] is None:
            keep, moved = stratified_split(splits["val"].expression, [heldout_test_fraction], d.split_seed)
            splits["val"], splits["test"] = splits["val"].subset(keep), splits["val"].subset(moved)
        unassigned = np.where(arr == "")[0]
        if len(unassigned):
            dropped["samples without a split"] = int(len(unassigned))
    else:
        splits["train"] = table
    for s, p in (("val", d.val_path), ("test", d.test_path)):
        if p:
            r = read_table(p, "auto" if d.format == "auto" else fmt, d, log)
            for k, v in r.dropped.items():
                dropped[f"{s}: {k}"] = v
            splits[s] = to_preset(r, d.labels, dropped)
    if (splits["train"] is None or len(splits["train"]) == 0) and not require_train and any(
            splits[s] is not None and len(splits[s]) for s in ("val", "test")):
        # Held-out data only (e.g. a labelled test/ folder scored by evaluate_model.py): nothing to split.
        return DataBundle(None, splits["val"], splits["test"], classes, log, dropped, path, fmt)
    if splits["train"] is None or len(splits["train"]) == 0:
        why = "; ".join(f"{k}: {v}" for k, v in list(dropped.items())[:3])
        raise DataError(f"{path}: no {'training ' if require_train else ''}samples of the preset's classes after "
                        f"reading and label mapping (preset {d.labels}: {', '.join(classes)})"
                        + (f"; dropped {why}" if why else ""))
    need_val = splits["val"] is None
    need_test = splits["test"] is None and (raw.splits is None or heldout_as_test)
    fracs = [d.val_fraction if need_val else 0.0, d.test_fraction if need_test else 0.0]
    if any(f > 0 for f in fracs) and raw.shards is not None:
        raise DataError(f"{path}: prepared without a {'val' if need_val else 'test'} split; prepare again with "
                        "data.val_fraction/test_fraction > 0, or give data.val_path")
    if any(f > 0 for f in fracs):
        pattern = getattr(d, "split_group_pattern", None)
        tr, va, te = grouped_split(split_groups(splits["train"], pattern), fracs, d.split_seed) if pattern else \
            stratified_split(splits["train"].expression, fracs, d.split_seed)
        base = splits["train"]
        splits["train"] = base.subset(tr)
        if need_val and len(va):
            splits["val"] = base.subset(va)
        if need_test and len(te):
            splits["test"] = base.subset(te)
    return DataBundle(splits["train"], splits["val"], splits["test"], classes, log, dropped, path, fmt)


# === tf.data ===

def class_weights(counts: List[int], smoothing: float = 0.0) -> np.ndarray:
    """Inverse-frequency class weights, `(N / (K n_c)) ** (1 - smoothing)`, normalized to a sample mean of 1.

    smoothing=0 is plain inverse frequency, smoothing=1 is uniform; absent classes get weight 0.
    """
    c = np.asarray(counts, np.float64)
    k = max(1, int((c > 0).sum()))
    w = np.where(c > 0, (c.sum() / (k * np.maximum(c, 1))) ** (1.0 - smoothing), 0.0)
    mean = (w * c).sum() / max(c.sum(), 1)
    return (w / mean if mean > 0 else w).astype(np.float32)


DECODE_CHUNK = 64


def expression_targets(table: SampleTable) -> np.ndarray:
    """The `expression` targets of a split: int32 labels, or with teacher probabilities (`table.soft`) one float32
    row per sample `[label, p_1 .. p_C]` with `p = -1` where the sample has no teacher (see `ExpressionLoss`)."""
    if table.soft is None:
        return table.expression.astype(np.int32)
    soft = np.where(np.isfinite(table.soft), table.soft, -1.0)
    return np.concatenate([table.expression[:, None], soft], axis=1).astype(np.float32)


def _base_dataset(table: SampleTable, size: int, channels: int, preset: str = "7", shuffle_seed=None
                  ) -> tf.data.Dataset:
    if table.shards is not None:  # labels come from the shards (this is also called inside a traced function)
        ds = _shards.shard_dataset(table.shards, table.shard_info, preset, shuffle_seed)
        return ds.apply(tf.data.experimental.assert_cardinality(len(table)))
    targets = {"expression": expression_targets(table), "valence_arousal": table.va}
    if table.images is not None:
        return tf.data.Dataset.from_tensor_slices((table.images, targets))
    boxes = table.boxes if table.boxes is not None else np.full((len(table), 4), np.nan, np.float32)
    ds = tf.data.Dataset.from_tensor_slices((np.array(table.sources), boxes.astype(np.float32), targets))

    size_t, channels_t = tf.constant(size), tf.constant(channels)

    def load_one(path_box):
        img = decode_resize(tf.io.read_file(path_box[0]), path_box[1], size_t, channels_t)
        return tf.ensure_shape(img, [size, size, channels])

    def load_chunk(paths, chunk_boxes, y):
        imgs = tf.map_fn(load_one, (paths, chunk_boxes), fn_output_signature=tf.TensorSpec(
            [size, size, channels], tf.uint8), parallel_iterations=1)
        return imgs, y

    # Files are decoded in chunks (one parallel-map element per DECODE_CHUNK files, then unbatched): per-file
    # elements cost a thread hand-off each, which on 2 cores slowed training by ~9% against in-memory data.
    # Ordered, so the cache (and the seeded shuffle over it) holds the same order in every run.
    return ds.batch(DECODE_CHUNK).map(load_chunk, num_parallel_calls=AUTOTUNE, deterministic=True).unbatch()


def epoch_size(table: SampleTable, d) -> int:
    """Training samples per epoch: the split's size, or with `balance=undersample` the sum over classes of
    min(count, max_per_class)."""
    if getattr(d, "balance", "none") == "undersample" and d.max_per_class:
        return int(np.minimum(np.bincount(table.expression), d.max_per_class).sum())
    return len(table)


def _source_mix(table: SampleTable, d):
    """(per-source datasets, weights, sizes) for a multi-source training table, or None for a single source."""
    if table.source_id is None or not getattr(d, "sources", None):
        return None
    ids = [i for i in range(len(d.sources)) if np.any(table.source_id == i)]
    if len(ids) < 2:
        return None
    parts = [table.subset(np.where(table.source_id == i)[0]) for i in ids]
    total = sum(d.sources[i].weight for i in ids)
    return ([_base_dataset(p, d.image_size, d.channels, d.labels) for p in parts],
            [d.sources[i].weight / total for i in ids], [len(p) for p in parts])


def weighted_sample(table: SampleTable, d, n: int, seed: int = 0) -> SampleTable:
    """`n` samples of a training table drawn (with replacement, seeded) in the proportions training draws its
    sources in (`sources[].weight`); a single-source table uniformly. For what must see the training mix without its
    augmentation, e.g. the BatchNorm statistics of an EMA (`fitting.recalibrate_batchnorm`)."""
    rng = np.random.default_rng(seed)
    mix = _source_mix(table, d)
    if mix is None:
        return table.subset(np.sort(rng.integers(0, len(table), n)))
    ids = [i for i in range(len(d.sources)) if np.any(table.source_id == i)]
    total = sum(d.sources[i].weight for i in ids)
    picks = [rng.choice(np.where(table.source_id == i)[0], int(round(n * d.sources[i].weight / total)))
             for i in ids]
    return table.subset(rng.permutation(np.concatenate(picks)))


def make_dataset(table: SampleTable, cfg, training: bool, batch_size: Optional[int] = None, seed: int = 0,
                 deterministic: bool = False, epoch: Optional[tf.Variable] = None, drop_remainder: bool = False
                 ) -> tf.data.Dataset:
    """Builds the batched `tf.data.Dataset` of one split.

    Args:
        table: the split (images in memory or file paths).
        cfg: the full `Config` (uses `cfg.data` and `cfg.augment`).
        training: shuffle, oversample (if configured) and augment.
        batch_size: defaults to `cfg.data.batch_size`.
        seed: shuffling/augmentation seed.
        deterministic: streamed shards are read once in file order and cached like files (instead of
            re-interleaved from disk in a new seeded order each epoch). Element order and augmentation are
            reproducible for a seed either way: parallel maps keep their order and augmentation is stateless.
        epoch: an int64 variable holding the current epoch (training sets it at each epoch start). Shuffling,
            oversampling and augmentation are keyed by (seed, epoch, batch), so epoch k is the same whether or not
            the run was interrupted and resumed before it. Without it, epoch 0 is used every time.
        drop_remainder: drop the last partial batch (multi-replica training: Keras 3 cannot split a batch unevenly
            across replicas).

    Returns:
        Dataset of `(images, {"expression", "valence_arousal"})`; training images are float32 after augmentation,
        evaluation images stay uint8 (the model casts).
    """
    d = cfg.data
    bs = batch_size or d.batch_size
    base = _base_dataset(table, d.image_size, d.channels, d.labels)
    # Streamed shards are re-read each epoch in a new shard order (interleaved); in-memory data is shuffled below.
    stream_shards = table.images is None and table.shards is not None and not deterministic
    if table.images is None and d.cache == "memory":
        base = base.cache()
    if not training:
        opts = tf.data.Options()
        opts.deterministic = True
        return base.batch(bs, drop_remainder=drop_remainder).with_options(opts).prefetch(AUTOTUNE)
    aug = build_augmenter(cfg.augment, seed)
    present = sorted(set(table.expression.tolist()))
    per_class = [base.filter(lambda x, y, c=c: tf.equal(y["expression"], c)).repeat() for c in present] \
        if d.balance == "oversample" else None
    mix = _source_mix(table, d)  # (balance=oversample/undersample with sources is refused by check_sources)
    counts = np.bincount(table.expression, minlength=max(present) + 1 if present else 1)
    # undersample: each epoch draws a new seeded subset of at most max_per_class samples of every class
    under = [base.filter(lambda x, y, c=c: tf.equal(y["expression"], c)) for c in present] \
        if d.balance == "undersample" else None
    n_epoch = epoch_size(table, d)

    if table.images is not None:  # in memory: a full shuffle every epoch (the buffer holds copies of the images)
        buffer = max(len(table), 1)
    else:  # streamed from disk: the shuffle buffer is the memory that grows with the data
        buffer = min(d.shuffle_buffer, max(len(table), 1),
                     max(256, (d.cache_budget_mb << 20) // (d.image_size ** 2 * d.channels)))

    def one_epoch(_):
        e = epoch.read_value() if epoch is not None else tf.constant(0, tf.int64)
        epoch_seed = _epoch_seed(tf.cast(seed, tf.int64), e)
        ds = _base_dataset(table, d.image_size, d.channels, d.labels, epoch_seed) if stream_shards else base
        if per_class is not None:
            ds = tf.data.Dataset.sample_from_datasets(per_class, weights=[1.0 / len(present)] * len(present),
                                                      seed=epoch_seed).take(len(table))
        if under is not None:
            ds = under[0].shuffle(int(counts[present[0]]), seed=epoch_seed).take(d.max_per_class)
            for c, sub in zip(present[1:], under[1:]):
                ds = ds.concatenate(sub.shuffle(int(counts[c]), seed=epoch_seed + c).take(d.max_per_class))
        if mix is not None:  # each source reshuffled endlessly, drawn with its weight; an epoch is len(table) draws
            streams = [src.shuffle(n, seed=epoch_seed + k, reshuffle_each_iteration=True).repeat()
                       for k, (src, n) in enumerate(zip(mix[0], mix[2]))]
            ds = tf.data.Dataset.sample_from_datasets(streams, weights=mix[1], seed=epoch_seed).take(len(table))
        ds = ds.shuffle(min(buffer, n_epoch) if under is not None else buffer, seed=epoch_seed,
                        reshuffle_each_iteration=False)
        ds = ds.batch(bs, drop_remainder=drop_remainder)
        if aug is not None:
            ds = ds.enumerate().map(lambda i, xy: (aug(xy[0], tf.stack([epoch_seed, i])), xy[1]),
                                    num_parallel_calls=AUTOTUNE, deterministic=True)
        return ds

    ds = tf.data.Dataset.from_tensors(0).flat_map(one_epoch)  # re-evaluated (and re-keyed) at each iteration
    n_batches = n_epoch // bs if drop_remainder else math.ceil(n_epoch / bs)
    ds = ds.apply(tf.data.experimental.assert_cardinality(n_batches))  # Keras knows the steps
    opts = tf.data.Options()
    opts.deterministic = True  # batch k of epoch e is the same batch in every run, resumed or not
    if d.pipeline_cpus:  # the cores tf.data's autotuner may use (the model's training threads need the rest)
        opts.autotune.cpu_budget = int(d.pipeline_cpus)
    return ds.with_options(opts).prefetch(AUTOTUNE)
