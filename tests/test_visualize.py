"""Plot functions (pure: arrays in, Figure out) and visualize_results.py end to end on a tiny trained run."""

import os

import numpy as np
import pytest

from tiny import tiny_argv
from matplotlib.figure import Figure

from fer_keras import plots
from fer_keras.cli_evaluate import main as eval_main
from fer_keras.cli_train import main as train_main
from fer_keras.cli_visualize import main as vis_main

rng = np.random.default_rng(0)
NAMES = ["neutral", "happy", "sad"]


def _check(fig, n_axes_min=1, texts=()):
    assert isinstance(fig, Figure)
    fig.canvas.draw()
    img = np.asarray(fig.canvas.buffer_rgba())
    assert img.shape[0] > 100 and img.std() > 5  # something was drawn
    axes = [a for a in fig.axes if a.get_title() or a.get_xlabel()]
    assert len(axes) >= n_axes_min
    alltext = " ".join([a.get_title() + a.get_xlabel() + a.get_ylabel() for a in fig.axes] +
                       [t.get_text() for a in fig.axes for t in a.get_xticklabels()] +
                       [t.get_text() for a in fig.axes if a.get_legend() for t in a.get_legend().get_texts()])
    for t in texts:
        assert t in alltext, (t, alltext[:300])


def test_learning_curves_marks_best_epoch():
    h = {"epoch": np.arange(5), "loss": np.linspace(2, 1, 5), "val_loss": np.linspace(2.1, 1.2, 5),
         "expression_uar": np.linspace(.2, .6, 5), "val_expression_uar": [.2, .5, .4, .3, .45],
         "learning_rate": np.geomspace(1e-3, 1e-5, 5)}
    fig = plots.learning_curves(h, "val_expression_uar")
    _check(fig, 4, ["Loss", "epoch", "best epoch (2)", "val expression_uar"])


def test_confusion_matrix_figures():
    cm = np.array([[5, 1, 0], [2, 3, 1], [0, 0, 4]])
    _check(plots.confusion_matrix_figure(cm, NAMES), texts=["counts", "predicted", "happy"])
    fig = plots.confusion_matrix_figure(cm, NAMES, normalize=True)
    _check(fig, texts=["row-normalized"])
    cells = [t.get_text() for t in fig.axes[0].texts]
    assert "0.83" in cells  # 5/6


def test_other_plots_render():
    y = rng.integers(0, 3, 60)
    p = rng.dirichlet(np.ones(3), 60)
    va_t = rng.uniform(-1, 1, (60, 2))
    va_p = np.clip(va_t + rng.normal(0, .2, va_t.shape), -1, 1)
    per = {n: {"precision": .5, "recall": .6, "f1": .55} for n in NAMES}
    _check(plots.per_class_bars(per), texts=["precision", "sad"])
    _check(plots.roc_pr_curves(y, p, NAMES), 2, ["ROC", "recall", "happy (AUC"])
    _check(plots.va_scatter(va_t, va_p), 2, ["true valence", "identity"])
    fig = plots.circumplex(va_t, va_p, y, NAMES)
    _check(fig, texts=["valence", "arousal", "neutral (true)"])
    assert any("excited" in t.get_text() for t in fig.axes[0].texts)
    imgs = [rng.integers(0, 255, (16, 16, 3)).astype(np.uint8) for _ in range(4)]
    _check(plots.sample_grid(imgs, ["a → b"] * 4, "Samples"))
    _check(plots.class_distribution({"train": {"a": 3, "b": 5}, "val": {"a": 1, "b": 2}}), texts=["samples", "a"])
    _check(plots.compare_bars(["r1", "r2"], {"accuracy": [.5, .6], "uar": [.4, None]}), texts=["r1", "uar"])
    assert plots.class_color("happy") == plots.class_color("happy") != plots.class_color("sad")


def test_visualize_cli_on_tiny_run(demo_root, tmp_path):
    runs = str(tmp_path)
    run = train_main(tiny_argv("--data", demo_root["csv"], "--labels", "7", "--epochs", "2", "--runs-dir", runs))
    eval_main(["--run", run])
    report = vis_main(["--run", run, "--compare", run, run])
    pngs = set(os.listdir(os.path.join(run, "plots")))
    for stem in ("learning_curves", "confusion_counts", "confusion_normalized", "per_class", "roc_pr",
                 "va_scatter", "circumplex", "class_distribution", "class_distribution_2", "compare"):
        assert f"{stem}.png" in pngs, stem
    assert {"samples_correct.png", "samples_incorrect.png"} & pngs
    html = open(report).read()
    assert html.count("data:image/png;base64,") == len(pngs)
    # headline card first, real tables (no raw markdown), confusion before class distributions, no machine paths
    assert html.index("class='kpi'") < html.index("<h2>Confusion matrix (row-normalized)</h2>") < \
        html.index("<h2>Metrics</h2><table>") < html.index("<h2>Class distribution")
    assert "<pre>" not in html and "|---|" not in html and str(tmp_path) not in html
    assert "<h2>Per class</h2><table>" in html and "<h2>Valence and arousal</h2><table>" in html


def test_visualize_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        vis_main(["--run", str(tmp_path)])
    assert e.value.code == 2 and "not a run directory" in capsys.readouterr().err
