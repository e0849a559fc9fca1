"""Dataset readers. Each returns a `RawTable`: image sources, expression names, valence, arousal (NaN = missing),
optional face boxes and the dataset's own split per sample.

Readers validate annotations as they read (label range, VA range and finiteness, missing columns, length
mismatches, paths escaping the data root) and raise a one-line `DataError` naming the file and row, or, with
`skip_bad`, skip the sample and record why in `BadLog`.
"""

from __future__ import annotations

import csv
import glob
import math
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

from fer_keras.data.images import TF_IMAGE_EXTS
from fer_keras.errors import DataError, reading
from fer_keras.labels import AFFECTNET_ORDER, CANONICAL, FER2013_ORDER, class_names_from_order, normalize_name
from fer_keras.registry import Registry

SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val", "publictest": "val", "dev": "val",
    "test": "test", "privatetest": "test", "testing": "test",
}

READERS: Registry = Registry("data format", DataError)


@dataclass
class BadLog:
    """Collects skipped samples (with `skip_bad`) or raises at the first one."""

    skip: bool = False
    items: List[tuple] = field(default_factory=list)

    def bad(self, where: str, why: str) -> None:
        if not self.skip:
            raise DataError(f"{where}: {why} (use --skip-bad to skip such samples)")
        self.items.append((where, why))

    def __len__(self) -> int:
        return len(self.items)


@dataclass
class RawTable:
    """What every reader returns, before labels are mapped to a preset."""

    sources: List[str]  # file paths, or 'file:row' identifiers for in-memory images
    names: List[str]  # canonical (or preset-level, e.g. 'positive') expression name per sample
    valence: np.ndarray  # float32, NaN = missing
    arousal: np.ndarray
    images: Optional[np.ndarray] = None  # (N,H,W,C) uint8 when the data is in memory (npy, FER2013 CSV)
    boxes: Optional[np.ndarray] = None  # (N,4) float32 x,y,w,h face boxes, NaN = whole image
    splits: Optional[List[str]] = None  # 'train'/'val'/'test' per sample, or None: no own split
    dropped: Dict[str, int] = field(default_factory=dict)  # why -> count (e.g. AffectNet labels 8-10)
    origin: str = ""
    frames: Optional[List[List[str]]] = None  # clip datasets: the frame paths of each clip (sources = clip dirs)
    shards: Optional[Dict[str, List[str]]] = None  # prepared TFRecords: split -> shard files (see data/shards.py)
    shard_info: Optional[dict] = None  # prepared TFRecords: image_size, channels, encoding, class_names
    # Soft labels (e.g. FER+ crowd votes): (N, len(soft_names)) non-negative counts or probabilities over the
    # canonical classes `soft_names`; mapped into the run's preset by `pipeline.to_preset`.
    soft: Optional[np.ndarray] = None
    soft_names: Optional[List[str]] = None

    def __len__(self) -> int:
        return len(self.names)

    def subset(self, idx) -> "RawTable":
        idx = np.asarray(idx, dtype=np.int64)
        return RawTable(
            sources=[self.sources[i] for i in idx], names=[self.names[i] for i in idx],
            valence=self.valence[idx], arousal=self.arousal[idx],
            images=None if self.images is None else self.images[idx],
            boxes=None if self.boxes is None else self.boxes[idx],
            splits=None if self.splits is None else [self.splits[i] for i in idx],
            dropped=dict(self.dropped), origin=self.origin,
            frames=None if self.frames is None else [self.frames[i] for i in idx],
            shards=self.shards, shard_info=self.shard_info,
            soft=None if self.soft is None else self.soft[idx], soft_names=self.soft_names)


def split_name(name: str) -> Optional[str]:
    """The split a folder or column value names (`train`, `val`, `test`: `training`, `PublicTest`, `valid` ...), or
    None."""
    return SPLIT_ALIASES.get(name.strip().lower().replace("_", "").replace("-", ""))


