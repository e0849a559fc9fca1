"""YuNet in detection runs (`detection.architecture: yunet`), every role in this one module: its fit (fine-tuning
on crops, the best epoch chosen on whole val photos as predict sees them), its evaluate, the finished run as a face
detector and its export (the roles: `fer_keras/architectures.py`; the head's targets and losses: `yunet_train.py`)."""

from __future__ import annotations

import math
import os
import shutil
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from fer_keras.config import Config
from fer_keras.detection.data import crop_batches
from fer_keras.detection.evaluate import write_eval
from fer_keras.detection.lowlight import degrade_low_light
from fer_keras.detection.metrics import scores_at_fppi
from fer_keras.detection.yunet import KerasYuNetDetector, load_trained
from fer_keras.detection.yunet_train import DEFAULT_INIT, TARGET, build_training_model, grid_priors, make_loss, \
    targets_for_batch
from fer_keras.errors import DataError
from fer_keras.fitting import finish_fit, fit_run, fit_verbosity, make_callbacks, make_optimizer
from fer_keras.io_utils import atomic_path
from fer_keras.run_dir import EXPORT, METRICS, MODEL, RunDir


def _folder_index(sources: List[str]) -> List[int]:
    """Each image's index within its folder's images (the seed of its darkened copy, as the threshold chooser
    `benchmarks/choose_yunet_thresholds.py` seeds them)."""
    seen: Dict[str, int] = {}
    out = []
    for s in sources:
        d = os.path.dirname(s)
        out.append(seen.get(d, 0))
        seen[d] = out[-1] + 1
    return out


def load_photos(table, dark: bool = False, mean: Optional[Tuple[float, float]] = None,
                seed: int = 100_000) -> List[np.ndarray]:
    """The RGB photos of a detection table; with `dark`, degraded to low light (to a mean brightness in `mean`,
    default DARK FACE's range), seeded `seed` + index in folder."""
    import cv2

    out = []
    for src, i in zip(table.sources, _folder_index(table.sources)):
        bgr = cv2.imread(src, cv2.IMREAD_COLOR)
        if bgr is None:
            raise DataError(f"{src}: cannot read image")
        rgb = bgr[..., ::-1].copy()
        if dark:
            rng = np.random.default_rng(seed + i)
            rgb = degrade_low_light(rgb, rng) if mean is None else degrade_low_light(rgb, rng, mean=mean)
        out.append(rgb)
    return out


def detect_photos(detector, table=None, photos: Optional[List[np.ndarray]] = None) -> List[np.ndarray]:
    """(n, 5) x1 y1 x2 y2 score per photo (original coordinates) from a detector with `detect`."""
    photos = photos if photos is not None else load_photos(table)
    out = []
    for rgb in photos:
        b, s = detector.detect(rgb)
        out.append(np.concatenate([b, s[:, None]], 1).astype(np.float32) if len(b) else np.zeros((0, 5), np.float32))
    return out


