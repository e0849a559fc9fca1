"""`python visualize_results.py`: plots and an HTML report from run directories (never retrains)."""

from __future__ import annotations

import argparse
import base64
import csv
import html
import json
import os
from typing import Dict, List

import numpy as np

from fer_keras.errors import ConfigError, DataError, cli_main
from fer_keras.io_utils import atomic_path, atomic_write_text


def _read_csv(path: str) -> List[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _history(path: str) -> Dict[str, np.ndarray]:
    rows = _read_csv(path)
    if not rows:
        return {}
    out = {}
    for k in rows[0]:
        try:
            out[k] = np.array([float(r[k]) if r[k] not in ("", None) else np.nan for r in rows])
        except ValueError:
            continue
    return out


def _load_image(path: str):
    import cv2

    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        return None
    if img.ndim == 3:
        img = cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2RGB)
    return img


def _grid_samples(rows: List[dict], correct: bool, n: int = 12):
    sel = [r for r in rows if (r["true"] == r["pred"]) == correct]
    sel.sort(key=lambda r: -float(r["confidence"]))
    images, titles = [], []
    for r in sel:
        if len(images) >= n:
            break
        img = _load_image(r["source"]) if os.path.isfile(r["source"]) else None
        if img is None:
            continue
        images.append(img)
        titles.append(f"{r['true']} → {r['pred']}\n({float(r['confidence']):.2f})")
    return images, titles


def render_run(run: str) -> Dict[str, str]:
    """Writes `run/plots/*.png` from the run's files and returns {title: png path}."""
    from fer_keras import plots
    from fer_keras.labels import map_name, preset_classes

    if not os.path.isfile(os.path.join(run, "config.yaml")):
        raise ConfigError(f"{run}: not a run directory (no config.yaml)")
    out_dir = os.path.join(run, "plots")
    os.makedirs(out_dir, exist_ok=True)
    from fer_keras.cli_evaluate import run_task

    if run_task(run) == "detection":
        return _save_figures(_detection_figures(run), out_dir)
    figures = {}
    hist_path = os.path.join(run, "history.csv")
    if os.path.isfile(hist_path):
        rt = json.load(open(os.path.join(run, "runtime.json"))) if os.path.isfile(
            os.path.join(run, "runtime.json")) else {}
        figures["Learning curves"] = ("learning_curves", lambda: plots.learning_curves(
            _history(hist_path), rt.get("monitor"), "max"))
    summary_path = os.path.join(run, "data_summary.json")
    if os.path.isfile(summary_path):
        summary = json.load(open(summary_path))
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
    metrics_path, pred_path = os.path.join(run, "metrics.json"), os.path.join(run, "predictions.csv")
    if os.path.isfile(metrics_path) and os.path.isfile(pred_path):
        m = json.load(open(metrics_path))
        names = m["info"]["class_names"]
        e = m["expression"]
        rows = _read_csv(pred_path)
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
    return _save_figures(figures, out_dir)


def _detection_figures(run: str) -> Dict[str, tuple]:
    """Learning curves, the PR curve of each evaluated split and sample detections of a detection run."""
    from fer_keras import plots
    from fer_keras.config import config_from_dict, read_yaml
    from fer_keras.detection.train import load_detection_data

    figures = {}
    hist_path = os.path.join(run, "history.csv")
    if os.path.isfile(hist_path):
        figures["Learning curves"] = ("learning_curves", lambda: plots.learning_curves(
            _history(hist_path), "val_ap50", "max"))
    eval_root = os.path.join(run, "eval")
    cfg = config_from_dict(read_yaml(os.path.join(run, "config.yaml")), source=run)
    tables = None
    for split in sorted(os.listdir(eval_root)) if os.path.isdir(eval_root) else []:
        d = os.path.join(eval_root, split)
        if not os.path.isfile(os.path.join(d, "pr_curve.csv")):
            continue
        pr = _read_csv(os.path.join(d, "pr_curve.csv"))
        ap = json.load(open(os.path.join(d, "metrics.json")))["ap50"]
        p_, r_ = (np.array([float(r[k]) for r in pr]) for k in ("precision", "recall"))
        figures[f"Precision-recall ({split})"] = (f"pr_curve_{split}", lambda p_=p_, r_=r_, ap=ap, s=split:
                                                  plots.detection_pr_curve(p_, r_, ap, f"Face detection ({s})"))
        if split not in ("train", "val", "test"):  # scored on other data: its boxes are not at hand here
            continue
        tables = tables or load_detection_data(cfg)
        table = tables.get(split)
        if table is None:
            continue
        rows = _read_csv(os.path.join(d, "detections.csv"))
        gt = dict(zip(table.sources, table.boxes))
        sources = list(dict.fromkeys(table.sources))[:6]
        imgs, preds, truths = [], [], []
        for src in sources:
            img = _load_image(src)
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


