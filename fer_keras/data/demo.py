"""The built-in synthetic demo dataset: drawn faces whose brows, eyes and mouth encode the expression.

Every sample has an expression (the 8 canonical classes), an intensity, and valence/arousal consistent with the
expression (circumplex means scaled by the intensity) plus noise. Pose, scale, skin colour, background, lighting,
blur and sensor noise are random, and low-intensity faces of different classes look alike, so a model has to learn
the facial features (no single-pixel shortcut). Generation is deterministic for a given seed.

Command line:
    python -m fer_keras.data.demo --out data/demo --format csv     # or folder | npy | fer2013 | affectnet | all
    python -m fer_keras.data.demo --out data/demo --format dfew --per-class 20   # video clips, DFEW layout
"""

from __future__ import annotations

import csv
import os
import shutil
from typing import Dict, Optional, Tuple

import cv2
import numpy as np

from fer_keras.io_utils import write_image
from fer_keras.labels import CANONICAL, DFEW_ORDER, FER2013_ORDER

# Circumplex means (valence, arousal) per canonical class, roughly the AffectNet class centroids.
VA_MEANS: Dict[str, Tuple[float, float]] = {
    "neutral": (0.0, 0.0), "happy": (0.75, 0.35), "sad": (-0.65, -0.35), "surprise": (0.2, 0.75),
    "fear": (-0.55, 0.75), "disgust": (-0.65, 0.35), "anger": (-0.55, 0.65), "contempt": (-0.45, 0.15),
}

