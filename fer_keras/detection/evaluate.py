"""Evaluating detection runs (the detection task's `evaluate`): a split or other data scored, and metrics.json,
pr_curve.csv and detections.csv written."""

from __future__ import annotations

import csv
import json
import os
from typing import Optional, Tuple

import numpy as np

from fer_keras.detection import metrics as M
from fer_keras.architectures import architecture_of
from fer_keras.detection.data import DetTable, load_detection_data, read_detection
from fer_keras.errors import ConfigError
from fer_keras.io_utils import atomic_path, atomic_write_text, slug
from fer_keras.run_dir import METRICS, RunDir
from fer_keras.tasks import EvaluateOptions


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


def evaluate_detector_run(path: str, split: str = "val", data: Optional[str] = None) -> dict:
    """Scores a detection run's best model on a split of its data (or on `data`, a DARK FACE folder / WIDER txt);
    writes `eval/<split or data name>/` and returns (that folder, metrics)."""

    run = RunDir.open(path)
    cfg = run.config()
    if data:
        table, name = read_detection(data, cfg.data.skip_bad, cfg.data.image_root), slug_name(data)
    else:
        table, name = load_detection_data(cfg).get(split), split
        if table is None or not len(table):
            raise ConfigError(f"{path}: its data has no {split!r} split; pass --data")
    out = run.file(os.path.join("eval", name))
    return out, write_eval(out, table, *architecture_of(cfg).fn("evaluate")(run, cfg, table))


def evaluate_detection_run(run: RunDir, opts: EvaluateOptions) -> Tuple[str, dict]:
    """Scores a face-detection run (the detection task's `evaluate`) on `opts.split` of its data (`test` means its
    `val`, detection data has no test split) or on `opts.data`; returns (output folder, metrics) and, with
    `opts.verbose`, prints AP and recall."""
    split = "val" if opts.split == "test" and opts.data is None else opts.split
    out, m = evaluate_detector_run(run.path, split, opts.data)
    if opts.verbose:
        print(f"AP@0.5 {m['ap50']:.4f} | AP@0.5:0.95 {m['ap50_95']:.4f} | recall at 0.1/0.5/1 FP per image "
              f"{m['recall@0.1fppi']:.3f}/{m['recall@0.5fppi']:.3f}/{m['recall@1fppi']:.3f} | "
              f"{m['images']} images, {m['faces']} faces")
        print(f"wrote {out}/metrics.json, pr_curve.csv, detections.csv")
    return out, m


def slug_name(path: str) -> str:

    return slug(os.path.splitext(os.path.basename(os.path.normpath(path)))[0])
