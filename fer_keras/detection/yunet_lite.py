"""YuNet without TensorFlow: its output decoding, and the TFLite export of the Keras port run by LiteRT.

`decode` turns YuNet's per-level raw outputs into boxes, scores and landmarks exactly as OpenCV's `FaceDetectorYN`
does; the Keras port (`yunet.py`) and `LiteRTYuNetDetector` both use it. This module imports no Keras, so a
predict run on the LiteRT detector starts without TensorFlow.
"""

from __future__ import annotations

import copy
import os
import threading
from typing import Dict, Tuple

import cv2
import numpy as np

from fer_keras.detection.boxes import xywh, yunet_input
from fer_keras.errors import ConfigError, stderr_captured

STRIDES = (8, 16, 32)
OUTPUTS = ("cls", "obj", "bbox", "kps")


def pad32(bgr: np.ndarray) -> np.ndarray:
    """The float32 image padded (bottom/right, zeros) to a multiple of 32 on each side, as YuNet needs."""
    ph, pw = -(-bgr.shape[0] // 32) * 32, -(-bgr.shape[1] // 32) * 32
    padded = np.zeros((ph, pw, 3), np.float32)
    padded[:bgr.shape[0], :bgr.shape[1]] = bgr
    return padded


def decode(outputs: Dict[str, np.ndarray], score_threshold: float, nms_threshold: float = 0.3,
           top_k: int = 750) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's raw outputs (batch axis removed) → (boxes x1 y1 x2 y2, scores, landmarks (M, 5, 2)), best
    first, after score threshold and NMS — the decoding of OpenCV's FaceDetectorYN."""
    boxes, scores, kps = [], [], []
    for stride in STRIDES:
        cls = 1.0 / (1.0 + np.exp(-outputs[f"cls_{stride}"][..., 0]))
        obj = 1.0 / (1.0 + np.exp(-outputs[f"obj_{stride}"][..., 0]))
        score = np.sqrt(np.clip(cls, 0, 1) * np.clip(obj, 0, 1))
        rows, cols = np.nonzero(score >= score_threshold)
        if not len(rows):
            continue
        bb = outputs[f"bbox_{stride}"][rows, cols]
        cx, cy = (cols + bb[:, 0]) * stride, (rows + bb[:, 1]) * stride
        w, h = np.exp(bb[:, 2]) * stride, np.exp(bb[:, 3]) * stride
        boxes.append(np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1))
        k = outputs[f"kps_{stride}"][rows, cols].reshape(-1, 5, 2)
        kps.append((k + np.stack([cols, rows], 1)[:, None, :]) * stride)
        scores.append(score[rows, cols])
    if not boxes:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32)
    boxes, scores, kps = np.concatenate(boxes), np.concatenate(scores), np.concatenate(kps)
    # NMS on integer rectangles, as FaceDetectorYN does (it matters for pairs overlapping near the threshold)
    xywh_int = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1).astype(np.int32)
    keep = cv2.dnn.NMSBoxes(xywh_int.tolist(), scores.tolist(), score_threshold, nms_threshold, top_k=top_k)
    keep = np.array(keep, np.int64).reshape(-1)
    keep = keep[np.argsort(-scores[keep])]
    return boxes[keep].astype(np.float32), scores[keep].astype(np.float32), kps[keep].astype(np.float32)


