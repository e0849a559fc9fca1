"""The trainable face-detector architectures of detection runs (`detection.architecture`) and what each supplies:
the one place that chooses between them (as `fer_keras/tasks.py` does between tasks).

Each architecture is one module of the detection wing, `fer_keras/detection/<name>_run.py`, and every role below is a
"module:function" string into it, imported on first use: reading this table (config checks, `--help`) imports
neither Keras nor any architecture's code, and this engine module imports nothing from the wing.

    fit(cfg, run, data, resuming, t_start)        trains a run (train_model.py --task detection)
    detector(run, min_score)                       the finished run as a face detector (predict --detector RUN)
    evaluate(run, cfg, table)                      (detections, ground truth, letterbox scales) of a table
    export(run, formats)                           {format: path} into the run's export/
    export_formats                                 what `--format all` writes
    monitor                                        its checkpoint score when train.monitor is left at its default
    options                                        the `detection.*` keys only it reads (setting one for another
                                                   architecture's run is an error)
    crops_only                                     trains on crops only (`detection.train_crop` is required)

A new trainable detector is one module with these functions and one registration below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

from fer_keras.errors import ConfigError
from fer_keras.registry import Registry, Roles


@dataclass(frozen=True)
class Architecture(Roles):
    """What one trainable detector supplies to detection runs (see the module docstring for each role)."""

    export_formats: Tuple[str, ...]  # first: the roles below are "module:function" strings
    fit: str
    detector: str
    evaluate: str
    export: str
    monitor: str
    options: Tuple[str, ...] = ()
    crops_only: bool = False


ARCHITECTURES: Registry[Architecture] = Registry("detection architecture", ConfigError)

ARCHITECTURES.register("retinanet")(Architecture(
    export_formats=("savedmodel", "keras", "compact"), fit="fer_keras.detection.retinanet_run:fit",
    detector="fer_keras.detection.retinanet_run:detector", evaluate="fer_keras.detection.retinanet_run:evaluate",
    export="fer_keras.detection.retinanet_run:export", monitor="val_ap50",
    options=("backbone", "head_convs", "prior_probability", "min_level", "max_level", "anchor_size", "anchor_scales",
             "anchor_ratios", "positive_iou", "negative_iou", "force_match", "augment", "weights")))

ARCHITECTURES.register("yunet")(Architecture(
    export_formats=("savedmodel", "keras"), fit="fer_keras.detection.yunet_run:fit",
    detector="fer_keras.detection.yunet_run:detector", evaluate="fer_keras.detection.yunet_run:evaluate",
    export="fer_keras.detection.yunet_run:export", monitor="val_recall_1fppi", options=("yunet_init",),
    crops_only=True))


def architecture_of(cfg) -> Architecture:
    """The architecture of a detection config."""
    return ARCHITECTURES.get(cfg.detection.architecture)

