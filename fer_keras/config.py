"""Configuration: small dataclasses, YAML files in `configs/`, `--set key=value` overrides.

Defaults live in the dataclasses; YAML files hold only differences; unknown keys are errors. The resolved config is
written to every run directory as `config.yaml` and is what evaluate/visualize/export read back.

Example:
    >>> cfg = load_config("configs/fer2013.yaml", ["train.epochs=5", "model.name=ResNet50"])
    >>> cfg.train.epochs
    5
"""

from __future__ import annotations

import dataclasses
import os
import re
import typing
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import yaml

from fer_keras.errors import ConfigError
from fer_keras.io_utils import atomic_write_text
from fer_keras.labels import check_preset
from fer_keras.architectures import ARCHITECTURES
from fer_keras.data.formats import READERS
from fer_keras.limits import MAX_IMAGE_PIXELS
from fer_keras.tasks import TASKS
from fer_keras.tta import TTA

CONFIG_VERSION = 1


@dataclass
class AugmentConfig:
    """Training-time augmentation, applied per batch inside `tf.data` (never at evaluation)."""

    flip: bool = True
    rotation: float = 10.0  # max degrees
    zoom: float = 0.1  # max relative zoom in/out
    translate: float = 0.1  # max shift, fraction of the image size
    brightness: float = 0.2  # max delta, fraction of 255
    contrast: float = 0.2  # max relative change
    blur_prob: float = 0.0  # probability of a 3x3 Gaussian blur
    equalize_prob: float = 0.0  # probability of global histogram equalization
    clahe_prob: float = 0.0  # probability of CLAHE (OpenCV through numpy_function: slower)
    low_light_prob: float = 0.0  # probability of gamma darkening
    low_light_gamma: float = 2.5  # max gamma for darkening (1 = unchanged)
    erasing_prob: float = 0.0  # probability of random erasing (cutout) of one rectangle
    # Toward other cameras and framings (posed lab portraits, film stills): faces seen in gray, at low resolution
    # or through JPEG compression. Each is applied to a random share of the batch.
    gray_prob: float = 0.0  # probability of converting to gray (ITU-R 601 luma, kept in every channel)
    low_res_prob: float = 0.0  # probability of an area downscale to low_res_min..the image side, then back up
    low_res_min: int = 24  # smallest side of that downscale, pixels
    jpeg_prob: float = 0.0  # probability of JPEG compression at a random quality in jpeg_quality_min..95
    jpeg_quality_min: int = 30


@dataclass
class SourceConfig:
    """One dataset of a multi-source run (`data.sources`): read by the usual readers, mixed in one stream.

    Everything not named here (image size, channels, label preset, validation, caching) comes from `data`.
    """

    name: str = ""  # short name used in per-source metrics (default: the folder name)
    path: str = ""
    format: str = "auto"
    weight: float = 1.0  # sampling weight in the training mix (normalised over the sources)
    # train: split into train/val/test as below; val: every sample is validation, none is trained on (a set to
    # choose checkpoints, weights and calibration on, e.g. posed lab faces that must never be trained on).
    use: str = "train"
    # in: the kind of faces the model trains on; out: another distribution (posed lab portraits, film stills). The
    # checkpoint monitor weighs the two groups with train.out_of_domain_weight and reports both.
    domain: str = "in"
    val_fraction: float = 0.1  # used only when the dataset has no val split of its own (or heldout_as_test)
    test_fraction: float = 0.0  # likewise for test
    split_seed: int = 1234
    # A regex whose first group, searched in each file name, names the sample's group (e.g. the film of a still):
    # the val/test split then takes whole groups, so near-identical frames never straddle train and val.
    split_group_pattern: Optional[str] = None
    heldout_as_test: bool = False  # the dataset's own val split becomes the test split; val is cut from train
    heldout_test_fraction: float = 0.0  # or: this fraction of the dataset's own val split becomes the test split


