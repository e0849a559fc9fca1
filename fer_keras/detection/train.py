"""Face detection runs (`task: detection`): train, evaluate and detect with the same run-directory contract as the
expression models.

Run directory:
    config.yaml       resolved config
    data_summary.json images/faces per split and their source
    history.csv       per-epoch loss, learning rate, epoch time, val AP@0.5, AP@0.5:0.95, recall at 1 FP/image
    model.keras       best detector by val AP@0.5 (saved atomically)
    metrics.json      final val metrics of the best detector
    eval/<split>/     metrics.json, pr_curve.csv, detections.csv (original image coordinates)
    runtime.json, state.json
"""

from __future__ import annotations

import csv
import json
import math
import os
import threading
import time
from typing import Dict, List, Optional, Tuple

import numpy as np

from fer_keras.detection import metrics as M
from fer_keras.detection.data import (DetAugment, DetTable, detection_batches, enhance, letterbox, load_sample,
                                      read_detection, write_dark_scenes)
from fer_keras.errors import ConfigError, DataError
from fer_keras.io_utils import atomic_path, atomic_write_text


def _size(cfg) -> Tuple[int, int]:
    from fer_keras.detection.retinanet import check_input_size

    check_input_size(cfg.detection.image_width, cfg.detection.image_height)
    return cfg.detection.image_width, cfg.detection.image_height


