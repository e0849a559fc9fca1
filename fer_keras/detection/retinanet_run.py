"""RetinaNet in detection runs (`detection.architecture: retinanet`), every role in this one module: its fit, its
evaluate, the finished run as a face detector and its export (the roles: `fer_keras/architectures.py`)."""

from __future__ import annotations

import math
import os
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from fer_keras.config import Config
from fer_keras.detection import metrics as M
from fer_keras.detection import retinanet as R
from fer_keras.detection.data import (DetAugment, DetTable, crop_batches, detection_batches, enhance, input_size,
                                      letterbox, load_sample)
from fer_keras.detection.evaluate import write_eval
from fer_keras.detection.faces import RetinaNetFaceDetector
from fer_keras.detection.lowlight import degrade_low_light
from fer_keras.errors import DataError
from fer_keras.fitting import finish_fit, fit_run, fit_verbosity, make_callbacks, make_optimizer
from fer_keras.io_utils import atomic_path
from fer_keras.run_dir import EXPORT, METRICS, MODEL, RunDir


def _train_dataset(table: DetTable, cfg, start_epoch: int):
    """Infinite `tf.data` stream of augmented training batches (epoch-keyed order and augmentation)."""
    import tensorflow as tf

    w, h = input_size(cfg)
    bs, det = cfg.data.batch_size, cfg.detection
    aug = DetAugment() if det.augment else None
    if det.train_crop:
        w = h = det.train_crop

        def gen():  # noqa: F811  (crops of real photos instead of letterboxed whole images)
            epoch = start_epoch
            while True:
                for x, y in crop_batches(table, det, bs, cfg.train.seed, epoch):
                    yield x / 255.0, {"boxes": y["boxes"], "labels": y["classes"]}
                epoch += 1

    else:
        def gen():
            epoch = start_epoch
            while True:
                for x, y in detection_batches(table, (w, h), bs, True, aug, seed=cfg.train.seed, epoch=epoch,
                                              max_boxes=det.max_boxes, enhancement=det.enhancement):
                    if det.force_match:  # one padding row always left (see crop_batches)
                        y["boxes"][:, -1], y["classes"][:, -1] = -1.0, -1.0
                    yield x / 255.0, {"boxes": y["boxes"], "labels": y["classes"]}
                epoch += 1

    spec = (tf.TensorSpec((bs, h, w, 3), tf.float32),
            {"boxes": tf.TensorSpec((bs, det.max_boxes, 4), tf.float32),
             "labels": tf.TensorSpec((bs, det.max_boxes), tf.float32)})
    return tf.data.Dataset.from_generator(gen, output_signature=spec).prefetch(2)


def _dark_copy(path: str, index: int) -> np.ndarray:
    """The low-light version of a validation image, seeded by its index (the same every epoch)."""

    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise DataError(f"{path}: cannot read image")
    return degrade_low_light(bgr[..., ::-1], np.random.default_rng([7, index]))


def detect_table(detector, table: DetTable, cfg, dark: bool = False
                 ) -> Tuple[List[np.ndarray], List[np.ndarray], List[float]]:
    """Detections and ground truth per image, both in the letterboxed frame (IoU is scale invariant), plus each
    image's letterbox scale (divide by it for original coordinates). With `dark`, each image is first degraded to
    low light (seeded per image)."""

    w, h = input_size(cfg)
    dets, gts, scales = [], [], []
    bs = cfg.data.batch_size
    for start in range(0, len(table), bs):
        imgs = []
        for i in range(start, min(start + bs, len(table))):
            if dark:
                img, b, s = letterbox(enhance(_dark_copy(table.sources[i], i), cfg.detection.enhancement),
                                      np.asarray(table.boxes[i], np.float32).reshape(-1, 4), (w, h))
            else:
                img, b, s = load_sample(table.sources[i], table.boxes[i], (w, h), cfg.detection.enhancement)
            imgs.append(img)
            gts.append(b)
            scales.append(s)
        dets += R.predict_boxes(detector, np.stack(imgs).astype(np.float32) / 255.0, bs)
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
                if cfg.detection.val_low_light:
                    d = M.detection_metrics(*detect_table(self.model, table, cfg, dark=True)[:2])
                    logs["val_ap50_dark"], logs["val_recall_1fppi_dark"] = d["ap50"], d["recall@1fppi"]
                    logs["val_ap50_mean"] = (m["ap50"] + d["ap50"]) / 2

        return _Eval()