# Per class: mouth curve (+ = smile), mouth openness, brow tilt (+ = inner ends down, angry), brow height,
# eye openness, mouth asymmetry.
FACE_FEATURES: Dict[str, Tuple[float, float, float, float, float, float]] = {
    "neutral": (0.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    "happy": (1.0, 0.25, 0.0, 0.1, 0.6, 0.0),
    "sad": (-0.9, 0.0, -0.8, 0.1, 0.7, 0.0),
    "surprise": (0.0, 1.0, 0.0, 0.9, 1.5, 0.0),
    "fear": (-0.3, 0.55, -0.7, 0.7, 1.4, 0.0),
    "disgust": (-0.5, 0.15, 0.5, -0.4, 0.5, 0.6),
    "anger": (-0.3, 0.0, 1.0, -0.5, 0.75, 0.0),
    "contempt": (0.2, 0.0, 0.2, 0.0, 0.85, 1.0),
}


def draw_face(label: str, rng: np.random.Generator, size: int = 64, intensity: Optional[float] = None
              ) -> Tuple[np.ndarray, float]:
    """Draws one RGB face (uint8, size x size x 3) showing `label`; returns (image, intensity)."""
    if intensity is None:
        intensity = float(rng.uniform(0.45, 1.0))
    curve, openness, tilt, brow_h, eye_open, asym = FACE_FEATURES[label]
    s = 4  # draw at 4x and downsample for anti-aliasing
    S = size * s
    # background: random colour gradient + texture
    c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    t = np.linspace(0, 1, S, dtype=np.float32)[None, :, None]
    img = (c0 * (1 - t) + c1 * t).repeat(S, axis=0).astype(np.float32)
    img += rng.normal(0, 12, (S // 16, S // 16, 1)).repeat(16, 0).repeat(16, 1)
    skin = np.array([rng.uniform(90, 240), rng.uniform(60, 200), rng.uniform(40, 170)])
    skin = np.sort(skin)[::-1]  # R >= G >= B: plausible skin tones
    cx, cy = S / 2 + rng.uniform(-0.06, 0.06) * S, S / 2 + rng.uniform(-0.06, 0.06) * S
    scale = rng.uniform(0.75, 1.0) * S
    fw, fh = 0.36 * scale, 0.46 * scale
    cv2.ellipse(img, (int(cx), int(cy)), (int(fw), int(fh)), 0, 0, 360, skin.tolist(), -1, cv2.LINE_AA)
    dark = (skin * rng.uniform(0.15, 0.4)).tolist()
    th = max(1, int(scale * 0.025))

    def jitter(v, amount=0.15):
        return v * intensity + rng.normal(0, amount)

    # eyes
    ey = cy - 0.12 * scale
    ex = 0.15 * scale
    eye_h = max(1.0, 0.045 * scale * (1 + (jitter(eye_open - 1.0, 0.1))))
    for side in (-1, 1):
        cv2.ellipse(img, (int(cx + side * ex), int(ey)), (int(0.065 * scale), int(eye_h)), 0, 0, 360,
                    (245, 245, 245), -1, cv2.LINE_AA)
        cv2.circle(img, (int(cx + side * ex), int(ey)), max(1, int(min(eye_h, 0.03 * scale))), dark, -1, cv2.LINE_AA)
    # brows: inner end moves down with +tilt, whole brow moves up with brow_h
    by = ey - 0.1 * scale - jitter(brow_h, 0.1) * 0.05 * scale
    tilt_px = jitter(tilt, 0.1) * 0.05 * scale
    for side in (-1, 1):
        inner = (int(cx + side * 0.06 * scale), int(by + tilt_px))
        outer = (int(cx + side * 0.24 * scale), int(by - tilt_px))
        cv2.line(img, inner, outer, dark, th + 1, cv2.LINE_AA)
    # nose
    cv2.line(img, (int(cx), int(cy - 0.05 * scale)), (int(cx), int(cy + 0.08 * scale)), dark, th, cv2.LINE_AA)
    if label == "disgust":  # nose wrinkles
        for side in (-1, 1):
            cv2.line(img, (int(cx + side * 0.03 * scale), int(cy)), (int(cx + side * 0.07 * scale),
                     int(cy - 0.03 * scale * intensity)), dark, th, cv2.LINE_AA)
    # mouth: a parabola with curvature, asymmetry (one corner up), and an opening
    my = cy + 0.22 * scale
    mw = 0.17 * scale * (1 + 0.2 * jitter(abs(curve), 0.05))
    c = jitter(curve, 0.12) * 0.07 * scale
    a = jitter(asym, 0.08) * 0.06 * scale
    xs = np.linspace(-1, 1, 24)
    top = np.stack([cx + xs * mw, my - c * (xs ** 2) + c / 2 - a * np.clip(xs, 0, 1)], 1)
    op = max(0.0, jitter(openness, 0.05)) * 0.09 * scale
    if op > 0.01 * scale:
        bottom = top[::-1] + np.array([0, op]) * (1 - xs[::-1, None] ** 2)
        cv2.fillPoly(img, [np.concatenate([top, bottom]).astype(np.int32)], (60, 20, 30), cv2.LINE_AA)
    cv2.polylines(img, [top.astype(np.int32)], False, dark, th + 1, cv2.LINE_AA)
    # pose (rotation), lighting gradient, downsample, blur, noise
    rot = cv2.getRotationMatrix2D((S / 2, S / 2), rng.uniform(-18, 18), 1.0)
    img = cv2.warpAffine(img, rot, (S, S), borderMode=cv2.BORDER_REFLECT)
    gx = np.linspace(rng.uniform(0.5, 1.0), rng.uniform(0.8, 1.3), S, dtype=np.float32)
    img *= gx[None, :, None] if rng.random() < 0.5 else gx[:, None, None]
    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.3:
        img = cv2.GaussianBlur(img, (3, 3), rng.uniform(0.3, 1.0))
    img += rng.normal(0, rng.uniform(2, 10), img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), intensity


def generate(per_class: int = 160, size: int = 64, seed: int = 0, classes=CANONICAL):
    """Generates the demo arrays.

    Returns:
        dict with `images` (N,size,size,3 uint8), `labels` (canonical names), `valence`, `arousal` (float32 in
        [-1,1]), in a shuffled but seed-determined order.
    """
    rng = np.random.default_rng(seed)
    images, labels, val, aro = [], [], [], []
    for name in classes:
        for _ in range(per_class):
            img, inten = draw_face(name, rng, size)
            v, a = VA_MEANS[name]
            images.append(img)
            labels.append(name)
            val.append(np.clip(v * inten + rng.normal(0, 0.08), -1, 1))
            aro.append(np.clip(a * inten + rng.normal(0, 0.08), -1, 1))
    order = rng.permutation(len(images))
    return {
        "images": np.stack(images)[order],
        "labels": np.array(labels)[order],
        "valence": np.array(val, np.float32)[order],
        "arousal": np.array(aro, np.float32)[order],
    }


def _save_png(path: str, rgb: np.ndarray) -> None:
    # Written aside and renamed: several processes (multi-worker training on one host) may generate the same
    # (deterministic) demo data at once, and none may read another's half-written file.
    tmp = f"{path}.{os.getpid()}.tmp.png"
    write_image(tmp, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    os.replace(tmp, path)


def write_demo(out: str, fmt: str = "csv", per_class: int = 160, size: int = 64, seed: int = 0) -> str:
    """Writes the demo dataset under `out` in one on-disk format and returns the path to pass as `--data`.

    Formats: `folder` (`<out>/folder/<class>/*.png`, no VA), `csv` (`<out>/csv/labels.csv` + images),
    `npy` (`<out>/npy/{images,expressions,valence,arousal}.npy`), `fer2013` (`<out>/fer2013.csv`, 48x48 gray),
    `affectnet` (`<out>/affectnet/` with training.csv/validation.csv, boxes and per-image npy annotations).
    Existing output is reused (generation is deterministic), so repeated calls are cheap.
    """
    d = generate(per_class, size, seed)
    if fmt == "folder":
        root = os.path.join(out, "folder")
        if not os.path.isdir(root):
            tmp = f"{root}.{os.getpid()}.tmp"
            for i, (img, lab) in enumerate(zip(d["images"], d["labels"])):
                os.makedirs(os.path.join(tmp, lab), exist_ok=True)
                _save_png(os.path.join(tmp, lab, f"{i:05d}.png"), img)
            try:
                os.replace(tmp, root)
            except OSError:  # another process finished the same folder first
                shutil.rmtree(tmp, ignore_errors=True)
        return root
    if fmt == "csv":
        root = os.path.join(out, "csv")
        path = os.path.join(root, "labels.csv")
        if not os.path.isfile(path):
            os.makedirs(os.path.join(root, "images"), exist_ok=True)
            rows = []
            for i, (img, lab, v, a) in enumerate(zip(d["images"], d["labels"], d["valence"], d["arousal"])):
                rel = f"images/{i:05d}.png"
                _save_png(os.path.join(root, rel), img)
                rows.append((rel, lab, f"{v:.4f}", f"{a:.4f}"))
            tmp = f"{path}.{os.getpid()}.tmp"
            with open(tmp, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["path", "expression", "valence", "arousal"])
                w.writerows(rows)
            os.replace(tmp, path)
        return path
    if fmt == "npy":
        root = os.path.join(out, "npy")
        if not os.path.isfile(os.path.join(root, "arousal.npy")):
            os.makedirs(root, exist_ok=True)
            np.save(os.path.join(root, "images.npy"), d["images"])
            np.save(os.path.join(root, "expressions.npy"),
                    np.array([CANONICAL.index(n) for n in d["labels"]], np.int64))
            np.save(os.path.join(root, "valence.npy"), d["valence"])
            np.save(os.path.join(root, "arousal.npy"), d["arousal"])
        return root
    if fmt == "fer2013":
        path = os.path.join(out, "fer2013.csv")
        if not os.path.isfile(path):
            os.makedirs(out, exist_ok=True)
            n = len(d["images"])
            tmp = path + ".tmp"
            with open(tmp, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["emotion", "pixels", "Usage"])
                for i, (img, lab) in enumerate(zip(d["images"], d["labels"])):
                    if lab not in FER2013_ORDER:
                        continue
                    gray = cv2.resize(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), (48, 48), interpolation=cv2.INTER_AREA)
                    usage = "Training" if i < 0.8 * n else ("PublicTest" if i < 0.9 * n else "PrivateTest")
                    w.writerow([FER2013_ORDER.index(lab), " ".join(map(str, gray.ravel())), usage])
            os.replace(tmp, path)
        return path
    if fmt == "affectnet":
        return _write_affectnet(os.path.join(out, "affectnet"), d, seed)
    raise ValueError(f"unknown demo format {fmt!r}")


def _write_affectnet(root: str, d, seed: int) -> str:
    """AffectNet layouts: official CSVs with face boxes (faces pasted into larger photos), plus the per-image
    `annotations/<id>_exp.npy` layout of the commonly distributed crops."""
    if os.path.isfile(os.path.join(root, "validation.csv")):
        return root
    rng = np.random.default_rng(seed + 1)
    img_dir = os.path.join(root, "Manually_Annotated_Images", "1")
    os.makedirs(img_dir, exist_ok=True)
    header = ["subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "facial_landmarks",
              "expression", "valence", "arousal"]
    n = len(d["images"])
    rows = {"training.csv": [], "validation.csv": []}
    for i, (img, lab, v, a) in enumerate(zip(d["images"], d["labels"], d["valence"], d["arousal"])):
        h, w = img.shape[:2]
        canvas = rng.integers(0, 255, (h * 2, w * 2, 3), dtype=np.uint8)
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        canvas[y0:y0 + h, x0:x0 + w] = img
        name = f"{i:05d}.jpg"
        write_image(os.path.join(img_dir, name), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
        split = "training.csv" if i < 0.85 * n else "validation.csv"
        rows[split].append([f"1/{name}", x0, y0, w, h, "", CANONICAL.index(lab), f"{v:.4f}", f"{a:.4f}"])
    # a few "non-face"/"uncertain" rows (labels 8-10) that readers must drop
    rows["training.csv"].append(["1/00000.jpg", 0, 0, 10, 10, "", 9, -2, -2])
    for fname, rs in rows.items():
        with open(os.path.join(root, fname), "w", newline="") as f:
            wr = csv.writer(f)
            wr.writerow(header)
            wr.writerows(rs)
    # per-image annotation layout (val_set/images + val_set/annotations)
    vs = os.path.join(root, "val_set")
    os.makedirs(os.path.join(vs, "images"), exist_ok=True)
    os.makedirs(os.path.join(vs, "annotations"), exist_ok=True)
    for i in range(min(n, 40)):
        _save_png(os.path.join(vs, "images", f"{i}.png"), d["images"][i])
        np.save(os.path.join(vs, "annotations", f"{i}_exp.npy"), np.array(str(CANONICAL.index(d["labels"][i]))))
        np.save(os.path.join(vs, "annotations", f"{i}_val.npy"), np.array(str(float(d["valence"][i]))))
        np.save(os.path.join(vs, "annotations", f"{i}_aro.npy"), np.array(str(float(d["arousal"][i]))))
    return root


def write_demo_clips(out: str, layout: str = "dfew", per_class: int = 10, size: int = 64, frames: int = 16,
                     seed: int = 0) -> str:
    """Writes demo video clips: each a demo face whose expression grows from faint to full over `frames` frames.

    `layout="dfew"` writes the DFEW part-2 layout (`Clip/clip_224x224_16f/<id>/<id>_<k>.jpg` and 5-fold
    `EmoLabel_DataSplit/{train,test}(single-labeled)/set_<fold>.csv`, labels 1-7 in DFEW order); `layout="clips"`
    writes `<out>/<class>/<clip_id>/*.jpg`. Returns the dataset root.
    """

    root = os.path.join(out, f"clips-{layout}")
    if os.path.isdir(root):
        return root
    tmp = root + ".tmp"
    rng = np.random.default_rng(seed)
    rows = []
    clip_no = 0
    for name in DFEW_ORDER:
        for _ in range(per_class):
            clip_no += 1
            clip_id = f"{clip_no:05d}"
            clip_seed = int(rng.integers(1 << 31))
            peak = float(rng.uniform(0.6, 1.0))
            folder = (os.path.join(tmp, "Clip", "clip_224x224_16f", clip_id) if layout == "dfew"
                      else os.path.join(tmp, name, clip_id))
            os.makedirs(folder, exist_ok=True)
            for k in range(frames):
                # the same seed per frame: same person, background and pose; only the expression intensity moves
                img, _ = draw_face(name, np.random.default_rng(clip_seed), size,
                                   intensity=peak * (0.2 + 0.8 * k / max(frames - 1, 1)))
                write_image(os.path.join(folder, f"{clip_id}_{k + 1:02d}.jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
            rows.append((clip_id, DFEW_ORDER.index(name) + 1))
    if layout == "dfew":
        for fold in range(1, 6):
            for split in ("train", "test"):
                d = os.path.join(tmp, "EmoLabel_DataSplit", f"{split}(single-labeled)")
                os.makedirs(d, exist_ok=True)
                with open(os.path.join(d, f"set_{fold}.csv"), "w", newline="") as f:
                    w = csv.writer(f)
                    w.writerow(["video_name", "label"])
                    for i, (cid, lab) in enumerate(rows):
                        if (i % 5 + 1 == fold) == (split == "test"):
                            w.writerow([cid, lab])
    os.replace(tmp, root)
    return root


def default_demo_path(per_class: int = 160, size: int = 64) -> str:
    """Path of the default demo dataset (CSV with VA labels), generated on first use under `data/demo`."""
    root = os.environ.get("FER_KERAS_DATA", "data")
    return write_demo(os.path.join(root, f"demo-{per_class}x{size}"), "csv", per_class, size)


if __name__ == "__main__":  # `python -m fer_keras.data.demo` runs the CLI, cli_demo.py (no import back to it)
    import runpy

    runpy.run_module("fer_keras.cli_demo", run_name="__main__")
