"""The Python API: faces in images and videos, and the train → evaluate → report → export life of a run.

    >>> import fer_keras
    >>> faces = fer_keras.analyze("group.jpg")                  # every face: box, label, probabilities, VA
    >>> faces[0].label, faces[0].confidence, faces[0].valence
    >>> analyzer = fer_keras.Analyzer(model="default")          # loads the model and detector once
    >>> table = analyzer.analyze_video("clip.mp4")               # pandas DataFrame, one row per face per frame
    >>> run = fer_keras.train(model="CustomCNN", epochs=1)       # the built-in demo data
    >>> run.evaluate()["expression"]["accuracy"], run.report(), run.export("tflite")

The CLIs (`train_model.py`, `evaluate_model.py`, `visualize_results.py`, `python -m fer_keras.predict`,
`python -m fer_keras.export`) run the same code. Bad input (a missing file, an array of the wrong shape or dtype,
an unknown option or model name) raises `ValueError` (or `FileNotFoundError`) with a message naming it. Analyzing
with a model that has a TFLite export (the shipped ones do) imports no TensorFlow.
"""

from __future__ import annotations

import functools
import os
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from fer_keras.calibration import check_mode as check_calibration_mode
from fer_keras.config import load_config
from fer_keras.data.images import pil_orientation, upright_array
from fer_keras.detection.faces import make_detector, whole_image
from fer_keras.errors import ConfigError, DataError, choice_error, nearest_hint, quiet_tensorflow_import
from fer_keras.export import export_run
from fer_keras.model_info import load_keras_model, read_model_info
from fer_keras.predict import (CONFIRM, FacePredictor, Results, check_options, confident, image_faces,
                               image_problem, predict_video, read_rgb)
from fer_keras.pretrained import resolve_model
from fer_keras.run_dir import RunDir, run_task
from fer_keras.tasks import EvaluateOptions, task_of
from fer_keras.tta import TTA

__all__ = ["Face", "Analyzer", "analyze", "track_summary", "Run", "train", "load_run", "load_model"]


@dataclass
class Face:
    """One face found in an image (or a video frame).

    Attributes:
        box: (x, y, w, h) in pixels of the image, padded as the crop the model saw.
        label: the most probable class name.
        confidence: its probability.
        probabilities: class name → probability, in the model's class order.
        valence: in [-1, 1], or None when the model's valence/arousal head was not trained.
        arousal: likewise.
        track: the face's track id across video frames (None for a still image), as the video table's `track`.
        frame: the video frame number (None for a still image).
    """

    box: Tuple[int, int, int, int]
    label: str
    confidence: float
    probabilities: Dict[str, float]
    valence: Optional[float]
    arousal: Optional[float]
    track: Optional[int] = None
    frame: Optional[int] = None

    def to_dict(self) -> Dict[str, Any]:
        """The face as plain Python values (JSON-ready)."""
        d = asdict(self)
        d["box"] = list(self.box)
        return d


ImageLike = Union[str, os.PathLike, np.ndarray, Any]  # Any: a PIL.Image.Image


COLORS = ("rgb", "bgr")  # the channel orders an array image may come in (`color=`)


def _to_rgb(image: ImageLike, color: str = "rgb") -> np.ndarray:
    """An RGB uint8 (H, W, 3) array from a path, a PIL image or an array (HxWx3 uint8 in `color` order, or HxW
    gray)."""
    if color not in COLORS:
        raise choice_error("color", color, COLORS)  # the channel order of array images
    if isinstance(image, (str, os.PathLike)):
        path = os.fspath(image)
        if os.path.isdir(path):
            raise DataError(f"{path}: a folder; analyze takes one image (or a list of images)")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no such image file")
        problem = image_problem(path)
        rgb = None if problem else read_rgb(path, checked=True)
        if rgb is None:
            raise DataError(f"{path}: {problem or 'cannot be decoded as an image'}")
        return rgb
    if type(image).__module__.startswith("PIL.") and hasattr(image, "convert"):
        from PIL import Image

        orientation = pil_orientation(image)
        if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16/32-bit gray: scaled to 8 bits, not clipped white
            wide = np.asarray(image, dtype=np.float64)
            top = 65535.0 if image.mode.startswith("I;16") or wide.max() > 255 else 255.0
            image = Image.fromarray(np.clip(np.round(wide * (255.0 / top)), 0, 255).astype(np.uint8), "L")
        # turned upright by the same EXIF policy as a path (Image.open(path) keeps the stored orientation)
        return upright_array(np.asarray(image.convert("RGB")), orientation)
    if not isinstance(image, np.ndarray):
        raise ConfigError(f"image: expected a path, a PIL image or a NumPy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ConfigError(f"image array: dtype {image.dtype}, expected uint8 RGB (0-255)")
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] != 3 or min(image.shape[:2]) < 1:
        raise ConfigError(f"image array: shape {image.shape}, expected (height, width, 3) RGB or (height, width)")
    return np.ascontiguousarray(image[..., ::-1] if color == "bgr" else image)