@dataclass
class DataConfig:
    """Where the data is and how it is read, split, balanced and fed."""

    path: Optional[str] = None  # None: the built-in synthetic demo dataset
    format: str = "auto"  # auto, or a name in data.formats.READERS (train_model.py --help lists them)
    labels: str = "7"  # label preset: 8 | 7 | 5 | 4 | 2
    class_names: Optional[List[str]] = None  # order of integer labels in csv/npy data (default: canonical order)
    image_size: int = 48
    channels: int = 3  # 1 (grayscale) or 3; images are converted on load
    val_path: Optional[str] = None  # explicit validation data (same format)
    test_path: Optional[str] = None
    val_fraction: float = 0.1  # used only when the dataset has no split of its own
    test_fraction: float = 0.1
    split_seed: int = 1234
    split_group_pattern: Optional[str] = None  # as in data.sources[]: split whole groups of files
    balance: str = "none"  # none | class_weights | oversample | undersample
    max_per_class: Optional[int] = None  # undersample: at most this many samples of a class per epoch (re-drawn)
    class_weight_smoothing: float = 0.0  # 0 = inverse frequency; 1 = uniform
    batch_size: int = 32
    cache: str = "auto"  # auto | memory | none: auto caches decoded images that fit cache_budget_mb
    cache_budget_mb: int = 2048
    pipeline_cpus: Optional[int] = None  # tf.data autotune CPU budget for training input (None: all cores)
    shuffle_buffer: int = 10000  # streamed data only (also capped by cache_budget_mb); in-memory splits: full shuffle
    validate_images: str = "auto"  # auto | full | header | none
    min_image_side: int = 8  # smaller images are bad input (placeholders, not faces)
    max_image_pixels: int = MAX_IMAGE_PIXELS  # larger images are bad input (decompression-bomb guard)
    skip_bad: bool = False  # skip bad samples (and list them) instead of failing
    allow_outside_root: bool = False  # allow annotation paths that escape the data root
    # CSV column names (generic CSV reader)
    csv_path_col: str = "path"
    csv_expression_col: str = "expression"
    csv_valence_col: str = "valence"
    csv_arousal_col: str = "arousal"
    csv_split_col: str = "split"
    image_root: Optional[str] = None  # where CSV/npy paths are relative to (default: the annotation's folder)
    ferplus_unknown: str = "drop"  # FER+ rows without an emotion majority: drop | keep (labelled by top emotion vote)
    ferplus_labels: str = "majority"  # FER+ hard labels: majority (Microsoft's rule) | fer2013 (the original label)
    fold: int = 1  # DFEW: which of the 5 folds
    frames_per_clip: int = 1  # clip data + frame models: random frames sampled per clip per epoch
    demo_per_class: int = 160  # demo dataset size per class
    demo_size: int = 64
    # Several datasets in one run (each a SourceConfig mapping); when set, `path`/`format` must stay unset.
    sources: List[SourceConfig] = field(default_factory=list)


@dataclass
class ModelConfig:
    """Which model and how its shared backbone and two heads are built."""

    name: str = "CustomCNN"
    weights: Optional[str] = "none"  # imagenet | none | path to .h5/.weights.h5 (keras.applications backbones)
    dropout: float = 0.3
    head_units: int = 256  # hidden units of each head (0 = linear heads on the pooled features)
    freeze_backbone: bool = False
    fine_tune_last: int = 0  # with freeze_backbone: unfreeze the last N backbone layers
    # CustomCNN
    widths: List[int] = field(default_factory=lambda: [32, 64, 128, 256])
    blocks: List[int] = field(default_factory=lambda: [1, 1, 2, 1])
    attention: str = "cbam"  # cbam | se | none
    dilations: List[int] = field(default_factory=lambda: [1, 2])
    # Temporal models (clips)
    frames: int = 16
    freeze_batchnorm: bool = False  # BatchNorm layers keep their (e.g. init_from) statistics and scales: fine-tuning
    # on a differently distributed mix then does not re-estimate them from it
    init_from: Optional[str] = None  # a .keras model whose weights start this one (matched by layer name and shape;
    # the expression layer's rows are matched by class name, so a 7-class model can start an 8-class one)


