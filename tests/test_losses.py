"""VA masking, the losses, and the streaming Keras metrics against the NumPy references."""

import numpy as np
import pytest
import tensorflow as tf
from sklearn.metrics import recall_score

from fer_keras import metrics as M
from fer_keras.config import ModelConfig
from fer_keras.keras_metrics import MacroRecall, MaskedVAMetric
from fer_keras.losses import ExpressionLoss, ValenceArousalLoss
from fer_keras.models import build_model

rng = np.random.default_rng(0)


@pytest.mark.parametrize("kind", ["mse", "ccc", "both"])
def test_va_loss_ignores_unlabelled_rows(kind):
    t = rng.uniform(-1, 1, (16, 2)).astype("float32")
    p = rng.uniform(-1, 1, (16, 2)).astype("float32")
    t_masked = t.copy()
    t_masked[::2] = np.nan
    loss = ValenceArousalLoss(kind)
    full = float(loss(t[1::2], p[1::2]))
    masked = float(loss(t_masked, p))
    assert masked == pytest.approx(full, rel=1e-5)
    if kind == "mse":
        assert masked == pytest.approx(np.mean((t[1::2] - p[1::2]) ** 2), rel=1e-5)
    if kind == "ccc":
        ref = 1 - np.mean([M.ccc(t[1::2, j], p[1::2, j]) for j in range(2)])
        assert masked == pytest.approx(ref, rel=1e-4)


def test_va_loss_all_missing_is_zero():
    t = np.full((8, 2), np.nan, "float32")
    for kind in ("mse", "ccc", "both"):
        assert float(ValenceArousalLoss(kind)(t, np.zeros((8, 2), "float32"))) == 0.0


def test_no_va_labels_means_no_va_gradient_and_no_nan():
    """Expression-only data (FER2013, folders): the VA head gets exactly zero gradient, the backbone no NaN."""
    model = build_model(ModelConfig(widths=[8], blocks=[1], head_units=8), 4, (32, 32, 1))
    x = rng.integers(0, 256, (8, 32, 32, 1)).astype("float32")
    y_exp = rng.integers(0, 4, 8)
    y_va = np.full((8, 2), np.nan, "float32")
    exp_loss, va_loss = ExpressionLoss(4), ValenceArousalLoss("both")
    with tf.GradientTape() as tape:
        out = model(x, training=True)
        total = tf.reduce_mean(exp_loss(y_exp, out["expression"])) + va_loss(y_va, out["valence_arousal"])
    grads = tape.gradient(total, model.trainable_variables)
    for v, g in zip(model.trainable_variables, grads):
        g = np.zeros(v.shape) if g is None else g.numpy()
        assert np.isfinite(g).all(), v.path
        if v.path.startswith(("va_hidden", "valence_arousal")):
            assert not g.any(), f"VA head got gradient without VA labels: {v.path}"
    assert any(np.abs(g.numpy()).sum() > 0 for v, g in zip(model.trainable_variables, grads)
               if v.path.startswith("expression") and g is not None)


def test_expression_loss_smoothing_and_weights():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]], "float32")
    y = np.array([0, 1])
    plain = float(ExpressionLoss(3)(y, probs))
    assert plain == pytest.approx(np.mean(-np.log([0.7, 0.8])), rel=1e-5)
    per = ExpressionLoss(3, class_weights=[2.0, 0.5, 1.0]).call(y, probs).numpy()
    np.testing.assert_allclose(per, [-2 * np.log(0.7), -0.5 * np.log(0.8)], rtol=1e-5)
    ls = 0.3
    target = np.full(3, ls / 3) + np.eye(3)[0] * (1 - ls)
    smooth = ExpressionLoss(3, label_smoothing=ls).call(y[:1], probs[:1]).numpy()[0]
    assert smooth == pytest.approx(-(target * np.log(probs[0])).sum(), rel=1e-5)


def test_macro_recall_metric_matches_sklearn():
    m = MacroRecall(5)
    ys, ps = [], []
    for _ in range(3):  # streaming over batches
        y = rng.integers(0, 4, 20)  # class 4 never present
        p = rng.dirichlet(np.ones(5), 20).astype("float32")
        m.update_state(y, p)
        ys.append(y), ps.append(p.argmax(1))
    ref = recall_score(np.concatenate(ys), np.concatenate(ps), average="macro", labels=[0, 1, 2, 3],
                       zero_division=0)
    assert float(m.result()) == pytest.approx(ref, rel=1e-6)


@pytest.mark.parametrize("kind", ["ccc", "rmse"])
def test_streaming_va_metric_equals_whole_set_value(kind):
    m = MaskedVAMetric(kind)
    ts, ps = [], []
    for _ in range(4):
        t = rng.uniform(-1, 1, (10, 2)).astype("float32")
        t[rng.random(10) < 0.3] = np.nan
        p = np.clip(t + rng.normal(0, 0.3, t.shape), -1, 1).astype("float32")
        p[np.isnan(p)] = 0.1
        m.update_state(t, p)
        ts.append(t), ps.append(p)
    t, p = np.concatenate(ts), np.concatenate(ps)
    ok = np.isfinite(t).all(1)
    if kind == "ccc":
        ref = np.mean([M.ccc(t[ok, j], p[ok, j]) for j in range(2)])
    else:
        ref = np.sqrt(np.mean((t[ok] - p[ok]) ** 2))
    assert float(m.result()) == pytest.approx(ref, rel=1e-4)
