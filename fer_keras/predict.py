"""Prediction on images, folders, videos and webcams: detect faces → crop → classify, in batches (the library part;
the CLI is `fer_keras/cli_predict.py`, the Python API `fer_keras.Analyzer`).

    python -m fer_keras.predict PATH... --model runs/<name> [--out predictions/] [--annotate] [--save-crops]
        [--no-detect] [--all-faces] [--padding 0.15] [--window 5] [--batch-size 64]

PATH may be an image, a folder (searched recursively), a video file, or a webcam index (`0`). Output (in --out):
`predictions.csv` / `predictions.json` with one row per face (file, frame, box, label, confidence, probabilities,
valence, arousal), `errors.csv` for unreadable inputs and images without a face (reported, not fatal),
`folder_accuracy.csv` when folders are named like classes, and with --annotate the annotated images/videos.
"""

from __future__ import annotations

import copy
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from fer_keras.calibration import apply as apply_calibration, resolve as resolve_calibration
from fer_keras.limits import MAX_IMAGE_PIXELS
from fer_keras.data.images import IMAGE_EXTS, file_orientation, resize_array, upright_array
from fer_keras.detection.faces import for_stream, for_workers, whole_image
from fer_keras.tracking import FaceTracker
from fer_keras.errors import (ConfigError, DataError, ModelError, choice_error, quiet_tensorflow_import,
                              stderr_captured)
from fer_keras.io_utils import write_image
from fer_keras.labels import class_mapping_matrix, map_probabilities, preset_classes
from fer_keras.progress import Progress
from fer_keras.model_info import (check_class_count, check_expression_model, check_tflite_belongs, load_keras_model,
                                  read_model_info)
from fer_keras.tta import tta_views, tta_views_numpy

VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
# Detections that confirm a video track (`--confirm`). Chosen on clips with boxes in every frame
# (benchmarks/bench_video_tracks.py, benchmarks/results/video_tracks.json): false tracks on the one-to-few-faces clip
# fell 6 -> 5 -> 4 from 1 to 3 and stayed at 4 with 4 (the rest are still objects seen by every detection), on the
# crowd clip 85 -> 38 -> 26, and the main face stayed in the same share of frames.
CONFIRM = 3


# === Detection (the detectors live in fer_keras/detection/faces.py) ===

def clip_boxes(boxes, width: int, height: int, min_side: int = 2) -> List[Tuple[int, int, int, int]]:
    """Detector boxes `(x, y, w, h)` clipped to the image; boxes with less than `min_side` px inside are dropped.

    Any detector (a trained RetinaNet above all) can return boxes partly or wholly outside the image or with
    non-finite coordinates; an empty crop must be skipped here, never reach the resize in the classifier.
    """
    out = []
    for box in boxes:
        x, y, w, h = (float(v) for v in box)
        if not np.all(np.isfinite([x, y, w, h])):
            continue
        x0, y0 = int(round(max(0.0, x))), int(round(max(0.0, y)))
        x1, y1 = int(round(min(float(width), x + w))), int(round(min(float(height), y + h)))
        if x1 - x0 >= min_side and y1 - y0 >= min_side:
            out.append((x0, y0, x1 - x0, y1 - y0))
    return out


def pad_box(box, padding: float, width: int, height: int) -> Tuple[int, int, int, int]:
    """Grows a box by `padding` of its size on each side, clipped to the image."""
    x, y, w, h = box
    dx, dy = int(round(w * padding)), int(round(h * padding))
    x0, y0 = max(0, x - dx), max(0, y - dy)
    x1, y1 = min(width, x + w + dx), min(height, y + h + dy)
    return x0, y0, x1 - x0, y1 - y0


# === Model ===

BACKENDS = ("auto", "keras", "litert")


def tflite_sibling(model: str, model_file: str) -> Optional[str]:
    """The float TFLite export that goes with a model, if one exists: `<stem>.tflite` beside a `.keras` file (the
    shipped models), `export/model_float.tflite` in a run directory, or the path itself for a `.tflite`."""
    if model.lower().endswith(".tflite"):
        return model
    if os.path.isdir(model):
        cand = os.path.join(model, "export", "model_float.tflite")
    else:
        cand = os.path.splitext(model_file)[0] + ".tflite"
    return cand if os.path.isfile(cand) else None