@dataclass
class TrainConfig:
    """Optimisation, losses, callbacks and runtime choices."""

    epochs: int = 30
    optimizer: str = "adamw"  # sgd | adam | adamw
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9
    schedule: str = "cosine"  # cosine | plateau | step | constant
    warmup_epochs: int = 1
    step_every: int = 10  # step decay: epochs between decays
    step_factor: float = 0.1
    plateau_patience: int = 3
    plateau_factor: float = 0.5
    min_learning_rate: float = 1e-6
    label_smoothing: float = 0.0
    ema_momentum: float = 0.0  # > 0 (e.g. 0.999): validation and checkpoints use a moving average of the weights
    # With ema_momentum: the average's BatchNorm statistics are re-measured on this many training batches before each
    # validation (the moving statistics belong to the raw weights); 0 = off.
    bn_recalibration_batches: int = 0
    distill_from: Optional[str] = None  # teacher (.keras file or run): its probabilities join the expression target
    distill_weight: float = 0.5  # share of the teacher in the target: (1 - w) * (smoothed) label + w * teacher
    distill_tta: str = "crops"  # the teacher's views (none | flip | crops): a TTA teacher is a better teacher
    distill_sources: List[str] = field(default_factory=list)  # sources taught by the teacher (empty = all)
    # Models (run folders, .keras files or shipped names) whose mean valence/arousal becomes the VA target of every
    # training sample without one (e.g. FER+ and ExpW faces): more VA data than the labelled source alone, which a
    # VA head otherwise overfits. A teacher with another input size or channel count sees the run's images resized.
    va_teachers: List[str] = field(default_factory=list)
    va_teacher_tta: str = "flip"  # the VA teachers' views (none | flip | crops)
    soft_label_weight: float = 1.0  # data with soft labels (FER+ votes): target = (1 - w) * label + w * votes
    va_loss: str = "mse"  # mse | ccc | both
    expression_loss_weight: float = 1.0
    va_loss_weight: float = 1.0
    # Multi-source runs: val_score = (1 - w) * mean of the in-domain sources' scores + w * mean of the out-of-domain
    # ones (data.sources[].domain); val_score_in and val_score_out are logged beside it.
    out_of_domain_weight: float = 0.5
    monitor: str = "val_expression_uar"
    monitor_mode: str = "max"
    early_stopping_patience: int = 10  # stop when the monitor has not improved for this many epochs; 0 = off
    seed: int = 42
    deterministic: bool = False  # enable_op_determinism (GPU kernels), shards cached in file order; data seeded anyway
    precision: str = "auto"  # auto | float32 | mixed_bfloat16 | mixed_float16
    xla: str = "auto"  # auto | on | off: auto = on with a GPU, off on CPU (XLA is slower on CPU)
    strategy: str = "default"  # default | mirrored | multiworker
    worker_wait_seconds: float = 300.0  # multiworker: how long a worker waits for the others at start-up
    tensorboard: bool = True
    steps_per_epoch: Optional[int] = None  # None = one pass over the data
    time_limit_minutes: Optional[float] = None  # stop (after the current step, validating once more) past this
    runs_dir: str = "runs"
    name: Optional[str] = None  # run name; default <model>-<data>-<time>
    # The test accuracy [low, high] this recipe reached over seeds (measured, e.g. the demo's in README): evaluate
    # prints it beside the result, so a user sees at once whether their run landed where it should.
    expected_accuracy: List[float] = field(default_factory=list)
    verbose: int = -1  # Keras fit verbosity; -1 = auto: progress bar with ETA on a terminal, a line per epoch in a log