def _val_callback(table, det):
    """Keras callback: val recall at 1 FP/image and AP (IoU 0.3) of the model being trained, on the val photos as
    `predict` sees them (whole photos, upscaled to 640 px / padded as `KerasYuNetDetector` does), normal and, with
    `detection.val_low_light`, darkened; logs `val_recall_1fppi(_dark)`, `val_ap30(_dark)` and their means."""
    import keras

    sets = {"": load_photos(table)}
    if det.val_low_light:
        sets["_dark"] = load_photos(table, dark=True)

    class _Eval(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if logs is None:
                return
            detector = KerasYuNetDetector(self.model, min_score=0.05)
            for suffix, photos in sets.items():
                r = scores_at_fppi(detect_photos(detector, photos=photos), table.boxes, det.val_min_face)
                logs[f"val_recall_1fppi{suffix}"], logs[f"val_ap30{suffix}"] = r["recall"], r["ap"]
            logs["val_recall_1fppi_mean"] = float(np.mean([logs[f"val_recall_1fppi{k}"] for k in sets]))

    return _Eval()


def _stream(model, table, cfg, start_epoch: int, priors: np.ndarray):
    """Infinite `tf.data` stream of (BGR crops 0-255, SimOTA targets from the model's current predictions)."""
    import tensorflow as tf


    det, bs, side = cfg.detection, cfg.data.batch_size, cfg.detection.train_crop
    predict = tf.function(lambda x: model(x, training=False))

    def gen():
        epoch = start_epoch
        while True:
            for x, y in crop_batches(table, det, bs, cfg.train.seed, epoch):
                bgr = np.ascontiguousarray(x[..., ::-1])
                flat = predict(tf.constant(bgr)).numpy()
                faces = [b[c >= 0] for b, c in zip(y["boxes"], y["classes"])]
                yield bgr, targets_for_batch(flat, priors, faces)
            epoch += 1

    spec = (tf.TensorSpec((bs, side, side, 3), tf.float32), tf.TensorSpec((bs, len(priors), TARGET), tf.float32))
    return tf.data.Dataset.from_generator(gen, output_signature=spec).prefetch(2)


def fit(cfg: Config, run: RunDir, data: dict, resuming: bool, t_start: float) -> None:
    """Fine-tunes YuNet (`detection.yunet_init`, default the shipped `yunet_n.pth`) on crops of `data["train"]`
    (`detection.train_crop`, `face_px`, `low_light_prob`), choosing the best epoch by `train.monitor` on the val
    photos; writes the run's model.keras (training model; `load_trained` reads it), metrics.json and runtime.json."""
    t, det = cfg.train, cfg.detection
    train, val = data["train"], data["val"]
    init = det.yunet_init or DEFAULT_INIT
    model = build_training_model(load_trained(init))
    # No landmark labels here: the landmark head keeps its pretrained weights (and weight decay must not shrink it).
    for layer in model.layers:
        if "multi_level_kps" in layer.name:
            layer.trainable = False
    priors = grid_priors(det.train_crop, det.train_crop)
    steps = t.steps_per_epoch or math.ceil(len(train) / cfg.data.batch_size)
    model.compile(optimizer=make_optimizer(t, steps * t.epochs), loss=make_loss(priors), jit_compile=False)
    has_val = val is not None and len(val) > 0
    monitor = t.monitor if has_val else "loss"
    mode = t.monitor_mode if has_val else "min"
    cbs, logger = make_callbacks(cfg, run, monitor, None, [_val_callback(val, det)] if has_val else [], mode)
    start_epoch = run.resume_epoch()
    print(f"run: {run.path} | YuNet from {init} {model.count_params():,} params | crops {det.train_crop} px, faces "
          f"{det.face_px[0]:g}-{det.face_px[1]:g} px, low light {det.low_light_prob:g} | train {len(train)} images, "
          f"val {len(val) if has_val else 0}" + (f" | resuming at epoch {start_epoch}" if resuming else ""),
          flush=True)
    fit_run(lambda: model.fit(_stream(model, train, cfg, start_epoch, priors), steps_per_epoch=steps,
                              epochs=t.epochs, callbacks=cbs, verbose=fit_verbosity(t.verbose), shuffle=False),
            run, t.strategy)
    finish_fit(run, model, cfg, logger, monitor, mode, steps * cfg.data.batch_size, t_start, architecture="yunet",
               resumed_at_epoch=start_epoch if resuming else None)
    metrics = {}
    if has_val:
        best = KerasYuNetDetector(run.model_path, min_score=0.05)
        for split, dark in (("val", False), ("val-dark", True)) if det.val_low_light else (("val", False),):
            dets = detect_photos(best, photos=load_photos(val, dark))
            write_eval(os.path.join(run.path, "eval", split), val, dets, val.boxes, [1.0] * len(val))
            metrics[split] = scores_at_fppi(dets, val.boxes, det.val_min_face)
        run.write_json(METRICS, metrics)


def evaluate(run: RunDir, cfg: Config, table):
    """The run's detections of `table` in original pixels, with its ground truth and scales (all 1)."""
    detector = KerasYuNetDetector(run.model_path, 0.05)
    return detect_photos(detector, table), table.boxes, [1.0] * len(table)


def detector(run: RunDir, min_score: Optional[float] = None) -> KerasYuNetDetector:
    """The finished run as a face detector (`min_score`: None = the run's `detection.min_score`)."""
    return KerasYuNetDetector(run.model_path, run.config().detection.min_score if min_score is None else min_score)


def export(run: RunDir, formats: Sequence[str]) -> Dict[str, str]:
    """A YuNet run exports its inference model (per-level raw outputs, as `detection.yunet.decode` reads them):
    `keras`, and `savedmodel` with a `serving_default` signature on BGR 0-255 images of any size (multiples of 32)."""
    import tensorflow as tf

    model = load_trained(run.model_path)
    out = run.file(EXPORT)
    os.makedirs(out, exist_ok=True)
    written = {}
    if "keras" in formats:
        with atomic_path(os.path.join(out, MODEL)) as tmp:
            model.save(tmp)
        written["keras"] = os.path.join(out, MODEL)
    if "savedmodel" in formats:
        fn = tf.function(lambda images: model(images, training=False),
                         input_signature=[tf.TensorSpec((None, None, None, 3), tf.float32, name="images")])
        path = os.path.join(out, "savedmodel")
        tmp = path + ".tmp"  # written aside, then swapped in: an earlier export is never left half-replaced
        shutil.rmtree(tmp, ignore_errors=True)
        module = tf.Module()
        module.model = model
        tf.saved_model.save(module, tmp, signatures={"serving_default": fn})
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
        written["savedmodel"] = path
    return written