def parse_va(raw, where: str, log: BadLog, missing_values=("",)) -> Optional[float]:
    """Parses one valence/arousal cell: empty = missing (NaN); non-numeric, NaN/inf or |v| > 1 is bad input.

    Returns the value, NaN for missing, or None when the sample is bad and skipped.
    """
    if raw is None:
        return math.nan
    s = str(raw).strip()
    if s in missing_values:
        return math.nan
    try:
        v = float(s)
    except ValueError:
        log.bad(where, f"valence/arousal {s!r} is not a number")
        return None
    if not math.isfinite(v):
        log.bad(where, f"valence/arousal {s!r} is not finite (leave the cell empty for 'missing')")
        return None
    if abs(v) > 1.0 + 1e-6:
        log.bad(where, f"valence/arousal {v} is outside [-1, 1]")
        return None
    return v


def parse_label(raw, order: Sequence[str], where: str, log: BadLog) -> Optional[str]:
    """Turns an integer label (index into `order`) or a class name into a canonical name; None if bad+skipped."""
    s = str(raw).strip()
    if s == "":
        log.bad(where, "expression label is empty")
        return None
    try:
        f = float(s)
    except ValueError:
        name = normalize_name(s)
        if name is None:
            log.bad(where, f"expression label {s!r} is neither an integer nor a known class name")
        return name
    if not f.is_integer():
        log.bad(where, f"expression label {s!r} is not an integer")
        return None
    i = int(f)
    if not 0 <= i < len(order):
        log.bad(where, f"expression label {i} is out of range 0..{len(order) - 1} ({', '.join(order)})")
        return None
    return order[i]


def resolve_path(root: str, rel: str, where: str, allow_outside: bool, log: BadLog) -> Optional[str]:
    """Joins an annotation path to `root` and refuses paths that escape it (unless allowed)."""
    rel = str(rel).strip()
    if not rel:
        log.bad(where, "image path is empty")
        return None
    if "\x00" in rel:
        log.bad(where, "image path contains a NUL byte")
        return None
    path = os.path.normpath(rel if os.path.isabs(rel) else os.path.join(root, rel))
    if not allow_outside:
        root_abs = os.path.realpath(root)
        if os.path.commonpath([root_abs, os.path.realpath(path)]) != root_abs:
            log.bad(where, f"image path {rel!r} escapes the data root {root} (set data.allow_outside_root=true "
                           "to allow)")
            return None
    return path


def _order_from_cfg(cfg, default: Sequence[str]) -> List[str]:
    return class_names_from_order(cfg.class_names) if cfg.class_names else list(default)


# === Readers ===

def _list_class_folders(root: str, log: BadLog, dropped: Dict[str, int], allow_outside: bool = False):
    """Yields (path, canonical name) for `<root>/<class>/*` images; class folders or files that are symlinks
    leading out of `root` are bad input unless `allow_outside` (data.allow_outside_root)."""
    entries = sorted(e for e in os.listdir(root) if os.path.isdir(os.path.join(root, e)))
    if not entries:
        raise DataError(f"{root}: no class folders found (expected <root>/<class>/*.jpg)")
    for cls in entries:
        if cls.startswith("."):
            continue
        name = normalize_name(cls)
        folder = os.path.join(root, cls)
        if name is None:
            log.bad(folder, f"unknown class folder {cls!r}; known names: {', '.join(sorted(set(CANONICAL)))} "
                            "(and aliases such as angry, happiness, positive)")
            continue
        files = sorted(f for f in os.listdir(folder) if f.lower().endswith(TF_IMAGE_EXTS))
        if not files:
            log.bad(folder, "class folder has no images")
            continue
        skipped = [f for f in os.listdir(folder) if not f.lower().endswith(TF_IMAGE_EXTS) and not f.startswith(".")]
        if skipped:
            dropped["non-image files ignored"] = dropped.get("non-image files ignored", 0) + len(skipped)
        for f in files:
            p = os.path.join(folder, f)
            if not allow_outside and _escapes(root, p):
                log.bad(p, f"links out of the data root {root} (set data.allow_outside_root=true to allow)")
                continue
            yield p, name


def _escapes(root: str, path: str) -> bool:
    root_abs = os.path.realpath(root)
    return os.path.commonpath([root_abs, os.path.realpath(path)]) != root_abs