class Analyzer:
    """Finds faces and reads their expression and valence/arousal; the model and detector are loaded once.

    Args:
        model: a shipped model's name (`default`, `fer2013`, `compact`; `fer_keras.pretrained.SHIPPED_MODELS`),
            a run folder, or a `.keras` / `.tflite` file.
        detector: a face detector name (`fer_keras.detection.faces.DETECTORS`: `auto`, `yunet`, ...), a
            detection run folder, or None when every image is already a face crop.
        tta: test-time augmentation views (`auto` = the model's own choice for images, `none`, `flip`, `crops`).
        calibration: `auto` = the model's stored output prior (chosen on val data, see its model card); `none` =
            the network's raw probabilities.
        largest_face: keep only the largest face of each image or frame.
        padding: box padding as a fraction of the face size.
        min_score: lowest detection score kept (default: the detector's own threshold).
        min_face: smallest face kept, in pixels of its shorter side, whatever the detector (None: every face found).
        min_confidence: drop faces whose top expression probability is below this (None: keep every face); video
            tables count the dropped rows in `df.attrs["low_confidence_rows"]`.
        batch_size: faces per model call.
        backend: `auto` (LiteRT when the model has a TFLite export, else Keras), `keras` or `litert`.
        labels: report in this label preset (`8`, `7`, `5`, `4`, `2`), probabilities mapped by class name.
        window: video: average each track over its last N frames.
        detect_every: video: detect every N frames, moving the boxes along their tracks in between.
        hysteresis: video: a track's label changes only when another class leads by this much.
        confirm: video: a track is reported once this many detections found it (unconfirmed tracks are dropped).

    Raises:
        ValueError: an unknown option, an out-of-range value or an unknown model or detector name.
    """

    def __init__(self, model: str = "default", *, detector: Optional[str] = "auto", tta: str = "auto",
                 calibration: str = "auto", largest_face: bool = False, padding: float = 0.15,
                 min_score: Optional[float] = None, min_face: Optional[int] = None,
                 min_confidence: Optional[float] = None, batch_size: int = 64, backend: str = "auto",
                 labels: Optional[str] = None, window: int = 5, detect_every: int = 5, hysteresis: float = 0.1,
                 confirm: int = CONFIRM, **unknown):
        if unknown:
            import inspect

            valid = [k for k, p in inspect.signature(Analyzer).parameters.items()
                     if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
            name = sorted(unknown)[0]
            raise ConfigError(f"unknown option {name!r}{nearest_hint(name, valid)}; valid: {', '.join(valid)}")
        check_options(False, padding=padding, batch_size=batch_size, window=window, detect_every=detect_every,
                      hysteresis=hysteresis, min_face=min_face, min_score=min_score, confirm=confirm,
                      min_confidence=min_confidence)
        if not isinstance(largest_face, (bool, np.bool_)):  # "no" would be truthy: keep one face by accident
            raise ConfigError(f"largest_face {largest_face!r}: expected True or False")
        if tta not in ("auto", *TTA):
            raise choice_error("tta", tta, ["auto", *TTA])
        check_calibration_mode(calibration)
        self.predictor = FacePredictor(resolve_model(model), batch_size, tta=tta, labels=labels, backend=backend,
                                       calibration=calibration)
        self.detector = whole_image if detector is None else make_detector(detector, min_face, min_score)
        self.tta, self.largest_face, self.padding, self.min_confidence = tta, largest_face, padding, min_confidence
        self.window, self.detect_every, self.hysteresis, self.confirm = window, detect_every, hysteresis, confirm

    @property
    def class_names(self) -> List[str]:
        """The classes the probabilities are over, in order."""
        return list(self.predictor.class_names)

    def analyze(self, image: Union[ImageLike, Sequence[ImageLike]], color: str = "rgb"):
        """The faces in an image (arrays are RGB unless `color="bgr"`: pass `cv2.imread` frames with it), largest
        first when `largest_face`, else in the detector's order; a list of images gives one list per image.

        Args:
            image: a file path, a PIL image, or an (H, W, 3) uint8 array (an (H, W) gray array also works); or a
                list of them.
            color: the channel order of array images: `rgb` (default; PIL, imageio, matplotlib) or `bgr` (OpenCV).
                Paths and PIL images are decoded here and need no flag.

        Returns:
            One `Face` per face found (an empty list when there is none); for a list of images, a list of those.
        """
        if isinstance(image, (list, tuple)):
            return [self.analyze(one, color) for one in image]
        rgb = _to_rgb(image, color)
        boxes, inputs = image_faces(self.predictor, rgb, self.detector, self.padding, largest=self.largest_face)
        out = self.predictor.predict(inputs)
        return [_face(b, self.predictor.class_names, p, va)
                for b, p, va in zip(boxes, out["expression"], out["valence_arousal"])
                if confident(p, self.min_confidence)]

    def table(self, images: Sequence[ImageLike], color: str = "rgb"):
        """A flat pandas DataFrame of the faces in several images: one row per face with predict's
        predictions.csv columns (source, face, x, y, w, h, label, confidence, p_<class>..., valence, arousal), the
        `source` being the path, or the image's index in `images` for arrays and PIL images."""
        import pandas as pd

        if not isinstance(images, (list, tuple)):  # one image
            images = [images]
        rows = []
        for i, (img, faces) in enumerate(zip(images, self.analyze(list(images), color))):
            source = os.fspath(img) if isinstance(img, (str, os.PathLike)) else i
            for k, f in enumerate(faces):
                rows.append({"source": source, "face": k, "x": f.box[0], "y": f.box[1], "w": f.box[2],
                             "h": f.box[3], "label": f.label, "confidence": f.confidence,
                             **{f"p_{n}": p for n, p in f.probabilities.items()}, "valence": f.valence,
                             "arousal": f.arousal})
        columns = ["source", "face", "x", "y", "w", "h", "label", "confidence",
                   *[f"p_{n}" for n in self.predictor.class_names], "valence", "arousal"]
        return pd.DataFrame(rows, columns=columns)

    def analyze_video(self, source: Union[str, os.PathLike, int], max_frames: Optional[int] = None):
        """Every face of every frame of a video file or webcam, tracked across frames.

        Args:
            source: a video file, or a webcam index (0).
            max_frames: stop after this many frames.

        Returns:
            A pandas DataFrame with the columns of predict's predictions.csv (source, frame, face, track, x, y, w,
            h, label, confidence, p_<class>..., valence, arousal) and `time` (seconds from the start, frame / fps):
            one row per face per frame. `df.attrs` holds `fps` and `unconfirmed_tracks` / `unconfirmed_rows` (the
            tracks, and their rows, dropped as unconfirmed). `track_summary(df)` gives one row per track.
        """
        import pandas as pd

        check_options(False, max_frames=max_frames)
        src = str(source) if isinstance(source, int) else os.fspath(source)
        if not (isinstance(source, int) or os.path.isfile(src)):
            raise FileNotFoundError(f"{src}: no such video file")
        results = Results()
        predictor = self.predictor.with_tta("none") if self.tta == "auto" else self.predictor
        predict_video(predictor, src, self.detector, self.padding, self.window, results, max_frames=max_frames,
                      detect_every=self.detect_every, largest_face=self.largest_face, margin=self.hysteresis,
                      progress=False, confirm=self.confirm, warn=False, min_confidence=self.min_confidence)
        unreadable = [e for s, e in results.errors if not e.startswith("no face found")]
        if not results.rows and unreadable:
            raise DataError(f"{src}: {unreadable[0]}")
        columns = ["source", "frame", "face", "track", "x", "y", "w", "h", "label", "confidence",
                   *[f"p_{n}" for n in self.predictor.class_names], "valence", "arousal"]
        df = pd.DataFrame(results.rows, columns=columns)
        fps = results.fps.get(src, 25.0)
        df["time"] = df["frame"].astype(float) / fps
        df.attrs["fps"] = fps
        # What the confirmation dropped (tracks found by fewer than `confirm` detections), as the CLI's summary says.
        df.attrs.update(unconfirmed_tracks=results.unconfirmed_tracks, unconfirmed_rows=results.unconfirmed_rows,
                        low_confidence_rows=results.low_confidence)
        return df


def track_summary(table):
    """One row per face track of `Analyzer.analyze_video`'s table: track, first and last frame, start and end
    time (s), frames seen, the most frequent label and its share of the track's frames, mean confidence, mean
    valence and arousal."""
    import pandas as pd

    rows = []
    for track, g in table.groupby("track", sort=True):
        labels = g["label"].value_counts()
        rows.append({"track": int(track), "first_frame": int(g["frame"].min()), "last_frame": int(g["frame"].max()),
                     "start_time": float(g["time"].min()) if "time" in g else None,
                     "end_time": float(g["time"].max()) if "time" in g else None,
                     "frames": int(len(g)), "label": str(labels.index[0]),
                     "label_share": float(labels.iloc[0] / len(g)), "confidence": float(g["confidence"].mean()),
                     "valence": float(g["valence"].mean()) if g["valence"].notna().any() else None,
                     "arousal": float(g["arousal"].mean()) if g["arousal"].notna().any() else None})
    return pd.DataFrame(rows, columns=["track", "first_frame", "last_frame", "start_time", "end_time", "frames",
                                       "label", "label_share", "confidence", "valence", "arousal"])


def _face(box, names, probs, va) -> Face:
    k = int(np.argmax(probs))
    return Face(box=tuple(int(v) for v in box), label=names[k], confidence=float(probs[k]),
                probabilities={n: float(p) for n, p in zip(names, probs)},
                valence=float(va[0]) if np.isfinite(va[0]) else None,
                arousal=float(va[1]) if np.isfinite(va[1]) else None)


@functools.lru_cache(maxsize=2)
def _cached_analyzer(options: Tuple[Tuple[str, Any], ...]) -> Analyzer:
    return Analyzer(**dict(options))


def analyze(image: Union[ImageLike, Sequence[ImageLike]], color: str = "rgb", **options):
    """The faces in an image (arrays are RGB unless `color="bgr"`, e.g. `cv2.imread` frames):
    `Analyzer(**options).analyze(image, color)`, with the last two Analyzers kept loaded.

    Args:
        image: a file path, a PIL image, or an (H, W, 3) uint8 array; or a list of them (one list of faces each).
        color: the channel order of array images: `rgb` (default) or `bgr` (OpenCV).
        **options: `Analyzer`'s options (model, detector, tta, largest_face, padding, ...).
    """
    try:
        key = tuple(sorted(options.items()))
        hash(key)
    except TypeError:  # an unhashable option value: no cache
        return Analyzer(**options).analyze(image, color)
    return _cached_analyzer(key).analyze(image, color)


class Run:
    """A run folder (the contract between train → evaluate → visualize → export), opened for Python use.

    Attributes:
        path: the run folder.
    """

    def __init__(self, path: Union[str, os.PathLike]):
        self.path = os.fspath(path)
        if not os.path.isdir(self.path):
            raise FileNotFoundError(f"{self.path}: no such run folder")
        self._dir = RunDir(self.path)
        if not self._dir.is_run():
            raise ConfigError(f"{self.path}: not a run folder (no config.yaml)")

    def __repr__(self) -> str:
        return f"Run({self.path!r}, status={self.status!r})"

    @property
    def status(self) -> Optional[str]:
        """`running`, `stopped` (time limit; resumable), `finished`, or None for an old run."""
        return self._dir.status()

    @property
    def config(self):
        """The run's resolved `fer_keras.config.Config`."""
        return self._dir.config()

    @property
    def history(self):
        """history.csv as a pandas DataFrame (one row per epoch)."""
        import pandas as pd

        return pd.read_csv(self._dir.history_path)

    def evaluate(self, data: Optional[str] = None, split: str = "test", labels: Optional[str] = None,
                 bootstrap: int = 0, tta: str = "auto", batch_size: int = 64, calibration: str = "auto",
                 classes: str = "model") -> Dict[str, Any]:
        """Scores the run's model (as `evaluate_model.py --run`) and returns what its metrics.json holds.

        Args:
            data: other data to score on (default: the run's own data and split).
            split: `test`, `val`, `train` or `all`.
            labels: score in this label preset (classes mapped by name).
            bootstrap: bootstrap resamples for confidence intervals (0 = none).
            tta: test-time augmentation views (`auto` = the model's own).
            batch_size: samples per model call.
            calibration: `auto` = the model's stored output prior, `none` = raw probabilities.
            classes: the headline accuracy when the data lacks some of the model's classes: `model` = argmax over
                all the model's classes, `data` = argmax restricted to the classes the data has (both are stored).
        """
        quiet_tensorflow_import()
        opts = EvaluateOptions(data=data, split=split, labels=labels, bootstrap=bootstrap, tta=tta,
                               batch_size=batch_size, calibration=calibration, classes=classes)
        return run_task(self.path).fn("evaluate")(self._dir, opts)[1]

    def report(self) -> str:
        """Writes the run's plots and self-contained report.html (as `visualize_results.py`); returns its path."""
        from fer_keras.report import write_report  # seaborn and SciPy (plots): loaded once a report is made

        quiet_tensorflow_import()
        return write_report(self.path)[0]

    def export(self, format: Union[str, Sequence[str]] = "all") -> Dict[str, str]:
        """Exports the model into the run's export/ folder (as `python -m fer_keras.export`).

        Args:
            format: `all`, or one or more of the run's task's formats (e.g. `savedmodel`, `keras`, `tflite`).

        Returns:
            {format: path written}.
        """
        quiet_tensorflow_import()
        formats = None if format == "all" else [format] if isinstance(format, str) else list(format)
        return export_run(self.path, formats)


def load_run(path: Union[str, os.PathLike]) -> Run:
    """Opens an existing run folder."""
    return Run(path)


def train(config: Optional[str] = None, *, model: Optional[str] = None, data: Optional[str] = None,
          epochs: Optional[int] = None, name: Optional[str] = None, runs_dir: Optional[str] = None,
          overrides: Optional[Dict[str, Any]] = None) -> Run:
    """Trains a model (as `train_model.py`) and returns its run.

    Settings merge in this order, each over the one before: the dataclass defaults, the `config` file, `overrides`,
    the named parameters that are given (not None). A key set both in `overrides` and by a named parameter is
    refused, so no setting is silently dropped. Paths may be `str` or `os.PathLike` (`pathlib.Path`).

    Args:
        config: a YAML config file (e.g. `configs/default.yaml`); None = the defaults.
        model: the architecture (`fer_keras.models.MODELS`: `CustomCNN`, `VGG16`, ...) = `model.name`.
        data: the dataset folder or file = `data.path` (None = the config's; the built-in demo data by default).
        epochs: number of epochs = `train.epochs`.
        name: the run's name under `runs_dir` = `train.name` (an unfinished run of that name resumes).
        runs_dir: where runs are written = `train.runs_dir` (None = the config's; `runs` by default).
        overrides: dotted config keys and values, as `--set` takes them, e.g. `{"train.learning_rate": 1e-3}`
            (a text value is read as `--set` reads it: `"[8, 16]"` is a list).

    Returns:
        The finished (or, after `train.time_limit_minutes`, stopped and resumable) `Run`.

    Raises:
        ValueError: an unknown config key or a bad value, a key given twice, or unusable data (the message names it).
    """
    if overrides is not None and not isinstance(overrides, dict):
        raise ConfigError(f"overrides: expected a dict of dotted keys, got {type(overrides).__name__}")
    overrides = {k: (os.fspath(v) if isinstance(v, os.PathLike) else v) for k, v in (overrides or {}).items()}
    named = {"model.name": model, "data.path": data, "train.epochs": epochs, "train.name": name,
             "train.runs_dir": runs_dir}
    named = {k: (os.fspath(v) if isinstance(v, os.PathLike) else v) for k, v in named.items() if v is not None}
    twice = sorted(set(named) & set(overrides))
    if twice:
        raise ConfigError(f"{twice[0]} is given twice (as a named parameter and in overrides); give it once")
    # Text values are read as `--set key=value` reads them (YAML: "[8, 16]" is a list); others are used as given.
    texts = [f"{k}={v}" for k, v in overrides.items() if isinstance(v, str)]
    flags = {**{k: v for k, v in overrides.items() if not isinstance(v, str)}, **named}
    cfg = load_config(config, texts, flags)
    if cfg.train.strategy == "multiworker":
        raise ConfigError("train.strategy=multiworker: start each worker with train_model.py (see docs/training.md)")
    quiet_tensorflow_import()
    return Run(task_of(cfg).fn("train")(cfg))


def load_model(name_or_path: str = "default"):
    """The Keras model of a shipped model's name, a run folder or a `.keras` file (imports TensorFlow)."""
    quiet_tensorflow_import()
    return load_keras_model(read_model_info(resolve_model(name_or_path)).model_file)
