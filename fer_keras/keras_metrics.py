"""Streaming Keras metrics for `fit` logs. The reference implementations are the NumPy functions in
`fer_keras.metrics`; tests check these against them."""

from __future__ import annotations

import keras
from keras import ops

from fer_keras.losses import expression_labels, va_mask


@keras.saving.register_keras_serializable(package="fer_keras")
class MacroRecall(keras.metrics.Metric):
    """Unweighted average recall (UAR) over the classes present in the targets, from a running confusion matrix."""

    def __init__(self, num_classes: int, name: str = "uar", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes = int(num_classes)
        self.cm = self.add_variable(shape=(self.num_classes, self.num_classes), initializer="zeros", name="cm")

    def update_state(self, y_true, y_pred, sample_weight=None):
        t = expression_labels(y_true)
        p = ops.cast(ops.argmax(y_pred, axis=-1), "int32")
        # one_hot(t)^T @ one_hot(p) is the batch confusion matrix; unlike bincount it compiles under XLA.
        counts = ops.matmul(ops.transpose(ops.one_hot(t, self.num_classes)), ops.one_hot(p, self.num_classes))
        self.cm.assign_add(ops.cast(counts, "float32"))

    def result(self):
        support = ops.sum(self.cm, axis=1)
        recall = ops.diagonal(self.cm) / ops.maximum(support, 1.0)
        present = ops.cast(support > 0, "float32")
        return ops.sum(recall * present) / ops.maximum(ops.sum(present), 1.0)

    def reset_state(self):
        self.cm.assign(ops.zeros_like(self.cm))

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}


@keras.saving.register_keras_serializable(package="fer_keras")
class ExpressionAccuracy(keras.metrics.MeanMetricWrapper):
    """Accuracy of the `expression` head on plain or distillation targets (the label is their first column)."""

    def __init__(self, name: str = "accuracy", dtype=None):
        super().__init__(fn=lambda t, p: ops.cast(ops.equal(expression_labels(t), ops.cast(
            ops.argmax(p, axis=-1), "int32")), "float32"), name=name, dtype=dtype)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


@keras.saving.register_keras_serializable(package="fer_keras")
class MaskedVAMetric(keras.metrics.Metric):
    """Streaming `ccc` (mean of valence and arousal CCC) or `rmse` over samples with VA labels.

    Keeps running sums (n, Σt, Σp, Σt², Σp², Σtp) per dimension, so the result equals the whole-set value, not a
    mean of per-batch values. Returns 0 when no sample had a label.
    """

    def __init__(self, kind: str = "ccc", name=None, **kwargs):
        super().__init__(name=name or kind, **kwargs)
        self.kind = kind
        self.sums = self.add_variable(shape=(6, 2), initializer="zeros", name="sums", dtype="float64")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.cast(y_true, "float32")
        m = va_mask(y_true)[:, None]
        t = ops.cast(ops.where(ops.isnan(y_true), 0.0, y_true) * m, "float64")
        p = ops.cast(ops.cast(y_pred, "float32") * m, "float64")
        m = ops.cast(ops.repeat(m, 2, axis=1), "float64")
        upd = ops.stack([ops.sum(m, 0), ops.sum(t, 0), ops.sum(p, 0), ops.sum(t * t, 0), ops.sum(p * p, 0),
                         ops.sum(t * p, 0)])
        self.sums.assign_add(upd)

    def result(self):
        n, st, sp, stt, spp, stp = [self.sums[i] for i in range(6)]
        nn = ops.maximum(n, 1.0)
        if self.kind == "rmse":
            mse = (stt - 2 * stp + spp) / nn
            out = ops.sqrt(ops.maximum(ops.mean(mse), 0.0))
        else:
            mt, mp = st / nn, sp / nn
            vt, vp = stt / nn - mt ** 2, spp / nn - mp ** 2
            cov = stp / nn - mt * mp
            out = ops.mean(2 * cov / (vt + vp + (mt - mp) ** 2 + 1e-12))
        return ops.cast(ops.where(ops.sum(n) > 0, out, 0.0), "float32")

    def reset_state(self):
        self.sums.assign(ops.zeros_like(self.sums))

    def get_config(self):
        return {**super().get_config(), "kind": self.kind}