@dataclass
class DetectionConfig:
    """Face detection (`task: detection`): a RetinaNet on DARK FACE / WIDER FACE data (fer_keras/detection)."""

    architecture: str = "retinanet"  # fer_keras/architectures.py: retinanet (KerasHub, from scratch) | yunet
    yunet_init: Optional[str] = None  # yunet: weights to start from (.pth state dict or a run's .keras); None = shipped
    backbone: str = "resnet10"  # resnet10 | resnet18 (basic-block ResNets, built offline)
    head_convs: int = 2  # 3x3 convs per head before its prediction layer (the paper uses 4)
    image_width: int = 320  # network input (letterboxed); multiples of 32
    image_height: int = 256
    enhancement: str = "none"  # none | gamma | clahe: applied to every input image (train, eval, predict)
    augment: bool = True  # flip, scale jitter/crop, gamma darkening, sensor noise, blur (DetAugment)
    max_boxes: int = 64  # boxes kept per image (padded with -1)
    prior_probability: float = 0.01  # classification head initial foreground probability
    score_threshold: float = 0.05  # NMS decoder: low, so AP sees the whole PR curve; predict uses min_score
    iou_threshold: float = 0.5  # NMS overlap
    max_detections: int = 100
    min_score: float = 0.5  # detections reported by predict / drawn by visualize
    scenes: int = 240  # synthetic dark scenes when data.path is unset (train; a fifth of that for val)
    weights: Optional[str] = None  # local .weights.h5 of the same detector to start from
    # Anchors and pyramid (KerasHub's defaults: P3-P5, 4 * stride, 3 scales, ratios 0.5/1/2 = 32-406 px boxes).
    min_level: int = 3
    max_level: int = 5
    anchor_size: float = 4.0  # base anchor side as a multiple of the level's stride
    anchor_scales: int = 3  # anchor sizes per octave
    anchor_ratios: List[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])
    positive_iou: float = 0.5  # anchor/face IoU for a positive anchor
    negative_iou: float = 0.4  # below this an anchor is background (between the two: ignored)
    force_match: bool = False  # every face gets its best anchor even below positive_iou (tiny faces)
    # Training on real photos (a `boxes.csv` folder): random crops around a face rescaled to face_px.
    train_crop: int = 0  # crop side in pixels (multiple of 32); 0 = letterbox whole images to image_width/height
    face_px: List[float] = field(default_factory=lambda: [5.0, 100.0])  # log-uniform face size in the crops
    low_light_prob: float = 0.0  # share of crops through lowlight.degrade_low_light
    holdout_first: int = 0  # leave out the first N images (by name) of each boxes.csv folder: the benchmark's
    val_first: int = 0  # > 0: val = the next val_first images (by name) after holdout_first of each boxes.csv folder
    val_min_face: float = 0.0  # val faces under this many px are ignored in scoring (neither found nor missed)
    val_low_light: bool = False  # score validation images darkened (seeded per image) as well as normal
    test_scales: List[float] = field(default_factory=lambda: [1.0])  # predict: image pyramid, merged with NMS


@dataclass
class Config:
    """The whole configuration of a run."""

    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    detection: DetectionConfig = field(default_factory=DetectionConfig)
    task: str = "expression"  # expression | detection
    version: int = CONFIG_VERSION

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


_CHOICES = {
    "data.ferplus_unknown": ("drop", "keep"),
    "data.ferplus_labels": ("majority", "fer2013"),
    "data.balance": ("none", "class_weights", "oversample", "undersample"),
    "data.cache": ("auto", "memory", "none"),
    "data.validate_images": ("auto", "full", "header", "none"),
    "data.channels": (1, 3),
    "model.attention": ("cbam", "se", "none"),
    "train.optimizer": ("sgd", "adam", "adamw"),
    "train.schedule": ("cosine", "plateau", "step", "constant"),
    "train.va_loss": ("mse", "ccc", "both"),
    "data.sources[].use": ("train", "val"),
    "data.sources[].domain": ("in", "out"),
    "train.monitor_mode": ("max", "min"),
    "train.precision": ("auto", "float32", "mixed_bfloat16", "mixed_float16"),
    "train.xla": ("auto", "on", "off"),
    "train.strategy": ("default", "mirrored", "multiworker"),
    "detection.enhancement": ("none", "gamma", "clahe"),
}




# Keys whose valid values are a registry's names, read when a value is checked. RetinaNet's backbones are checked by
# the detection wing where it builds one: this engine module imports nothing from a wing.
def _data_formats() -> tuple:
    """`auto` and the names in the reader registry."""
    return ("auto", *READERS.names())


def _tasks() -> tuple:
    return tuple(TASKS.names())


def _architectures() -> tuple:
    return tuple(ARCHITECTURES.names())


def _tta_views() -> tuple:
    return tuple(TTA)


_REGISTRY_CHOICES = {"data.format": _data_formats, "task": _tasks, "detection.architecture": _architectures,
                     "train.distill_tta": _tta_views, "train.va_teacher_tta": _tta_views}


def choices(key: str) -> Optional[tuple]:
    """The valid values of config key `key`, or None when any value of its type is valid."""
    return _REGISTRY_CHOICES[key]() if key in _REGISTRY_CHOICES else _CHOICES.get(key)


