"""Ensembles: several trained fer_keras models behind one input, their outputs averaged with weights per output.

One functional Model with the usual two named outputs, so predict, evaluate, export and LiteRT treat it as any
other model. Each member sees the ensemble's input as predict would prepare a face for it alone: area-resized to
its own size and converted to its own channels, with layers that TFLite runs as builtin ops (the area resize is two
constant matrix products), so the ensemble exports to float or int8 TFLite like a single model.

    python -m fer_keras.cli_ensemble --members runs/a fer_keras/pretrained/multitask_customcnn.keras \\
        --expression-weights 1 0 --va-weights 0.5 0.5 --out runs/ensemble/model.keras

Weights are chosen on val splits (see `benchmarks/choose_ensemble.py`); a member with weight 0 for an output adds
nothing to it (its branch is still computed if its other output is used).
"""

from __future__ import annotations

import math

from typing import List, Optional, Sequence, Tuple

import keras
import numpy as np
from keras import ops

from fer_keras.errors import ConfigError

OUTPUTS = ("expression", "valence_arousal")


def area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix of area averaging along one axis: output pixel i averages the input interval
    [i * n_in / n_out, (i + 1) * n_in / n_out), fractional pixels weighted by their overlap (as OpenCV's INTER_AREA
    and TensorFlow's area resize when shrinking); for enlarging, the same overlap weights (nearest-like)."""
    m = np.zeros((n_out, n_in), np.float64)
    scale = n_in / n_out
    for i in range(n_out):
        lo, hi = i * scale, (i + 1) * scale
        for j in range(int(np.floor(lo)), min(int(np.ceil(hi)), n_in)):
            m[i, j] = max(0.0, min(hi, j + 1) - max(lo, j))
    return (m / m.sum(axis=1, keepdims=True)).astype(np.float32)


@keras.saving.register_keras_serializable(package="fer_keras")
class AreaResize(keras.layers.Layer):
    """Resizes (N, H, W, C) images to (height, width) by area averaging, as two constant matrix products (builtin
    TFLite ops; `keras.layers.Resizing(interpolation="area")` is not one).

    Args:
        height: output height.
        width: output width.
    """

    def __init__(self, height: int, width: int, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.height, self.width = int(height), int(width)

    def build(self, input_shape):
        self._rows = ops.convert_to_tensor(area_matrix(int(input_shape[1]), self.height))
        self._cols = ops.convert_to_tensor(area_matrix(int(input_shape[2]), self.width))
        super().build(input_shape)

    def call(self, x):
        # (N, H, W, C) -> (N, W, C, h) -> (N, C, h, w) -> (N, h, w, C): reshapes and matmuls only
        x = ops.tensordot(ops.cast(x, "float32"), ops.transpose(self._rows), axes=[[1], [0]])
        x = ops.tensordot(x, ops.transpose(self._cols), axes=[[1], [0]])
        return ops.transpose(x, (0, 2, 3, 1))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.height, self.width, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "height": self.height, "width": self.width}


@keras.saving.register_keras_serializable(package="fer_keras")
class RgbToGray(keras.layers.Layer):
    """RGB to luminance with ITU-R 601 weights (OpenCV's and predict's conversion); keeps a channel axis of 1."""

    WEIGHTS = (0.299, 0.587, 0.114)

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def call(self, x):
        w = ops.convert_to_tensor(np.array(self.WEIGHTS, np.float32).reshape(3, 1))
        return ops.matmul(ops.cast(x, "float32"), w)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (1,)


@keras.saving.register_keras_serializable(package="fer_keras")
class WeightedSum(keras.layers.Layer):
    """sum_i weights[i] * inputs[i] for a list of same-shaped tensors (the ensemble's averaging).

    Args:
        weights: one non-negative weight per input, summing to 1.
    """

    def __init__(self, weights: Sequence[float], **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.member_weights = [float(w) for w in weights]

    def call(self, inputs):
        out = None
        for w, x in zip(self.member_weights, inputs):
            if w:
                term = ops.cast(x, "float32") * w
                out = term if out is None else out + term
        return out

    def compute_output_shape(self, input_shapes):
        return tuple(input_shapes[0])

    def get_config(self):
        return {**super().get_config(), "weights": self.member_weights}


def adapt_input(x, shape: Tuple[int, int, int]):
    """`x` (N, H, W, C) as a model with input `shape` (H', W', C') takes it: area-resized, gray <-> RGB converted."""
    if tuple(x.shape[1:3]) != tuple(shape[:2]):
        x = AreaResize(shape[0], shape[1])(x)
    if shape[2] == 1 and x.shape[-1] == 3:
        x = RgbToGray()(x)
    elif shape[2] == 3 and x.shape[-1] == 1:
        x = keras.layers.Concatenate()([x, x, x])
    return x


def fit_input(model: keras.Model, shape: Tuple[int, int, int]) -> keras.Model:
    """`model` fed images of `shape` (H, W, C) through `adapt_input` (the model itself when its input is `shape`)."""
    if tuple(model.input_shape[1:]) == tuple(shape):
        return model
    inp = keras.Input(shape)
    return keras.Model(inp, model(adapt_input(inp, tuple(model.input_shape[1:]))))


def _normalized(weights: Optional[Sequence[float]], n: int, what: str) -> List[float]:
    w = [1.0 / n] * n if weights is None else [float(v) for v in weights]
    if len(w) != n:
        raise ConfigError(f"{what}: {len(w)} weights for {n} members")
    if any(not math.isfinite(v) or v < 0 for v in w) or sum(w) <= 0:
        raise ConfigError(f"{what}: weights must be finite numbers >= 0 with a positive sum (got {w})")
    return [v / sum(w) for v in w]


def build_ensemble(members: Sequence[keras.Model], input_shape: Optional[Tuple[int, int, int]] = None,
                   expression_weights: Optional[Sequence[float]] = None,
                   va_weights: Optional[Sequence[float]] = None, name: str = "ensemble") -> keras.Model:
    """One functional Model whose `expression` and `valence_arousal` are weighted sums of its members' outputs.

    Args:
        members: trained fer_keras models (two named outputs each, the same number of expression classes in the
            same order); any input sizes and channel counts.
        input_shape: the ensemble's input (H, W, C); default: the first member's.
        expression_weights: one weight per member for `expression` (normalized to sum 1); default equal.
        va_weights: the same for `valence_arousal`.
        name: the Model's name.

    Raises:
        ConfigError: fewer than two members, members with different class counts, or bad weights.
    """
    if len(members) < 2:
        raise ConfigError(f"an ensemble needs at least two members (got {len(members)})")
    counts = [int(m.get_layer("expression").output.shape[-1]) for m in members]
    if len(set(counts)) > 1:
        raise ConfigError(f"ensemble members predict different numbers of classes ({counts}); they must share "
                          "their classes, in the same order")
    ew = _normalized(expression_weights, len(members), "expression weights")
    vw = _normalized(va_weights, len(members), "valence/arousal weights")
    shape = tuple(input_shape or members[0].input_shape[1:])
    inp = keras.Input(shape, name="image")
    outs = []
    for i, m in enumerate(members):
        # Each member is wrapped under a unique name: two copies of one file would otherwise clash.
        member = keras.Model(m.inputs, m.outputs, name=f"member_{i}")
        o = member(adapt_input(inp, tuple(m.input_shape[1:])))
        outs.append(o if isinstance(o, dict) else dict(zip(OUTPUTS, o)))
    return keras.Model(inp, {
        "expression": WeightedSum(ew, name="expression")([o["expression"] for o in outs]),
        "valence_arousal": WeightedSum(vw, name="valence_arousal")([o["valence_arousal"] for o in outs]),
    }, name=name)
