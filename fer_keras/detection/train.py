"""Training face-detection runs (`task: detection`; the task's `train`): the same run-directory contract as the
expression models, each architecture's fit in its own module (`retinanet_run.py`, `yunet_run.py`).

Run directory:
    config.yaml       resolved config
    data_summary.json images/faces per split and their source
    history.csv       per-epoch loss, learning rate, epoch time and the architecture's val scores
    model.keras       best detector by train.monitor (default: the architecture's `monitor`), saved atomically
    metrics.json      final val metrics of the best detector
    eval/<split>/     metrics.json, pr_curve.csv, detections.csv (original image coordinates)
    runtime.json, state.json
"""

from __future__ import annotations

import os
import time

from fer_keras.architectures import ARCHITECTURES, architecture_of
from fer_keras.config import Config, DetectionConfig
from fer_keras.detection.data import DetTable, input_size, load_detection_data
from fer_keras.errors import ConfigError
from fer_keras.run_dir import DATA_SUMMARY, RunDir, run_training


def train_detector(cfg: Config) -> str:
    """Trains the face detector of `cfg.detection` (its architecture: `fer_keras/architectures.py`) on `cfg.data`;
    returns the run directory (the detection task's `train`).

    The run's life (lock, resume, first files, removal of a failed start, finished state) is `run_dir.run_training`,
    as for expression runs: a named run that exists and is unfinished resumes from its last finished epoch (same
    command, same config); a finished one is never overwritten.
    """
    import keras

    t, arch = cfg.train, architecture_of(cfg)
    check_options(cfg)
    if t.monitor.startswith("val_expression") or t.monitor == "val_loss":  # an expression score: its architecture's
        t.monitor, t.monitor_mode = arch.monitor, "max"
    input_size(cfg)
    keras.utils.set_random_seed(t.seed)
    t_start = time.time()
    stem = "dark-scenes" if cfg.data.path is None else os.path.splitext(os.path.basename(
        os.path.normpath(cfg.data.path.split(",")[0])))[0]

    def start(run: RunDir, data) -> None:
        run.write_json(DATA_SUMMARY, {"source": data["source"], **{
            s: {"images": len(tb), "faces": tb.num_faces} for s, tb in data.items() if isinstance(tb, DetTable)}})

    fit = arch.fn("fit")
    return run_training(cfg, f"{cfg.detection.architecture}-{stem}", lambda: load_detection_data(cfg), start,
                        lambda run, data, resuming: fit(cfg, run, data, resuming, t_start))


def check_options(cfg: Config) -> None:
    """Raises a ConfigError when `cfg` sets (away from its default) a `detection.*` option that belongs to another
    architecture than its own (`Architecture.options`), or trains a crops-only architecture on whole images."""
    name, default = cfg.detection.architecture, DetectionConfig()
    arch = ARCHITECTURES.get(name)
    for other in ARCHITECTURES.names():
        for key in ARCHITECTURES.get(other).options:
            if key not in arch.options and getattr(cfg.detection, key) != getattr(default, key):
                raise ConfigError(f"detection.{key} is an option of the {other} architecture; this run's "
                                  f"detection.architecture is {name}")
    if arch.crops_only and not cfg.detection.train_crop:
        raise ConfigError(f"detection.architecture {name} trains on crops: set detection.train_crop (e.g. 320)")
