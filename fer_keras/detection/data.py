"""Face-detection data: DARK FACE and WIDER FACE readers, and a synthetic low-light scene generator.

Every reader returns a `DetTable`: image paths and, per image, an (N,4) float32 array of `x1, y1, x2, y2` boxes
in pixels. Malformed annotations raise a one-line `DataError` naming the file and line (or, with `skip_bad`, the
image is skipped and counted).

Layouts:
    DARK FACE:  <root>/image/<id>.png  +  <root>/label/<id>.txt  (first line: face count; then `x1 y1 x2 y2`)
    WIDER FACE: an annotation text file (`wider_face_train_bbx_gt.txt`): image path, face count, then one
                `x y w h blur expression illumination invalid occlusion pose` line per face (a count of 0 is
                followed by one line of zeros); images under `--image-root` (default: <txt dir>/images).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from fer_keras.data.demo import FACE_FEATURES, draw_face
from fer_keras.data.images import IMAGE_EXTS
from fer_keras.data.readers import BadLog
from fer_keras.detection.lowlight import degrade_low_light
from fer_keras.detection.retinanet import check_input_size
from fer_keras.errors import DataError
from fer_keras.io_utils import write_image


@dataclass
class DetTable:
    """Images and their face boxes (x1, y1, x2, y2 pixels)."""

    sources: List[str]
    boxes: List[np.ndarray]
    dropped: Dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.sources)

    def subset(self, idx) -> "DetTable":
        return DetTable([self.sources[i] for i in idx], [self.boxes[i] for i in idx], dict(self.dropped))

    @property
    def num_faces(self) -> int:
        return int(sum(len(b) for b in self.boxes))


def _numbers(line: str, where: str, n: int) -> List[float]:
    parts = line.split()
    if len(parts) < n:
        raise DataError(f"{where}: expected {n} numbers, got {line.strip()!r}")
    try:
        return [float(p) for p in parts[:n]]
    except ValueError:
        raise DataError(f"{where}: not a number in {line.strip()!r}") from None


def read_darkface_label(path: str) -> np.ndarray:
    """One DARK FACE label file → (N,4) boxes; a DataError names the file and line when it is malformed."""
    with open(path, encoding="utf-8") as f:
        lines = [ln for ln in f.read().splitlines() if ln.strip()]
    if not lines:
        raise DataError(f"{path}: empty label file (the first line must be the face count)")
    try:
        count = int(lines[0].split()[0])
    except ValueError:
        raise DataError(f"{path}:1: the first line must be the face count, got {lines[0].strip()!r}") from None
    if count != len(lines) - 1:
        raise DataError(f"{path}: says {count} faces but has {len(lines) - 1} box lines")
    boxes = np.array([_numbers(ln, f"{path}:{i + 2}", 4) for i, ln in enumerate(lines[1:])], np.float32)
    boxes = boxes.reshape(-1, 4)
    bad = np.where((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1]))[0]
    if len(bad):
        raise DataError(f"{path}:{bad[0] + 2}: box {boxes[bad[0]].tolist()} has x2 <= x1 or y2 <= y1")
    return boxes


def read_darkface(root: str, skip_bad: bool = False, log: Optional[BadLog] = None) -> DetTable:
    """Reads `<root>/image/*` with `<root>/label/<id>.txt` (DARK FACE layout)."""
    log = log or BadLog(skip=skip_bad)
    img_dir, lab_dir = os.path.join(root, "image"), os.path.join(root, "label")
    for d in (img_dir, lab_dir):
        if not os.path.isdir(d):
            raise DataError(f"{root}: no {os.path.basename(d)}/ folder (DARK FACE layout: image/<id>.png + "
                            "label/<id>.txt)")
    sources, boxes = [], []
    for name in sorted(os.listdir(img_dir)):
        if not name.lower().endswith(IMAGE_EXTS):
            continue
        label = os.path.join(lab_dir, os.path.splitext(name)[0] + ".txt")
        try:
            if not os.path.isfile(label):
                raise DataError(f"{label}: missing label file for image {name}")
            b = read_darkface_label(label)
        except DataError as e:
            log.bad(os.path.join(img_dir, name), str(e))
            continue
        sources.append(os.path.join(img_dir, name))
        boxes.append(b)
    if not sources:
        raise DataError(f"{img_dir}: no labelled images")
    return DetTable(sources, boxes)


def read_wider(annotation: str, image_root: Optional[str] = None, skip_bad: bool = False,
               log: Optional[BadLog] = None) -> DetTable:
    """Reads a WIDER FACE ground-truth text file; boxes marked invalid or with no area are dropped and counted."""
    log = log or BadLog(skip=skip_bad)
    image_root = image_root or os.path.join(os.path.dirname(annotation), "images")
    with open(annotation, encoding="utf-8") as f:
        lines = f.read().splitlines()
    sources, boxes, dropped = [], [], {}
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        rel, where = lines[i].strip(), f"{annotation}:{i + 1}"
        if not rel.lower().endswith(IMAGE_EXTS):
            raise DataError(f"{where}: expected an image path, got {rel!r}")
        try:
            count = int(lines[i + 1].strip())
        except (IndexError, ValueError):
            raise DataError(f"{annotation}:{i + 2}: expected the face count of {rel}") from None
        n_lines = max(count, 1)  # a count of 0 is followed by one line of zeros
        if i + 2 + n_lines > len(lines):
            raise DataError(f"{where}: {rel} says {count} faces but the file ends first")
        rows = [_numbers(lines[i + 2 + k], f"{annotation}:{i + 3 + k}", 4 if count == 0 else 10)
                for k in range(n_lines)] if count else []
        b = []
        for r in rows:
            x, y, w, h, invalid = r[0], r[1], r[2], r[3], r[7]
            if invalid or w <= 0 or h <= 0:
                dropped["invalid or empty WIDER box"] = dropped.get("invalid or empty WIDER box", 0) + 1
                continue
            b.append([x, y, x + w, y + h])
        path = os.path.join(image_root, rel)
        if not os.path.isfile(path):
            log.bad(path, f"image listed at {where} not found")
        else:
            sources.append(path)
            boxes.append(np.array(b, np.float32).reshape(-1, 4))
        i += 2 + n_lines
    if not sources:
        raise DataError(f"{annotation}: no images found under {image_root}")
    return DetTable(sources, boxes, dropped)


def read_boxes_csv(folder: str, skip_first: int = 0, skip_bad: bool = False,
                   log: Optional[BadLog] = None) -> DetTable:
    """Reads `<folder>/images/*` with `<folder>/boxes.csv` (`file,x,y,w,h` in pixels, one row per face; extra
    columns are ignored). Images are sorted by name; the first `skip_first` are left out (held-out test images).
    Boxes with no area are dropped and counted; a malformed row raises a DataError naming the file and line."""
    import csv

    log = log or BadLog(skip=skip_bad)
    table = os.path.join(folder, "boxes.csv")
    per_file: Dict[str, List[List[float]]] = {}
    dropped: Dict[str, int] = {}
    with open(table, newline="", encoding="utf-8") as f:
        rows = csv.reader(f)
        header = next(rows, None) or []
        missing = [c for c in ("file", "x", "y", "w", "h") if c not in header]
        if missing:
            raise DataError(f"{table}: missing column(s) {', '.join(missing)} (expected file,x,y,w,h)")
        col = {c: header.index(c) for c in ("file", "x", "y", "w", "h")}
        for line, row in enumerate(rows, start=2):
            if not row:
                continue
            where = f"{table}:{line}"
            if len(row) < len(header):
                raise DataError(f"{where}: expected {len(header)} fields, got {len(row)}")
            x, y, w, h = _numbers(" ".join(row[col[c]] for c in "xywh"), where, 4)
            if not all(np.isfinite([x, y, w, h])):
                raise DataError(f"{where}: box {[x, y, w, h]} is not finite")
            boxes = per_file.setdefault(row[col["file"]], [])
            if w <= 0 or h <= 0:
                dropped["box with no area"] = dropped.get("box with no area", 0) + 1
                continue
            boxes.append([x, y, x + w, y + h])
    sources, boxes = [], []
    for name in sorted(per_file)[skip_first:]:
        path = os.path.join(folder, "images", name)
        if not os.path.isfile(path):
            log.bad(path, f"image listed in {table} not found")
            continue
        sources.append(path)
        boxes.append(np.array(per_file[name], np.float32).reshape(-1, 4))
    if not sources:
        raise DataError(f"{table}: no images found under {os.path.join(folder, 'images')}")
    return DetTable(sources, boxes, dropped)


def concat_tables(tables: Sequence[DetTable]) -> DetTable:
    """One table from several (sources in order; dropped counts summed)."""
    dropped: Dict[str, int] = {}
    for t in tables:
        for k, v in t.dropped.items():
            dropped[k] = dropped.get(k, 0) + v
    return DetTable([s for t in tables for s in t.sources], [b for t in tables for b in t.boxes], dropped)


def read_detection(path: str, skip_bad: bool = False, image_root: Optional[str] = None,
                   skip_first: int = 0) -> DetTable:
    """DARK FACE folder, `boxes.csv` folder or WIDER FACE annotation file, detected from the path; several paths
    separated by commas are read one after the other. `skip_first` applies to `boxes.csv` folders."""
    if "," in path:
        return concat_tables([read_detection(p.strip(), skip_bad, image_root, skip_first)
                              for p in path.split(",") if p.strip()])
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, "boxes.csv")):
        return read_boxes_csv(path, skip_first, skip_bad)
    if os.path.isdir(path):
        return read_darkface(path, skip_bad)
    if os.path.isfile(path) and path.endswith(".txt"):
        return read_wider(path, image_root, skip_bad)
    raise DataError(f"{path}: not a DARK FACE folder (image/ + label/), a boxes.csv folder (images/ + boxes.csv) "
                    "or a WIDER FACE annotation .txt")


# === Synthetic low-light scenes ===

def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A textured indoor/outdoor-ish background: gradient, blurred noise, random rectangles and lines."""
    c0, c1 = rng.integers(30, 230, 3), rng.integers(30, 230, 3)
    t = np.linspace(0, 1, w, dtype=np.float32)[None, :, None]
    img = np.repeat(c0 * (1 - t) + c1 * t, h, axis=0)
    noise = cv2.GaussianBlur(rng.normal(0, 40, (h, w)).astype(np.float32), (0, 0), float(rng.uniform(2, 8)))
    img = img + noise[..., None]
    for _ in range(int(rng.integers(3, 9))):
        x1, y1 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x2, y2 = x1 + int(rng.integers(10, w // 3)), y1 + int(rng.integers(10, h // 3))
        cv2.rectangle(img, (x1, y1), (x2, y2), [float(v) for v in rng.integers(0, 256, 3)], -1)
    for _ in range(int(rng.integers(2, 6))):
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        p2 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.line(img, p1, p2, [float(v) for v in rng.integers(0, 256, 3)], int(rng.integers(1, 4)))
    return np.clip(img, 0, 255).astype(np.uint8)


def darken(rgb: np.ndarray, rng: np.random.Generator, gamma: Tuple[float, float] = (2.0, 3.5),
           gain: Tuple[float, float] = (0.3, 0.7), noise: Tuple[float, float] = (2.0, 8.0)) -> np.ndarray:
    """Low-light simulation: gamma darkening and exposure gain, then shot + read noise (sensor noise), uint8."""
    x = (rgb.astype(np.float32) / 255.0) ** rng.uniform(*gamma) * rng.uniform(*gain)
    shot = rng.normal(0, 1, x.shape) * np.sqrt(np.maximum(x, 0) / 255.0) * 4.0
    read = rng.normal(0, rng.uniform(*noise) / 255.0, x.shape)
    return np.clip((x + shot / 255.0 * 64 + read) * 255.0, 0, 255).astype(np.uint8)


def make_scene(rng: np.random.Generator, size: Tuple[int, int] = (320, 240), faces: Tuple[int, int] = (1, 5),
               face_px: Tuple[int, int] = (20, 72), face_crops: Optional[Sequence[np.ndarray]] = None,
               dark: bool = True) -> Tuple[np.ndarray, np.ndarray]:
    """One scene: faces pasted at random scales/positions (non-overlapping) on a textured background.

    Args:
        rng: the random generator (scenes are deterministic for a seed).
        size: (width, height).
        faces: min/max number of faces.
        face_px: min/max face side in pixels.
        face_crops: RGB face crops to paste (e.g. real faces the user provides); default: drawn demo faces.
        dark: apply `darken` (otherwise a normally lit scene).

    Returns:
        (RGB uint8 image, (N,4) float32 boxes x1,y1,x2,y2 exactly covering the pasted faces).
    """

    w, h = size
    img = _background(rng, h, w)
    boxes: List[List[float]] = []
    labels = list(FACE_FEATURES)
    for _ in range(int(rng.integers(faces[0], faces[1] + 1))):
        s = int(rng.integers(face_px[0], min(face_px[1], w, h) + 1))
        for _attempt in range(20):  # find a spot that does not overlap an earlier face
            x, y = int(rng.integers(0, w - s + 1)), int(rng.integers(0, h - s + 1))
            if all(x + s <= b[0] or b[2] <= x or y + s <= b[1] or b[3] <= y for b in boxes):
                break
        else:
            continue
        if face_crops is not None:
            face = np.asarray(face_crops[int(rng.integers(0, len(face_crops)))])
            face = cv2.cvtColor(face, cv2.COLOR_GRAY2RGB) if face.ndim == 2 else face[..., :3]
        else:
            face = draw_face(labels[int(rng.integers(0, len(labels)))], rng, 64)[0]
        img[y:y + s, x:x + s] = cv2.resize(face, (s, s), interpolation=cv2.INTER_AREA)
        boxes.append([float(x), float(y), float(x + s), float(y + s)])
    if dark:
        img = darken(img, rng)
    return img, np.array(boxes, np.float32).reshape(-1, 4)


def write_dark_scenes(out: str, n: int = 100, size: Tuple[int, int] = (320, 240), seed: int = 0,
                      face_crops: Optional[Sequence[np.ndarray]] = None, **kwargs) -> str:
    """Writes `n` synthetic low-light scenes in DARK FACE layout under `out` and returns `out`.

    Existing complete output (same n) is reused; generation is deterministic for a seed.
    """
    img_dir, lab_dir = os.path.join(out, "image"), os.path.join(out, "label")
    if os.path.isdir(img_dir) and len(os.listdir(img_dir)) == n and os.path.isdir(lab_dir):
        return out
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(lab_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        img, boxes = make_scene(rng, size, face_crops=face_crops, **kwargs)
        write_image(os.path.join(img_dir, f"{i + 1:05d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        lines = [str(len(boxes))] + [" ".join(str(int(round(v))) for v in b) for b in boxes]
        with open(os.path.join(lab_dir, f"{i + 1:05d}.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")
    return out


# === tf.data: letterboxed images + padded boxes, box-aware augmentation ===

@dataclass
class DetAugment:
    """Training-time augmentation for detection (boxes follow every geometric change)."""

    flip: bool = True
    scale: Tuple[float, float] = (0.6, 1.4)  # scale jitter of the letterboxed image, then a random crop/pad
    low_light_prob: float = 0.5  # extra gamma darkening in [1, low_light_gamma]
    low_light_gamma: float = 2.0
    noise_prob: float = 0.5  # Gaussian sensor noise, sigma up to noise_max (0-255 scale)
    noise_max: float = 8.0
    blur_prob: float = 0.2
    min_visible: float = 0.4  # a box cut by the crop is kept if this fraction of it stays inside


def enhance(rgb: np.ndarray, mode: str) -> np.ndarray:
    """Optional low-light enhancement at the input: `gamma` (brighten with gamma 0.5), `clahe` (on luminance)."""
    if mode == "none":
        return rgb
    if mode == "gamma":
        return np.clip(255.0 * (rgb / 255.0) ** 0.5, 0, 255).astype(np.uint8)
    if mode == "clahe":
        lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
        lab[..., 0] = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(lab[..., 0])
        return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
    raise DataError(f"unknown enhancement {mode!r}; valid: none, gamma, clahe")


def letterbox(rgb: np.ndarray, boxes: np.ndarray, size: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray, float]:
    """Resizes keeping the aspect ratio and pads (bottom/right, black) to `size` = (width, height).

    Returns (image, boxes in the new frame, scale). A uniform scale leaves IoU unchanged, so detections can be scored
    in this frame or mapped back with `/ scale`.
    """
    w, h = size
    s = min(w / rgb.shape[1], h / rgb.shape[0])
    nw, nh = max(1, int(round(rgb.shape[1] * s))), max(1, int(round(rgb.shape[0] * s)))
    out = np.zeros((h, w, 3), np.uint8)
    out[:nh, :nw] = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    return out, boxes * s, s


def augment_sample(rgb: np.ndarray, boxes: np.ndarray, aug: DetAugment, rng: np.random.Generator
                   ) -> Tuple[np.ndarray, np.ndarray]:
    """Box-aware augmentation of one letterboxed image (uint8 HxWx3) and its (N,4) boxes."""
    h, w = rgb.shape[:2]
    img, b = rgb, boxes.copy()
    if aug.scale != (1.0, 1.0):
        s = rng.uniform(*aug.scale)
        sw, sh = max(1, int(round(w * s))), max(1, int(round(h * s)))
        scaled = cv2.resize(img, (sw, sh), interpolation=cv2.INTER_LINEAR)
        canvas = np.zeros_like(img)
        # Place the scaled image at a random offset: crop when larger than the canvas, pad when smaller.
        ox = int(rng.integers(min(0, w - sw), max(0, w - sw) + 1))
        oy = int(rng.integers(min(0, h - sh), max(0, h - sh) + 1))
        x0, y0 = max(ox, 0), max(oy, 0)
        x1, y1 = min(ox + sw, w), min(oy + sh, h)
        canvas[y0:y1, x0:x1] = scaled[y0 - oy:y1 - oy, x0 - ox:x1 - ox]
        img = canvas
        b = b * s + [ox, oy, ox, oy]
        area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        c = np.clip(b, 0, [w, h, w, h])
        visible = (c[:, 2] - c[:, 0]).clip(0) * (c[:, 3] - c[:, 1]).clip(0) / np.maximum(area, 1e-6)
        b = c[(visible >= aug.min_visible) & (c[:, 2] - c[:, 0] >= 2) & (c[:, 3] - c[:, 1] >= 2)]
    if aug.flip and rng.random() < 0.5:
        img = img[:, ::-1]
        b = np.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], axis=1) if len(b) else b
    x = img.astype(np.float32)
    if rng.random() < aug.low_light_prob:
        x = 255.0 * (x / 255.0) ** rng.uniform(1.0, aug.low_light_gamma)
    if rng.random() < aug.noise_prob:
        x = x + rng.normal(0, rng.uniform(0, aug.noise_max), x.shape)
    if rng.random() < aug.blur_prob:
        x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.5, 1.2))
    return np.clip(x, 0, 255).astype(np.uint8), b.astype(np.float32).reshape(-1, 4)


def load_sample(path: str, boxes: np.ndarray, size: Tuple[int, int], enhancement: str = "none"
                ) -> Tuple[np.ndarray, np.ndarray, float]:
    """Reads one image (RGB), enhances it and letterboxes it with its boxes; returns (image, boxes, scale).
    A DataError names an unreadable file."""
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise DataError(f"{path}: cannot read image")
    rgb = enhance(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), enhancement)
    return letterbox(rgb, np.asarray(boxes, np.float32).reshape(-1, 4), size)


def detection_batches(table: DetTable, size: Tuple[int, int], batch_size: int, training: bool,
                      aug: Optional[DetAugment] = None, seed: int = 0, epoch: int = 0, max_boxes: int = 64,
                      enhancement: str = "none", pad_last: bool = True):
    """Yields `(images float32 (B,H,W,3) 0-255, {"boxes": (B,max_boxes,4) xyxy, "classes": (B,max_boxes)})`.

    Padding rows have boxes -1 and class -1 (KerasCV's convention). Order and augmentation depend only on (seed,
    epoch). With `pad_last`, the last batch is filled up with empty images without faces (some NMS decoders need a
    fixed batch size); `len(table)` tells how many are real.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(table)) if training else np.arange(len(table))
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        imgs = np.zeros((batch_size if pad_last else len(idx), size[1], size[0], 3), np.float32)
        boxes = np.full((len(imgs), max_boxes, 4), -1.0, np.float32)
        classes = np.full((len(imgs), max_boxes), -1.0, np.float32)
        for k, i in enumerate(idx):
            img, b, _ = load_sample(table.sources[i], table.boxes[i], size, enhancement)
            if training and aug is not None:
                img, b = augment_sample(img, b, aug, rng)
            b = b[:max_boxes]
            imgs[k] = img
            boxes[k, :len(b)] = b
            classes[k, :len(b)] = 0
        yield imgs, {"boxes": boxes, "classes": classes}


def crop_sample(rgb: np.ndarray, boxes: np.ndarray, side: int, rng: np.random.Generator,
                face_px: Tuple[float, float] = (5.0, 100.0), low_light_prob: float = 0.0,
                negative_prob: float = 0.1, min_visible: float = 0.5, min_face: float = 3.0
                ) -> Tuple[np.ndarray, np.ndarray]:
    """A `side` x `side` training crop of a real photo, rescaled so that one face has a size drawn log-uniformly
    from `face_px` (as far as the photo allows: it is not shrunk below 3/4 of the crop), flipped at random, and
    with probability `low_light_prob` degraded to low light.

    Rescaling real faces to the target sizes (rather than pasting faces on synthetic scenes) keeps the context a
    detector needs (bodies, crowds, clutter) while covering small-face datasets' size range (DARK FACE: 5-37 px
    for 5-95% of its faces). A share `negative_prob` of crops is centred anywhere, so some hold no face.

    Returns:
        (uint8 (side, side, 3) RGB, (N, 4) float32 boxes x1 y1 x2 y2; faces cut below `min_visible` of their area
        or under `min_face` px are dropped).
    """

    H, W = rgb.shape[:2]
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    sides = np.sqrt(np.prod(np.maximum(boxes[:, 2:] - boxes[:, :2], 1e-3), axis=1))
    target = float(np.exp(rng.uniform(np.log(face_px[0]), np.log(face_px[1]))))
    if len(boxes) and rng.random() >= negative_prob:
        k = int(rng.integers(len(boxes)))
        s = target / max(float(sides[k]), 1.0)
        cx, cy = (boxes[k, :2] + boxes[k, 2:]) / 2 * s + rng.uniform(-0.4, 0.4, 2) * side
    else:
        s = target / max(float(np.median(sides)), 1.0) if len(boxes) else float(rng.uniform(0.3, 1.0))
        cx, cy = rng.uniform(0, W * s), rng.uniform(0, H * s)
    # Never shrink the photo much below the crop: a small photo in a black field is not a scene a detector meets
    # (small faces come from photos that have them, e.g. WIDER's crowds).
    s = float(np.clip(s, 0.75 * side / min(H, W), 4.0))
    x0, y0 = cx - side / 2, cy - side / 2  # crop origin in the rescaled image
    # Resize only the source window the crop shows (whole 1,000 px photos would be resized per sample otherwise).
    ix0, iy0 = max(0, int(np.floor(x0 / s))), max(0, int(np.floor(y0 / s)))
    ix1, iy1 = min(W, int(np.ceil((x0 + side) / s))), min(H, int(np.ceil((y0 + side) / s)))
    out = np.zeros((side, side, 3), np.uint8)
    b = np.zeros((0, 4), np.float32)
    if ix1 > ix0 and iy1 > iy0:
        dx0, dy0 = int(round(ix0 * s - x0)), int(round(iy0 * s - y0))
        dx1, dy1 = min(side, int(round(ix1 * s - x0))), min(side, int(round(iy1 * s - y0)))
        dx0, dy0 = max(dx0, 0), max(dy0, 0)
        if dx1 > dx0 and dy1 > dy0:
            # Map the source window onto [dx0, dx1) x [dy0, dy1) exactly, and the boxes with the same transform.
            fx, fy = (dx1 - dx0) / (ix1 - ix0), (dy1 - dy0) / (iy1 - iy0)
            interp = cv2.INTER_AREA if fx < 1 else cv2.INTER_LINEAR
            out[dy0:dy1, dx0:dx1] = cv2.resize(rgb[iy0:iy1, ix0:ix1], (dx1 - dx0, dy1 - dy0), interpolation=interp)
            b = (boxes - [ix0, iy0, ix0, iy0]) * [fx, fy, fx, fy] + [dx0, dy0, dx0, dy0]
    if len(b):
        area = np.prod(np.maximum(b[:, 2:] - b[:, :2], 1e-6), axis=1)
        c = np.clip(b, 0, side)
        vis = np.prod(np.maximum(c[:, 2:] - c[:, :2], 0), axis=1) / area
        keep = (vis >= min_visible) & (np.sqrt(np.prod(np.maximum(c[:, 2:] - c[:, :2], 0), axis=1)) >= min_face)
        b = c[keep]
    if rng.random() < 0.5:
        out = np.ascontiguousarray(out[:, ::-1])
        b = np.stack([side - b[:, 2], b[:, 1], side - b[:, 0], b[:, 3]], axis=1) if len(b) else b
    if rng.random() < low_light_prob:
        out = degrade_low_light(out, rng)
    else:  # normal light: mild exposure/contrast jitter
        x = out.astype(np.float32) * rng.uniform(0.75, 1.25) + rng.uniform(-20, 20)
        out = np.clip(x, 0, 255).astype(np.uint8)
    return out, b.astype(np.float32).reshape(-1, 4)


def crop_batches(table: DetTable, det, batch_size: int, seed: int, epoch: int):
    """One epoch of `crop_sample` batches (order and crops depend only on seed and epoch), in the layout of
    `detection_batches`."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(table))
    side = det.train_crop
    for start in range(0, len(order) - batch_size + 1, batch_size):
        imgs = np.zeros((batch_size, side, side, 3), np.float32)
        boxes = np.full((batch_size, det.max_boxes, 4), -1.0, np.float32)
        classes = np.full((batch_size, det.max_boxes), -1.0, np.float32)
        for k, i in enumerate(order[start:start + batch_size]):
            bgr = cv2.imread(table.sources[i], cv2.IMREAD_COLOR)
            if bgr is None:
                raise DataError(f"{table.sources[i]}: cannot read image")
            img, b = crop_sample(enhance(bgr[..., ::-1], det.enhancement), table.boxes[i], side, rng,
                                 tuple(det.face_px), det.low_light_prob)
            # Keep one padding row: KerasHub's label encoder with force_match indexes past the boxes of an image
            # whose rows are all faces (a crowd crop with max_boxes faces crashed a training run).
            b = b[:det.max_boxes - 1]
            imgs[k], boxes[k, :len(b)], classes[k, :len(b)] = img, b, 0
        yield imgs, {"boxes": boxes, "classes": classes}


