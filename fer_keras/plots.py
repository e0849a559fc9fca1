"""Plots as pure functions: arrays in, `matplotlib.figure.Figure` out (nothing is read or written here).

Colours are fixed per class name (`class_color`), so a class looks the same in every figure of every run.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import matplotlib

matplotlib.use("Agg")  # headless: figures are saved, never shown
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

_PALETTE = dict(zip(["neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt", "positive",
                     "negative"], sns.color_palette("tab10", 10)))


def class_color(name: str):
    return _PALETTE.get(name, (0.5, 0.5, 0.5))


def _fig(nrows=1, ncols=1, w=5.0, h=4.0):
    fig, axes = plt.subplots(nrows, ncols, figsize=(w * ncols, h * nrows), squeeze=False)
    return fig, axes


def learning_curves(history: Dict[str, Sequence[float]], monitor: Optional[str] = None, mode: str = "max"
                    ) -> Figure:
    """Loss (total and per head), accuracy/UAR, CCC and learning rate per epoch, train vs validation.

    Args:
        history: column name → per-epoch values (as in history.csv).
        monitor: the checkpoint monitor; its best epoch is marked with a dashed line.
    """
    epochs = np.asarray(history.get("epoch", range(len(next(iter(history.values()))))), float) + 1
    panels = [("Loss", ["loss", "expression_loss", "valence_arousal_loss"]),
              ("Expression", ["expression_accuracy", "expression_uar"]),
              ("Valence/arousal CCC", ["valence_arousal_ccc"]),
              ("Learning rate", ["learning_rate"])]
    fig, axes = _fig(1, 4, 4.2, 3.4)
    best = None
    if monitor and monitor in history and len(history[monitor]):
        vals = np.asarray(history[monitor], float)
        best = int(np.nanargmax(vals) if mode == "max" else np.nanargmin(vals))
    for ax, (title, keys) in zip(axes[0], panels):
        for i, k in enumerate(keys):
            color = sns.color_palette("deep")[i]
            if k in history:
                ax.plot(epochs, history[k], color=color, label=f"train {k}" if k != "learning_rate" else k)
            if f"val_{k}" in history:
                ax.plot(epochs, history[f"val_{k}"], color=color, linestyle="--", label=f"val {k}")
        if best is not None:
            ax.axvline(epochs[best], color="gray", linestyle=":", label=f"best epoch ({int(epochs[best])})")
        if title == "Learning rate":
            ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def confusion_matrix_figure(cm: np.ndarray, class_names: Sequence[str], normalize: bool = False) -> Figure:
    """Heatmap of counts, or of row-normalized rates (each true class sums to 1)."""
    cm = np.asarray(cm, float)
    data = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm
    n = len(class_names)
    fig, axes = _fig(1, 1, 1.0 + 0.75 * n, 0.6 + 0.65 * n)
    ax = axes[0, 0]
    sns.heatmap(data, annot=True, fmt=".2f" if normalize else ".0f", cmap="Blues", xticklabels=class_names,
                yticklabels=class_names, ax=ax, cbar=True, vmin=0, vmax=1 if normalize else None, square=True)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix" + (" (row-normalized)" if normalize else " (counts)"))
    fig.tight_layout()
    return fig


def per_class_bars(per_class: Dict[str, Dict[str, float]]) -> Figure:
    """Grouped bars of precision, recall and F1 per class."""
    names = list(per_class)
    x = np.arange(len(names))
    fig, axes = _fig(1, 1, max(5, 0.9 * len(names) + 2), 3.6)
    ax = axes[0, 0]
    for i, m in enumerate(("precision", "recall", "f1")):
        ax.bar(x + (i - 1) * 0.27, [per_class[n][m] for n in names], 0.27, label=m)
    ax.set_xticks(x, names, rotation=30)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score")
    ax.set_title("Per-class precision / recall / F1")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def roc_pr_curves(y_true: np.ndarray, probs: np.ndarray, class_names: Sequence[str]) -> Figure:
    """One-vs-rest ROC and precision-recall curves per class (classes without test samples are skipped)."""
    from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve

    fig, axes = _fig(1, 2, 5, 4.2)
    roc_ax, pr_ax = axes[0]
    for c, name in enumerate(class_names):
        pos = np.asarray(y_true) == c
        if pos.sum() == 0 or pos.all():
            continue
        fpr, tpr, _ = roc_curve(pos, probs[:, c])
        roc_ax.plot(fpr, tpr, color=class_color(name), label=f"{name} (AUC {auc(fpr, tpr):.2f})")
        prec, rec, _ = precision_recall_curve(pos, probs[:, c])
        pr_ax.plot(rec, prec, color=class_color(name),
                   label=f"{name} (AP {average_precision_score(pos, probs[:, c]):.2f})")
    roc_ax.plot([0, 1], [0, 1], color="gray", linestyle=":")
    roc_ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (one-vs-rest)")
    pr_ax.set(xlabel="recall", ylabel="precision", title="Precision-recall", ylim=(0, 1.02))
    for ax in (roc_ax, pr_ax):
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def va_scatter(va_true: np.ndarray, va_pred: np.ndarray) -> Figure:
    """Predicted vs true valence and arousal with the identity line (labelled samples only)."""
    fig, axes = _fig(1, 2, 4.2, 4.2)
    mask = np.isfinite(va_true).all(axis=1)
    for j, (ax, name) in enumerate(zip(axes[0], ("valence", "arousal"))):
        ax.scatter(va_true[mask, j], va_pred[mask, j], s=8, alpha=0.5)
        ax.plot([-1, 1], [-1, 1], color="gray", linestyle="--", label="identity")
        ax.set(xlim=(-1.05, 1.05), ylim=(-1.05, 1.05), xlabel=f"true {name}", ylabel=f"predicted {name}",
               title=f"{name.capitalize()} ({int(mask.sum())} samples)")
        ax.set_aspect("equal")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def circumplex(va_true: np.ndarray, va_pred: np.ndarray, labels: np.ndarray, class_names: Sequence[str]
               ) -> Figure:
    """Russell's circumplex: true (o) and predicted (x) points in valence-arousal space, coloured by expression."""
    fig, axes = _fig(1, 1, 6, 6)
    ax = axes[0, 0]
    mask = np.isfinite(va_true).all(axis=1)
    for c, name in enumerate(class_names):
        sel = mask & (np.asarray(labels) == c)
        if not sel.any():
            continue
        ax.scatter(va_true[sel, 0], va_true[sel, 1], s=14, marker="o", color=class_color(name), alpha=0.5,
                   label=f"{name} (true)")
        ax.scatter(va_pred[sel, 0], va_pred[sel, 1], s=14, marker="x", color=class_color(name), alpha=0.8)
    ax.add_patch(plt.Circle((0, 0), 1, fill=False, color="gray", linestyle=":"))
    ax.axhline(0, color="gray", lw=0.8)
    ax.axvline(0, color="gray", lw=0.8)
    for (x, y, text) in ((0.55, 0.92, "excited / happy"), (-0.55, 0.92, "angry / afraid"),
                         (-0.55, -0.92, "sad / bored"), (0.55, -0.92, "calm / relaxed")):
        ax.text(x, y, text, ha="center", fontsize=8, color="dimgray")
    ax.set(xlim=(-1.1, 1.1), ylim=(-1.1, 1.1), xlabel="valence", ylabel="arousal",
           title="Valence-arousal circumplex (o true, x predicted)")
    ax.set_aspect("equal")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return fig