class _LiteRTModel:
    """A TFLite export run by LiteRT (`ai-edge-litert`): no TensorFlow import, so predict starts in about a second.

    The export's input is (1, H, W, C) float32 0-255; batches are run by resizing the input once per batch size
    (falling back to one image at a time if the graph cannot be resized)."""

    def __init__(self, path: str):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise ConfigError("--backend litert needs the ai-edge-litert package (pip install ai-edge-litert; "
                              "or --backend keras)") from None
        try:
            # LiteRT announces its XNNPACK delegate on stderr ("INFO: Created TensorFlow Lite XNNPACK delegate"):
            # noise for a user; a failure is still reported below.
            with stderr_captured():
                self.interp = Interpreter(model_path=path, num_threads=os.cpu_count() or 1)
                self.interp.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise ModelError(f"{path}: LiteRT cannot read it as a TFLite model ({str(e).splitlines()[0]})") \
                from None
        self.path = path
        self.input = self.interp.get_input_details()[0]
        sig = self.interp.get_signature_list().get("serving_default", {}).get("outputs", [])
        if not {"probabilities", "valence_arousal"} <= set(sig):
            raise ModelError(f"{path}: not a fer_keras TFLite export (outputs {sorted(sig)}; expected "
                             "probabilities and valence_arousal)")
        self._runner = self.interp.get_signature_runner()
        self.shape = tuple(int(v) for v in self.input["shape"][1:])
        self._batch, self._fixed = 1, False
        # One interpreter, resized per batch size: calls from several threads (one Analyzer shared by a web
        # server's workers) take turns, or one thread's resize would hand another its tensors.
        self._lock = threading.Lock()

    def _resize(self, n: int) -> None:
        self._runner = None  # the old runner holds tensors that block re-allocation
        self.interp.resize_tensor_input(self.input["index"], [n, *self.shape], strict=False)
        self.interp.allocate_tensors()
        self._runner = self.interp.get_signature_runner()
        self._batch = n

    def __call__(self, x: np.ndarray) -> Dict[str, np.ndarray]:
        with self._lock:
            return self._call(x)

    def _call(self, x: np.ndarray) -> Dict[str, np.ndarray]:
        n = len(x)
        if n != self._batch and not self._fixed:
            try:
                self._resize(n)
            except (ValueError, RuntimeError):  # an export with a fixed batch of 1: one image at a time
                self._fixed = True
                self._resize(1)
        if self._fixed and n > 1:
            outs = [self._call(x[i:i + 1]) for i in range(n)]
            return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}
        out = self._runner(image=np.ascontiguousarray(x, np.float32))
        probs = np.maximum(np.asarray(out["probabilities"], np.float32), 0.0)
        # an int8 export's outputs are quantized (sums 0.99-1.01): renormalized, so they stay probabilities
        probs /= np.maximum(probs.sum(axis=1, keepdims=True), 1e-12)
        return {"expression": probs,
                "valence_arousal": np.asarray(out["valence_arousal"], np.float32)}


class FacePredictor:
    """Wraps a trained model (a run directory, a `.keras` file or a `.tflite` export) for batched face
    classification.

    `backend`: `keras` runs the Keras model through TensorFlow; `litert` runs its float TFLite export through
    LiteRT (the shipped default model ships with one; a run has one after `export --format tflite`); `auto` takes
    LiteRT when such an export exists, else Keras. `tta`: the test-time augmentation views (fer_keras/tta.py),
    made in the graph with Keras and in NumPy with LiteRT; `auto` = the model's own choice (`ModelInfo.tta`).
    """

    def __init__(self, model: str, batch_size: int = 64, safe_mode: bool = True, tta: str = "auto",
                 labels: Optional[str] = None, backend: str = "auto", calibration: str = "auto"):
        if backend not in BACKENDS:
            raise choice_error("backend", backend, BACKENDS)
        info = read_model_info(model)
        path, names = info.model_file, info.class_names
        self.va_trained = info.va_trained
        # the model's stored output prior (fer_keras/calibration.py), applied to both backends' probabilities
        self.calibration = resolve_calibration(info.calibration, calibration)
        tta = info.tta if tta == "auto" else tta
        lite = tflite_sibling(model, path) if backend != "keras" else None
        if backend == "litert" and lite is None:
            raise ConfigError(f"{model}: no TFLite export to run with --backend litert (python -m fer_keras.export "
                              "--run RUN --format tflite)")
        self.batch_size, self.tta, self.labels = batch_size, tta, labels
        if lite is not None:
            if lite != model:  # the export beside a model: it must be of this version of the model
                check_tflite_belongs(model, info, lite)
            self.backend = "litert"
            self._lite = _LiteRTModel(lite)
            self._views = tta_views_numpy(tta)
            shape = self._lite.shape
            self.size, self.channels = int(shape[0]), int(shape[-1])
            probe = self._lite(np.zeros((1, *shape), np.float32))["expression"]
            check_class_count(lite, int(probe.shape[-1]), names)
            names = names or preset_classes(str(probe.shape[-1]))
            self.model_class_names = names
        else:
            self.backend = "keras"
            self._init_keras(path, names, safe_mode, tta)
        # --labels P: the model's probabilities mapped by class name into preset P (as evaluate_model.py --labels)
        self.class_names = preset_classes(labels) if labels else self.model_class_names
        if labels:
            class_mapping_matrix(self.model_class_names, labels)  # a coarser model than the preset fails here

    def _init_keras(self, path: str, names, safe_mode: bool, tta: str) -> None:
        quiet_tensorflow_import()
        self.model = load_keras_model(path, safe_mode=safe_mode)
        shape, k = check_expression_model(self.model, path, names)
        if len(shape) != 3:
            raise ConfigError(f"{path}: a clip model (input {self.model.input_shape}); predict takes frame models")
        self.size, self.channels = int(shape[0]), int(shape[-1])
        self.model_class_names = names or preset_classes(str(k))
        self._serve = self._keras_serve(tta)

    def _keras_serve(self, tta: str):
        import tensorflow as tf

        # One compiled function for every batch size (None batch dimension): traced once per process, where
        # Keras' predict_on_batch retraces for new batch shapes (0.8 s each here); eager calls run 2.7x slower.
        # With test-time augmentation the views are made and averaged inside the same graph (see
        # fer_keras/tta.py: the views evaluate_model.py --tta uses).
        views = tta_views(tta)

        def serve(x):
            outs = [self.model(v(x), training=False) for v in views]
            return {k: tf.add_n([tf.cast(o[k], tf.float32) for o in outs]) / len(outs)
                    for k in ("expression", "valence_arousal")}

        return tf.function(serve, input_signature=[tf.TensorSpec([None, self.size, self.size, self.channels],
                                                                 tf.float32)])

    def with_tta(self, tta: str) -> "FacePredictor":
        """The same loaded model with other test-time augmentation views (predict's videos use none by default)."""
        if tta == self.tta:
            return self
        other = copy.copy(self)
        other.tta = tta
        if self.backend == "litert":
            other._views = tta_views_numpy(tta)
        else:
            other._serve = self._keras_serve(tta)
        return other

    def _lite_views(self, batch: np.ndarray) -> Dict[str, np.ndarray]:
        """LiteRT over every TTA view of the batch in one call, averaged per face (as the Keras graph does)."""
        if len(self._views) == 1:
            return self._lite(batch)
        out = self._lite(np.concatenate([v(batch) for v in self._views]))
        return {k: v.reshape(len(self._views), len(batch), -1).mean(axis=0) for k, v in out.items()}

    def prepare(self, crop: np.ndarray) -> np.ndarray:
        """Resizes one RGB (H, W, 3) or grayscale (H, W) crop to the model's input (size, channels), uint8."""

        return resize_array((crop[..., None] if crop.ndim == 2 else crop)[None], self.size, self.channels)[0]

    def predict(self, crops: Sequence[np.ndarray]) -> Dict[str, np.ndarray]:
        """Classifies prepared crops in batches.

        Returns:
            {"expression": (N, K) class probabilities, "valence_arousal": (N, 2)}.
        """
        if not len(crops):
            return {"expression": np.zeros((0, len(self.class_names))), "valence_arousal": np.zeros((0, 2))}
        x = np.stack(crops).astype(np.float32)
        want = (self.size, self.size, self.channels)
        if x.shape[1:] != want:  # LiteRT would resize its input tensor and answer nonsense without a word
            raise ValueError(f"crops of shape {x.shape[1:]}: this model reads {want}; pass each crop through "
                             "FacePredictor.prepare first")
        probs, va = [], []
        for i in range(0, len(x), self.batch_size):
            batch = x[i:i + self.batch_size]
            out = self._lite_views(batch) if self.backend == "litert" else self._serve(batch)  # named outputs
            probs.append(np.asarray(out["expression"], np.float32))
            va.append(np.asarray(out["valence_arousal"], np.float32))
        va = np.concatenate(va)
        probs = apply_calibration(np.concatenate(probs), self.calibration)
        if self.labels:

            probs = map_probabilities(probs, self.model_class_names, self.labels).astype(np.float32)
        if not self.va_trained:  # an untrained head's numbers are noise: report them as missing
            va = np.full_like(va, np.nan)
        return {"expression": probs, "valence_arousal": va}


