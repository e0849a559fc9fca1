"""Box helpers shared by the face detectors (OpenCV's YuNet, the Keras YuNet port, BlazeFace, RetinaNet)."""

from __future__ import annotations

from typing import List, Tuple

import cv2
import numpy as np


def xywh(boxes: np.ndarray) -> List[Tuple[int, int, int, int]]:
    """(x1, y1, x2, y2) boxes → integer (x, y, w, h), dropping boxes under 2 px on a side."""
    return [(int(round(x1)), int(round(y1)), int(round(x2 - x1)), int(round(y2 - y1)))
            for x1, y1, x2, y2 in np.asarray(boxes, np.float64).reshape(-1, 4) if x2 - x1 >= 2 and y2 - y1 >= 2]


def yunet_input(rgb: np.ndarray, max_side: int, upscale_to: int) -> Tuple[np.ndarray, float]:
    """The BGR image YuNet sees and its scale: photos over `max_side` px downscaled, under `upscale_to` upscaled
    (both YuNet detectors, OpenCV's and the Keras port, prepare photos this way)."""
    h, w = rgb.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if upscale_to and max(h, w) < upscale_to:
        scale = upscale_to / max(h, w)
    img = rgb if scale == 1.0 else cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))),
                                              interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR if img.ndim == 2 else cv2.COLOR_RGB2BGR), scale
