"""The HTML report and the plots of run directories (`visualize_results.py` renders them; nothing is retrained).

Each figure comes from a pure plotting function in `fer_keras.plots` (arrays in, figure out); this module reads
a run's files, calls them, saves `run/plots/*.png` and gathers them with the metric tables in `report.html`.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from fer_keras import plots
from fer_keras.errors import ConfigError, DataError, reading
from fer_keras.io_utils import atomic_path, atomic_write_text
from fer_keras.metrics import compare_columns, summary_metrics
from fer_keras.run_dir import METRICS, PLOTS, RunDir, newest_run, run_task


def load_run_json(path: str):
    """A run file's JSON; a truncated or hand-broken file is one error naming it."""
    with reading(path, "not valid JSON (rerun the command that writes it)"), open(path, encoding="utf-8") as f:
        return json.load(f)


def read_csv_rows(path: str) -> List[dict]:
    """A run's CSV file as one dict per row."""
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def read_history(path: str) -> Dict[str, np.ndarray]:
    """A run's history.csv as one float array per column (empty when it has no rows)."""
    rows = read_csv_rows(path)
    if not rows:
        return {}
    out = {}
    for k in rows[0]:
        try:
            out[k] = np.array([float(r[k]) if r[k] not in ("", None) else np.nan for r in rows])
        except ValueError:
            continue
    return out


def load_image_file(path: str):
    """An image file for a figure (OpenCV decoding, RGB), or None when it cannot be read."""
    import cv2

    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        return None
    if img.ndim == 3:
        img = cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2RGB)
    return img


def render_run(path: str) -> Dict[str, str]:
    """Writes `<run>/plots/*.png` from the files of the run at `path` and returns {title: png path}."""
    run = RunDir.open(path)
    out_dir = run.file(PLOTS)
    os.makedirs(out_dir, exist_ok=True)
    return _save_figures(run_task(path).fn("figures")(run), out_dir)


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


_CSS = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:auto;padding:1em 1.5em;color:#222}"
        "h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ddd}"
        ".card{display:flex;flex-wrap:wrap;gap:.8em;margin:1em 0}.kpi{background:#f4f6fa;border-radius:8px;"
        "padding:.6em 1em;min-width:9em}.kpi b{display:block;font-size:1.5em}.kpi span{color:#555;font-size:.85em}"
        ".meta{color:#555}table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;"
        "padding:.25em .6em;text-align:right}th{background:#f4f6fa}td:first-child,th:first-child{text-align:left}"
        "img{max-width:100%;border:1px solid #eee}")


def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return html.escape(str(v))


