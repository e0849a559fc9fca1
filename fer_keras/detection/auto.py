"""The default face detector (`--detector auto`): BlazeFace at several scales, brightened when dark, merged by NMS.

One BlazeFace model sees a fixed-size input (128 px short-range, 256 px back-camera), so the faces it can find are a
fixed fraction of the image: the short-range model finds close-ups, the back model faces down to about 1/16 of the
image side. Smaller faces (group photos, crowds) are found by running the back model on overlapping tiles of the
photo at (close to) native resolution. All candidate boxes are merged with MediaPipe's weighted NMS.

Dark photos (measured mean brightness below `dark_below`) can be brightened first (`lowlight.brighten`: gamma to a
normal mean, then CLAHE), but this is off by default: on 60 WIDER and 60 mask photos darkened to DARK FACE's
brightness (`lowlight.degrade_low_light`), recall at 1 false positive per image was 0.237 / 0.401 with gamma + CLAHE,
0.213 / 0.331 with gamma alone and 0.231 / 0.419 without brightening: BlazeFace copes with the low mean itself, and
brightening amplifies the sensor noise. Dark photos need a detector trained on them (issue 22, part 2).
"""

from __future__ import annotations

from typing import List, Tuple

import numpy as np

from fer_keras.blazeface import BlazeFaceDetector, square_boxes, weighted_nms
from fer_keras.detection.lowlight import brightness, brighten
from fer_keras.detection.metrics import iou_matrix


def tile_grid(height: int, width: int, tile: int, overlap: float = 0.25) -> List[Tuple[int, int, int, int]]:
    """Overlapping square tiles `(x0, y0, x1, y1)` that cover an image; one tile when the image fits in one.

    Neighbouring tiles overlap by `overlap` of a tile, so a face up to that size is whole in at least one tile.
    """
    def starts(n: int) -> List[int]:
        if n <= tile:
            return [0]
        step = max(1, int(tile * (1.0 - overlap)))
        k = int(np.ceil((n - tile) / step)) + 1
        return [int(round(i * (n - tile) / (k - 1))) for i in range(k)]

    return [(x, y, min(x + tile, width), min(y + tile, height)) for y in starts(height) for x in starts(width)]


class AutoFaceDetector:
    """Face boxes `(x, y, w, h)` in pixels from an RGB image, found at every scale, best first.

    Args:
        min_score: lowest BlazeFace score kept.
        iou_threshold: NMS overlap that merges boxes of the same face.
        tile: side (px, in the original image) of the tiles the back model scans for small faces; 0 = no tiling.
        tile_above: images whose longer side is at most this are not tiled (their faces are large enough).
        dark_below: mean brightness (0-255) under which the image is brightened before detection (0 = never; the
            default, see the module docstring for the measurements).
    """

    def __init__(self, min_score: float = 0.5, iou_threshold: float = 0.3, tile: int = 384,
                 tile_above: int = 512, dark_below: float = 0.0):
        self.short = BlazeFaceDetector("short", min_score, iou_threshold)
        self.back = BlazeFaceDetector("back", min_score, iou_threshold)
        self.iou_threshold, self.tile, self.tile_above, self.dark_below = iou_threshold, tile, tile_above, dark_below

    def prepare(self, rgb: np.ndarray) -> np.ndarray:
        """The image the detectors see: brightened when it is dark."""
        return brighten(rgb) if brightness(rgb) < self.dark_below else rgb

    def detect(self, rgb: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """(boxes (M, 4) x1, y1, x2, y2 in image pixels, scores (M,)), best first, after merging."""
        img = self.prepare(rgb)
        h, w = img.shape[:2]
        parts = [self.back.detect(img)]
        # Close-ups the back model misses (3.5% of 224 px AffectNet face crops; the short-range model finds all).
        # Its boxes that overlap a back-model face are dropped, not merged: they frame the same face differently
        # (IoU below the NMS threshold), and counted as second faces they cost 4 points of recall at 1 FP/image on
        # group photos.
        boxes, scores = self.short.detect(img)
        if len(boxes) and len(parts[0][0]):
            alone = iou_matrix(boxes, parts[0][0]).max(axis=1) < 0.05
            boxes, scores = boxes[alone], scores[alone]
        parts.append((boxes, scores))
        if self.tile and max(h, w) > self.tile_above:
            for x0, y0, x1, y1 in tile_grid(h, w, self.tile):
                boxes, scores = self.back.detect(img[y0:y1, x0:x1])
                parts.append((boxes + np.array([x0, y0, x0, y0], np.float32), scores))
        return merge(parts, self.iou_threshold)

    def __call__(self, rgb: np.ndarray) -> List[Tuple[int, int, int, int]]:
        return square_boxes(self.detect(rgb)[0], rgb.shape[:2])


def merge(parts, iou_threshold: float = 0.3) -> Tuple[np.ndarray, np.ndarray]:
    """Merges several detectors' `(boxes, scores)` into one list with weighted NMS (best first)."""
    boxes = np.concatenate([np.asarray(b, np.float32).reshape(-1, 4) for b, _ in parts])
    scores = np.concatenate([np.asarray(s, np.float32).reshape(-1) for _, s in parts])
    if not len(boxes):
        return boxes, scores
    return weighted_nms(boxes, scores, iou_threshold)
