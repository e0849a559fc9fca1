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

import math
import os
import time
from typing import List, Tuple

import cv2
import numpy as np

from fer_keras.detection import metrics as M
from fer_keras.detection.architectures import architecture_of
from fer_keras.detection.data import (DetAugment, DetTable, crop_batches, detection_batches, enhance, input_size,
                                      letterbox, load_detection_data, load_sample)
from fer_keras.detection.evaluate import write_eval
from fer_keras.detection.lowlight import degrade_low_light
from fer_keras.detection.retinanet import build_kwargs, build_retinanet, compile_retinanet, load_detector, predict_boxes
from fer_keras.errors import ConfigError, DataError
from fer_keras.run_dir import DATA_SUMMARY, METRICS, RunDir, run_training


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
                if cfg.detection.val_low_light:
                    d = M.detection_metrics(*detect_table(self.model, table, cfg, dark=True)[:2])
                    logs["val_ap50_dark"], logs["val_recall_1fppi_dark"] = d["ap50"], d["recall@1fppi"]
                    logs["val_ap50_mean"] = (m["ap50"] + d["ap50"]) / 2

        return _Eval()


def train_detector(cfg) -> str:
    """Trains the RetinaNet face detector of `cfg.detection` on `cfg.data`; returns the run directory.

    The run's life (lock, resume, first files, removal of a failed start, finished state) is `run_dir.run_training`,
    as for expression runs: a named run that exists and is unfinished resumes from its last finished epoch (same
    command, same config); a finished one is never overwritten.
    """
    import keras

    t = cfg.train
    if t.monitor.startswith("val_expression") or t.monitor in ("val_loss",):
        t.monitor, t.monitor_mode = "val_ap50", "max"
    input_size(cfg)
    keras.utils.set_random_seed(t.seed)
    t_start = time.time()
    stem = "dark-scenes" if cfg.data.path is None else os.path.splitext(os.path.basename(
        os.path.normpath(cfg.data.path.split(",")[0])))[0]

    def start(run: RunDir, data) -> None:
        run.write_json(DATA_SUMMARY, {"source": data["source"], **{
            s: {"images": len(tb), "faces": tb.num_faces} for s, tb in data.items() if isinstance(tb, DetTable)}})

    arch = architecture_of(cfg)
    if arch.crops_only and not cfg.detection.train_crop:
        raise ConfigError(f"detection.architecture {cfg.detection.architecture} trains on crops: set "
                          "detection.train_crop (e.g. 320)")
    fit = arch.fn("fit")
    return run_training(cfg, f"{cfg.detection.architecture}-{stem}", lambda: load_detection_data(cfg), start,
                        lambda run, data, resuming: fit(cfg, run, data, resuming, t_start))


def fit_retinanet(cfg, run: RunDir, data: dict, resuming: bool, t_start: float) -> None:
    """Trains a RetinaNet detection run (the `retinanet` architecture's `fit`)."""
    # TensorFlow: when training
    from fer_keras.fitting import finish_fit, fit_run, fit_verbosity, make_callbacks, make_optimizer

    t, det = cfg.train, cfg.detection
    train, val = data["train"], data["val"]
    run_dir = run.path
    steps = t.steps_per_epoch or math.ceil(len(train) / cfg.data.batch_size)
    detector = build_retinanet(**build_kwargs(det), weights=det.weights, seed=t.seed)
    opt = make_optimizer(t, steps * t.epochs)
    opt.clipnorm = 10.0  # focal-loss spikes early in training from scratch
    compile_retinanet(detector, opt)
    monitor = t.monitor if val is not None and len(val) else "loss"
    mode = t.monitor_mode if monitor != "loss" else "min"
    first = [DetectionEval.make(val, cfg)] if val is not None and len(val) else []  # val AP before the checkpoint
    cbs, logger = make_callbacks(cfg, run_dir, monitor, None, first, mode)  # no epoch variable: the stream is keyed
    start_epoch = run.resume_epoch()
    print(f"run: {run_dir} | RetinaNet {det.backbone} {detector.count_params():,} params | "
          f"{det.image_width}x{det.image_height} | train {len(train)} images, val {len(val) if val else 0}"
          + (f" | resuming at epoch {start_epoch}" if resuming else ""))
    fit_run(lambda: detector.fit(_train_dataset(train, cfg, start_epoch), steps_per_epoch=steps, epochs=t.epochs,
                                 callbacks=cbs, verbose=fit_verbosity(t.verbose), shuffle=False),
            run_dir, t.strategy)
    finish_fit(run, detector, cfg, logger, monitor, mode, steps * cfg.data.batch_size, t_start,
               architecture="retinanet", resumed_at_epoch=start_epoch if resuming else None)
    model_path = run.model_path
    metrics = {}
    if val is not None and len(val):

        best = load_detector(model_path)
        metrics = {"val": write_eval(os.path.join(run_dir, "eval", "val"), val, *detect_table(best, val, cfg))}
        if det.val_low_light:
            metrics["val-dark"] = write_eval(os.path.join(run_dir, "eval", "val-dark"), val,
                                             *detect_table(best, val, cfg, dark=True))
        run.write_json(METRICS, metrics)


def evaluate_retinanet(run: RunDir, cfg, table: DetTable):
    """A RetinaNet run's detections of `table` (the `retinanet` architecture's `evaluate`)."""
    return detect_table(load_detector(run.model_path), table, cfg)