def input_size(cfg) -> Tuple[int, int]:
    """The (width, height) a detection config letterboxes to, checked (and its training crop side)."""
    check_input_size(cfg.detection.image_width, cfg.detection.image_height)
    if cfg.detection.train_crop:
        check_input_size(cfg.detection.train_crop, cfg.detection.train_crop)
    return cfg.detection.image_width, cfg.detection.image_height


def demo_scenes(n: int, root: Optional[str] = None) -> Tuple[str, str]:
    """Synthetic dark scenes (train: n, seed 0; val: n // 5, seed 1) in DARK FACE layout, generated once."""
    root = root or os.path.join(os.environ.get("FER_KERAS_DATA", "data"), f"dark-scenes-{n}")
    return (write_dark_scenes(os.path.join(root, "train"), n=n, seed=0),
            write_dark_scenes(os.path.join(root, "val"), n=max(8, n // 5), seed=1))


def load_detection_data(cfg) -> Dict[str, Optional[DetTable]]:
    """Train/val(/test) tables: `data.path` (DARK FACE folder or WIDER annotation .txt), `data.val_path` or a seeded
    `data.val_fraction` split, optional `data.test_path`; the synthetic dark scenes when `data.path` is unset."""
    d = cfg.data
    if d.path is None:
        tr, va = demo_scenes(cfg.detection.scenes)
        return {"train": read_detection(tr), "val": read_detection(va), "test": None, "source": os.path.dirname(tr)}
    det = cfg.detection
    if det.val_first and not d.val_path:
        # Val = the next val_first images of each folder after the held-out ones (fixed, so every run and the
        # threshold chooser score the same val photos), train = the rest.
        parts = [read_detection(p.strip(), d.skip_bad, d.image_root, det.holdout_first)
                 for p in d.path.split(",") if p.strip()]
        train = concat_tables([t.subset(range(min(det.val_first, len(t)), len(t))) for t in parts])
        val = concat_tables([t.subset(range(min(det.val_first, len(t)))) for t in parts])
    else:
        train = read_detection(d.path, d.skip_bad, d.image_root, det.holdout_first)
        val = read_detection(d.val_path, d.skip_bad, d.image_root) if d.val_path else None
    if val is None and d.val_fraction > 0:
        order = np.random.default_rng(d.split_seed).permutation(len(train))
        k = int(round(len(train) * d.val_fraction))
        val, train = train.subset(np.sort(order[:k])), train.subset(np.sort(order[k:]))
    test = read_detection(d.test_path, d.skip_bad, d.image_root) if d.test_path else None
    if not len(train):
        raise DataError(f"{d.path}: no training images")
    return {"train": train, "val": val, "test": test, "source": d.path}
