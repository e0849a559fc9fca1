"""One test per Keras private API that fer_keras relies on (fer_keras/keras_compat.py): each fails the day a Keras
release removes or changes the hook, and names it. Also the public-API replacement of ModelCheckpoint."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from fer_keras import keras_compat as K
from fer_keras.fitting import BestModelCheckpoint


class _Block(keras.layers.Layer):
    """A custom layer that holds other layers (as the CustomCNN blocks do)."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.dense = keras.layers.Dense(4)
        self.drop = keras.layers.Dropout(0.5, seed=1)

    def call(self, x, training=False):
        return self.drop(self.dense(x), training=training)


def _model():
    inner = keras.Sequential([keras.layers.Dense(4), keras.layers.Dropout(0.5, seed=2)], name="inner")
    x = keras.Input((4,))
    return keras.Model(x, _Block()(inner(x)))


def test_flatten_layers_reaches_layers_inside_custom_layers_and_nested_models():
    names = [type(layer).__name__ for layer in K.flatten_layers(_model())]
    assert names.count("Dense") == 2 and names.count("Dropout") == 2, names  # `model.layers` shows neither


def test_seed_generators_finds_every_dropout_and_reseeding_it_sets_the_mask():
    model = _model()
    gens = list(K.seed_generators(model))
    assert len(gens) == 2 and all(hasattr(g, "state") for g in gens)
    x = np.ones((8, 4), np.float32)

    def masks(seed):
        for i, g in enumerate(gens):
            g.state.assign(np.array([seed, i], np.int64))
        return model(x, training=True).numpy()

    np.testing.assert_array_equal(masks(5), masks(5))  # the generator state decides the dropout mask
    assert not np.array_equal(masks(5), masks(6))


def test_stateless_seed_stream_drives_keras_random_layers():
    flip = keras.layers.RandomFlip("horizontal")
    x = tf.random.uniform([16, 8, 8, 1], seed=0)

    def transform(seed):
        t = flip.get_random_transformation(x, training=True, seed=K.StatelessSeedStream(tf.constant(seed, tf.int64)))
        return flip.transform_images(x, t, training=True).numpy()

    np.testing.assert_array_equal(transform([1, 2]), transform([1, 2]))
    assert not np.array_equal(transform([1, 2]), transform([3, 4]))
    # Why it must skip SeedGenerator.__init__: a real generator owns a state variable (created per call here).
    assert hasattr(keras.random.SeedGenerator(0), "state") and not hasattr(K.StatelessSeedStream(tf.constant([1, 2])),
                                                                          "state")


def test_best_model_checkpoint_saves_only_improvements_atomically(tmp_path):
    path = str(tmp_path / "model.keras")
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    ckpt = BestModelCheckpoint(path, "val_acc", "max", best=0.5)
    ckpt.set_model(model)
    ckpt.on_epoch_end(0, {"val_acc": 0.4})  # not better than the resumed run's 0.5
    assert not os.path.exists(path)
    ckpt.on_epoch_end(1, {"val_acc": 0.6})
    first = os.path.getmtime(path)
    ckpt.on_epoch_end(2, {"val_acc": float("nan")})
    ckpt.on_epoch_end(3, {"val_acc": 0.6})
    assert os.path.getmtime(path) == first and ckpt.best == 0.6
    with pytest.warns(UserWarning, match="only with val_acc available"):
        ckpt.on_epoch_end(4, {"loss": 1.0})
    assert sorted(os.listdir(tmp_path)) == ["model.keras"]  # no temp file left
    low = BestModelCheckpoint(str(tmp_path / "low.keras"), "val_loss", "min")
    low.set_model(model)
    low.on_epoch_end(0, {"val_loss": 3.0})
    assert low.best == 3.0 and os.path.exists(tmp_path / "low.keras")


def test_multiworker_fit_patch_wraps_the_private_functions_it_names():
    """The two private functions `patch_multiworker_fit` wraps still exist with the names and arguments it calls;
    the patch is idempotent and leaves single-device training alone (tests/test_multiworker.py runs real workers)."""
    import inspect

    from keras.src.backend.tensorflow import trainer as tf_trainer

    assert callable(tf_trainer._collective_all_reduce_multi_worker)
    assert list(inspect.signature(tf_trainer.reduce_per_replica).parameters) == ["values", "strategy", "reduction"]
    assert "iterator" in inspect.signature(tf_trainer.TensorFlowTrainer._maybe_symbolic_build).parameters
    K.patch_multiworker_fit()
    patched = tf_trainer.reduce_per_replica
    K.patch_multiworker_fit()
    assert tf_trainer.reduce_per_replica is patched
    # Not multi-worker: the original reduction (a plain tensor passes through).
    value = tf.constant([1.0, 3.0])
    assert tf_trainer.reduce_per_replica(value, tf.distribute.get_strategy(), "auto") is value
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    model.fit(np.ones((4, 2)), np.ones((4, 1)), epochs=1, verbose=0)