# === Inputs ===

def expand_inputs(paths: Sequence[str]) -> List[Tuple[str, str]]:
    """Turns CLI paths into (kind, path) with kind in image|video|webcam|missing; folders are searched
    recursively. A missing path is kept (kind `missing`) so the caller reports it and still processes the rest."""
    out = []
    for p in paths:
        if p.isdigit() and not os.path.exists(p):
            out.append(("webcam", p))
        elif os.path.isdir(p):
            for root, dirs, files in os.walk(p):
                dirs.sort()
                for f in sorted(files):
                    ext = os.path.splitext(f)[1].lower()
                    if ext in IMAGE_EXTS or ext in VIDEO_EXTS:
                        out.append((_file_kind(os.path.join(root, f)), os.path.join(root, f)))
        elif os.path.isfile(p):
            out.append((_file_kind(p), p))
        else:
            out.append(("missing", p))
    return out


def _file_kind(path: str) -> str:
    """`video` for a video file or an animated GIF (each of its frames is predicted, tracked, as a video's are),
    else `image`."""
    ext = os.path.splitext(path)[1].lower()
    if ext in VIDEO_EXTS:
        return "video"
    if ext == ".gif":
        from PIL import Image  # only for GIFs: one photo's start-up does without it

        if image_problem(path):  # too large by its header: the image path refuses it in one line, unread
            return "image"
        try:
            with Image.open(path) as im:
                return "video" if getattr(im, "n_frames", 1) > 1 else "image"
        except Exception:  # unreadable (Pillow raises several kinds): the image path reports it in one line
            return "image"
    return "image"


def image_problem(path: str) -> Optional[str]:
    """Why an image file must not be decoded (None when it may): more pixels than MAX_IMAGE_PIXELS declared in
    its header (a 438 KB PNG can declare 20000x20000 and take 3 GB to decode). Training's `pipeline.check_header`
    also limits the formats to what tf.data decodes; predict decodes with OpenCV, which reads more (WebP, TIFF)."""
    from PIL import Image

    try:
        with Image.open(path) as im:  # reads the header only, never the pixels
            if im.width * im.height > MAX_IMAGE_PIXELS:
                return f"image too large ({im.width}x{im.height} pixels; the limit is {MAX_IMAGE_PIXELS:,})"
    except Image.DecompressionBombError:  # Pillow's own refusal, above ~179 MP by the header: far over our limit
        return f"image too large (over {2 * Image.MAX_IMAGE_PIXELS:,} pixels by its header; the limit is " \
               f"{MAX_IMAGE_PIXELS:,})"
    except Exception:  # not a format PIL reads: OpenCV tries next, and fails cleanly if it cannot either
        pass
    return None