def _table(header: List[str], rows: List[List]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def headline(metrics: dict, run_name: str, model_name: str = "") -> str:
    """The report's first block: what was evaluated and its main numbers (with 95% CIs when bootstrapped)."""
    info, e = metrics["info"], metrics["expression"]
    va = metrics.get("valence_arousal") or {}
    ci = metrics.get("bootstrap_95ci") or {}

    def kpi(label, value, key=None):
        c = ci.get(key) if key else None
        extra = f"<span>95% CI {c[0]:.3f}–{c[1]:.3f}</span>" if c else ""
        return f"<div class='kpi'><span>{html.escape(label)}</span><b>{_fmt(value)}</b>{extra}</div>"

    cards = [kpi(m.label, e.get(m.key), m.key) for m in summary_metrics("expression") if m.headline]
    for m in summary_metrics("valence_arousal"):
        if not m.headline:
            continue
        for d in ("valence", "arousal"):
            v = va.get(d) if isinstance(va, dict) else None
            why = "head not trained" if va == "unavailable" else "no labels"
            cards.append(kpi(f"{d} {m.label}", v[m.key], f"{d}_{m.key}") if v else
                         f"<div class='kpi'><span>{d} {m.label}</span><b>–</b><span>{why}</span></div>")
    # dataset names, not machine paths; a multi-source run: the sources this split has samples of, by name
    data = info.get("data_name") or " + ".join(metrics.get("per_source") or [
        os.path.basename(os.path.normpath(part)) for part in str(info.get("data") or "demo data").split(" + ")])
    meta = (f"model <b>{html.escape(model_name or os.path.basename(str(info.get('model', ''))))}</b> · data "
            f"<b>{html.escape(data)}</b> ({html.escape(str(info.get('format', '')))}), split "
            f"<b>{html.escape(str(info.get('split')))}</b>, n = <b>{e['num_samples']:,}</b>, "
            f"{len(info['class_names'])} classes (preset {html.escape(str(info.get('preset')))})"
            + (f", TTA {html.escape(info['tta'])}" if info.get("tta") not in (None, "none") else "")
            + (f", calibration {html.escape(str(info['calibration'].get('method')))}"
               + (f" (tau {info['calibration']['tau']:g})" if info["calibration"].get("tau") is not None else "")
               if info.get("calibration") else ""))
    note = f"<p class='meta'>{html.escape(info['note'])}</p>" if info.get("note") else ""
    return f"<p class='meta'>{meta}</p><div class='card'>{''.join(cards)}</div>{note}"


def metric_tables(metrics: dict) -> List[Tuple[str, str]]:
    """(title, HTML table) for the overall metrics, each class and each source (multi-source runs)."""
    e = metrics["expression"]
    out = [("Metrics", _table(["metric", "value"], [[m.label, e[m.key]] for m in summary_metrics("expression")
                                                     if m.key in e]))]
    scopes = metrics.get("classes")
    if scopes:  # the data lacks some of the model's classes: both accuracies, the headline named
        out.append(("Over which classes", _table(["argmax over", "accuracy", "UAR"], [
            [f"all {len(metrics['info']['class_names'])} classes (model)" + (" ← headline" if scopes["headline"] ==
                                                                             "model" else ""),
             scopes["model"]["accuracy"], scopes["model"]["uar"]],
            [f"the {len(scopes['data_classes'])} classes the data has (data)"
             + (" ← headline" if scopes["headline"] == "data" else ""),
             scopes["data"]["accuracy"], scopes["data"]["uar"]]])))
    pc = e.get("per_class") or {}
    out.append(("Per class", _table(["class", "precision", "recall", "F1", "support", "ROC AUC"], [
        [c, v.get("precision"), v.get("recall"), v.get("f1"), v.get("support"), v.get("roc_auc")]
        for c, v in pc.items()])))
    va = metrics.get("valence_arousal")
    if isinstance(va, dict) and (va.get("valence") or va.get("arousal")):
        specs = summary_metrics("valence_arousal")
        out.append(("Valence and arousal", _table(["dimension"] + [m.label for m in specs], [
            [d] + [v.get(m.key) for m in specs] for d, v in ((d, va.get(d)) for d in ("valence", "arousal")) if v])))
    ps = metrics.get("per_source") or {}
    if ps:
        rows = []
        for name, m in ps.items():
            pva = m.get("valence_arousal") or {}
            rows.append([name, m["expression"]["num_samples"], m["expression"]["accuracy"], m["expression"]["uar"],
                         (pva.get("valence") or {}).get("ccc") if isinstance(pva, dict) else None,
                         (pva.get("arousal") or {}).get("ccc") if isinstance(pva, dict) else None])
        out.append(("Per source", _table(["source", "n", "accuracy", "UAR", "valence CCC", "arousal CCC"], rows)))
    return out


# Plots in order of importance; anything else (class distributions) comes last.
_PLOT_ORDER = ("Confusion matrix (row-normalized)", "Confusion matrix (counts)", "Per-class precision/recall/F1",
               "Valence/arousal: predicted vs true", "Valence-arousal circumplex", "ROC and precision-recall",
               "Learning curves", "Most confident correct predictions", "Most confident incorrect predictions")


def html_report(title: str, sections: Dict[str, str], metrics: Optional[dict] = None, model_name: str = "") -> str:
    """A self-contained HTML page: a headline card and metric tables (when `metrics`, the run's metrics.json, is
    given), then the plots in order of importance, every PNG embedded as base64."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{_CSS}</style></head><body>", f"<h1>{html.escape(title)}</h1>"]
    if metrics:
        parts.append(headline(metrics, title, model_name))
    order = [k for k in _PLOT_ORDER if k in sections] + [k for k in sections if k not in _PLOT_ORDER]
    tables = metric_tables(metrics) if metrics else []
    for i, name in enumerate(order):
        if i == 2 and tables:  # the metric tables right after the confusion matrices
            parts += [f"<h2>{html.escape(t)}</h2>{tab}" for t, tab in tables]
            tables = []
        with open(sections[name], "rb") as f:
            b64 = base64.b64encode(f.read()).decode()
        parts.append(f"<h2>{html.escape(name)}</h2><img alt='{html.escape(name)}' src='data:image/png;base64,{b64}'>")
    parts += [f"<h2>{html.escape(t)}</h2>{tab}" for t, tab in tables]
    parts.append("</body></html>")
    return "\n".join(parts)


def render_comparison(runs: List[str], out: str) -> str:

    metrics: Dict[str, list] = {}
    for r in runs:
        path = os.path.join(r, METRICS)
        if not os.path.isfile(path):
            raise DataError(f"{r}: no metrics.json; run evaluate_model.py --run {r} first")
        for k, v in compare_columns(load_run_json(path)).items():
            metrics.setdefault(k, []).append(v)
    os.makedirs(out, exist_ok=True)
    fig = plots.compare_bars([os.path.basename(os.path.normpath(r)) for r in runs], metrics)
    path = os.path.join(out, "compare.png")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return path


def write_report(run: Optional[str] = None, compare: Sequence[str] = (), out: Optional[str] = None,
                 runs_dir: str = "runs") -> Tuple[str, Dict[str, str]]:
    """Plots of a run (default: the newest under `runs_dir`) and/or a comparison of runs, gathered in one
    `report.html` in the run folder (or `out`); returns (report path, {section title: png path})."""
    if run is None and not compare:
        run = newest_run(runs_dir)
        if run is None:
            raise ConfigError(f"no run found under {runs_dir}; pass --run")
    sections, metrics, model_name = {}, None, ""
    if run:
        sections.update(render_run(run))
        metrics = RunDir(run).read_json(METRICS)
        if metrics is None:
            print(f"note: {run} has no metrics.json yet; run evaluate_model.py --run {run} for evaluation plots")
        else:
            if not isinstance(metrics, dict) or "expression" not in metrics:  # a detection run: AP, no card
                metrics = None
            model_name = RunDir(run).config().model.name
    if compare:
        sections["Model comparison"] = render_comparison(list(compare), out or os.path.join(run or compare[0],
                                                                                          PLOTS))
    target = run or out or compare[0]
    report = os.path.join(target, "report.html")
    atomic_write_text(report, html_report(f"fer_keras report: {os.path.basename(os.path.normpath(target))}",
                                          sections, metrics, model_name))
    return report, sections
