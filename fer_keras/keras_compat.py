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


_MULTIWORKER_PATCHED = False


def patch_multiworker_fit() -> None:
    """Makes Keras 3's TensorFlow `fit` run under `MultiWorkerMirroredStrategy` (keras-team/keras#20585,
    tensorflow/tensorflow#72388: even the tf.distribute tutorial fails). Two private functions of the TensorFlow
    trainer are wrapped; both changes apply only under a multi-worker strategy:

    - `TensorFlowTrainer._maybe_symbolic_build` reduces a sample batch across workers only to learn its shapes, with
      `strategy.reduce` in eager mode, which fails on the distributed batch ("Attempt to convert a value
      (PerReplica...)"). The local replica's batch has the same shapes: it is used instead.
    - `reduce_per_replica` reduces each step's logs with `strategy.reduce("MEAN", v, axis=0)`, which fails on scalar
      losses and metrics ("Invalid reduction dimension 0"). Scalars are averaged over the replicas (`axis=None`),
      so every worker logs the same numbers.

    Idempotent. Private: `keras.src.backend.tensorflow.trainer` (tested in tests/test_keras_compat.py).
    """
    global _MULTIWORKER_PATCHED
    if _MULTIWORKER_PATCHED:
        return
    from keras.src.backend.tensorflow import trainer as tf_trainer

    multi_worker = tf_trainer._collective_all_reduce_multi_worker
    build = tf_trainer.TensorFlowTrainer._maybe_symbolic_build
    reduce = tf_trainer.reduce_per_replica

    def local(strategy, value):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        if self._distribute_strategy is None or iterator is None or not multi_worker(self.distribute_strategy):
            return build(self, iterator=iterator, data_batch=data_batch)
        for _, _, it in iterator:
            batch = tf.nest.map_structure(lambda v: local(self.distribute_strategy, v), next(it))
            break
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=batch)

    def reduce_per_replica(values, strategy, reduction):
        if reduction not in ("auto", "mean") or not multi_worker(strategy):
            return reduce(values, strategy, reduction)

        def one(v):
            if not isinstance(v, tf.distribute.DistributedValues) and not tf.is_tensor(v):
                return v
            rank = local(strategy, v).shape.rank
            return strategy.reduce("MEAN", v, axis=None if rank == 0 else 0)

        return tf.nest.map_structure(one, values)

    tf_trainer.TensorFlowTrainer._maybe_symbolic_build = maybe_symbolic_build
    tf_trainer.reduce_per_replica = reduce_per_replica
    _MULTIWORKER_PATCHED = True
