"""Section 6: the RetinaNet face detector trained on generated dark scenes: AP and per-image latency."""

from __future__ import annotations

import json
import os
import tempfile
import time

from suite.common import BENCH_DATA, ROOT


def bench_detection(a) -> dict:
    """RetinaNet (configs/darkface_retinanet.yaml) on generated dark scenes for a bounded time, AP on held-out
    scenes (another seed), per-image latency at 640x480 (SavedModel with NMS, and the predict CLI's detector)."""
    import numpy as np
    import tensorflow as tf

    from fer_keras.config import load_config
    from fer_keras.detection.data import read_darkface, write_dark_scenes
    from fer_keras.detection.faces import RetinaNetFaceDetector
    from fer_keras.detection.evaluate import evaluate_detector_run
    from fer_keras.detection.train import train_detector
    from fer_keras.export import export_run
    from fer_keras.run_dir import RunDir

    runs = tempfile.mkdtemp(prefix="fer-bench-det-")
    cfg = load_config(os.path.join(ROOT, "configs", "darkface_retinanet.yaml"),
                      [f"train.runs_dir={runs}", "train.name=det", f"train.time_limit_minutes={a.det_minutes}"])
    t0 = time.perf_counter()
    run = train_detector(cfg)
    train_s = time.perf_counter() - t0
    with open(os.path.join(run, "runtime.json")) as f:
        rt = json.load(f)
    held_out = write_dark_scenes(os.path.join(BENCH_DATA, "dark-scenes-test-320x240"), n=100, seed=2)
    large = write_dark_scenes(os.path.join(BENCH_DATA, "dark-scenes-test-640x480"), n=50, size=(640, 480), seed=3)
    _, m_small = evaluate_detector_run(run, data=held_out)
    _, m_large = evaluate_detector_run(run, data=large)
    exported = export_run(run, ["savedmodel"])["savedmodel"]
    serve = tf.saved_model.load(exported).signatures["serving_default"]
    table = read_darkface(large)
    import cv2

    imgs = [cv2.cvtColor(cv2.imread(p), cv2.COLOR_BGR2RGB) for p in table.sources[:20]]
    serve(images=tf.constant(imgs[0][None]))  # warm-up (tracing)
    sm = []
    for img in imgs:
        t = time.perf_counter()
        serve(images=tf.constant(img[None]))
        sm.append(time.perf_counter() - t)
    det = RetinaNetFaceDetector.from_run(RunDir.open(run))
    det(imgs[0])
    py = []
    for img in imgs:
        t = time.perf_counter()
        det(img)
        py.append(time.perf_counter() - t)
    with open(os.path.join(run, "history.csv")) as f:
        n_epochs = sum(1 for _ in f) - 1
    return {"config": "configs/darkface_retinanet.yaml", "time_limit_minutes": a.det_minutes,
            "train_seconds": train_s, "epochs_run": n_epochs, "params": rt["params"],
            "best_val_ap50": rt["best"], "held_out_320x240": m_small, "held_out_640x480": m_large,
            "savedmodel_ms_640x480": 1000 * float(np.median(sm)), "python_detector_ms_640x480": 1000 * float(
                np.median(py)),
            "command": f"python benchmarks/run_all.py --only detection --det-minutes {a.det_minutes}"}