def read_gray(path: str) -> Optional[np.ndarray]:
    """The image as (H, W) uint8 gray, upright by the EXIF policy of `read_rgb` (the caller checked its size)."""
    img = cv2.imread(path, cv2.IMREAD_GRAYSCALE | cv2.IMREAD_IGNORE_ORIENTATION)
    return None if img is None else upright_array(img, file_orientation(path))


def read_rgb(path: str, checked: bool = False) -> Optional[np.ndarray]:
    """The image as RGB uint8, or None when it cannot be decoded or is too large (see `image_problem`; `checked`:
    the caller already asked it)."""
    if not checked and image_problem(path):
        return None
    # OpenCV's own EXIF handling differs from training's (PNG, LONG-typed tags): the one policy is images.py's
    img = cv2.imread(path, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if img is None:
        return None
    return upright_array(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), file_orientation(path))


def output_stems(paths: Sequence[str]) -> Dict[str, str]:
    """A file-name stem per input for annotated images and crops: the file's stem, made unique when two inputs
    share it (`a/face.png`, `b/face.png` -> `face`, `face-<hash of the folder>`) so outputs never overwrite."""
    import hashlib

    stems, taken = {}, set()
    for p in paths:
        stem = os.path.splitext(os.path.basename(p))[0]
        if stem in taken:
            digest = hashlib.sha1(os.path.abspath(os.path.dirname(p)).encode()).hexdigest()[:8]
            stem = f"{stem}-{digest}"
        taken.add(stem)
        stems[p] = stem
    return stems


# === Annotation ===

def _overlaps(a, b) -> bool:
    """Whether rectangles (x1, y1, x2, y2) a and b intersect."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def label_box(box, size, image_shape, avoid) -> Tuple[int, int, int, int]:
    """Where a face's label of `size` (w, h) goes: above the face, else below it, else inside its top edge; the
    first place that stays in the image and covers no rectangle in `avoid` (other faces, labels already placed),
    else the first that stays in the image. Returns the label's (x1, y1, x2, y2)."""
    (x, y, w, h), (tw, th), (H, W) = box, size, image_shape[:2]
    x1 = int(min(max(0, x), max(0, W - tw)))  # never off the right (or left) edge
    places = [(x1, y - th), (x1, y + h), (x1, y)]
    rects = [(px, py, px + tw, py + th) for px, py in places]
    inside = [r for r in rects if r[1] >= 0 and r[3] <= H]
    for r in inside:
        if not any(_overlaps(r, o) for o in avoid):
            return r
    return inside[0] if inside else (x1, 0, x1 + tw, th)