@READERS.register("folder")
def read_folder(path: str, cfg, log: BadLog) -> RawTable:
    """`<root>/<class>/*.{jpg,png,bmp,gif}`, or `<root>/{train,val,test}/<class>/*` when the root has splits."""
    if not os.path.isdir(path):
        raise DataError(f"{path}: not a folder")
    subdirs = [d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d))]
    split_dirs = {d: split_name(d) for d in subdirs if split_name(d)}
    sources, names, splits, dropped = [], [], [], {}
    if split_dirs:
        for d, split in sorted(split_dirs.items()):
            for p, n in _list_class_folders(os.path.join(path, d), log, dropped, cfg.allow_outside_root):
                sources.append(p), names.append(n), splits.append(split)
    else:
        for p, n in _list_class_folders(path, log, dropped, cfg.allow_outside_root):
            sources.append(p), names.append(n)
    nan = np.full(len(names), np.nan, np.float32)
    return RawTable(sources, names, nan, nan.copy(), splits=splits or None, dropped=dropped, origin=path)


@READERS.register("csv")
def read_csv(path: str, cfg, log: BadLog) -> RawTable:
    """Generic CSV: path, expression (index into data.class_names or a class name), optional valence/arousal/split.

    Paths are relative to `data.image_root` (default: the CSV's folder). Column names are configurable.
    """
    root = cfg.image_root or os.path.dirname(os.path.abspath(path))
    order = _order_from_cfg(cfg, CANONICAL)
    sources, names, val, aro, splits = [], [], [], [], []
    has_split = cfg.csv_split_col in _read_header(path)
    hint = "set data.csv_path_col / data.csv_expression_col if yours are named differently"
    for where, row in _csv_rows(path, (cfg.csv_path_col, cfg.csv_expression_col), hint, log):
        name = parse_label(row.get(cfg.csv_expression_col), order, where, log)
        if name is None:
            continue
        v = parse_va(row.get(cfg.csv_valence_col), where, log)
        a = parse_va(row.get(cfg.csv_arousal_col), where, log)
        if v is None or a is None:
            continue
        p = resolve_path(root, row.get(cfg.csv_path_col) or "", where, cfg.allow_outside_root, log)
        if p is None:
            continue
        if not os.path.isfile(p):
            log.bad(where, f"image file not found: {p}")
            continue
        split = split_name(row.get(cfg.csv_split_col) or "") or "" if has_split else ""
        sources.append(p), names.append(name), val.append(v), aro.append(a), splits.append(split)
    return RawTable(sources, names, np.array(val, np.float32), np.array(aro, np.float32),
                    splits=splits if has_split and any(splits) else None, origin=path)


def _open_csv(path: str):
    if not os.path.isfile(path):
        raise DataError(f"{path}: file not found")
    return open(path, newline="", encoding="utf-8-sig")


def _read_header(path: str) -> List[str]:
    with reading(path), _open_csv(path) as f:
        return csv.DictReader(f).fieldnames or []


def _csv_rows(path: str, required: Sequence[str], hint: str, log: Optional[BadLog] = None):
    """Yields `(where, row)` for each data row of a CSV after checking its required columns.

    `where` is `file:line` (the header is line 1), for error messages that point at the row. A row with fewer
    fields than the header is bad input (csv would fill the missing ones with None, read later as the text "None").
    """
    with reading(path), _open_csv(path) as f:
        reader = csv.DictReader(f)
        cols = reader.fieldnames or []
        dup = sorted({c for c in cols if cols.count(c) > 1})
        if dup:
            raise DataError(f"{path}: column {dup[0]!r} appears {cols.count(dup[0])} times in the header; "
                            "which one holds the data is ambiguous")
        for need in required:
            if need not in cols:
                raise DataError(f"{path}: missing column {need!r} ({hint}; columns: {', '.join(cols) or 'none'})")
        for row_no, row in enumerate(reader, start=2):
            where = f"{path}:{row_no}"
            if any(row.get(c) is None for c in required):
                n = sum(v is not None for k, v in row.items() if k is not None)
                why = f"the row has {n} fields, the header {len(cols)}"
                if log is None:
                    raise DataError(f"{where}: {why}")
                log.bad(where, why)
                continue
            yield where, row


def _load_npy(path: str, what: str) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)  # never unpickle: a .npy must not run code
        if not isinstance(arr, np.ndarray):  # an .npz archive saved under a .npy name
            arr.close()
            raise DataError(f"{path}: {what} is an .npz archive, not a .npy array (save it with np.save)")
        return arr
    except DataError:
        raise
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise DataError(f"{path}: {what} holds pickled Python objects; refusing to load "
                            "(allow_pickle=False)") from None
        raise DataError(f"{path}: cannot read {what} ({e})") from None
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read {what} ({e})") from None