def sample_grid(images: Sequence[np.ndarray], titles: Sequence[str], title: str, ncols: int = 6) -> Figure:
    """A grid of face images with a caption each (e.g. 'true → pred (confidence)')."""
    n = max(len(images), 1)
    nrows = int(np.ceil(n / ncols))
    fig, axes = _fig(nrows, ncols, 1.8, 2.3)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, img, t in zip(axes.ravel(), images, titles):
        img = np.asarray(img)
        ax.imshow(img.squeeze(), cmap="gray" if img.ndim == 2 or img.shape[-1] == 1 else None, vmin=0, vmax=255)
        ax.set_title(t, fontsize=7, wrap=True)
    fig.suptitle(title)
    # Captions are two lines ('true → pred', confidence): leave room for them between rows.
    fig.tight_layout(h_pad=1.6)
    return fig


def class_distribution(counts: Dict[str, Dict[str, int]], title: str = "Class distribution") -> Figure:
    """Bars of samples per class for each split; `counts` is split → class → count."""
    splits = list(counts)
    names = list(next(iter(counts.values()))) if counts else []
    x = np.arange(len(names))
    width = 0.8 / max(len(splits), 1)
    fig, axes = _fig(1, 1, max(5, 0.9 * len(names) + 2), 3.6)
    ax = axes[0, 0]
    for i, s in enumerate(splits):
        vals = [counts[s].get(n, 0) for n in names]
        bars = ax.bar(x + (i - (len(splits) - 1) / 2) * width, vals, width, label=s)
        ax.bar_label(bars, fontsize=6)
    ax.set_xticks(x, names, rotation=30)
    ax.set_ylabel("samples")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def compare_bars(runs: List[str], metrics: Dict[str, List[Optional[float]]]) -> Figure:
    """Side-by-side bars of the main metrics (metric → one value per run)."""
    names = list(metrics)
    x = np.arange(len(names))
    width = 0.8 / max(len(runs), 1)
    fig, axes = _fig(1, 1, max(6, 1.2 * len(names) + 2), 4)
    ax = axes[0, 0]
    for i, r in enumerate(runs):
        vals = [np.nan if metrics[m][i] is None else metrics[m][i] for m in names]
        ax.bar(x + (i - (len(runs) - 1) / 2) * width, vals, width, label=r)
    ax.set_xticks(x, names, rotation=20)
    ax.set_ylim(min(0, np.nanmin([v for m in names for v in metrics[m] if v is not None] or [0])), 1.0)
    ax.set_title("Model comparison")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def detection_pr_curve(precision: np.ndarray, recall: np.ndarray, ap: float, title: str = "Face detection"
                       ) -> Figure:
    """Precision-recall curve of a detector at IoU 0.5, with its average precision in the legend."""
    fig, axes = _fig(1, 1, 5.0, 4.0)
    ax = axes[0, 0]
    ax.plot(recall, precision, color="tab:blue", label=f"AP@0.5 = {ap:.3f}")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1.01), ylim=(0, 1.01), title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    fig.tight_layout()
    return fig


