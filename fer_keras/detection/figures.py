"""The figures of a detection run's report: learning curves, PR curves and sample detections."""

from __future__ import annotations

import os
from typing import Dict

import numpy as np

from fer_keras import plots
from fer_keras.detection.data import load_detection_data
from fer_keras.report import read_history, load_image_file, load_run_json, read_csv_rows
from fer_keras.run_dir import METRICS, RunDir


def detection_figures(run: RunDir) -> Dict[str, tuple]:
    """Learning curves, the PR curve of each evaluated split and sample detections of a detection run."""
    figures = {}
    hist_path = run.history_path
    cfg = run.config()
    monitor = cfg.train.monitor  # the saved config holds the score the run chose by (its architecture's default)
    if os.path.isfile(hist_path):
        figures["Learning curves"] = ("learning_curves", lambda: plots.learning_curves(
            read_history(hist_path), monitor, "max"))
    eval_root = run.file("eval")
    tables = None
    for split in sorted(os.listdir(eval_root)) if os.path.isdir(eval_root) else []:
        d = os.path.join(eval_root, split)
        if not os.path.isfile(os.path.join(d, "pr_curve.csv")):
            continue
        pr = read_csv_rows(os.path.join(d, "pr_curve.csv"))
        ap = load_run_json(os.path.join(d, METRICS))["ap50"]
        p_, r_ = (np.array([float(r[k]) for r in pr]) for k in ("precision", "recall"))
        figures[f"Precision-recall ({split})"] = (f"pr_curve_{split}", lambda p_=p_, r_=r_, ap=ap, s=split:
                                                  plots.detection_pr_curve(p_, r_, ap, f"Face detection ({s})"))
        if split not in ("train", "val", "test"):  # scored on other data: its boxes are not at hand here
            continue
        tables = tables or load_detection_data(cfg)
        table = tables.get(split)
        if table is None:
            continue
        rows = read_csv_rows(os.path.join(d, "detections.csv"))
        gt = dict(zip(table.sources, table.boxes))
        sources = list(dict.fromkeys(table.sources))[:6]
        imgs, preds, truths = [], [], []
        for src in sources:
            img = load_image_file(src)
            if img is None:
                continue
            if img.ndim == 2:
                img = np.stack([img] * 3, -1)
            p = np.array([[float(r[k]) for k in ("x1", "y1", "x2", "y2", "score")] for r in rows
                          if r["source"] == src], np.float32).reshape(-1, 5)
            imgs.append(img), preds.append(p[p[:, 4] >= cfg.detection.min_score]), truths.append(gt[src])
        if imgs:
            figures[f"Sample detections ({split})"] = (
                f"detections_{split}", lambda i=imgs, p=preds, t=truths, s=split: plots.detection_samples(
                    i, p, t, f"Detections with score >= {cfg.detection.min_score} ({s}; green: ground truth)"))
    return figures