@READERS.register("npy")
def read_npy(path: str, cfg, log: BadLog) -> RawTable:
    """A folder with `images.npy` (N,H,W[,C] uint8) or `paths.txt` (one image path per line), plus
    `expressions.npy` (int, index into data.class_names) and optional `valence.npy` / `arousal.npy`."""
    if not os.path.isdir(path):
        raise DataError(f"{path}: not a folder (npy format expects a folder with images.npy and expressions.npy)")
    f_img, f_paths = os.path.join(path, "images.npy"), os.path.join(path, "paths.txt")
    f_exp = os.path.join(path, "expressions.npy")
    if not os.path.isfile(f_exp):
        raise DataError(f"{path}: expressions.npy not found")
    exp = _load_npy(f_exp, "expressions")
    if exp.ndim != 1 or not np.issubdtype(exp.dtype, np.integer):
        raise DataError(f"{f_exp}: expected a 1-D integer array, got shape {exp.shape} dtype {exp.dtype}")
    n = len(exp)
    images, sources = None, None
    if os.path.isfile(f_img):
        images = _load_npy(f_img, "images")
        if images.ndim == 3:
            images = images[..., None]
        if images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
            raise DataError(f"{f_img}: expected (N,H,W) or (N,H,W,C) with C in 1/3/4, got shape {images.shape}")
        if min(images.shape[1:3]) < cfg.min_image_side:
            raise DataError(f"{f_img}: images are {images.shape[1]}x{images.shape[2]} pixels, smaller than "
                            f"data.min_image_side={cfg.min_image_side} (placeholders, not faces)")
        if images.dtype != np.uint8:
            if not (np.issubdtype(images.dtype, np.floating) or np.issubdtype(images.dtype, np.integer)):
                raise DataError(f"{f_img}: expected numeric pixels, got dtype {images.dtype}")
            if np.issubdtype(images.dtype, np.floating):
                finite = np.isfinite(images).reshape(len(images), -1).all(axis=1)
                if not finite.all():
                    raise DataError(f"{f_img}: image {int(np.argmin(finite))} has NaN or infinite pixels "
                                    f"({int((~finite).sum())} images in all)")
                if images.size and float(images.max()) <= 1.0:
                    raise DataError(f"{f_img}: float images in [0,1]; fer_keras expects uint8 0-255 images")
            if images.size and (images.min() < 0 or images.max() > 255):
                raise DataError(f"{f_img}: pixel values outside 0..255 (min {images.min()}, max {images.max()})")
            images = images.astype(np.uint8)
        if images.shape[-1] == 4:
            images = images[..., :3]
        if len(images) != n:
            raise DataError(f"{path}: images.npy has {len(images)} samples but expressions.npy has {n}")
        sources = [f"{f_img}:{i}" for i in range(n)]
    elif os.path.isfile(f_paths):
        with reading(f_paths), open(f_paths, encoding="utf-8") as f:
            lines = [ln.strip() for ln in f if ln.strip()]
        if len(lines) != n:
            raise DataError(f"{path}: paths.txt has {len(lines)} lines but expressions.npy has {n}")
        root = cfg.image_root or path
        sources = [resolve_path(root, ln, f"{f_paths}:{i + 1}", cfg.allow_outside_root, log)
                   for i, ln in enumerate(lines)]
    else:
        raise DataError(f"{path}: neither images.npy nor paths.txt found")
    va = {}
    for k in ("valence", "arousal"):
        fk = os.path.join(path, f"{k}.npy")
        if os.path.isfile(fk):
            raw = _load_npy(fk, k)
            if not (np.issubdtype(raw.dtype, np.floating) or np.issubdtype(raw.dtype, np.integer)):
                raise DataError(f"{fk}: expected numbers, got dtype {raw.dtype}")
            arr = raw.astype(np.float32).reshape(-1)
            if len(arr) != n:
                raise DataError(f"{path}: {k}.npy has {len(arr)} values but expressions.npy has {n}")
            va[k] = arr
        else:
            va[k] = np.full(n, np.nan, np.float32)
    order = _order_from_cfg(cfg, CANONICAL)
    keep, names = [], []
    for i in range(n):
        where = f"{f_exp}[{i}]"
        if sources[i] is None:
            continue
        name = parse_label(int(exp[i]), order, where, log)
        if name is None:
            continue
        bad = False
        for k in ("valence", "arousal"):
            v = va[k][i]
            if not math.isnan(v) and (not math.isfinite(v) or abs(v) > 1 + 1e-6):
                log.bad(f"{path}/{k}.npy[{i}]", f"{k} {v} is not finite or outside [-1, 1]")
                bad = True
                break
        if bad:
            continue
        keep.append(i), names.append(name)
    keep = np.array(keep, np.int64)
    return RawTable([sources[i] for i in keep], names, va["valence"][keep], va["arousal"][keep],
                    images=None if images is None else images[keep], origin=path)


