"""The shipped models: they load and predict on a fresh install; on real data (when present) the default model's
accuracy and valence/arousal CCC on fixed real-face samples stay above floors, and the FER2013-only alternative
keeps its FER2013 floor."""

import glob
import os

import numpy as np
import pytest

from fer_keras.data.demo import generate
from fer_keras.labels import preset_classes
from fer_keras.model_info import read_model_info
from fer_keras.predict import FacePredictor
from fer_keras.pretrained import resolve_model

from conftest import FER2013_DIR

PRETRAINED = os.path.join(os.path.dirname(__file__), "..", "fer_keras", "pretrained")
FER2013_ONLY = os.path.join(PRETRAINED, "fer2013_ensemble.keras")
FER2013_CUSTOMCNN = os.path.join(PRETRAINED, "fer2013_customcnn.keras")  # the previous fer2013 model, by path
AFFECTNET_DIR = os.path.join(os.path.dirname(FER2013_DIR), "affectnet")
FERPLUS_DIR = os.path.join(os.path.dirname(FER2013_DIR), "ferplus")


def test_default_model_is_the_multitask_ensemble_with_an_int8_export():
    path = resolve_model("default")
    assert path is not None and path.endswith("default_ensemble.keras")
    assert os.path.getsize(path) <= 10 * 1024 * 1024  # two networks, weights stored in float16
    info = read_model_info(path)
    assert info.class_names == preset_classes("8") and info.va_trained and info.tta == "flip"
    assert info.calibration is not None and info.calibration.method == "class_bias"  # chosen on val, stored
    lite = os.path.splitext(path)[0] + ".tflite"  # predict runs it through LiteRT
    assert os.path.isfile(lite) and os.path.getsize(lite) <= 6 * 1024 * 1024  # int8: a quarter of float32


@pytest.mark.slow
@pytest.mark.parametrize("name", ["default", "fer2013"])
def test_shipped_ensembles_are_what_their_sidecars_say(name):
    """The weights in an ensemble's .json are the weights inside its model, and its TFLite export (what predict
    runs) agrees with the Keras model on most faces."""
    import json

    from fer_keras.model_info import load_keras_model

    path = resolve_model(name)
    meta = json.load(open(os.path.splitext(path)[0] + ".json"))
    model = load_keras_model(path)
    assert model.get_layer("expression").member_weights == pytest.approx(meta["expression_weights"])
    assert model.get_layer("valence_arousal").member_weights == pytest.approx(meta["va_weights"])
    faces = generate(4, 96, seed=3)["images"]
    keras_pred, lite_pred = FacePredictor(path, backend="keras", tta="none"), FacePredictor(path, tta="none")
    assert lite_pred.backend == "litert"
    a = keras_pred.predict([keras_pred.prepare(f) for f in faces])["expression"]
    b = lite_pred.predict([lite_pred.prepare(f) for f in faces])["expression"]
    assert np.abs(a - b).max() < 0.25 and np.mean(a.argmax(1) == b.argmax(1)) >= 0.75


@pytest.mark.parametrize("name, classes, size, channels", [("default", 8, 112, 3), ("fer2013", 7, 144, 3),
                                                           ("compact", 8, 48, 1)])
def test_shipped_models_load_and_predict_on_generated_faces(name, classes, size, channels):
    pred = FacePredictor(resolve_model(name))
    assert pred.class_names == preset_classes(str(classes)) and (pred.size, pred.channels) == (size, channels)
    faces = generate(2, 96, seed=5)["images"]  # RGB 96 px: the predictor resizes (and converts to gray)
    out = pred.predict([pred.prepare(f) for f in faces])
    assert out["expression"].shape == (len(faces), classes) and out["valence_arousal"].shape == (len(faces), 2)
    np.testing.assert_allclose(out["expression"].sum(1), 1.0, atol=1e-4)
    # the FER2013-only model never learned VA: it reports none; the default model does
    assert np.isnan(out["valence_arousal"]).all() == (classes == 7)


def _fer2013_sample():
    import cv2

    x, y = [], []
    for c, name in enumerate(preset_classes("7")):
        folder = {"anger": "angry"}.get(name, name)
        files = sorted(glob.glob(os.path.join(FER2013_DIR, "val", folder, "*.jpg")))[:100]  # fixed sample
        for f in files:
            x.append(cv2.imread(f, cv2.IMREAD_GRAYSCALE)[..., None])
            y.append(c)
    return np.stack(x), np.array(y)


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.skipif(not os.path.isdir(os.path.join(FER2013_DIR, "val")), reason="FER2013 not present")
@pytest.mark.parametrize("name, floor", [("fer2013", 0.65), ("compact", 0.58)])
def test_fer2013_models_accuracy_on_fer2013_sample(name, floor):
    """Class-balanced sample of PublicTest (<= 100 per class), FER2013's labels, scored in the 7-class preset
    (--labels 7), each model's own views. Measured: the fer2013 ensemble (flip) 0.672, compact (the previous
    default, flip) 0.607; the MobileNetV2 default member, which learnt the FER+ labels of these faces, 0.537 (no
    views). PublicTest picked these models' checkpoints, so this is a floor against regressions, not a test score
    (see the model card)."""
    pred = FacePredictor(resolve_model(name), labels="7")
    x, y = _fer2013_sample()
    acc = float(np.mean(pred.predict([pred.prepare(f) for f in x])["expression"].argmax(1) == y))
    assert acc > floor, acc