# Numeric keys with a valid range: (low, high, what the error says). NaN fails every range.
_INF = float("inf")
_RANGES = {
    "data.image_size": (8, 4096, "an image side in pixels, 8-4096"),
    "data.batch_size": (1, 1 << 16, "a positive number of samples"),
    "data.val_fraction": (0.0, 0.999999, "a fraction in [0, 1)"),
    "data.test_fraction": (0.0, 0.999999, "a fraction in [0, 1)"),
    "data.max_per_class": (1, _INF, "a positive number of samples"),
    "data.class_weight_smoothing": (0.0, 1.0, "in [0, 1]"),
    "train.soft_label_weight": (0.0, 1.0, "in [0, 1]"),
    "data.cache_budget_mb": (0, _INF, "megabytes, 0 or more"),
    "data.shuffle_buffer": (1, _INF, "a positive number of samples"),
    "data.min_image_side": (1, _INF, "pixels, at least 1"),
    "data.max_image_pixels": (1, _INF, "a positive number of pixels"),
    "data.fold": (1, 5, "a DFEW fold, 1-5"),
    "data.frames_per_clip": (1, _INF, "a positive number of frames"),
    "data.demo_per_class": (1, _INF, "a positive number of samples"),
    "data.demo_size": (8, 4096, "an image side in pixels, 8-4096"),
    "augment.low_res_min": (4, 4096, "pixels, 4 or more"),
    "augment.jpeg_quality_min": (1, 95, "a JPEG quality, 1-95"),
    "model.dropout": (0.0, 0.999999, "a fraction in [0, 1)"),
    "model.head_units": (0, _INF, "0 or more units"),
    "model.fine_tune_last": (0, _INF, "0 or more layers"),
    "model.frames": (1, _INF, "a positive number of frames"),
    "train.epochs": (1, _INF, "a positive number of epochs"),
    "train.learning_rate": (1e-12, 100.0, "a positive learning rate"),
    "train.weight_decay": (0.0, _INF, "0 or more"),
    "train.warmup_epochs": (0, _INF, "0 or more epochs"),
    "train.step_every": (1, _INF, "a positive number of epochs"),
    "train.label_smoothing": (0.0, 0.999999, "a fraction in [0, 1)"),
    "train.ema_momentum": (0.0, 0.999999, "0 (off) or a momentum in (0, 1), e.g. 0.999"),
    "train.bn_recalibration_batches": (0, _INF, "0 (off) or a number of batches"),
    "train.distill_weight": (0.0, 1.0, "a fraction in [0, 1]"),
    "train.out_of_domain_weight": (0.0, 1.0, "a fraction in [0, 1]"),
    "train.expression_loss_weight": (0.0, _INF, "0 or more"),
    "train.va_loss_weight": (0.0, _INF, "0 or more"),
    "train.early_stopping_patience": (0, _INF, "0 (off) or more epochs"),
    "train.verbose": (-1, 2, "-1 (auto), 0, 1 or 2"),
    "train.steps_per_epoch": (1, _INF, "a positive number of steps"),
    "train.time_limit_minutes": (1e-9, _INF, "a positive number of minutes"),
    "train.worker_wait_seconds": (1.0, _INF, "at least 1 second"),
    "train.expected_accuracy": (0.0, 1.0, "accuracies in [0, 1]"),
    "augment.rotation": (0.0, 180.0, "degrees, 0-180"),
    "augment.zoom": (0.0, 0.99, "a fraction in [0, 1)"),
    "augment.translate": (0.0, 0.99, "a fraction in [0, 1)"),
    "augment.brightness": (0.0, 1.0, "a fraction in [0, 1]"),
    "augment.contrast": (0.0, 1.0, "a fraction in [0, 1]"),
    "augment.blur_prob": (0.0, 1.0, "a probability"),
    "augment.equalize_prob": (0.0, 1.0, "a probability"),
    "augment.clahe_prob": (0.0, 1.0, "a probability"),
    "augment.low_light_prob": (0.0, 1.0, "a probability"),
    "augment.erasing_prob": (0.0, 1.0, "a probability"),
    "augment.gray_prob": (0.0, 1.0, "a probability"),
    "augment.low_res_prob": (0.0, 1.0, "a probability"),
    "augment.jpeg_prob": (0.0, 1.0, "a probability"),
    "detection.max_boxes": (1, _INF, "a positive number of boxes"),
    "detection.min_level": (2, 5, "a pyramid level in 2-5"),
    "detection.max_level": (3, 7, "a pyramid level in 3-7"),
    "detection.anchor_size": (0.25, 16.0, "a multiple of the stride in [0.25, 16]"),
    "detection.anchor_scales": (1, 8, "1-8 anchor sizes per octave"),
    "detection.positive_iou": (0.0, 1.0, "an IoU in [0, 1]"),
    "detection.negative_iou": (0.0, 1.0, "an IoU in [0, 1]"),
    "detection.train_crop": (0, 4096, "0 or a crop side in pixels"),
    "detection.low_light_prob": (0.0, 1.0, "a probability in [0, 1]"),
    "detection.holdout_first": (0, _INF, "a number of images"),
    "detection.val_first": (0, _INF, "a number of images"),
    "detection.val_min_face": (0.0, _INF, "a face size in pixels"),
    "detection.min_score": (0.0, 1.0, "a score in [0, 1]"),
    "detection.score_threshold": (0.0, 1.0, "a score in [0, 1]"),
    "detection.iou_threshold": (0.0, 1.0, "an IoU in [0, 1]"),
}


