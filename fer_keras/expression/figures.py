"""The figures of an expression run's report (the expression task's `figures`): learning curves, class
distributions, confusion matrices, per-class bars, ROC/PR, valence/arousal plots and sample grids, drawn by the pure
functions of `fer_keras.plots` from the run's files; the HTML shell around them is `fer_keras.report`."""

from __future__ import annotations

import os
from typing import Dict, List

import numpy as np

from fer_keras import plots
from fer_keras.labels import map_name, preset_classes
from fer_keras.report import load_image_file, load_run_json, read_csv_rows, read_history
from fer_keras.run_dir import DATA_SUMMARY, METRICS, RUNTIME, RunDir


def _grid_samples(rows: List[dict], correct: bool, n: int = 12):
    sel = [r for r in rows if (r["true"] == r["pred"]) == correct]
    sel.sort(key=lambda r: -float(r["confidence"]))
    images, titles = [], []
    for r in sel:
        if len(images) >= n:
            break
        img = load_image_file(r["source"]) if os.path.isfile(r["source"]) else None
        if img is None:
            continue
        images.append(img)
        titles.append(f"{r['true']} → {r['pred']}\n({float(r['confidence']):.2f})")
    return images, titles


def expression_figures(run: RunDir) -> Dict[str, tuple]:
    """{title: (file stem, figure function)} of an expression run, from the files the run has."""
    figures = {}
    hist_path = run.history_path
    if os.path.isfile(hist_path):
        rt = run.read_json(RUNTIME, {})
        figures["Learning curves"] = ("learning_curves", lambda: plots.learning_curves(
            read_history(hist_path), rt.get("monitor"), "max"))
    summary_path = run.file(DATA_SUMMARY)
    if os.path.isfile(summary_path):
        summary = load_run_json(summary_path)
        counts = {s: v["class_counts"] for s, v in summary["splits"].items()}
        figures["Class distribution"] = ("class_distribution", lambda: plots.class_distribution(
            counts, f"Class distribution ({len(summary['class_names'])}-class preset)"))
        if len(summary["class_names"]) >= 7:  # the merged presets of 7/8-class data
            for preset in ("5", "4", "2"):
                merged = {}
                for s, c in counts.items():
                    m = {n: 0 for n in preset_classes(preset)}
                    for name, k in c.items():
                        j = map_name(name, preset)
                        if j is not None:
                            m[preset_classes(preset)[j]] += k
                    merged[s] = m
                figures[f"Class distribution ({preset}-class preset)"] = (
                    f"class_distribution_{preset}", lambda merged=merged, p=preset: plots.class_distribution(
                        merged, f"Class distribution, merged to the {p}-class preset"))
    metrics_path, pred_path = run.file(METRICS), run.file("predictions.csv")
    if os.path.isfile(metrics_path) and os.path.isfile(pred_path):
        m = load_run_json(metrics_path)
        names = m["info"]["class_names"]
        e = m["expression"]
        rows = read_csv_rows(pred_path)
        y = np.array([names.index(r["true"]) for r in rows])
        probs = np.array([[float(r[f"p_{c}"]) for c in names] for r in rows])
        va_t = np.array([[float(r[k]) if r[k] else np.nan for k in ("valence_true", "arousal_true")] for r in rows])
        va_p = np.array([[float(r[k]) if r[k] else np.nan for k in ("valence_pred", "arousal_pred")] for r in rows])
        cm = np.array(e["confusion_matrix"])
        figures["Confusion matrix (counts)"] = ("confusion_counts", lambda: plots.confusion_matrix_figure(cm, names))
        figures["Confusion matrix (row-normalized)"] = ("confusion_normalized",
                                                        lambda: plots.confusion_matrix_figure(cm, names, True))
        figures["Per-class precision/recall/F1"] = ("per_class", lambda: plots.per_class_bars(e["per_class"]))
        figures["ROC and precision-recall"] = ("roc_pr", lambda: plots.roc_pr_curves(y, probs, names))
        if (np.isfinite(va_t).all(axis=1) & np.isfinite(va_p).all(axis=1)).any():  # labels and a trained head
            figures["Valence/arousal: predicted vs true"] = ("va_scatter", lambda: plots.va_scatter(va_t, va_p))
            figures["Valence-arousal circumplex"] = ("circumplex", lambda: plots.circumplex(va_t, va_p, y, names))
        for correct, title in ((True, "Most confident correct predictions"),
                               (False, "Most confident incorrect predictions")):
            imgs, titles = _grid_samples(rows, correct)
            if imgs:
                figures[title] = (f"samples_{'correct' if correct else 'incorrect'}",
                                  lambda i=imgs, t=titles, tt=title: plots.sample_grid(i, t, tt))
    return figures
