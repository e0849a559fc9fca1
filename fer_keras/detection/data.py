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

from fer_keras.data.readers import BadLog
from fer_keras.errors import DataError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp")


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


def read_detection(path: str, skip_bad: bool = False, image_root: Optional[str] = None) -> DetTable:
    """DARK FACE folder or WIDER FACE annotation file, detected from the path."""
    if os.path.isdir(path):
        return read_darkface(path, skip_bad)
    if os.path.isfile(path) and path.endswith(".txt"):
        return read_wider(path, image_root, skip_bad)
    raise DataError(f"{path}: not a DARK FACE folder (image/ + label/) or a WIDER FACE annotation .txt")


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
    from fer_keras.data.demo import _FEATURES, draw_face

    w, h = size
    img = _background(rng, h, w)
    boxes: List[List[float]] = []
    labels = list(_FEATURES)
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
        cv2.imwrite(os.path.join(img_dir, f"{i + 1:05d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        lines = [str(len(boxes))] + [" ".join(str(int(round(v))) for v in b) for b in boxes]
        with open(os.path.join(lab_dir, f"{i + 1:05d}.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")
    return out
