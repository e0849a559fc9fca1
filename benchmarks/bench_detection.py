"""Face detectors side by side on real photos, normal and darkened to DARK FACE brightness.

    python benchmarks/bench_detection.py [--limit 150] [--detectors auto,blazeface,blazeface-back,haar]

Image sets (read from ../shared/data/faces at run time, research-only, never copied):
- `wider`: WIDER FACE photos (crowds, every kind of scene). Faces smaller than `--min-face` px (sqrt of the box
  area) are not scored: they need not be found, and a detection on one is not a false positive (the WIDER FACE
  toolkit's "ignore" rule).
- `facemask`: group photos, many faces masked; every boxed face is scored. Some background faces in crowds are not
  boxed in this set, so its false-positive counts are pessimistic.
- `<set>-dark`: the same photos through `lowlight.degrade_low_light` (inverse gamma, exposure gain to a mean
  brightness of 19-41/255, shot + read noise, blur, JPEG), seeded per image.
The first `--limit` images of each set, sorted by file name. A detection is correct at IoU >= `--iou` (0.3: the
detectors' boxes frame a face differently from the annotators', e.g. BlazeFace's are squared around brows-to-chin).
Reported: recall at <= 1 false positive per image (the score threshold chosen per detector and set), AP@IoU, and
images/s of each detector on 640x480 and 1080x720 photos (one thread, the call predict makes).
Detectors: any `--detector` name of predict (`auto`, `yunet`, `lowlight`, `blazeface`, `blazeface-back`,
`blazeface-tiled`, `haar`, a run directory), `auto-blazeface` (the tiled BlazeFace without the low-light model), and the peers when installed: `mediapipe`
(full-range BlazeFace), `mtcnn`. Writes benchmarks/results/face_detectors.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from collections import defaultdict

import cv2
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def read_set(folder: str, limit: int):
    """[(image path, boxes (N, 4) x1 y1 x2 y2)] for the first `limit` files of a `boxes.csv` set."""
    boxes = defaultdict(list)
    with open(os.path.join(folder, "boxes.csv"), newline="") as f:
        for row in csv.DictReader(f):
            x, y, w, h = (float(row[k]) for k in ("x", "y", "w", "h"))
            boxes[row["file"]].append((x, y, x + w, y + h))
    files = sorted(boxes)[:limit]
    return [(os.path.join(folder, "images", f), np.array(boxes[f], np.float32)) for f in files]


def scored_boxes(detector, rgb: np.ndarray) -> np.ndarray:
    """(N, 5) x1 y1 x2 y2 score, boxes as `predict` crops them (BlazeFace's squared around their centre; YuNet's and
    `auto`'s as they are: `square_crops = False`)."""
    if hasattr(detector, "detect") and not getattr(detector, "square_crops", True):
        boxes, scores = detector.detect(rgb)
        return np.concatenate([boxes, scores[:, None]], axis=1).astype(np.float32).reshape(-1, 5)
    if hasattr(detector, "detect"):
        boxes, scores = detector.detect(rgb)
        out = []
        h, w = rgb.shape[:2]
        for (x1, y1, x2, y2), s in zip(boxes, scores):
            side = max(x2 - x1, y2 - y1)
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            out.append((max(0, cx - side / 2), max(0, cy - side / 2), min(w, cx + side / 2), min(h, cy + side / 2), s))
        return np.array(out, np.float32).reshape(-1, 5)
    return np.array([(x, y, x + w, y + h, 1.0) for x, y, w, h in detector(rgb)], np.float32).reshape(-1, 5)


class MediaPipeFullRange:
    """MediaPipe's full-range face detector (peer), through the legacy solutions API."""

    def __init__(self):
        import mediapipe as mp

        self.fd = mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.1)

    def detect(self, rgb):
        h, w = rgb.shape[:2]
        res = self.fd.process(np.ascontiguousarray(rgb))
        boxes, scores = [], []
        for d in res.detections or []:
            b = d.location_data.relative_bounding_box
            boxes.append((b.xmin * w, b.ymin * h, (b.xmin + b.width) * w, (b.ymin + b.height) * h))
            scores.append(d.score[0])
        return np.array(boxes, np.float32).reshape(-1, 4), np.array(scores, np.float32)


class MTCNNPeer:
    """The `mtcnn` package (peer)."""

    def __init__(self):
        from mtcnn import MTCNN

        self.m = MTCNN()

    def detect(self, rgb):
        faces = self.m.detect_faces(np.ascontiguousarray(rgb))
        boxes = [(f["box"][0], f["box"][1], f["box"][0] + f["box"][2], f["box"][1] + f["box"][3]) for f in faces]
        return np.array(boxes, np.float32).reshape(-1, 4), np.array([f["confidence"] for f in faces], np.float32)