def fit(cfg: Config, run: RunDir, data: dict, resuming: bool, t_start: float) -> None:
    """Trains a RetinaNet detection run from scratch (or `detection.weights`): val AP@0.5 each epoch, the best epoch
    kept, its val metrics written."""
    t, det = cfg.train, cfg.detection
    train, val = data["train"], data["val"]
    steps = t.steps_per_epoch or math.ceil(len(train) / cfg.data.batch_size)
    detector = R.build_retinanet(**R.build_kwargs(det), weights=det.weights, seed=t.seed)
    opt = make_optimizer(t, steps * t.epochs)
    opt.clipnorm = 10.0  # focal-loss spikes early in training from scratch
    R.compile_retinanet(detector, opt)
    monitor = t.monitor if val is not None and len(val) else "loss"
    mode = t.monitor_mode if monitor != "loss" else "min"
    first = [DetectionEval.make(val, cfg)] if val is not None and len(val) else []  # val AP before the checkpoint
    cbs, logger = make_callbacks(cfg, run, monitor, None, first, mode)  # no epoch variable: the stream is keyed
    start_epoch = run.resume_epoch()
    print(f"run: {run.path} | RetinaNet {det.backbone} {detector.count_params():,} params | "
          f"{det.image_width}x{det.image_height} | train {len(train)} images, val {len(val) if val else 0}"
          + (f" | resuming at epoch {start_epoch}" if resuming else ""))
    fit_run(lambda: detector.fit(_train_dataset(train, cfg, start_epoch), steps_per_epoch=steps, epochs=t.epochs,
                                 callbacks=cbs, verbose=fit_verbosity(t.verbose), shuffle=False),
            run, t.strategy)
    finish_fit(run, detector, cfg, logger, monitor, mode, steps * cfg.data.batch_size, t_start,
               architecture="retinanet", resumed_at_epoch=start_epoch if resuming else None)
    model_path = run.model_path
    metrics = {}
    if val is not None and len(val):

        best = R.load_detector(model_path)
        metrics = {"val": write_eval(os.path.join(run.path, "eval", "val"), val, *detect_table(best, val, cfg))}
        if det.val_low_light:
            metrics["val-dark"] = write_eval(os.path.join(run.path, "eval", "val-dark"), val,
                                             *detect_table(best, val, cfg, dark=True))
        run.write_json(METRICS, metrics)


def evaluate(run: RunDir, cfg: Config, table: DetTable):
    """The run's detections of `table`, with its ground truth and letterbox scales (see `detect_table`)."""
    return detect_table(R.load_detector(run.model_path), table, cfg)


def detector(run: RunDir, min_score: Optional[float] = None) -> RetinaNetFaceDetector:
    """The finished run as a face detector (`min_score`: None = the run's `detection.min_score`)."""
    return RetinaNetFaceDetector.from_run(run, min_score)


def export(run: RunDir, formats: Sequence[str]) -> Dict[str, str]:
    """A RetinaNet run exports as a SavedModel with NMS-decoded boxes, its `.keras` copy, and `compact`: float16
    weights with their build and inference settings in one `.npz` (`faces.RetinaNetFaceDetector.from_file`; the
    shipped low-light detector is one)."""
    cfg = run.config()
    detector = R.load_detector(run.model_path)
    out = run.file(EXPORT)
    os.makedirs(out, exist_ok=True)
    written = {}
    if "savedmodel" in formats:
        d = cfg.detection
        written["savedmodel"] = R.export_savedmodel(detector, d.image_width, d.image_height, d.enhancement,
                                                    os.path.join(out, "savedmodel"))
    if "keras" in formats:
        with atomic_path(os.path.join(out, MODEL)) as tmp:
            detector.save(tmp)
        written["keras"] = os.path.join(out, MODEL)
    if "compact" in formats:
        d = cfg.detection
        inference = {"image_width": d.image_width, "image_height": d.image_height, "min_score": d.min_score,
                     "test_scales": list(d.test_scales), "iou_threshold": d.iou_threshold,
                     "enhancement": d.enhancement, "run": os.path.basename(os.path.normpath(run.path))}
        written["compact"] = R.save_compact(detector, R.build_kwargs(d), inference, os.path.join(out, "detector.npz"))
    return written
