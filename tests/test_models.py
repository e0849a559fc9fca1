"""Every registered model on tiny inputs: output shapes, config round-trip, `.keras` save/load equality."""

import numpy as np
import pytest
import keras

from fer_keras.config import ModelConfig
from fer_keras.errors import ModelError
from fer_keras.models import MODELS, build_model
from fer_keras.models.backbones import set_backbone_trainable

SMALL = {"CustomCNN": dict(widths=[8, 16], blocks=[1, 1], head_units=8),
         "TemporalCNN": dict(widths=[8, 16], blocks=[1, 1], head_units=8, frames=3),
         "R3D": dict(widths=[8, 16], blocks=[1, 1], head_units=8, frames=4)}


def _x(name, n, size, channels, seed=0):
    """A random raw-image batch shaped for the model (clips of `frames` frames for temporal models)."""
    frames = (SMALL[name]["frames"],) if getattr(MODELS.get(name), "temporal", False) else ()
    return np.random.default_rng(seed).integers(0, 256, (n,) + frames + (size, size, channels)).astype("float32")


def _cfg(name, **kw):
    return ModelConfig(name=name, weights="none", **{**SMALL.get(name, {}), **kw})


@pytest.mark.parametrize("name", MODELS.names())
@pytest.mark.parametrize("channels", [1, 3])
def test_output_shapes(name, channels):
    model = build_model(_cfg(name), 5, (32, 32, channels))
    x = _x(name, 2, 32, channels)
    out = model(x, training=False)
    assert set(out) == {"expression", "valence_arousal"}
    assert out["expression"].shape == (2, 5)
    assert out["valence_arousal"].shape == (2, 2)
    np.testing.assert_allclose(np.sum(out["expression"], axis=-1), 1.0, rtol=1e-5)
    assert np.all(np.abs(out["valence_arousal"]) <= 1.0)


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS.names())
def test_config_round_trip_and_save_load(name, tmp_path):
    model = build_model(_cfg(name), 4, (32, 32, 3))
    x = _x(name, 2, 32, 3, seed=1)
    ref = model.predict(x, verbose=0)

    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    again = clone.predict(x, verbose=0)
    for k in ref:
        np.testing.assert_allclose(again[k], ref[k], rtol=1e-5, atol=1e-6)

    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)  # safe_mode=True: no Lambda layers needed
    out = loaded.predict(x, verbose=0)
    for k in ref:
        np.testing.assert_allclose(out[k], ref[k], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS.names())
def test_predict_on_a_tf_data_dataset_matches_arrays(name):
    import tensorflow as tf

    model = build_model(_cfg(name), 3, (32, 32, 1))
    x = _x(name, 5, 32, 1, seed=2)
    ref = model.predict(x, batch_size=2, verbose=0)
    out = model.predict(tf.data.Dataset.from_tensor_slices(x).batch(2), verbose=0)  # a short last batch too
    for k in ref:
        np.testing.assert_allclose(out[k], ref[k], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", MODELS.names())
def test_mixed_bfloat16_build_computes_in_bf16_and_outputs_float32(name):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = build_model(_cfg(name), 4, (32, 32, 3))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert any(layer.compute_dtype == "bfloat16" for layer in model.layers if layer.weights)
    out = model(_x(name, 2, 32, 3), training=False)
    # Outputs stay float32 (the heads are float32 layers): the losses and metrics never see bf16 rounding.
    assert out["expression"].dtype == "float32" and out["valence_arousal"].dtype == "float32"
    np.testing.assert_allclose(np.sum(np.asarray(out["expression"]), axis=-1), 1.0, rtol=1e-5)
    assert np.all(np.abs(np.asarray(out["valence_arousal"])) <= 1.0)


def test_unknown_model_lists_valid_names():
    from fer_keras.models import MODELS

    names = MODELS.names()  # the registry is the list of names; a few known ones must be in it
    assert {"CustomCNN", "MobileNetV2", "EfficientNetLite0", "ResNet50", "VGG16"} <= set(names)
    with pytest.raises(ModelError, match="valid: " + ", ".join(names) + "$"):
        build_model(ModelConfig(name="AlexNet"), 7, (48, 48, 1))


def test_name_is_case_insensitive():
    cfg = _cfg("CustomCNN")
    cfg.name = "customcnn"
    assert build_model(cfg, 3, (32, 32, 1)).name == "customcnn_fer"


def test_missing_local_weights_file():
    with pytest.raises(ModelError, match="weights file not found"):
        build_model(ModelConfig(name="VGG16", weights="/nope/vgg.h5"), 7, (32, 32, 3))


def test_local_weights_file_is_loaded(tmp_path):
    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3), pooling="avg")
    path = str(tmp_path / "vgg16_notop.weights.h5")
    base.save_weights(path)
    model = build_model(ModelConfig(name="VGG16", weights=path), 7, (32, 32, 3))
    inner = next(l for l in model.layers if isinstance(l, keras.Model))
    for a, b in zip(inner.get_weights(), base.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_freeze_and_fine_tune_last():
    model = build_model(ModelConfig(name="ResNet50", weights="none", freeze_backbone=True, fine_tune_last=5),
                        7, (32, 32, 3))
    inner = next(l for l in model.layers if isinstance(l, keras.Model))
    trainable = [l for l in inner.layers if l.trainable and l.weights]
    assert trainable and all(l in inner.layers[-5:] for l in trainable)
    assert not any(isinstance(l, keras.layers.BatchNormalization) for l in trainable)
    # heads stay trainable
    assert model.get_layer("expression").trainable
    set_backbone_trainable(inner, False, 0)
    assert all(l.trainable for l in inner.layers)


def test_small_input_error_for_applications():
    with pytest.raises(ModelError, match="at least 32x32"):
        build_model(ModelConfig(name="VGG16", weights="none"), 7, (24, 24, 3))