@READERS.register("fer2013")
def read_fer2013(path: str, cfg, log: BadLog) -> RawTable:
    """The Kaggle FER2013 CSV (`emotion,pixels,Usage`): 48x48 gray images; Usage gives train/val/test."""
    images, names, splits, sources = [], [], [], []
    for where, row in _csv_rows(path, ("emotion", "pixels"), "FER2013 CSV needs emotion,pixels[,Usage]", log):
        name = parse_label(row["emotion"], FER2013_ORDER, where, log)
        if name is None:
            continue
        try:
            px = np.array((row["pixels"] or "").split(), dtype=np.float32)
        except ValueError:
            log.bad(where, "pixels are not space-separated numbers")
            continue
        if px.size != 48 * 48:
            log.bad(where, f"expected 2304 pixels (48x48), got {px.size}")
            continue
        if not np.all(np.isfinite(px)) or px.min() < 0 or px.max() > 255 or np.any(px != np.round(px)):
            log.bad(where, "pixel values must be integers 0..255 (found NaN, inf, a fraction or a value outside)")
            continue
        images.append(px.reshape(48, 48, 1).astype(np.uint8))
        names.append(name)
        splits.append(split_name(row.get("Usage") or "") or "")
        sources.append(where)
    n = len(names)
    nan = np.full(n, np.nan, np.float32)
    imgs = np.stack(images) if images else np.zeros((0, 48, 48, 1), np.uint8)
    return RawTable(sources, names, nan, nan.copy(), images=imgs, splits=splits if any(splits) else None,
                    origin=path)


@READERS.register("affectnet")
def read_affectnet(path: str, cfg, log: BadLog) -> RawTable:
    """AffectNet, either the official CSVs (`training.csv` / `validation.csv` with face boxes; images under
    `data.image_root`, default `<path>/Manually_Annotated_Images`) or the per-image layout
    `<split>/images/<id>.jpg` + `<split>/annotations/<id>_{exp,val,aro}.npy`. Labels 8-10 (none, uncertain,
    no-face) are dropped and counted."""
    if os.path.isfile(path) and path.lower().endswith(".csv"):
        csvs = [(path, "")]
        root = cfg.image_root or os.path.join(os.path.dirname(os.path.abspath(path)), "Manually_Annotated_Images")
    else:
        csvs = [(os.path.join(path, n), s) for n, s in (("training.csv", "train"), ("validation.csv", "val"))
                if os.path.isfile(os.path.join(path, n))]
        root = cfg.image_root or os.path.join(path, "Manually_Annotated_Images")
    if csvs:
        return _read_affectnet_csv(csvs, root, cfg, log)
    return _read_affectnet_npy(path, cfg, log)


def _affectnet_label(raw, where: str, log: BadLog) -> Optional[int]:
    """An AffectNet expression code 0-10 from a CSV cell or `_exp.npy` value (stored as a string or a number);
    fractions (3.7), NaN/inf and text are bad input, never truncated to a class."""
    s = str(raw).strip()
    try:
        f = float(s)
    except ValueError:
        log.bad(where, f"expression {s!r} is not an integer")
        return None
    if not math.isfinite(f) or not f.is_integer():
        log.bad(where, f"expression {s!r} is not an integer")
        return None
    return int(f)


