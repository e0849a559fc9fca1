"""Writing a detection evaluation: metrics.json, pr_curve.csv and detections.csv of one split or dataset."""

from __future__ import annotations

import csv
import json
import os

import numpy as np

from fer_keras.detection import metrics as M
from fer_keras.detection.data import DetTable
from fer_keras.io_utils import atomic_path, atomic_write_text
from fer_keras.run_dir import METRICS


def write_eval(out_dir: str, table: DetTable, dets, gts, scales) -> dict:
    """Writes metrics.json, pr_curve.csv and detections.csv (original image coordinates); returns the metrics."""
    os.makedirs(out_dir, exist_ok=True)
    m = M.detection_metrics(dets, gts)
    pr = M.precision_recall(dets, gts, 0.5)
    atomic_write_text(os.path.join(out_dir, METRICS), json.dumps(m, indent=2))
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
