"""Export of detection runs, in each architecture's formats (`ARCHITECTURES`): RetinaNet (SavedModel with NMS,
.keras, compact) and YuNet (.keras, SavedModel of its raw outputs)."""

from __future__ import annotations

import os
import shutil
from typing import Dict, Optional, Sequence

from fer_keras.detection import retinanet as R
from fer_keras.detection.architectures import architecture_of
from fer_keras.errors import ConfigError
from fer_keras.io_utils import atomic_path
from fer_keras.run_dir import EXPORT, MODEL, RunDir


def export_detection_run(run: str, formats: Optional[Sequence[str]] = None) -> Dict[str, str]:
    """A detection run exports in its architecture's formats (`ARCHITECTURES`; default: all of them)."""
    rd = RunDir.open(run)
    arch = architecture_of(rd.config())
    formats = list(arch.export_formats) if formats is None else formats
    bad = [f for f in formats if f not in arch.export_formats]
    if bad:  # checked before anything is written
        raise ConfigError(f"{run}: a {rd.config().detection.architecture} detection run exports as "
                          f"{', '.join(arch.export_formats)}, not {bad[0]}")
    return arch.fn("export")(rd, formats)


def export_retinanet_run(rd: RunDir, formats: Sequence[str]) -> Dict[str, str]:
    """A RetinaNet run exports as a SavedModel with NMS-decoded boxes, its `.keras` copy, and `compact`: float16
    weights with their build and inference settings in one `.npz` (`faces.RetinaNetFaceDetector.from_file`; the
    shipped low-light detector is one)."""
    cfg = rd.config()
    detector = R.load_detector(rd.model_path)
    out = rd.file(EXPORT)
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
                     "enhancement": d.enhancement, "run": os.path.basename(os.path.normpath(rd.path))}
        written["compact"] = R.save_compact(detector, R.build_kwargs(d), inference, os.path.join(out, "detector.npz"))
    return written


def export_yunet_run(rd: RunDir, formats: Sequence[str]) -> Dict[str, str]:
    """A YuNet run exports its inference model (per-level raw outputs, as `detection.yunet.decode` reads them):
    `keras`, and `savedmodel` with a `serving_default` signature on BGR 0-255 images of any size (multiples of 32)."""
    import tensorflow as tf

    from fer_keras.detection.yunet import load_trained  # YuNet's port: only for YuNet runs

    model = load_trained(rd.model_path)
    out = rd.file(EXPORT)
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