def _read_affectnet_csv(csvs, root, cfg, log) -> RawTable:
    sources, names, val, aro, boxes, splits, dropped = [], [], [], [], [], [], {}
    drop_key = "AffectNet labels 8-10 (none/uncertain/no-face)"
    for csv_path, split in csvs:
        for where, row in _csv_rows(csv_path, ("subDirectory_filePath", "expression"),
                                    "not an AffectNet annotation CSV?", log):
            lab = _affectnet_label(row["expression"], where, log)
            if lab is None:
                continue
            if lab in (8, 9, 10):
                dropped[drop_key] = dropped.get(drop_key, 0) + 1
                continue
            name = parse_label(lab, AFFECTNET_ORDER, where, log)
            if name is None:
                continue
            v = parse_va(row.get("valence"), where, log, missing_values=("", "-2", "-2.0"))
            a = parse_va(row.get("arousal"), where, log, missing_values=("", "-2", "-2.0"))
            if v is None or a is None:
                continue
            p = resolve_path(root, row["subDirectory_filePath"], where, cfg.allow_outside_root, log)
            if p is None:
                continue
            if not os.path.isfile(p):
                log.bad(where, f"image file not found: {p}")
                continue
            try:
                box = [float(row.get(k) or "nan") for k in ("face_x", "face_y", "face_width", "face_height")]
            except ValueError:
                log.bad(where, "face box values are not numbers")
                continue
            if not any(math.isnan(b) for b in box) and (box[2] <= 0 or box[3] <= 0 or box[0] < 0 or box[1] < 0):
                log.bad(where, f"face box {box} has a non-positive size or negative origin")
                continue
            sources.append(p), names.append(name), val.append(v), aro.append(a)
            boxes.append(box), splits.append(split)
    return RawTable(sources, names, np.array(val, np.float32), np.array(aro, np.float32),
                    boxes=np.array(boxes, np.float32).reshape(-1, 4), splits=splits if any(splits) else None,
                    dropped=dropped, origin=csvs[0][0])


def _read_affectnet_npy(path: str, cfg, log) -> RawTable:
    split_dirs = [(d, split_name(d.replace("_set", ""))) for d in sorted(os.listdir(path))
                  if os.path.isdir(os.path.join(path, d, "annotations"))] if os.path.isdir(path) else []
    if os.path.isdir(os.path.join(path, "annotations")):
        split_dirs = [(".", "")]
    if not split_dirs:
        raise DataError(f"{path}: no AffectNet training.csv/validation.csv and no <split>/annotations folder")
    sources, names, val, aro, splits, dropped = [], [], [], [], [], {}
    for d, split in split_dirs:
        ann, imgs = os.path.join(path, d, "annotations"), os.path.join(path, d, "images")
        for f_exp in sorted(glob.glob(os.path.join(ann, "*_exp.npy"))):
            sid = os.path.basename(f_exp)[:-len("_exp.npy")]
            where = f_exp
            lab = _load_npy(f_exp, "expression")
            lab = _affectnet_label(lab.item() if lab.size == 1 else lab, where, log)
            if lab is None:
                continue
            if lab in (8, 9, 10):
                dropped["AffectNet labels 8-10"] = dropped.get("AffectNet labels 8-10", 0) + 1
                continue
            name = parse_label(lab, AFFECTNET_ORDER, where, log)
            if name is None:
                continue
            vals = []
            for k in ("val", "aro"):
                fk = os.path.join(ann, f"{sid}_{k}.npy")
                vals.append(parse_va(str(_load_npy(fk, k)) if os.path.isfile(fk) else "", fk, log,
                                     missing_values=("", "-2", "-2.0")))
            if None in vals:
                continue
            cands = [os.path.join(imgs, sid + e) for e in TF_IMAGE_EXTS]
            img = next((c for c in cands if os.path.isfile(c)), None)
            if img is None:
                log.bad(where, f"no image {sid}.* in {imgs}")
                continue
            sources.append(img), names.append(name), val.append(vals[0]), aro.append(vals[1]), splits.append(split)
    return RawTable(sources, names, np.array(val, np.float32), np.array(aro, np.float32),
                    splits=splits if any(splits) else None, dropped=dropped, origin=path)