def _test_split(config: str, source: str, folder: str):
    import dataclasses

    from fer_keras.config import load_config
    from fer_keras.data.pipeline import read_source_splits

    cfg = load_config(os.path.join(os.path.dirname(__file__), "..", "configs", config))
    src = next(s for s in cfg.data.sources if s.name == source)
    return read_source_splits(cfg.data, dataclasses.replace(src, path=folder)).test


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.skipif(not os.path.isdir(FERPLUS_DIR), reason="FER+ not present")
def test_default_model_on_ferplus_test_split():
    """The FER+ test half of PublicTest (configs/default.yaml's split: the other half picked the checkpoint), FER+
    majority labels, 8 classes with the model's own views (flip, int8 LiteRT) and calibration: above a floor below
    the measured 0.838."""
    from fer_keras.predict import read_rgb

    test = _test_split("default.yaml", "ferplus", FERPLUS_DIR)
    pred = FacePredictor(resolve_model("default"))
    out = pred.predict([pred.prepare(read_rgb(p)) for p in test.sources])
    acc = float(np.mean(out["expression"].argmax(1) == test.expression))
    assert acc > 0.81, acc


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.skipif(not os.path.isdir(os.path.join(AFFECTNET_DIR, "images")), reason="AffectNet subset not present")
@pytest.mark.parametrize("name, config, floors", [("default", "default.yaml", (0.42, 0.59, 0.49)),
                                                  ("compact", "multitask.yaml", (0.38, 0.55, 0.42))])
def test_multitask_models_on_affectnet_test_split(name, config, floors):
    """The held-out 10% of the AffectNet subset (the same 296 faces in both configs, never trained on or used to pick
    checkpoints), each model's own views: 8-class accuracy and valence/arousal CCC above floors below the measured
    values (default, flip views: 0.480, 0.630, 0.526; compact, flip: 0.402, 0.611, 0.512)."""
    from fer_keras.metrics import ccc
    from fer_keras.predict import read_rgb

    test = _test_split(config, "affectnet", AFFECTNET_DIR)
    pred = FacePredictor(resolve_model(name))
    out = pred.predict([pred.prepare(read_rgb(p)) for p in test.sources])
    acc = float(np.mean(out["expression"].argmax(1) == test.expression))
    v, a = ccc(test.valence, out["valence_arousal"][:, 0]), ccc(test.arousal, out["valence_arousal"][:, 1])
    assert acc > floors[0] and v > floors[1] and a > floors[2], (acc, v, a)


CKPLUS_VAL = os.path.join(os.path.dirname(FER2013_DIR), "ckplus", "val")


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.skipif(not os.path.isdir(CKPLUS_VAL), reason="CK+ val not present")
def test_default_model_on_posed_faces_of_ckplus_val():
    """The 495 posed CK+ val faces (59 subjects; they chose the default's checkpoint, ensemble weights and
    calibration, so a floor against regressions, not a test score): accuracy over all 8 classes above a floor below
    the measured 0.711, and the calibration is what lifts it (the raw outputs: 0.671)."""
    from fer_keras.data.pipeline import read_source_splits
    from fer_keras.config import load_config
    from fer_keras.predict import read_rgb

    cfg = load_config(os.path.join(os.path.dirname(__file__), "..", "configs", "default_v4.yaml"))
    src = next(s for s in cfg.data.sources if s.name == "ckplus")
    import dataclasses

    val = read_source_splits(cfg.data, dataclasses.replace(src, path=CKPLUS_VAL)).val
    accs = {}
    for mode in ("auto", "none"):
        pred = FacePredictor(resolve_model("default"), calibration=mode)
        out = pred.predict([pred.prepare(read_rgb(p)) for p in val.sources])
        accs[mode] = float(np.mean(out["expression"].argmax(1) == val.expression))
    assert accs["auto"] > 0.68 and accs["auto"] > accs["none"], accs


def test_shipped_model_names_resolve_and_are_listed_in_help(capsys):
    """`--model default|fer2013` resolve to their files; both CLIs' --help list every name of the one registry; an
    unknown name is one line listing them (exit 2)."""
    from fer_keras.cli_evaluate import main as evaluate_main
    from fer_keras.cli_predict import main as predict_main
    from fer_keras.pretrained import SHIPPED_MODELS

    assert SHIPPED_MODELS.names() == ["compact", "default", "fer2013"]
    for name in SHIPPED_MODELS.names():
        path = resolve_model(name)
        assert os.path.isfile(path) and read_model_info(path).class_names
    assert os.path.samefile(resolve_model("fer2013"), FER2013_ONLY)
    assert resolve_model(FER2013_CUSTOMCNN) == FER2013_CUSTOMCNN  # paths keep working
    for main in (predict_main, evaluate_main):
        with pytest.raises(SystemExit):
            main(["--help"] + (["x.jpg"] if main is predict_main else []))
        out = " ".join(capsys.readouterr().out.split())
        assert all(n in out for n in SHIPPED_MODELS.names())
    for argv in (["x.jpg", "--model", "nosuch"], ):
        with pytest.raises(SystemExit) as e:
            predict_main(argv)
        assert e.value.code == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "'nosuch'" in err and "compact, default, fer2013" in err
    with pytest.raises(SystemExit) as e:
        evaluate_main(["--model", "nosuch"])
    assert e.value.code == 2 and "compact, default, fer2013" in capsys.readouterr().err