def detection_samples(images: Sequence[np.ndarray], predicted: Sequence[np.ndarray], truth: Sequence[np.ndarray],
                      title: str, ncols: int = 3) -> Figure:
    """Images with ground-truth boxes (green) and predicted boxes with scores (red); boxes are x1 y1 x2 y2 [score]."""
    n = max(len(images), 1)
    nrows = int(np.ceil(n / ncols))
    fig, axes = _fig(nrows, ncols, 4.0, 3.2)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, img, pred, gt in zip(axes.ravel(), images, predicted, truth):
        ax.imshow(np.asarray(img))
        for b in np.asarray(gt).reshape(-1, 4):
            ax.add_patch(plt.Rectangle((b[0], b[1]), b[2] - b[0], b[3] - b[1], fill=False, color="lime", lw=1))
        for b in np.asarray(pred).reshape(-1, 5):
            ax.add_patch(plt.Rectangle((b[0], b[1]), b[2] - b[0], b[3] - b[1], fill=False, color="red", lw=1))
            ax.text(b[0], b[1] - 2, f"{b[4]:.2f}", color="red", fontsize=6)
        ax.set_title(f"{len(np.asarray(gt).reshape(-1, 4))} faces, {len(np.asarray(pred).reshape(-1, 5))} found",
                     fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
