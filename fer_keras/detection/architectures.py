"""The trainable face-detector architectures of detection runs (`detection.architecture`) and what each supplies:
the one place that chooses between them (as `fer_keras/tasks.py` does between tasks).

Each role is a "module:function", imported on first use, so reading this registry (config checks, `--help`)
imports neither Keras nor any architecture's code:

    fit(cfg, run, data, resuming, t_start)       trains a run (train_model.py --task detection)
    detector(run_dir, min_score)                  the finished run as a face detector (predict --detector RUN)
    evaluate(run, cfg, table)                     (detections, ground truth, letterbox scales) of a table
    export(rd, formats)                           {format: path} into the run's export/
    export_formats                                what `--format all` writes
    monitor                                       the history column its learning curve shows (None: train.monitor)
    crops_only                                    trains on crops only (`detection.train_crop` is required)

A new trainable detector is one module with these functions and one registration below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

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
    crops_only: bool = False
    monitor: Optional[str] = None


ARCHITECTURES: Registry[Architecture] = Registry("detection architecture", ConfigError)

ARCHITECTURES.register("retinanet")(Architecture(
    export_formats=("savedmodel", "keras", "compact"), fit="fer_keras.detection.train:fit_retinanet",
    detector="fer_keras.detection.faces:retinanet_from_run", evaluate="fer_keras.detection.train:evaluate_retinanet",
    export="fer_keras.detection.export:export_retinanet_run", monitor="val_ap50"))

ARCHITECTURES.register("yunet")(Architecture(
    export_formats=("savedmodel", "keras"), fit="fer_keras.detection.yunet_train:fit_yunet",
    detector="fer_keras.detection.yunet:detector_from_run", evaluate="fer_keras.detection.yunet_train:evaluate_yunet",
    export="fer_keras.detection.export:export_yunet_run", crops_only=True))


def architecture_of(cfg) -> Architecture:
    """The architecture of a detection config."""
    return ARCHITECTURES.get(cfg.detection.architecture)