def _check_range(key: str, value: Any) -> None:
    """Raises a ConfigError when a numeric key is outside its range (see `_RANGES`); None (unset) passes."""
    if key not in _RANGES or value is None:
        return
    lo, hi, what = _RANGES[key]
    for v in value if isinstance(value, list) else [value]:  # a list: each of its values
        if not lo <= v <= hi:  # also False for NaN
            raise ConfigError(f"config key {key}: {_short(value)} is out of range (expected {what})")
    if key == "train.expected_accuracy" and value and (len(value) != 2 or value[0] > value[1]):
        raise ConfigError(f"config key {key}: {_short(value)} is not a range [low, high]")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Converts a YAML/CLI value to the dataclass field type `tp`, or raises a ConfigError naming `key`."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union:  # Optional[X]
        if value is None or (isinstance(value, str) and value.lower() in ("null", "~")):
            return None
        inner = [a for a in args if a is not type(None)][0]
        return _coerce(value, inner, key)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if dataclasses.is_dataclass(value):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key}: expected a mapping of {tp.__name__} keys, got {_short(value)}")
        obj = tp()
        hints = typing.get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp)}
        for k, v in value.items():
            if k not in names:
                raise ConfigError(f"unknown config key {key}.{k}; valid keys here: "
                                  f"{', '.join(sorted(key + '.' + n for n in names))}")
            setattr(obj, k, _coerce(v, hints[k], f"{key}.{k}"))
        return obj
    if origin in (list, List):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {key}: expected a list, got {_short(value)}")
        return [_coerce(v, args[0], key) for v in value]
    try:
        if tp is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("true", "yes", "1", "on"):
                return True
            if str(value).lower() in ("false", "no", "0", "off"):
                return False
            raise ValueError
        if tp is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if tp is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if tp is str:
            if isinstance(value, (dict, list)):
                raise ValueError
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"config key {key}: cannot use {_short(value)} as {getattr(tp, '__name__', tp)}") from None
    return value


def set_key(cfg: Config, key: str, value: Any) -> None:
    """Sets one dotted key (e.g. `train.epochs`) with type coercion and validation; unknown keys raise."""
    parts = key.split(".")
    obj = cfg
    for i, part in enumerate(parts):
        names = {f.name: f for f in dataclasses.fields(obj)}
        if part not in names:
            prefix = ".".join(parts[:i])
            valid = ", ".join(sorted((prefix + "." if prefix else "") + n for n in names))
            raise ConfigError(f"unknown config key {_short(key)}; valid keys here: {valid}")
        if i == len(parts) - 1:
            hints = typing.get_type_hints(type(obj))
            if dataclasses.is_dataclass(hints[part]):
                raise ConfigError(f"config key {_short(key)} is a section; set one of its keys")
            coerced = _coerce(value, hints[part], key)
            valid = choices(key)
            if valid is not None and coerced not in valid:
                raise ConfigError(f"config key {key}: {_short(coerced)} is not one of {list(valid)}")
            _check_range(key, coerced)
            setattr(obj, part, coerced)
        else:
            obj = getattr(obj, part)
            if not dataclasses.is_dataclass(obj):
                raise ConfigError(f"config key {_short(key)}: {'.'.join(parts[:i + 1])} is not a section")


