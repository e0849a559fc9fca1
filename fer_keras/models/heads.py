"""The two task heads shared by every model."""

from __future__ import annotations

from keras import layers


def add_heads(features, num_classes: int, dropout: float = 0.3, head_units: int = 256):
    """Adds the `expression` (softmax) and `valence_arousal` (tanh, 2 units) heads on pooled `features`.

    Outputs are float32 even under mixed precision, so losses and metrics see full-precision values.
    """
    x = layers.Dropout(dropout, name="head_dropout")(features) if dropout > 0 else features
    e, v = x, x
    if head_units > 0:
        e = layers.Dense(head_units, activation="relu", name="expression_hidden")(x)
        e = layers.Dropout(dropout, name="expression_dropout")(e) if dropout > 0 else e
        v = layers.Dense(head_units, activation="relu", name="va_hidden")(x)
    expression = layers.Dense(num_classes, activation="softmax", dtype="float32", name="expression")(e)
    va = layers.Dense(2, activation="tanh", dtype="float32", name="valence_arousal")(v)
    return {"expression": expression, "valence_arousal": va}