def annotate(rgb: np.ndarray, boxes, labels, confidences, vas) -> np.ndarray:
    """Draws each face's box, its label and confidence on a filled tag placed where it covers no other face and
    stays inside the image, and a valence-arousal dial (right = positive valence, up = high arousal; explained by a
    legend in the corner); returns BGR for writing."""
    img = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    H, W = img.shape[:2]
    scale = float(np.clip(min(H, W) / 700.0, 0.45, 1.2))  # legible on a phone photo and on a 640 px frame
    thick = max(1, int(round(scale * 2)))
    faces = [(x, y, x + w, y + h) for x, y, w, h in boxes]
    placed, any_va = [], False
    for i, ((x, y, w, h), lab, conf, (v, a)) in enumerate(zip(boxes, labels, confidences, vas)):
        cv2.rectangle(img, (x, y), (x + w, y + h), (0, 200, 0), thick)
        text = f"{lab} {conf:.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        others = [f for j, f in enumerate(faces) if j != i] + placed
        r = label_box((x, y, w, h), (tw + 6, th + base + 6), img.shape, others)
        placed.append(r)
        cv2.rectangle(img, (r[0], r[1]), (r[2], r[3]), (0, 110, 0), -1)
        cv2.putText(img, text, (r[0] + 3, r[3] - base - 3), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick,
                    cv2.LINE_AA)
        if v is None or a is None or not (np.isfinite(v) and np.isfinite(a)):
            continue  # an untrained VA head: no dial rather than a made-up one
        any_va = True
        rad = max(8, w // 6)  # the dial: a circle with axes and a dot at (valence, -arousal)
        cx, cy = min(x + w - rad, W - rad - 1), min(y + h + rad + 2, H - rad - 1)
        cv2.circle(img, (cx, cy), rad, (40, 40, 40), -1)
        cv2.circle(img, (cx, cy), rad, (220, 220, 220), 1)
        cv2.line(img, (cx - rad, cy), (cx + rad, cy), (120, 120, 120), 1)
        cv2.line(img, (cx, cy - rad), (cx, cy + rad), (120, 120, 120), 1)
        cv2.circle(img, (int(cx + v * rad), int(cy - a * rad)), max(2, rad // 5), (0, 0, 255), -1)
    if any_va:
        legend = "dial: right = positive valence, up = high arousal"
        (tw, th), base = cv2.getTextSize(legend, cv2.FONT_HERSHEY_SIMPLEX, scale * 0.8, 1)
        cv2.rectangle(img, (0, H - th - base - 6), (tw + 6, H), (40, 40, 40), -1)
        cv2.putText(img, legend, (3, H - base - 3), cv2.FONT_HERSHEY_SIMPLEX, scale * 0.8, (255, 255, 255), 1,
                    cv2.LINE_AA)
    return img


# === Running ===

@dataclass
class Results:
    rows: List[dict] = field(default_factory=list)
    errors: List[Tuple[str, str]] = field(default_factory=list)
    unconfirmed_tracks: int = 0  # video tracks never confirmed (FaceTracker.min_hits): their rows were dropped
    unconfirmed_rows: int = 0
    fps: Dict[str, float] = field(default_factory=dict)  # video source -> its frames per second
    low_confidence: int = 0  # faces (video: face rows) dropped by min_confidence


def _row(source, frame, idx, box, names, probs, va, label: Optional[int] = None, track=None):
    k = int(np.argmax(probs)) if label is None else int(label)
    return {"source": source, "frame": frame, "face": idx, "track": track,
            "x": box[0], "y": box[1], "w": box[2], "h": box[3],
            "label": names[k], "confidence": float(probs[k]),
            **{f"p_{n}": float(p) for n, p in zip(names, probs)},
            # NaN (an untrained VA head) is written as an empty cell / JSON null, never as a number
            "valence": float(va[0]) if np.isfinite(va[0]) else None,
            "arousal": float(va[1]) if np.isfinite(va[1]) else None}


def face_boxes(rgb: np.ndarray, detector, padding: float, largest: bool = False, found=None) -> List[Tuple[int, ...]]:
    """The padded (x, y, w, h) boxes of the faces in an image: `detector(rgb)` (or its boxes `found` already),
    clipped to the image, the largest only when `largest`, each padded by `padding` of its size."""
    height, width = rgb.shape[:2]
    # --no-detect: the whole image is the face, however thin (a 1-px-wide crop is still the user's input)
    boxes = clip_boxes(detector(rgb) if found is None else found, width, height,
                       min_side=1 if detector is whole_image else 2)
    if largest and boxes:
        boxes = [max(boxes, key=lambda b: b[2] * b[3])]
    return [pad_box(b, padding, width, height) for b in boxes]


def face_inputs(predictor: FacePredictor, rgb: np.ndarray, boxes) -> List[np.ndarray]:
    """The model's input for each face at `boxes` (x, y, w, h) of an image: its crop, prepared."""
    return [predictor.prepare(rgb[y:y + h, x:x + w]) for x, y, w, h in boxes]


def image_faces(predictor: FacePredictor, rgb: np.ndarray, detector, padding: float, largest: bool = False,
                found=None) -> Tuple[List[Tuple[int, ...]], List[np.ndarray]]:
    """From a decoded image to its faces: their padded boxes (`face_boxes`) and each face's model input. The one
    route of a photo, a video frame and an API image; the caller classifies the inputs (`FacePredictor.predict`),
    a folder's in batches across its images."""
    boxes = face_boxes(rgb, detector, padding, largest, found)
    return boxes, face_inputs(predictor, rgb, boxes)


def _checked_write(out_path: str, bgr: np.ndarray, source: str, results: "Results") -> None:
    """Writes one output image; a failure is listed in errors.csv (and so in the summary line), never silent."""
    try:
        write_image(out_path, bgr)
    except OSError as e:
        results.errors.append((source, str(e)))


def confident(probs: np.ndarray, min_confidence: Optional[float]) -> bool:
    """Whether a face's top expression probability reaches `min_confidence` (None: every face does)."""
    return min_confidence is None or float(np.max(probs)) >= min_confidence


def predict_images(predictor: FacePredictor, paths: Sequence[str], detector, padding: float, all_faces: bool,
                   results: Results, out_dir: Optional[str] = None, annotate_out: bool = False,
                   save_crops: bool = False, progress: bool = True, min_confidence: Optional[float] = None) -> None:
    """Detects and crops faces of many images (every face, or the largest when `all_faces` is False), then
    classifies all crops in batches. A progress line goes to stderr for more than one image. Faces whose top
    expression probability is below `min_confidence` are dropped and counted in `results.low_confidence`."""
    # A grayscale model with a grayscale detector needs no colour: decoding straight to gray saves ~1 ms a photo.
    gray = predictor.channels == 1 and getattr(detector, "accepts_gray", False) and not annotate_out \
        and not save_crops

    def load_and_detect(path):  # OpenCV releases the GIL: decoding and detection run in parallel threads
        problem = image_problem(path)
        if problem:
            return None, problem
        rgb = read_gray(path) if gray else read_rgb(path, checked=True)
        return rgb, (detector(rgb) if rgb is not None else "unreadable image")

    crops, meta = [], []
    stems = output_stems(paths)
    workers = max(1, min(4, os.cpu_count() or 1)) if len(paths) > 1 else 1
    detector = for_workers(detector, workers)  # LiteRT's threads shared among the workers, not multiplied
    with ThreadPoolExecutor(workers) as ex:
        # Submit in windows so a huge folder never holds more than a few decoded images at once.
        window = 4 * workers
        pending = [ex.submit(load_and_detect, p) for p in paths[:window]]
        prog = Progress("images", len(paths), "images", enabled=progress and len(paths) > 1)
        for k, path in enumerate(paths):
            rgb, boxes = pending[k].result()
            prog.update()  # this image is decoded and searched (classification runs in batches after the loop)
            pending[k] = None
            if k + window < len(paths):
                pending.append(ex.submit(load_and_detect, paths[k + window]))
            if rgb is None:
                results.errors.append((path, boxes))  # the problem
                continue
            boxes, inputs = image_faces(predictor, rgb, detector, padding, largest=not all_faces, found=boxes)
            if not boxes:
                results.errors.append((path, "no face found"))
                continue
            crops += inputs
            for i, (x, y, w, h) in enumerate(boxes):
                meta.append((path, i, (x, y, w, h), rgb if annotate_out else None))
                if save_crops and out_dir:
                    d = os.path.join(out_dir, "crops")
                    os.makedirs(d, exist_ok=True)
                    _checked_write(os.path.join(d, f"{stems[path]}_face{i}.png"),
                                   cv2.cvtColor(rgb[y:y + h, x:x + w], cv2.COLOR_RGB2BGR), path, results)
        prog.close()
    out = predictor.predict(crops)
    per_image: Dict[str, list] = {}
    for (path, i, box, rgb), probs, va in zip(meta, out["expression"], out["valence_arousal"]):
        if not confident(probs, min_confidence):
            results.low_confidence += 1
            continue
        results.rows.append(_row(path, "", i, box, predictor.class_names, probs, va))
        if annotate_out:
            per_image.setdefault(path, [rgb, []])[1].append(results.rows[-1])
    if annotate_out and out_dir:
        d = os.path.join(out_dir, "annotated")
        os.makedirs(d, exist_ok=True)
        for path, (rgb, rows) in per_image.items():
            img = annotate(rgb, [(r["x"], r["y"], r["w"], r["h"]) for r in rows], [r["label"] for r in rows],
                           [r["confidence"] for r in rows], [(r["valence"], r["arousal"]) for r in rows])
            ext = os.path.splitext(path)[1].lower()
            ext = ext if ext in (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp") else ".png"  # e.g. .gif
            _checked_write(os.path.join(d, stems[path] + ext), img, path, results)


def predict_video(predictor: FacePredictor, source: str, detector, padding: float, window: int,
                  results: Results, out_dir: Optional[str] = None, annotate_out: bool = False,
                  show: bool = False, max_frames: Optional[int] = None, detect_every: int = 5,
                  largest_face: bool = False, margin: float = 0.1, progress: bool = True, confirm: int = CONFIRM,
                  warn: bool = True, min_confidence: Optional[float] = None) -> None:
    """Predictions for every face of every frame, tracked: one `track` id per face across frames.

    A track is reported only once `confirm` detections found it (its earlier frames are then reported too); the
    rows of tracks never confirmed are dropped and counted in `results.unconfirmed_*` (a box found once and never
    again is rarely a face). A video too short for `confirm` detections reports the tracks found by all of them.

    Faces are detected every `detect_every` frames; on the frames between, each face's box moves on at its track's
    velocity (box centre shift per frame between its last two detections). Each track's probabilities and
    valence/arousal are averaged over its last `window` frames, and its label changes only when another class
    beats the shown one by `margin` (hysteresis), so a steady face does not flicker.

    A face whose smoothed top probability is below `min_confidence` is not reported (counted in
    `results.low_confidence`). An unopenable, empty or truncated video is listed in `results.errors`. `warn=False`
    keeps the CLI's warnings off stderr (the API reports through `results`).
    """
    say = (lambda line: print(line, file=sys.stderr)) if warn else (lambda line: None)
    opened = _open_video(source, results, say)
    if opened is None:
        return
    cap, webcam, fps, declared = opened
    video = _Video(source, webcam, fps, declared, FaceTracker(window=window, margin=margin, min_hits=confirm),
                   start=len(results.rows))
    detector = for_stream(detector)  # e.g. auto: one detector per scene, not one per frame near the dark threshold
    total = min(video.declared or max_frames or 0, max_frames or video.declared) or None
    prog = Progress("webcam" if video.webcam else os.path.basename(source), total, "frames", enabled=progress)
    show = show and can_show()
    frame_no = 0
    try:
        while max_frames is None or frame_no < max_frames:
            ok, bgr = cap.read()
            if not ok or bgr is None:
                break
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            boxes, ids = _track_frame(video, rgb, frame_no, detector, padding, detect_every, largest_face,
                                      annotate_out, say)
            rows = _classify_frame(video, predictor, rgb, boxes, ids, frame_no, results, min_confidence)
            drawn = bgr
            if rows and (annotate_out or show):  # confirmed tracks only
                drawn = annotate(rgb, [(r["x"], r["y"], r["w"], r["h"]) for r in rows],
                                 [f"#{r['track']} {r['label']}" for r in rows], [r["confidence"] for r in rows],
                                 [(r["valence"], r["arousal"]) for r in rows])
            if annotate_out and out_dir:
                annotate_out = _write_frame(video, drawn, out_dir, results, say) or show
            if show:
                show, stop = _show_frame(drawn)
                if stop:
                    break
            frame_no += 1
            prog.update()
    finally:
        cap.release()
        if video.writer is not None:
            video.writer.release()
        prog.close()
    _finish_video(video, frame_no, max_frames, confirm, results, say)


@dataclass
class _Video:
    """One video's running state while `predict_video` reads it."""

    source: str
    webcam: bool
    fps: float
    declared: int  # the frame count its header declares (0: unknown, a webcam)
    tracker: FaceTracker
    start: int  # this video's first row in `Results.rows`
    pending: Dict[int, list] = field(default_factory=dict)  # track id -> rows awaiting confirmation
    seen_in: Dict[int, int] = field(default_factory=dict)  # track id -> detections that found it
    detections: int = 0  # detection frames so far
    size: Optional[Tuple[int, int]] = None  # the frame size (H, W) tracks live in
    size_changes: int = 0  # how often a stream changed it
    writer: Optional[object] = None  # the annotated video's cv2.VideoWriter, once opened
    writer_size: Tuple[int, int] = (0, 0)


def _open_video(source: str, results: Results, say) -> Optional[Tuple[object, bool, float, int]]:
    """(capture, is a webcam, frames per second, declared frame count) of a video file or webcam, or None when it
    cannot be read (listed in `results.errors`)."""
    webcam = source.isdigit() and not os.path.exists(source)
    cap = cv2.VideoCapture(int(source) if webcam else source)
    if not cap.isOpened():
        if webcam:  # nothing else to do: a live input that is not there is the user's error, exit 2
            raise DataError(f"webcam {source}: cannot open it (no camera at that index, or no permission)")
        what = "cannot open video"
        results.errors.append((source, what))
        say(f"warning: {source}: {what} (skipped; listed in errors.csv)")
        return None
    width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
    if width * height > MAX_IMAGE_PIXELS:  # the same pixel limit as photos: one frame would not fit in memory
        cap.release()
        what = f"frames too large ({width}x{height} pixels; the limit is {MAX_IMAGE_PIXELS:,})"
        results.errors.append((source, what))
        say(f"warning: {source}: {what} (skipped; listed in errors.csv)")
        return None
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    results.fps[source] = float(fps)
    declared = 0 if webcam else int(max(0.0, cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0.0))
    return cap, webcam, fps, declared


def _track_frame(video: _Video, rgb: np.ndarray, frame_no: int, detector, padding: float, detect_every: int,
                 largest_face: bool, annotate_out: bool, say) -> Tuple[list, list]:
    """The frame's face boxes and their track ids: detected every `detect_every` frames (and after the stream
    changed size), else moved on by each track's velocity."""
    resized = video.size is not None and rgb.shape[:2] != video.size
    if resized:  # a stream that changes resolution: boxes of the old size mean nothing in the new frames
        video.size_changes += 1
        if video.size_changes == 1:  # one line per video, however often it changes
            say(f"warning: {video.source}: the frame size changed from {video.size[1]}x{video.size[0]} to "
                f"{rgb.shape[1]}x{rgb.shape[0]} at frame {frame_no} (faces detected again, tracks restarted"
                + (", the annotated video keeps the first size)" if annotate_out else ")"))
        video.tracker.restart()
    video.size = rgb.shape[:2]
    if frame_no % max(1, detect_every) and not resized:  # between detections: boxes move at their velocity
        return video.tracker.predict(frame_no, rgb.shape[1], rgb.shape[0])
    boxes = face_boxes(rgb, detector, padding, largest_face)
    ids = video.tracker.update(boxes, frame_no)
    video.detections += 1
    for tid in ids:
        video.seen_in[tid] = video.seen_in.get(tid, 0) + 1
    return boxes, ids


def _classify_frame(video: _Video, predictor: FacePredictor, rgb: np.ndarray, boxes, ids, frame_no: int,
                    results: Results, min_confidence: Optional[float]) -> List[dict]:
    """Classifies the frame's faces, smooths each over its track and files the rows: reported once their track is
    confirmed (with its earlier rows), else held back. Returns the rows of confirmed tracks (to draw)."""
    if not boxes:
        return []
    out = predictor.predict(face_inputs(predictor, rgb, boxes))
    rows = []
    for i, (b, tid) in enumerate(zip(boxes, ids)):
        label, probs, va = video.tracker.smooth(tid, out["expression"][i], out["valence_arousal"][i])
        row = _row(video.source, frame_no, i, b, predictor.class_names, probs, va, label, tid)
        if min_confidence is not None and row["confidence"] < min_confidence:
            results.low_confidence += 1
        elif video.tracker.confirmed(tid):
            results.rows.extend(video.pending.pop(tid, ()))
            results.rows.append(row)
            rows.append(row)
        else:
            video.pending.setdefault(tid, []).append(row)
    return rows


def _write_frame(video: _Video, drawn: np.ndarray, out_dir: str, results: Results, say) -> bool:
    """Appends a frame to `annotated/<stem>.mp4` (opened on the first frame); False when it cannot be written
    (listed in `results.errors`: the annotated video would otherwise just be missing)."""
    if video.writer is None:
        os.makedirs(os.path.join(out_dir, "annotated"), exist_ok=True)
        stem = "webcam" if video.webcam else os.path.splitext(os.path.basename(video.source))[0]
        path = os.path.join(out_dir, "annotated", f"{stem}.mp4")
        video.writer_size = (drawn.shape[1], drawn.shape[0])
        video.writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), video.fps, video.writer_size)
        if not video.writer.isOpened():  # OpenCV says nothing
            results.errors.append((video.source, f"cannot write the annotated video {path}"))
            say(f"warning: {path}: cannot write the annotated video (listed in errors.csv)")
            return False
    if not video.writer.isOpened():
        return False
    if drawn.shape[:2] != (video.writer_size[1], video.writer_size[0]):  # the stream changed size: keep the frame
        drawn = cv2.resize(drawn, video.writer_size, interpolation=cv2.INTER_AREA)
    video.writer.write(drawn)
    return True


def _show_frame(drawn: np.ndarray) -> Tuple[bool, bool]:
    """Shows a frame in a window: (keep showing, the user pressed q)."""
    try:
        cv2.imshow("fer_keras", drawn)
        return True, cv2.waitKey(1) & 0xFF == ord("q")
    except cv2.error:  # opencv-python-headless has no GUI: keep writing the video instead
        print("note: this OpenCV build cannot open windows; use --annotate to write the video", file=sys.stderr)
        return False, False


def _finish_video(video: _Video, frame_no: int, max_frames: Optional[int], confirm: int, results: Results,
                  say) -> None:
    """After the last frame: the confirmation's leftovers counted, the rows in frame order, and an empty, truncated
    or faceless video listed in `results.errors`."""
    pending, detections, start = video.pending, video.detections, video.start
    if detections < confirm:  # a clip too short for `confirm` detections: a face found by every one of them counts
        for tid in [t for t in pending if video.seen_in.get(t) == detections]:
            results.rows.extend(pending.pop(tid))
    results.unconfirmed_tracks += len(pending)
    results.unconfirmed_rows += sum(len(rows) for rows in pending.values())
    results.rows[start:] = sorted(results.rows[start:], key=lambda r: (r["frame"], r["face"]))
    no_face = frame_no - len({r["frame"] for r in results.rows[start:]})
    source, declared = video.source, video.declared
    if frame_no == 0:
        what = "no frame could be read from the webcam" if video.webcam else \
            "no frame could be decoded (empty, truncated or unsupported video)"
        results.errors.append((source, what))
        say(f"warning: {source}: {what} (listed in errors.csv)")
        return
    if declared and frame_no < declared and (max_frames is None or frame_no < max_frames):
        what = f"truncated: decoded {frame_no} of the {declared} frames its header declares"
        results.errors.append((source, what))
        say(f"warning: {source}: {what} (the decoded frames are in predictions.csv)")
    if no_face:
        results.errors.append((source, f"no face found in {no_face} of {frame_no} frames"))


def can_show() -> bool:
    """Whether `--show` can open a window: a display exists and OpenCV was built with a GUI backend (the pinned
    opencv-python-headless has none)."""
    import re

    gui = re.search(r"GUI:\s*(\S+)", cv2.getBuildInformation())
    return bool(os.environ.get("DISPLAY")) and not (gui and gui.group(1).upper() == "NONE")


# Numeric options of predict (CLI flags and `fer_keras.Analyzer` keywords): (valid?, what a valid value is).
OPTION_RANGES = {
    "padding": (lambda v: 0.0 <= v <= 2.0, "a fraction in [0, 2]"),
    "batch_size": (lambda v: v >= 1, "a whole number, at least 1"),
    "window": (lambda v: v >= 1, "a whole number of frames, at least 1"),
    "detect_every": (lambda v: v >= 1, "a whole number of frames, at least 1"),
    "hysteresis": (lambda v: 0.0 <= v < 1.0, "in [0, 1)"),
    "min_face": (lambda v: v >= 1, "a whole number of px, at least 1"),
    "max_frames": (lambda v: v >= 1, "a whole number of frames, at least 1"),
    "min_score": (lambda v: 0.0 <= v < 1.0, "a score in [0, 1)"),
    "min_confidence": (lambda v: 0.0 <= v <= 1.0, "a probability in [0, 1]"),
    "confirm": (lambda v: v >= 1, "a whole number of detections, at least 1"),
}
# options that count things: a float (2.5 frames) is as wrong as a negative number
INTEGER_OPTIONS = ("batch_size", "window", "detect_every", "min_face", "max_frames", "confirm")


def check_options(flags: bool = True, **values) -> None:
    """Raises a one-line ConfigError for an out-of-range option (None = unset); `flags` names them `--min-score`
    as the CLI does, else `min_score` as the Python API does."""
    for key, value in values.items():
        ok, what = OPTION_RANGES[key]
        if value is None:
            continue
        name = "--" + key.replace("_", "-") if flags else key
        kinds = (int, np.integer) if key in INTEGER_OPTIONS else (int, float, np.integer, np.floating)
        if isinstance(value, bool) or not isinstance(value, kinds) or value != value or not ok(value):
            raise ConfigError(f"{name} {value!r}: out of range (expected {what})")


if __name__ == "__main__":  # `python -m fer_keras.predict` runs the CLI, cli_predict.py (no import back to it)
    import runpy

    runpy.run_module("fer_keras.cli_predict", run_name="__main__")