_SECTIONS = ("data", "augment", "model", "train", "detection")


def _flatten(d: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and key.count(".") == 0 and key in _SECTIONS:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def apply_dict(cfg: Config, d: Dict[str, Any], source: str = "config") -> Config:
    """Applies a nested dict (as read from YAML) to `cfg`; unknown keys raise a ConfigError naming `source`."""
    if not isinstance(d, dict):
        raise ConfigError(f"{source}: expected a mapping of sections, got {type(d).__name__}")
    for key, value in _flatten(d).items():
        try:
            set_key(cfg, key, value)
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None
    return cfg


def parse_overrides(overrides: Sequence[str]) -> Dict[str, Any]:
    """Parses `key=value` strings; values are YAML scalars (so `true`, `3`, `1e-3`, `[1,2]` work)."""
    out = {}
    for item in overrides or ():
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {_short(item)}")
        key, raw = item.split("=", 1)
        try:
            value = yaml.load(raw, Loader=_YAML_LOADER) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        out[key.strip()] = value
    return out


# libyaml's C loader when PyYAML was built with it: the pure-Python loader takes minutes on a 50 MB value.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
MAX_CONFIG_BYTES = 1 << 20  # a config is a few KB; a larger file is a mistake (and would stall the loader)


def _short(value, limit: int = 80) -> str:
    """`repr(value)`, cut to `limit` characters: an error line echoes what the user wrote, never 50 MB of it."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 20]}... ({len(text):,} characters)"


def _yaml_problem(e: yaml.YAMLError, text: str) -> str:
    """`line L, column C: what` from a PyYAML error on `text` (its first line alone often lacks the place)."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    what = getattr(e, "problem", None) or str(e).splitlines()[0]
    if mark is not None:
        lines = text.splitlines()
        line = lines[mark.line] if 0 <= mark.line < len(lines) else ""
        hint = " (a tab: YAML indents with spaces)" if line[mark.column:mark.column + 1] == "\t" else ""
        return f"line {mark.line + 1}, column {mark.column + 1}: {what}{hint}"
    return str(what)


def read_yaml(path: str) -> Dict[str, Any]:
    """Reads a YAML mapping; errors name the file, and the line and column where the YAML breaks."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    size = os.path.getsize(path)
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: {size:,} bytes is not a config file (the limit is {MAX_CONFIG_BYTES:,})")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    try:
        data = yaml.load(text, Loader=_YAML_LOADER)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({_yaml_problem(e, text)})") from None
    return data or {}


def load_config(path: Optional[str] = None, overrides: Sequence[str] = (), flags: Optional[Dict[str, Any]] = None
                ) -> Config:
    """Builds the resolved config: dataclass defaults ← YAML file ← `--set` overrides ← explicit CLI flags.

    Args:
        path: optional YAML file holding only the differences from the defaults.
        overrides: `key=value` strings (`--set`).
        flags: already-typed `{dotted.key: value}` from dedicated CLI flags; None values are ignored.

    Returns:
        The validated `Config`.
    """
    cfg = Config()
    if path:
        data = read_yaml(path)
        version = data.pop("version", CONFIG_VERSION) if isinstance(data, dict) else CONFIG_VERSION
        if version != CONFIG_VERSION:
            kind = f"the text {_short(version)}" if isinstance(version, str) else f"version {version}"
            raise ConfigError(f"{path}: config version is {kind}; this fer_keras reads version: {CONFIG_VERSION} "
                              "(a number)")
        apply_dict(cfg, data, source=path)
    for key, value in parse_overrides(overrides).items():
        set_key(cfg, key, value)
    for key, value in (flags or {}).items():
        if value is not None:
            set_key(cfg, key, value)

    cfg.data.labels = check_preset(cfg.data.labels)
    if cfg.data.val_fraction + cfg.data.test_fraction >= 1.0:
        raise ConfigError(f"data.val_fraction + data.test_fraction must be below 1 (nothing would be left to train "
                          f"on), got {cfg.data.val_fraction} + {cfg.data.test_fraction}")
    check_sources(cfg.data)
    if cfg.train.distill_from and cfg.data.balance in ("oversample", "undersample"):
        raise ConfigError(f"train.distill_from cannot be combined with data.balance={cfg.data.balance}; use "
                          "data.balance=class_weights")
    unknown = set(cfg.train.distill_sources) - {s.name for s in cfg.data.sources}
    if unknown:
        raise ConfigError(f"train.distill_sources: {sorted(unknown)[0]!r} is not a source of data.sources "
                          f"({', '.join(s.name for s in cfg.data.sources) or 'none'})")
    if cfg.data.balance == "undersample" and not (cfg.data.max_per_class or 0) >= 1:
        raise ConfigError("data.balance=undersample needs data.max_per_class (a positive number of samples per "
                          f"class and epoch), got {_short(cfg.data.max_per_class)}")
    return cfg


def _check_group_pattern(pattern: Optional[str], key: str) -> None:
    if pattern is None:
        return
    try:
        groups = re.compile(pattern).groups
    except (re.error, TypeError) as e:
        raise ConfigError(f"{key}: {_short(pattern)} is not a regular expression ({e})") from None
    if groups < 1:
        raise ConfigError(f"{key}: {_short(pattern)} has no group; its first (...) group names a file's group")


def check_sources(d: DataConfig) -> None:
    """Validates `data.sources` (a multi-source run): no `data.path` beside it, each source with a path, a known
    format, a positive weight and split fractions in [0, 1); source names unique (defaulting to the folder name)."""
    _check_group_pattern(d.split_group_pattern, "data.split_group_pattern")
    if not d.sources:
        return
    if all(s.use == "val" for s in d.sources):
        raise ConfigError("data.sources: every source has use: val; at least one must be trained on")
    if d.path is not None:
        raise ConfigError("data.path and data.sources are both set; use one (data.sources lists every dataset)")
    if d.balance in ("oversample", "undersample"):
        raise ConfigError(f"data.balance={d.balance} cannot be combined with data.sources (their weights set the "
                          "mix); use data.balance=class_weights")
    seen = set()
    for i, s in enumerate(d.sources):
        key = f"data.sources[{i}]"
        if not s.path:
            raise ConfigError(f"{key}: path is missing")
        if s.format not in choices("data.format"):
            raise ConfigError(f"{key}.format: {_short(s.format)} is not one of {list(choices('data.format'))}")
        if not s.weight > 0 or s.weight != s.weight or s.weight == float("inf"):
            raise ConfigError(f"{key}.weight: must be a positive number, got {_short(s.weight)}")
        for f in ("val_fraction", "test_fraction"):
            v = getattr(s, f)
            if not 0.0 <= v < 1.0:
                raise ConfigError(f"{key}.{f}: must be in [0, 1), got {_short(v)}")
        if not 0.0 <= s.heldout_test_fraction < 1.0:
            raise ConfigError(f"{key}.heldout_test_fraction: must be in [0, 1), got {_short(s.heldout_test_fraction)}")
        for f in ("use", "domain"):
            if getattr(s, f) not in _CHOICES[f"data.sources[].{f}"]:
                raise ConfigError(f"{key}.{f}: {_short(getattr(s, f))} is not one of "
                                  f"{list(_CHOICES[f'data.sources[].{f}'])}")
        _check_group_pattern(s.split_group_pattern, f"{key}.split_group_pattern")
        if s.heldout_as_test and s.heldout_test_fraction > 0:
            raise ConfigError(f"{key}: heldout_as_test and heldout_test_fraction exclude each other")
        if s.val_fraction + s.test_fraction >= 1.0:
            raise ConfigError(f"{key}: val_fraction + test_fraction must be below 1")
        s.name = s.name or os.path.basename(os.path.normpath(s.path)) or f"source{i}"
        if s.name in seen:
            raise ConfigError(f"{key}: source name {s.name!r} is used twice; give each source its own name")
        seen.add(s.name)


def config_from_dict(d: Dict[str, Any], source: str = "config") -> Config:
    """Rebuilds a Config from `to_dict()` output (e.g. a run's config.yaml)."""
    d = dict(d)
    version = d.pop("version", CONFIG_VERSION)
    if version != CONFIG_VERSION:
        raise ConfigError(f"{source}: config version {version} is not supported "
                          f"(this fer_keras reads {CONFIG_VERSION})")
    return apply_dict(Config(), d, source=source)


def save_config(cfg: Config, path: str) -> None:
    """Writes the resolved config as YAML (atomically)."""

    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
