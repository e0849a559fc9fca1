"""Losses for the two heads. VA losses mask samples without labels (NaN targets) instead of feeding fake zeros."""

from __future__ import annotations

from typing import Optional, Sequence

import keras
from keras import ops


def va_mask(y_true):
    """1.0 where both valence and arousal are labelled, else 0.0; shape (B,)."""
    finite = ops.all(ops.logical_not(ops.isnan(y_true)), axis=-1)
    return ops.cast(finite, "float32")


def masked_ccc(y_true, y_pred, mask):
    """Concordance correlation coefficient per column over masked rows (population variances), shape (2,).

    CCC = 2 cov / (var_t + var_p + (mean_t - mean_p)^2); a tiny epsilon keeps it finite when variances are zero.
    """
    y_true = ops.where(ops.isnan(y_true), 0.0, y_true)
    m = mask[:, None]
    n = ops.maximum(ops.sum(m), 1.0)
    mt = ops.sum(y_true * m, axis=0) / n
    mp = ops.sum(y_pred * m, axis=0) / n
    vt = ops.sum(((y_true - mt) ** 2) * m, axis=0) / n
    vp = ops.sum(((y_pred - mp) ** 2) * m, axis=0) / n
    cov = ops.sum((y_true - mt) * (y_pred - mp) * m, axis=0) / n
    return 2.0 * cov / (vt + vp + (mt - mp) ** 2 + 1e-8)


def _scale_for_replicas(loss):
    """Divides a scalar loss by the number of replicas, as Keras does for the per-sample losses it reduces itself.

    Under a multi-replica tf.distribute strategy the replicas' gradients are summed; Keras scales the losses it
    averages, but passes a loss that is already a scalar through untouched, so this one must scale itself.
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if replicas > 1:
            loss = loss * (1.0 / replicas)
    return loss


@keras.saving.register_keras_serializable(package="fer_keras")
class ValenceArousalLoss(keras.losses.Loss):
    """Masked VA loss: `mse`, `ccc` (1 - mean CCC over valence and arousal) or `both` (their sum).

    Samples whose VA target is NaN do not contribute; a batch without any VA label gives 0 loss (and no gradient).
    """

    def __init__(self, kind: str = "mse", name: str = "va_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        if kind not in ("mse", "ccc", "both"):
            raise ValueError(f"va loss kind must be mse, ccc or both, got {kind!r}")
        self.kind = kind

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "float32")
        y_pred = ops.cast(y_pred, "float32")
        mask = va_mask(y_true)
        n = ops.sum(mask)
        total = ops.convert_to_tensor(0.0)
        if self.kind in ("mse", "both"):
            diff = ops.where(ops.isnan(y_true), 0.0, y_true - y_pred)
            mse = ops.sum(ops.mean(diff ** 2, axis=-1) * mask) / ops.maximum(n, 1.0)
            total = total + mse
        if self.kind in ("ccc", "both"):
            ccc = ops.mean(masked_ccc(y_true, y_pred, mask))
            # CCC needs at least two labelled samples to mean anything.
            total = total + ops.where(n >= 2.0, 1.0 - ccc, 0.0)
        return _scale_for_replicas(total)

    def get_config(self):
        return {**super().get_config(), "kind": self.kind}


def expression_labels(y_true):
    """Integer labels from `expression` targets: plain labels, or the first column of distillation targets
    `[label, p_1 .. p_C]` (see `fer_keras.data.pipeline.expression_targets`)."""
    if len(y_true.shape) == 2 and y_true.shape[-1] not in (None, 1):
        y_true = y_true[:, 0]
    return ops.cast(ops.reshape(y_true, (-1,)), "int32")


@keras.saving.register_keras_serializable(package="fer_keras")
class ExpressionLoss(keras.losses.Loss):
    """Cross-entropy on integer labels with optional label smoothing and per-class weights (per-sample values).

    Distillation: when the targets are rows `[label, p_1 .. p_C]` (teacher probabilities, `p = -1` where a sample
    has no teacher), the target distribution is `(1 - distill_weight) * smoothed one-hot + distill_weight * p`.
    """

    def __init__(self, num_classes: int, label_smoothing: float = 0.0,
                 class_weights: Optional[Sequence[float]] = None, distill_weight: float = 0.0,
                 name: str = "expression_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes = int(num_classes)
        self.label_smoothing = float(label_smoothing)
        self.class_weights = None if class_weights is None else [float(w) for w in class_weights]
        self.distill_weight = float(distill_weight)

    def call(self, y_true, y_pred):
        labels = expression_labels(y_true)
        onehot = ops.one_hot(labels, self.num_classes)
        if self.label_smoothing > 0:
            onehot = onehot * (1.0 - self.label_smoothing) + self.label_smoothing / self.num_classes
        if len(y_true.shape) == 2 and y_true.shape[-1] == self.num_classes + 1:
            soft = ops.cast(y_true[:, 1:], "float32")
            has_teacher = soft[:, :1] >= 0.0
            mixed = (1.0 - self.distill_weight) * onehot + self.distill_weight * soft
            onehot = ops.where(has_teacher, mixed, onehot)
        probs = ops.clip(ops.cast(y_pred, "float32"), 1e-7, 1.0)
        ce = -ops.sum(onehot * ops.log(probs), axis=-1)
        if self.class_weights is not None:
            ce = ce * ops.take(ops.convert_to_tensor(self.class_weights, "float32"), labels)
        return ce

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "label_smoothing": self.label_smoothing,
                "class_weights": self.class_weights, "distill_weight": self.distill_weight}