# FER+ vote columns (in its votes.csv order) as canonical names; `unknown` and `NF` (not a face) are not emotions.
FERPLUS_EMOTIONS = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt"]
FERPLUS_OTHER = ["unknown", "NF"]


FERPLUS_MAX_VOTES = 1000  # FER+ has 10 annotators per face; a bigger count is not a vote count


def ferplus_majority(votes: np.ndarray) -> np.ndarray:
    """Microsoft's FER+ "majority" rule over the 10 vote columns (8 emotions, unknown, NF) of each row: counts of 1
    are set to 0, then the top column wins if it holds more than half of the remaining votes; -1 where none does.

    Returns:
        (N,) int: the winning column (0-9; 8 = unknown, 9 = not a face), or -1 (no majority).
    """
    v = np.where(votes == 1, 0, votes).astype(np.float64)
    total = v.sum(axis=1)
    top = v.argmax(axis=1)
    won = v[np.arange(len(v)), top] > 0.5 * total
    return np.where(won & (total > 0), top, -1)


@READERS.register("ferplus")
def read_ferplus(path: str, cfg, log: BadLog) -> RawTable:
    """FER+ crowd votes (`<path>/{train,val}/votes.csv`, or one votes.csv): each row's `image` names its FER2013
    JPEG relative to the folder above `path` (or `data.image_root`). Hard labels follow Microsoft's majority rule;
    the 8 emotion votes become soft labels (`RawTable.soft`). Rows whose majority is unknown / not-a-face or that
    have no majority are dropped and counted, or with `data.ferplus_unknown: keep` labelled by their most-voted
    emotion. Rows whose emotion votes sum to zero are always dropped (nothing to learn from)."""
    if os.path.isfile(path):
        files = [(path, "")]
        base = os.path.dirname(os.path.dirname(os.path.abspath(path)))
    else:
        files = [(os.path.join(path, s, "votes.csv"), s) for s in ("train", "val", "test")
                 if os.path.isfile(os.path.join(path, s, "votes.csv"))]
        if not files:
            raise DataError(f"{path}: no train/votes.csv or val/votes.csv (the FER+ layout)")
        base = os.path.dirname(os.path.abspath(path.rstrip("/\\")))
    root = cfg.image_root or base
    keep_unknown = getattr(cfg, "ferplus_unknown", "drop") == "keep"
    fer2013_labels = getattr(cfg, "ferplus_labels", "majority") == "fer2013"
    cols = FERPLUS_EMOTIONS + FERPLUS_OTHER
    sources, names, splits, soft, dropped = [], [], [], [], {}
    emotion_names = [normalize_name(n) for n in FERPLUS_EMOTIONS]
    for f, split in files:
        for where, row in _csv_rows(f, ["image"] + cols, "FER+ votes.csv needs image," + ",".join(cols), log):
            try:
                votes = np.array([float(row[c]) for c in cols])
            except (TypeError, ValueError):
                log.bad(where, "vote counts must be numbers")
                continue
            # Counts of annotators: whole numbers, not negative, at most FERPLUS_MAX_VOTES each (1e308 would
            # overflow the sums below), with at least one vote.
            if (not np.all(np.isfinite(votes)) or votes.min() < 0 or votes.max() > FERPLUS_MAX_VOTES
                    or not np.all(votes == np.round(votes)) or votes.sum() <= 0):
                log.bad(where, f"votes {[f'{v:g}' for v in votes]} must be whole non-negative counts of at most "
                        f"{FERPLUS_MAX_VOTES} annotators, with a positive sum")
                continue
            emo = votes[:8]
            if fer2013_labels:  # the face's original FER2013 label is the hard label; the votes the soft one
                name = parse_label(row.get("fer2013_label") or "", FER2013_ORDER, where, log)
                if name is None:
                    continue
            else:
                why = None
                win = int(ferplus_majority(votes[None])[0]) if emo.sum() > 0 else -2
                if win == -2:
                    why = "FER+ rows without an emotion vote (all unknown / not a face)"
                elif (win < 0 or win >= 8) and not keep_unknown:
                    why = "FER+ rows without a majority" if win < 0 else f"FER+ rows whose majority is {cols[win]}"
                if why:
                    dropped[why] = dropped.get(why, 0) + 1
                    continue
                name = emotion_names[win if 0 <= win < 8 else int(np.argmax(emo))]
            img = resolve_path(root, row["image"] or "", where, cfg.allow_outside_root, log)
            if img is None:
                continue
            if not os.path.isfile(img):
                log.bad(where, f"image {row['image']!r} not found under {root}")
                continue
            sources.append(img)
            names.append(name)
            splits.append(split)
            soft.append(emo / emo.sum() if emo.sum() > 0 else np.full(8, np.nan))
    n = len(names)
    nan = np.full(n, np.nan, np.float32)
    return RawTable(sources, names, nan, nan.copy(), splits=splits if any(splits) else None, dropped=dropped,
                    origin=path, soft=np.array(soft, np.float32).reshape(n, 8), soft_names=emotion_names)