class YuNetOutputs:
    """The detectors' interface for a YuNet whose subclass supplies `raw_outputs(padded)` (the per-level outputs of
    one padded BGR float32 image): pre-processing as `YuNetDetector`'s (OpenCV) and decoding as its."""

    square_crops = False
    min_score, nms_threshold, max_side, upscale_to, top_k = 0.5, 0.3, 1280, 640, 750

    def raw_outputs(self, padded: np.ndarray) -> Dict[str, np.ndarray]:
        raise NotImplementedError

    def detect_landmarks(self, rgb: np.ndarray):
        """(boxes (M, 4) x1 y1 x2 y2, scores (M,), landmarks (M, 5, 2) x y), in image pixels, best first."""
        bgr, scale = yunet_input(rgb, self.max_side, self.upscale_to)
        boxes, scores, kps = decode(self.raw_outputs(pad32(bgr)), self.min_score, self.nms_threshold, self.top_k)
        return boxes / scale, scores, kps / scale

    def detect(self, rgb: np.ndarray):
        boxes, scores, _ = self.detect_landmarks(rgb)
        return boxes, scores

    def __call__(self, rgb: np.ndarray):
        return xywh(self.detect(rgb)[0])


class LiteRTYuNetDetector(YuNetOutputs):
    """YuNet exported to TFLite (`yunet.export_tflite`) and run by LiteRT (XNNPACK), behind the detectors' interface.

    Same pre-processing and decoding as `YuNetDetector` (OpenCV) and the Keras port (`YuNetOutputs`). The
    interpreter is resized only when the padded input size changes (a video keeps one size). One per thread.

    Args:
        path: the `.tflite` file.
        min_score, nms_threshold, max_side, upscale_to, top_k: as `YuNetDetector`'s settings.
        threads: LiteRT's CPU threads.
    """

    def __init__(self, path: str, min_score: float = 0.5, nms_threshold: float = 0.3, max_side: int = 1280,
                 upscale_to: int = 640, top_k: int = 750, threads: int = 2):
        if not os.path.isfile(path):
            raise ConfigError(f"{path}: the YuNet TFLite file is missing")
        self.path, self.threads = path, threads
        self.min_score, self.nms_threshold, self.max_side, self.upscale_to, self.top_k = \
            min_score, nms_threshold, max_side, upscale_to, top_k
        self._local = threading.local()
        self._runner()  # fail at construction when LiteRT cannot read the file

    def for_workers(self, workers: int) -> "LiteRTYuNetDetector":
        """This detector for `workers` threads calling it at once (predict's folder mode): LiteRT's threads divided
        among them, so the calls do not oversubscribe the cores (measured: benchmarks/bench_yunet_runtimes.py, 2
        workers of 1 thread beat 2 of 2 on both crowd photos and close-ups)."""
        if workers <= 1 or self.threads <= 1:
            return self
        clone = copy.copy(self)
        clone.threads, clone._local = max(1, self.threads // workers), threading.local()
        return clone

    def _runner(self):
        state = getattr(self._local, "state", None)
        if state is None:
            from ai_edge_litert.interpreter import Interpreter  # LiteRT: only for this detector

            try:
                with stderr_captured():  # LiteRT's "INFO: Created TensorFlow Lite XNNPACK delegate": noise
                    interp = Interpreter(model_path=self.path, num_threads=self.threads)
            except (ValueError, RuntimeError) as e:
                raise ConfigError(f"{self.path}: LiteRT cannot load it ({str(e).splitlines()[0][:200]})") from None
            runner = interp.get_signature_runner("serving_default")
            missing = [f"{o}_{s}" for s in STRIDES for o in OUTPUTS if f"{o}_{s}" not in runner.get_output_details()]
            if missing:
                raise ConfigError(f"{self.path}: not a YuNet export (no output {missing[0]}; export with "
                                  "yunet.export_tflite)")
            state = self._local.state = runner
        return state

    def raw_outputs(self, padded: np.ndarray) -> Dict[str, np.ndarray]:
        """The per-level outputs (batch axis removed) for one padded BGR float32 image (the export's signature
        names them; the runner resizes its input when the size changes)."""
        runner = self._runner()
        if not getattr(self._local, "ran", False):  # LiteRT creates its XNNPACK delegate (and says so) on the first run
            with stderr_captured():
                out = runner(images=padded[None])
            self._local.ran = True
        else:
            out = runner(images=padded[None])
        return {name: v[0] for name, v in out.items()}