def make(name: str, min_score: float):
    if name == "mediapipe":
        return MediaPipeFullRange()
    if name == "mtcnn":
        return MTCNNPeer()
    from fer_keras.detection.faces import TiledBlazeFaceDetector, make_detector

    if name == "auto-blazeface":  # the BlazeFace default of earlier versions, without the low-light model
        return TiledBlazeFaceDetector(min_score)
    # 16 px: the Haar cascade's own minimum here (scoring ignores smaller WIDER faces); other detectors unfiltered
    return make_detector(name, min_face=16 if name == "haar" else None, min_score=min_score)


def images_per_second(detector, images, repeats: int = 2) -> float:
    call = detector.detect if hasattr(detector, "detect") else detector
    call(images[0])  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        for img in images:
            call(img)
    return repeats * len(images) / (time.perf_counter() - t0)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--faces", default=os.path.join(ROOT, "..", "shared", "data", "faces"))
    p.add_argument("--sets", default="wider,facemask")
    p.add_argument("--limit", type=int, default=150, help="images per set")
    p.add_argument("--detectors", default="auto,blazeface,blazeface-back,haar,mediapipe,mtcnn")
    p.add_argument("--min-face", type=float, default=16.0, help="WIDER faces below this (sqrt area, px) are ignored")
    p.add_argument("--iou", type=float, default=0.3)
    p.add_argument("--min-score", type=float, default=0.3, help="lowest score kept (recall@1fppi picks its own)")
    p.add_argument("--no-dark", action="store_true", help="skip the darkened copies")
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "face_detectors.json"))
    p.add_argument("--merge", action="store_true",
                   help="keep the rows of detectors not run now from an existing --out file (same sets and limit)")
    a = p.parse_args(argv)

    from fer_keras.detection.lowlight import degrade_low_light
    from fer_keras.detection.metrics import average_precision, recall_at_fppi, split_by_size
    from fer_keras.errors import FerError

    sets = {}
    for name in a.sets.split(","):
        items = read_set(os.path.join(a.faces, name), a.limit)
        imgs = [cv2.imread(f, cv2.IMREAD_COLOR)[..., ::-1].copy() for f, _ in items]
        gts = [b for _, b in items]
        scored, ignored = split_by_size(gts, a.min_face if name == "wider" else 0.0)
        sets[name] = (imgs, scored, ignored)
        if not a.no_dark:
            dark = [degrade_low_light(im, np.random.default_rng(i)) for i, im in enumerate(imgs)]
            sets[f"{name}-dark"] = (dark, scored, ignored)

    speed_imgs = {}
    first = next(iter(sets.values()))[0][:10]
    for w, h in ((640, 480), (1080, 720)):
        speed_imgs[f"{w}x{h}"] = [cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA) for im in first]

    results = {"command": "python benchmarks/bench_detection.py " + " ".join(argv or sys.argv[1:]),
               "iou": a.iou, "min_face": a.min_face, "limit": a.limit, "detectors": {}}
    for name in a.detectors.split(","):
        try:
            det = make(name, a.min_score)
        except (ImportError, FerError) as e:
            print(f"{name}: skipped ({type(e).__name__}: {str(e).splitlines()[0]})")
            continue
        row = {}
        for set_name, (imgs, scored, ignored) in sets.items():
            dets = [scored_boxes(det, im) for im in imgs]
            r = recall_at_fppi(dets, scored, (1.0,), a.iou, ignored)["recall@1fppi"]
            ap = average_precision(dets, scored, a.iou, ignored)
            row[set_name] = {"recall@1fppi": round(r, 4), "ap": round(ap, 4),
                             "faces": int(sum(len(g) for g in scored)), "images": len(imgs)}
            print(f"{name:16s} {set_name:14s} recall@1fppi {r:.3f}  AP {ap:.3f}", flush=True)
        for k, ims in speed_imgs.items():
            row[f"images_per_s_{k}"] = round(images_per_second(det, ims), 1)
        print(f"{name:16s} images/s " + ", ".join(f"{k}: {row[f'images_per_s_{k}']}" for k in speed_imgs))
        results["detectors"][name] = row
    if a.merge and os.path.isfile(a.out):
        with open(a.out) as f:
            old = json.load(f)
        if (old.get("limit"), old.get("iou"), old.get("min_face")) == (a.limit, a.iou, a.min_face):
            results["detectors"] = {**old["detectors"], **results["detectors"]}
            results["command"] = f"{old.get('command')}; then {results['command']}"
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(results, f, indent=2)
    print(f"wrote {a.out}")
    return results


if __name__ == "__main__":
    main()