@READERS.register("expw")
def read_expw(path: str, cfg, log: BadLog) -> RawTable:
    """ExpW face crops: `<path>/labels.csv` with `path,label[,photo,...]` (paths relative to `<path>`, labels by
    name), or the crops' class folders when there is no labels.csv. No own split (cut by val/test_fraction)."""
    csv_path = path if os.path.isfile(path) else os.path.join(path, "labels.csv")
    if not os.path.isfile(csv_path):
        return read_folder(os.path.join(path, "images") if os.path.isdir(os.path.join(path, "images")) else path,
                           cfg, log)
    root = cfg.image_root or os.path.dirname(os.path.abspath(csv_path))
    sources, names = [], []
    order = [normalize_name(n) for n in ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")]
    for where, row in _csv_rows(csv_path, ("path", "label"), "ExpW labels.csv needs path,label", log):
        name = parse_label(row["label"], order, where, log)
        if name is None:
            continue
        img = resolve_path(root, row["path"] or "", where, cfg.allow_outside_root, log)
        if img is None:
            continue
        sources.append(img)
        names.append(name)
    nan = np.full(len(names), np.nan, np.float32)
    return RawTable(sources, names, nan, nan.copy(), origin=path)


# === Format detection ===

def detect_format(path: str) -> str:
    """Guesses the format of `path` from its layout/header; raises a DataError when it cannot tell."""
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file or folder")
    if os.path.isfile(path):
        if not path.lower().endswith(".csv"):
            raise DataError(f"{path}: cannot detect the format of this file (expected a .csv or a folder)")
        with reading(path), _open_csv(path) as f:
            header = [h.strip() for h in (f.readline().strip().split(","))]
        if "pixels" in header and "emotion" in header:
            return "fer2013"
        if "subDirectory_filePath" in header:
            return "affectnet"
        return "csv"
    entries = set(os.listdir(path))
    if any(os.path.isfile(os.path.join(path, e, "votes.csv")) for e in ("train", "val", "test")):
        return "ferplus"
    if "labels.csv" in entries and os.path.isdir(os.path.join(path, "images")):
        return "expw"
    if "manifest.json" in entries:
        return "tfrecord"
    if "expressions.npy" in entries:
        return "npy"
    if {"training.csv", "validation.csv"} & entries or os.path.isdir(os.path.join(path, "annotations")) or any(
            os.path.isdir(os.path.join(path, e, "annotations")) for e in entries):
        return "affectnet"
    if "Clip" in entries and "EmoLabel_DataSplit" in entries:
        return "dfew"
    if _looks_like_clips(path):
        return "clips"
    return "folder"


def _looks_like_clips(path: str) -> bool:
    """`<root>/[split/]<class>/<clip>/*.jpg`: class folders hold folders of frames rather than images."""

    def subdirs(p):
        return sorted(d for d in os.listdir(p) if os.path.isdir(os.path.join(p, d)) and not d.startswith("."))

    dirs = subdirs(path)
    if dirs and split_name(dirs[0]):  # skip an optional split level
        path = os.path.join(path, dirs[0])
        dirs = subdirs(path)
    if not dirs:
        return False
    class_dir = os.path.join(path, dirs[0])
    entries = [e for e in os.listdir(class_dir) if not e.startswith(".")]
    if any(e.lower().endswith(TF_IMAGE_EXTS) for e in entries):
        return False
    clips = subdirs(class_dir)
    return bool(clips) and any(f.lower().endswith(TF_IMAGE_EXTS) for f in os.listdir(os.path.join(class_dir, clips[0])))