def demo_scenes(n: int, root: Optional[str] = None) -> Tuple[str, str]:
    """Synthetic dark scenes (train: n, seed 0; val: n // 5, seed 1) in DARK FACE layout, generated once."""
    root = root or os.path.join(os.environ.get("FER_KERAS_DATA", "data"), f"dark-scenes-{n}")
    return (write_dark_scenes(os.path.join(root, "train"), n=n, seed=0),
            write_dark_scenes(os.path.join(root, "val"), n=max(8, n // 5), seed=1))


def load_detection_data(cfg) -> Dict[str, Optional[DetTable]]:
    """Train/val(/test) tables: `data.path` (DARK FACE folder or WIDER annotation .txt), `data.val_path` or a seeded
    `data.val_fraction` split, optional `data.test_path`; the synthetic dark scenes when `data.path` is unset."""
    d = cfg.data
    if d.path is None:
        tr, va = demo_scenes(cfg.detection.scenes)
        return {"train": read_detection(tr), "val": read_detection(va), "test": None, "source": os.path.dirname(tr)}
    train = read_detection(d.path, d.skip_bad, d.image_root)
    val = read_detection(d.val_path, d.skip_bad, d.image_root) if d.val_path else None
    if val is None and d.val_fraction > 0:
        order = np.random.default_rng(d.split_seed).permutation(len(train))
        k = int(round(len(train) * d.val_fraction))
        val, train = train.subset(np.sort(order[:k])), train.subset(np.sort(order[k:]))
    test = read_detection(d.test_path, d.skip_bad, d.image_root) if d.test_path else None
    if not len(train):
        raise DataError(f"{d.path}: no training images")
    return {"train": train, "val": val, "test": test, "source": d.path}


def _train_dataset(table: DetTable, cfg, start_epoch: int):
    """Infinite `tf.data` stream of augmented training batches (epoch-keyed order and augmentation)."""
    import tensorflow as tf

    w, h = _size(cfg)
    bs, det = cfg.data.batch_size, cfg.detection
    aug = DetAugment() if det.augment else None

    def gen():
        epoch = start_epoch
        while True:
            for x, y in detection_batches(table, (w, h), bs, True, aug, seed=cfg.train.seed, epoch=epoch,
                                          max_boxes=det.max_boxes, enhancement=det.enhancement):
                yield x / 255.0, {"boxes": y["boxes"], "labels": y["classes"]}
            epoch += 1

    spec = (tf.TensorSpec((bs, h, w, 3), tf.float32),
            {"boxes": tf.TensorSpec((bs, det.max_boxes, 4), tf.float32),
             "labels": tf.TensorSpec((bs, det.max_boxes), tf.float32)})
    return tf.data.Dataset.from_generator(gen, output_signature=spec).prefetch(2)


def detect_table(detector, table: DetTable, cfg) -> Tuple[List[np.ndarray], List[np.ndarray], List[float]]:
    """Detections and ground truth per image, both in the letterboxed frame (IoU is scale invariant), plus each
    image's letterbox scale (divide by it for original coordinates)."""
    from fer_keras.detection.retinanet import predict_boxes

    w, h = _size(cfg)
    dets, gts, scales = [], [], []
    bs = cfg.data.batch_size
    for start in range(0, len(table), bs):
        imgs = []
        for i in range(start, min(start + bs, len(table))):
            img, b, s = load_sample(table.sources[i], table.boxes[i], (w, h), cfg.detection.enhancement)
            imgs.append(img)
            gts.append(b)
            scales.append(s)
        dets += predict_boxes(detector, np.stack(imgs).astype(np.float32) / 255.0, bs)
    return dets, gts, scales


class DetectionEval:
    """Keras callback factory: adds val_ap50, val_ap50_95 and val_recall_1fppi to the epoch logs."""

    @staticmethod
    def make(table: DetTable, cfg):
        import keras

        class _Eval(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if logs is None:
                    return
                dets, gts, _ = detect_table(self.model, table, cfg)
                m = M.detection_metrics(dets, gts)
                logs["val_ap50"], logs["val_ap50_95"] = m["ap50"], m["ap50_95"]
                logs["val_recall_1fppi"] = m["recall@1fppi"]

        return _Eval()


def write_eval(out_dir: str, table: DetTable, dets, gts, scales) -> dict:
    """Writes metrics.json, pr_curve.csv and detections.csv (original image coordinates); returns the metrics."""
    os.makedirs(out_dir, exist_ok=True)
    m = M.detection_metrics(dets, gts)
    pr = M.precision_recall(dets, gts, 0.5)
    atomic_write_text(os.path.join(out_dir, "metrics.json"), json.dumps(m, indent=2))
    with atomic_path(os.path.join(out_dir, "pr_curve.csv")) as tmp, open(tmp, "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["score", "precision", "recall"])
        wr.writerows(zip(*(np.round(pr[k], 6) for k in ("scores", "precision", "recall"))))
    with atomic_path(os.path.join(out_dir, "detections.csv")) as tmp, open(tmp, "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["source", "x1", "y1", "x2", "y2", "score"])
        for src, d, s in zip(table.sources, dets, scales):
            for x1, y1, x2, y2, sc in d:
                wr.writerow([src, *(round(v / s, 1) for v in (x1, y1, x2, y2)), round(float(sc), 4)])
    return m


def _resume_epoch(run_dir: str) -> int:
    """The epoch BackupAndRestore will resume at (0 for a fresh run): the training stream must start there too."""
    meta = os.path.join(run_dir, "backup", "training_metadata.json")
    if not os.path.isfile(meta):
        return 0
    with open(meta) as f:
        return int(json.load(f).get("epoch", 0))


def train_detector(cfg) -> str:
    """Trains the RetinaNet face detector of `cfg.detection` on `cfg.data`; returns the run directory.

    A named run that exists and is unfinished resumes from its last finished epoch (same command, same config);
    a finished one is never overwritten, and one being trained by another process is refused (`run_lock`).
    """
    import contextlib

    from fer_keras.io_utils import run_lock

    with run_lock(cfg.train.runs_dir, cfg.train.name) if cfg.train.name else contextlib.nullcontext():
        return _train_detector(cfg)


def _train_detector(cfg) -> str:
    import keras
    import tensorflow as tf

    from fer_keras.config import save_config
    from fer_keras.detection.retinanet import build_retinanet, compile_retinanet
    from fer_keras.io_utils import new_run_dir
    from fer_keras.training import _best_so_far, _write_json, check_named_run, fit_verbosity, make_callbacks, make_optimizer

    t, det = cfg.train, cfg.detection
    if t.monitor.startswith("val_expression") or t.monitor in ("val_loss",):
        t.monitor, t.monitor_mode = "val_ap50", "max"
    _size(cfg)
    keras.utils.set_random_seed(t.seed)
    t_start = time.time()
    resuming = check_named_run(cfg)  # raises for a finished run or a changed config, before reading any data
    data = load_detection_data(cfg)
    train, val = data["train"], data["val"]
    stem = "dark-scenes" if cfg.data.path is None else os.path.splitext(os.path.basename(
        os.path.normpath(cfg.data.path)))[0]
    summary = {s: {"images": len(tb), "faces": tb.num_faces} for s, tb in data.items() if isinstance(tb, DetTable)}
    run_dir = new_run_dir(t.runs_dir, t.name, f"retinanet-{stem}")
    os.makedirs(run_dir, exist_ok=True)
    if not resuming:
        save_config(cfg, os.path.join(run_dir, "config.yaml"))
        _write_json(os.path.join(run_dir, "data_summary.json"), {"source": data["source"], **summary})
        _write_json(os.path.join(run_dir, "state.json"), {"status": "running"})

    steps = t.steps_per_epoch or math.ceil(len(train) / cfg.data.batch_size)
    detector = build_retinanet(det.backbone, 1, det.head_convs, det.prior_probability, det.score_threshold,
                               det.iou_threshold, det.max_detections, det.weights, seed=t.seed)
    opt = make_optimizer(t, steps * t.epochs)
    opt.clipnorm = 10.0  # focal-loss spikes early in training from scratch
    compile_retinanet(detector, opt)
    monitor = t.monitor if val is not None and len(val) else "loss"
    mode = t.monitor_mode if monitor != "loss" else "min"
    first = [DetectionEval.make(val, cfg)] if val is not None and len(val) else []  # val AP before the checkpoint
    cbs, logger = make_callbacks(cfg, run_dir, monitor, None, first, mode)  # no epoch variable: the stream is keyed
    start_epoch = _resume_epoch(run_dir)
    print(f"run: {run_dir} | RetinaNet {det.backbone} {detector.count_params():,} params | "
          f"{det.image_width}x{det.image_height} | train {len(train)} images, val {len(val) if val else 0}"
          + (f" | resuming at epoch {start_epoch}" if resuming else ""))
    detector.fit(_train_dataset(train, cfg, start_epoch), steps_per_epoch=steps, epochs=t.epochs, callbacks=cbs,
                 verbose=fit_verbosity(t.verbose))
    model_path = os.path.join(run_dir, "model.keras")
    if not os.path.isfile(model_path):
        with atomic_path(model_path) as tmp:
            detector.save(tmp)
    metrics = {}
    if val is not None and len(val):
        from fer_keras.detection.retinanet import load_detector

        best = load_detector(model_path)
        metrics = write_eval(os.path.join(run_dir, "eval", "val"), val, *detect_table(best, val, cfg))
        _write_json(os.path.join(run_dir, "metrics.json"), {"val": metrics})
    times = logger.epoch_times[1:] or logger.epoch_times
    _write_json(os.path.join(run_dir, "runtime.json"), {
        "task": "detection", "params": int(detector.count_params()), "epochs_run": len(logger.epoch_times),
        "resumed_at_epoch": start_epoch if resuming else None,
        "train_seconds": round(time.time() - t_start, 1),
        "median_epoch_seconds": float(np.median(times)) if times else None,
        "train_images_per_second": float(steps * cfg.data.batch_size / np.median(times)) if times else None,
        "monitor": monitor, "best": _best_so_far(os.path.join(run_dir, "history.csv"), monitor, mode),
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__}})
    _write_json(os.path.join(run_dir, "state.json"), {"status": "finished"})
    return run_dir


def evaluate_detector_run(run_dir: str, split: str = "val", data: Optional[str] = None) -> dict:
    """Scores a detection run's best model on a split of its data (or on `data`, a DARK FACE folder / WIDER txt);
    writes `eval/<split or data name>/` and returns (that folder, metrics)."""
    from fer_keras.config import config_from_dict, read_yaml
    from fer_keras.detection.retinanet import load_detector

    cfg = config_from_dict(read_yaml(os.path.join(run_dir, "config.yaml")), source=run_dir)
    if data:
        table, name = read_detection(data, cfg.data.skip_bad, cfg.data.image_root), slug_name(data)
    else:
        table, name = load_detection_data(cfg).get(split), split
        if table is None or not len(table):
            raise ConfigError(f"{run_dir}: its data has no {split!r} split; pass --data")
    detector = load_detector(os.path.join(run_dir, "model.keras"))
    out = os.path.join(run_dir, "eval", name)
    return out, write_eval(out, table, *detect_table(detector, table, cfg))


def slug_name(path: str) -> str:
    from fer_keras.io_utils import slug

    return slug(os.path.splitext(os.path.basename(os.path.normpath(path)))[0])


class RetinaNetFaceDetector:
    """A trained detection run as a face detector for the predict CLI: `det(rgb) -> [(x, y, w, h), ...]`."""

    def __init__(self, run_dir: str, min_score: Optional[float] = None):
        from fer_keras.config import config_from_dict, read_yaml
        from fer_keras.detection.retinanet import load_detector

        cfg_path = os.path.join(run_dir, "config.yaml")
        if not os.path.isfile(cfg_path):
            raise ConfigError(f"{run_dir}: not a run directory (no config.yaml)")
        self.cfg = config_from_dict(read_yaml(cfg_path), source=run_dir)
        if self.cfg.task != "detection":
            raise ConfigError(f"{run_dir}: an expression run; --detector takes a detection run (task: detection)")
        self.model = load_detector(os.path.join(run_dir, "model.keras"))
        self.size = _size(self.cfg)
        self.min_score = self.cfg.detection.min_score if min_score is None else min_score
        self._lock = threading.Lock()  # predict may call it from several threads; Keras predict is not reentrant

    def __call__(self, rgb: np.ndarray) -> List[Tuple[int, int, int, int]]:
        from fer_keras.detection.retinanet import predict_boxes

        img, _, s = letterbox(enhance(rgb, self.cfg.detection.enhancement), np.zeros((0, 4), np.float32), self.size)
        with self._lock:
            d = predict_boxes(self.model, img[None].astype(np.float32) / 255.0, 1)[0]
        d = d[d[:, 4] >= self.min_score] / [s, s, s, s, 1]
        return [(int(x1), int(y1), int(round(x2 - x1)), int(round(y2 - y1))) for x1, y1, x2, y2, _ in d
                if x2 - x1 >= 2 and y2 - y1 >= 2]