def _save_figures(figures: Dict[str, tuple], out_dir: str) -> Dict[str, str]:
    written = {}
    import matplotlib.pyplot as plt

    for title, (stem, make) in figures.items():
        fig = make()
        path = os.path.join(out_dir, f"{stem}.png")
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        plt.close(fig)
        written[title] = path
    return written


def html_report(title: str, sections: Dict[str, str], tables_md: List[str] = ()) -> str:
    """A self-contained HTML page: every PNG is embedded as base64."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}"
             "img{max-width:100%;border:1px solid #ddd}pre{background:#f6f6f6;padding:1em;overflow:auto}"
             "</style></head><body>", f"<h1>{html.escape(title)}</h1>"]
    for md in tables_md:
        parts.append(f"<pre>{html.escape(md)}</pre>")
    for name, path in sections.items():
        with open(path, "rb") as f:
            b64 = base64.b64encode(f.read()).decode()
        parts.append(f"<h2>{html.escape(name)}</h2><img alt='{html.escape(name)}' src='data:image/png;base64,{b64}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def render_comparison(runs: List[str], out: str) -> str:
    from fer_keras import plots

    keys = ("accuracy", "uar", "macro_f1", "kappa")
    metrics = {k: [] for k in keys + ("valence_ccc", "arousal_ccc")}
    for r in runs:
        path = os.path.join(r, "metrics.json")
        if not os.path.isfile(path):
            raise DataError(f"{r}: no metrics.json; run evaluate_model.py --run {r} first")
        m = json.load(open(path))
        for k in keys:
            metrics[k].append(m["expression"][k])
        for d in ("valence", "arousal"):
            v = m["valence_arousal"].get(d)
            metrics[f"{d}_ccc"].append(v["ccc"] if v else None)
    os.makedirs(out, exist_ok=True)
    fig = plots.compare_bars([os.path.basename(os.path.normpath(r)) for r in runs], metrics)
    path = os.path.join(out, "compare.png")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return path


@cli_main
def main(argv=None):
    p = argparse.ArgumentParser(prog="visualize_results.py", description=__doc__)
    p.add_argument("--run", help="run directory (default: the newest under --runs-dir)")
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--compare", nargs="+", metavar="RUN", help="also plot the main metrics of several runs")
    p.add_argument("--out", help="with --compare: output folder (default: the first run's plots/)")
    a = p.parse_args(argv)
    run = a.run
    if run is None and not a.compare:
        from fer_keras.io_utils import newest_run

        run = newest_run(a.runs_dir)
        if run is None:
            raise ConfigError(f"no run found under {a.runs_dir}; pass --run")
    sections, tables = {}, []
    if run:
        sections.update(render_run(run))
        md = os.path.join(run, "metrics.md")
        if os.path.isfile(md):
            tables.append(open(md).read())
        else:
            print(f"note: {run} has no metrics.json yet; run evaluate_model.py --run {run} for evaluation plots")
    if a.compare:
        out = a.out or os.path.join(run or a.compare[0], "plots")
        sections["Model comparison"] = render_comparison(a.compare, out)
    target = run or a.out or a.compare[0]
    report = os.path.join(target, "report.html")
    atomic_write_text(report, html_report(f"fer_keras report: {os.path.basename(os.path.normpath(target))}",
                                          sections, tables))
    for name, path in sections.items():
        print(f"{name}: {path}")
    print(f"report: {report}")
    return report
