"""What fer_keras needs from Keras that Keras does not promise (private APIs), in one place.

Each hook has a test in tests/test_keras_compat.py that fails the day a Keras release removes or changes it, so an
upgrade breaks loudly here instead of silently in several modules (Keras is pinned below 3.16 partly for these).
Everything else in the package uses public Keras API only.
"""

from __future__ import annotations

from typing import Iterator

import keras
import tensorflow as tf


def flatten_layers(model: keras.Model) -> Iterator[keras.layers.Layer]:
    """Every layer inside `model`, depth-first in Keras' tracking order, including layers held by custom layers
    and nested models (`model.layers` lists only the top level). Private: `Layer._flatten_layers`."""
    return model._flatten_layers(include_self=False)


def seed_generators(model: keras.Model) -> Iterator[keras.random.SeedGenerator]:
    """The `SeedGenerator` of every random layer in `model` (Dropout, GaussianNoise, ...), in a fixed order.

    Keras keeps a layer's generator in an attribute (`seed_generator`), not in a public list: this reads the
    attributes, so its order is `flatten_layers` then attribute order.
    """
    for layer in flatten_layers(model):
        for value in vars(layer).values():
            if isinstance(value, keras.random.SeedGenerator):
                yield value


class StatelessSeedStream(keras.random.SeedGenerator):
    """Hands a Keras random layer a fresh stateless seed per draw, all derived from one [2] int64 tensor.

    Keras layers otherwise draw from their own `SeedGenerator` variable. Reseeding that shared variable per batch is
    a race when `tf.data` augments several batches in parallel (one batch can read another's seed), which made
    augmentation, and so training, depend on thread timing. This object holds no variable: the same seed tensor
    always gives the same draws, whatever runs beside it. Private: it skips `SeedGenerator.__init__` (which would
    create the state variable) and relies on layers calling only `next()` on the generator they are given.
    """

    def __init__(self, seed: tf.Tensor):  # no super().__init__(): it would create the state variable
        self._seed = tf.cast(seed, tf.int64)
        self._draws = 0

    def next(self, ordered=True):
        self._draws += 1  # counted at trace time: each draw site of a layer gets its own stream
        return self._seed + tf.constant([0, 1 << 24], tf.int64) * self._draws
