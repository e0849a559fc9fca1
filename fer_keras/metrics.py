"""Affect metrics as pure NumPy functions (arrays in, numbers out).

Expression: accuracy (WAR), UAR, macro/weighted F1, Cohen's kappa, one-vs-rest ROC-AUC and average precision,
per-class precision/recall/F1, confusion matrix, top-k accuracy. Valence/arousal: RMSE, Pearson r, SAGR and CCC
(population variances, as in the AffectNet and EmoNet papers). Tests cross-check each against scikit-learn/SciPy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np


# === Expression ===

def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts, rows = true class, columns = predicted class."""
    y_true, y_pred = np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)
    return np.bincount(y_true * num_classes + y_pred, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def _safe_div(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.divide(a, b, out=np.zeros_like(a), where=b > 0)


def per_class_prf(cm: np.ndarray) -> Dict[str, np.ndarray]:
    """Precision, recall, F1 and support per class from a confusion matrix (0 where undefined, like sklearn's
    zero_division=0)."""
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision = _safe_div(tp, predicted)
    recall = _safe_div(tp, support)
    f1 = _safe_div(2 * precision * recall, precision + recall)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def cohen_kappa(cm: np.ndarray) -> float:
    n = cm.sum()
    if n == 0:
        return 0.0
    po = np.trace(cm) / n
    pe = float((cm.sum(0) * cm.sum(1)).sum()) / n ** 2
    return float((po - pe) / (1 - pe)) if pe < 1 else 0.0


def top_k_accuracy(y_true: np.ndarray, probs: np.ndarray, k: int = 2) -> float:
    if len(y_true) == 0:
        return float("nan")
    top = np.argsort(-probs, axis=1)[:, :k]
    return float(np.mean(np.any(top == np.asarray(y_true)[:, None], axis=1)))


def roc_auc_binary(y: np.ndarray, score: np.ndarray) -> float:
    """ROC-AUC of binary labels `y` (0/1) and scores, with ties counted half (Mann-Whitney U); NaN if one class."""
    y = np.asarray(y, bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    from scipy.stats import rankdata

    ranks = rankdata(score)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision_binary(y: np.ndarray, score: np.ndarray) -> float:
    """Average precision (area under the step PR curve, as sklearn defines it); NaN without positives."""
    y = np.asarray(y, bool)
    if y.sum() == 0:
        return float("nan")
    order = np.argsort(-score, kind="mergesort")
    s, yy = np.asarray(score)[order], y[order]
    # thresholds at distinct scores
    distinct = np.where(np.diff(s))[0]
    idx = np.r_[distinct, len(s) - 1]
    tps = np.cumsum(yy)[idx]
    fps = (idx + 1) - tps
    precision = tps / (tps + fps)
    recall = tps / y.sum()
    recall_prev = np.r_[0.0, recall[:-1]]
    return float(np.sum((recall - recall_prev) * precision))


def expression_metrics(y_true: np.ndarray, probs: np.ndarray, class_names: Sequence[str]) -> dict:
    """All expression metrics.

    Args:
        y_true: (N,) int labels in 0..K-1.
        probs: (N, K) class probabilities.
        class_names: K names, for the per-class entries.

    Returns:
        dict with every expression metric of `SUMMARY_METRICS` (accuracy, uar, macro_f1, ...), confusion_matrix
        (list of lists), per_class {name: {precision, recall, f1, support, roc_auc, ap}}, classes_absent (names with
        no test samples; excluded from UAR and the macro averages), num_samples.
    """
    y_true = np.asarray(y_true, np.int64)
    probs = np.asarray(probs, np.float64)
    k = len(class_names)
    cm = confusion_matrix(y_true, _argmax(probs), k)
    prf = per_class_prf(cm)
    present = prf["support"] > 0
    aucs = np.array([roc_auc_binary(y_true == c, probs[:, c]) for c in range(k)])
    aps = np.array([average_precision_binary(y_true == c, probs[:, c]) for c in range(k)])
    per_class = {
        name: {"precision": float(prf["precision"][c]), "recall": float(prf["recall"][c]),
               "f1": float(prf["f1"][c]), "support": int(prf["support"][c]),
               "roc_auc": _nan_to_none(aucs[c]), "ap": _nan_to_none(aps[c])}
        for c, name in enumerate(class_names)}
    return {
        "num_samples": int(len(y_true)),
        **{m.key: m.fn(y_true, probs) for m in summary_metrics("expression")},
        "confusion_matrix": cm.tolist(),
        "per_class": per_class,
        "classes_absent": [class_names[c] for c in range(k) if not present[c]],
    }


# === Valence / arousal ===

def ccc(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Concordance correlation coefficient with population (1/N) variances; 0 (not NaN) when undefined."""
    t, p = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
    if len(t) == 0:
        return float("nan")
    mt, mp = t.mean(), p.mean()
    vt, vp = t.var(), p.var()
    cov = np.mean((t - mt) * (p - mp))
    denom = vt + vp + (mt - mp) ** 2
    return float(2 * cov / denom) if denom > 0 else 0.0


def pearson(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Pearson correlation; 0 when either side is constant (instead of NaN)."""
    t, p = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
    if len(t) < 2:
        return float("nan")
    st, sp = t.std(), p.std()
    if st == 0 or sp == 0:
        return 0.0
    return float(np.mean((t - t.mean()) * (p - p.mean())) / (st * sp))


def sagr(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Sign agreement: fraction of samples where sign(pred) == sign(true) (0 counts as positive, as in AffectNet)."""
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if len(t) == 0:
        return float("nan")
    return float(np.mean((t >= 0) == (p >= 0)))


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    t, p = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
    return float(np.sqrt(np.mean((t - p) ** 2))) if len(t) else float("nan")


def va_metrics(va_true: np.ndarray, va_pred: np.ndarray) -> dict:
    """RMSE, Pearson, SAGR and CCC for valence and arousal over the samples that have both labels.

    Args:
        va_true: (N, 2) with NaN where unlabelled.
        va_pred: (N, 2) predictions.
    """
    va_true, va_pred = np.asarray(va_true, np.float64), np.asarray(va_pred, np.float64)
    mask = np.isfinite(va_true).all(axis=1) if len(va_true) else np.zeros(0, bool)
    out = {"num_labelled": int(mask.sum()), "num_unlabelled": int((~mask).sum())}
    for j, name in enumerate(("valence", "arousal")):
        t, p = va_true[mask, j], va_pred[mask, j]
        out[name] = {m.key: m.fn(t, p) for m in summary_metrics("valence_arousal")} if mask.any() else None
    return out


# === The summary-metric table ===
# The only list of the summary metrics: evaluation (metrics.json, metrics.md, bootstrap CIs), the console table, the
# HTML report, comparison tables and bars all read it. Adding a metric is one `@summary_metric` row on its function.

@dataclass(frozen=True)
class MetricSpec:
    """One summary metric and how every table shows it.

    Attributes:
        key: its key in metrics.json (`expression.<key>`, or `valence_arousal.<dimension>.<key>`).
        label: its name in human tables.
        fn: expression metrics take (y_true (N,), probs (N, K)); valence/arousal metrics take (true (N,), pred (N,))
            of one dimension. Returns a float, or None where undefined.
        task: "expression" or "valence_arousal".
        percent: shown x100 with a % sign.
        higher_is_better: for comparisons and plots.
        ci: evaluate reports its bootstrap 95% interval.
        compare: a column of comparison tables and bar charts.
        headline: a card at the top of the HTML report and a part of README's one-line result.
        short: its name in one-line summaries (README), when shorter than `label`.
    """

    key: str
    label: str
    fn: Callable
    task: str = "expression"
    percent: bool = False
    higher_is_better: bool = True
    ci: bool = False
    compare: bool = False
    headline: bool = False
    short: str = ""


SUMMARY_METRICS: Dict[str, MetricSpec] = {}


def summary_metric(key: str, label: str, task: str = "expression", **options) -> Callable:
    """Decorator that registers `fn` as a summary metric (see `MetricSpec` for the options)."""

    def deco(fn: Callable) -> Callable:
        name = f"{task}.{key}"
        if name in SUMMARY_METRICS:
            raise ValueError(f"summary metric {name!r} is already registered")
        SUMMARY_METRICS[name] = MetricSpec(key, label, fn, task, **options)
        return fn

    return deco


def summary_metrics(task: str) -> List[MetricSpec]:
    """The summary metrics of `task` ("expression" or "valence_arousal"), in display order."""
    return [m for m in SUMMARY_METRICS.values() if m.task == task]


def compare_columns(result: dict) -> Dict[str, Optional[float]]:
    """{column: value} of the `compare` summary metrics of one metrics.json result: the expression metrics by key,
    then `valence_<key>` / `arousal_<key>` (None where a dimension has no labels or no trained head)."""
    e, va = result["expression"], result.get("valence_arousal")
    va = va if isinstance(va, dict) else {}
    cols = {m.key: e.get(m.key) for m in summary_metrics("expression") if m.compare}
    for m in summary_metrics("valence_arousal"):
        if m.compare:
            for d in ("valence", "arousal"):
                cols[f"{d}_{m.key}"] = va[d][m.key] if va.get(d) else None
    return cols


def _argmax(probs: np.ndarray) -> np.ndarray:
    return probs.argmax(axis=1) if len(probs) else np.zeros(0, np.int64)


def _prf(y_true, probs):
    cm = confusion_matrix(y_true, _argmax(probs), probs.shape[1])
    prf = per_class_prf(cm)
    return cm, prf, prf["support"] > 0


@summary_metric("accuracy", "accuracy (WAR)", percent=True, ci=True, compare=True, headline=True, short="accuracy")
def _accuracy(y_true, probs):
    return float(np.mean(y_true == _argmax(probs))) if len(y_true) else float("nan")


@summary_metric("uar", "UAR", percent=True, ci=True, compare=True, headline=True)
def _uar(y_true, probs):
    # Macro averages are over the classes present in the test set (as sklearn does with labels=present classes).
    _, prf, present = _prf(y_true, probs)
    return float(prf["recall"][present].mean()) if present.any() else float("nan")


@summary_metric("macro_f1", "macro F1", percent=True, compare=True, headline=True)
def _macro_f1(y_true, probs):
    _, prf, present = _prf(y_true, probs)
    return float(prf["f1"][present].mean()) if present.any() else float("nan")


@summary_metric("weighted_f1", "weighted F1", percent=True)
def _weighted_f1(y_true, probs):
    _, prf, _ = _prf(y_true, probs)
    return float((prf["f1"] * prf["support"] / max(len(y_true), 1)).sum())


@summary_metric("kappa", "Cohen's kappa", compare=True, headline=True, short="κ")
def _kappa(y_true, probs):
    return cohen_kappa(_prf(y_true, probs)[0])


@summary_metric("mcc", "Matthews correlation (MCC)", compare=True)
def matthews_corrcoef(y_true, probs) -> float:
    """Multi-class Matthews correlation coefficient (Gorodkin's R_K, as sklearn); 0 when undefined."""
    cm = _prf(y_true, probs)[0].astype(np.float64)
    t, p, c, s = cm.sum(axis=1), cm.sum(axis=0), np.trace(cm), cm.sum()
    denom = np.sqrt((s * s - p @ p) * (s * s - t @ t))
    return float((c * s - t @ p) / denom) if denom > 0 else 0.0


@summary_metric("top2_accuracy", "top-2 accuracy", percent=True)
def _top2_accuracy(y_true, probs):
    return top_k_accuracy(y_true, probs, 2) if probs.shape[1] > 2 else None


@summary_metric("roc_auc_macro", "ROC-AUC (macro, one-vs-rest)", compare=True)
def _roc_auc_macro(y_true, probs):
    return _nanmean([roc_auc_binary(y_true == c, probs[:, c]) for c in range(probs.shape[1])])


@summary_metric("ap_macro", "AP (macro)")
def _ap_macro(y_true, probs):
    return _nanmean([average_precision_binary(y_true == c, probs[:, c]) for c in range(probs.shape[1])])


summary_metric("rmse", "RMSE", "valence_arousal", higher_is_better=False)(rmse)
summary_metric("pearson", "Pearson", "valence_arousal")(pearson)
summary_metric("sagr", "SAGR", "valence_arousal")(sagr)
summary_metric("ccc", "CCC", "valence_arousal", ci=True, compare=True, headline=True)(ccc)


# === Bootstrap ===

def bootstrap_ci(fn, arrays: Sequence[np.ndarray], n: int = 1000, seed: int = 0, alpha: float = 0.05
                 ) -> Optional[List[float]]:
    """Percentile bootstrap (1-alpha) interval of `fn(*arrays)` over resampled rows; None when n == 0."""
    if n <= 0 or len(arrays[0]) == 0:
        return None
    rng = np.random.default_rng(seed)
    m = len(arrays[0])
    vals = []
    for _ in range(n):
        idx = rng.integers(0, m, m)
        v = fn(*[a[idx] for a in arrays])
        if v is not None and not (isinstance(v, float) and math.isnan(v)):
            vals.append(v)
    if not vals:
        return None
    return [float(np.percentile(vals, 100 * alpha / 2)), float(np.percentile(vals, 100 * (1 - alpha / 2)))]


def _nanmean(x) -> Optional[float]:
    x = np.asarray(x, np.float64)
    return float(np.nanmean(x)) if np.isfinite(x).any() else None


def _nan_to_none(v) -> Optional[float]:
    return None if v is None or not np.isfinite(v) else float(v)


# === Data that lacks some of the model's classes ===

# The headline of a cross-dataset score (evaluate --classes): `model` = the argmax over all the model's classes,
# `data` = the argmax restricted to the classes the scored data has (as cross-dataset papers report, e.g. CK+ has
# no neutral frames).
CLASS_SCOPES = ("model", "data")


def restrict_to_classes(probs: np.ndarray, present: Sequence[int]) -> np.ndarray:
    """`probs` with the columns of classes not in `present` set to 0 and each row renormalised, so the argmax
    ranges over `present` only."""
    probs = np.asarray(probs, np.float64)
    keep = np.zeros(probs.shape[1], bool)
    keep[np.asarray(list(present), np.int64)] = True
    out = np.where(keep[None, :], probs, 0.0)
    return out / np.maximum(out.sum(axis=1, keepdims=True), 1e-300)


# === Several sources ===

def source_scores(y_true: np.ndarray, probs: np.ndarray, va_true: np.ndarray, va_pred: np.ndarray,
                  source_id: np.ndarray, source_names: Sequence[str], domains: Optional[Sequence[str]] = None,
                  out_of_domain_weight: float = 0.5) -> Dict[str, float]:
    """Per-source validation scores of a multi-source run, flat (`<source>_accuracy`, `_uar`, `_valence_ccc`,
    `_arousal_ccc`, `_score`) plus `score`, the checkpoint monitor, and `score_in` / `score_out`.

    A source's `score` is the mean of its accuracy and, where that source has valence/arousal labels, its valence
    and arousal CCC. `score_in` is the mean over the in-domain sources, `score_out` over the out-of-domain ones
    (`domains`, one "in" or "out" per source; all "in" when None), so a small source counts as much as a large one
    within its group. `score` = (1 - out_of_domain_weight) * score_in + out_of_domain_weight * score_out, or the one
    group present.
    """
    out, groups = {}, {"in": [], "out": []}
    domains = list(domains) if domains is not None else ["in"] * len(source_names)
    probs = np.asarray(probs, np.float64)
    # The history columns are named and computed from the summary-metric table.
    acc, uar, va_ccc = (SUMMARY_METRICS[k] for k in ("expression.accuracy", "expression.uar", "valence_arousal.ccc"))
    for i, name in enumerate(source_names):
        m = np.asarray(source_id) == i
        if not m.any():
            continue
        t, p = np.asarray(y_true, np.int64)[m], probs[m]
        parts = [acc.fn(t, p)]
        out[f"{name}_{acc.key}"] = parts[0]
        out[f"{name}_{uar.key}"] = uar.fn(t, p)
        vt, vp = np.asarray(va_true)[m], np.asarray(va_pred)[m]
        lab = np.isfinite(vt).all(axis=1)
        if lab.sum() > 1:
            for j, k in enumerate(("valence", "arousal")):
                out[f"{name}_{k}_{va_ccc.key}"] = va_ccc.fn(vt[lab, j], vp[lab, j])
                parts.append(out[f"{name}_{k}_{va_ccc.key}"])
        out[f"{name}_score"] = float(np.mean(parts))
        groups[domains[i]].append(out[f"{name}_score"])
    for g, vals in groups.items():
        if vals:
            out[f"score_{g}"] = float(np.mean(vals))
    if "score_in" in out and "score_out" in out:
        out["score"] = (1.0 - out_of_domain_weight) * out["score_in"] + out_of_domain_weight * out["score_out"]
    else:
        out["score"] = out.get("score_in", out.get("score_out", float("nan")))
    return out
