"""Ensembles (fer_keras.models.ensemble): input adaptation, weighted outputs, saving, TFLite, the CLI."""

import json
import os

import cv2
import keras
import numpy as np
import pytest

from fer_keras.cli_ensemble import main as ensemble_main
from fer_keras.models.ensemble import AreaResize, RgbToGray, area_matrix, build_ensemble, fit_input


def test_area_resize_matches_opencv_inter_area():
    """The matrix form of the area resize equals OpenCV's INTER_AREA (what predict uses) for non-integer scales."""
    rng = np.random.RandomState(0)
    img = rng.uniform(0, 255, (112, 112, 3)).astype(np.float32)
    out = AreaResize(48, 48)(img[None]).numpy()[0]
    ref = cv2.resize(img, (48, 48), interpolation=cv2.INTER_AREA)
    np.testing.assert_allclose(out, ref, atol=0.05)
    assert np.allclose(area_matrix(7, 3).sum(axis=1), 1.0)


def test_fit_input_resizes_and_converts():
    """A model with another input sees images area-resized and converted gray <-> RGB (luminance weights 601)."""
    inp = keras.Input((4, 4, 1))
    gray_model = keras.Model(inp, keras.layers.Flatten()(inp))
    img = np.zeros((1, 8, 8, 3), np.float32)
    img[..., 0], img[..., 1], img[..., 2] = 100.0, 50.0, 200.0
    img[:, :2, :2] = 0.0  # one dark 2x2 corner: area averaging makes it one dark pixel at 4x4
    out = fit_input(gray_model, (8, 8, 3)).predict(img, verbose=0).reshape(4, 4)
    lum = 0.299 * 100 + 0.587 * 50 + 0.114 * 200
    np.testing.assert_allclose(out[0, 0], 0.0, atol=1e-3)
    np.testing.assert_allclose(out[1:, 1:], lum, rtol=1e-3)
    assert fit_input(gray_model, (4, 4, 1)) is gray_model  # same input: the model itself
    inp3 = keras.Input((8, 8, 3))
    rgb_model = keras.Model(inp3, inp3)
    out3 = fit_input(rgb_model, (8, 8, 1)).predict(np.full((1, 8, 8, 1), 7.0, np.float32), verbose=0)
    assert out3.shape == (1, 8, 8, 3) and np.allclose(out3, 7.0)
    np.testing.assert_allclose(RgbToGray()(img).numpy()[0, 4, 4, 0], lum, rtol=1e-5)


def _member(shape, seed):
    """A tiny two-output model (raw 0-255 input) like the registered ones."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input(shape)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inp / 255.0))
    return keras.Model(inp, {"expression": keras.layers.Dense(3, activation="softmax", name="expression")(x),
                             "valence_arousal": keras.layers.Dense(2, activation="tanh", name="valence_arousal")(x)})


def test_ensemble_outputs_are_weighted_sums_of_members(tmp_path):
    a, b = _member((16, 16, 3), 0), _member((8, 8, 1), 1)
    ens = build_ensemble([a, b], expression_weights=[3, 1], va_weights=[1, 1])
    x = np.random.RandomState(1).uniform(0, 255, (5, 16, 16, 3)).astype(np.float32)
    out = ens.predict(x, verbose=0)
    oa = a.predict(x, verbose=0)
    small = np.stack([cv2.cvtColor(cv2.resize(i, (8, 8), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
                      for i in x])[..., None]
    ob = b.predict(small, verbose=0)
    np.testing.assert_allclose(out["expression"], 0.75 * oa["expression"] + 0.25 * ob["expression"], atol=1e-4)
    np.testing.assert_allclose(out["valence_arousal"], 0.5 * (oa["valence_arousal"] + ob["valence_arousal"]),
                               atol=1e-4)
    # it saves and loads without custom objects (registered layers), with the same outputs
    ens.save(tmp_path / "e.keras")
    again = keras.saving.load_model(tmp_path / "e.keras")
    np.testing.assert_allclose(again.predict(x, verbose=0)["expression"], out["expression"], atol=1e-6)


def test_ensemble_exports_to_tflite(tmp_path):
    """The ensemble converts with builtin TFLite ops only (predict runs it through LiteRT)."""
    from fer_keras.expression.export import export_tflite, tflite_predict

    ens = build_ensemble([_member((16, 16, 3), 0), _member((8, 8, 1), 1)], va_weights=[0, 1])
    path = export_tflite(ens, str(tmp_path / "e.tflite"), quantize=False, dynamic_batch=True)
    x = np.random.RandomState(2).uniform(0, 255, (3, 16, 16, 3)).astype(np.float32)
    np.testing.assert_allclose(tflite_predict(path, x)["valence_arousal"], ens.predict(x, verbose=0)["valence_arousal"],
                               atol=1e-4)


def test_bad_ensembles_are_one_line_errors():
    from fer_keras.errors import ConfigError

    a = _member((16, 16, 3), 0)
    with pytest.raises(ConfigError, match="at least two members"):
        build_ensemble([a])
    with pytest.raises(ConfigError, match="2 weights for 3 members"):
        build_ensemble([a, a, a], expression_weights=[1, 1])
    with pytest.raises(ConfigError, match="weights must be finite numbers >= 0"):
        build_ensemble([a, a], va_weights=[1, -1])
    inp = keras.Input((16, 16, 3))
    x = keras.layers.GlobalAveragePooling2D()(inp)
    four = keras.Model(inp, {"expression": keras.layers.Dense(4, activation="softmax", name="expression")(x),
                             "valence_arousal": keras.layers.Dense(2, name="valence_arousal")(x)})
    with pytest.raises(ConfigError, match="different numbers of classes"):
        build_ensemble([a, four])


def test_ensemble_cli_writes_model_and_sidecar_and_never_overwrites(tmp_path, capsys):
    from fer_keras.model_info import read_model_info, write_sidecar

    paths = []
    for i, shape in enumerate([(16, 16, 3), (8, 8, 1)]):
        p = str(tmp_path / f"m{i}.keras")
        _member(shape, i).save(p)
        write_sidecar(p, ["neutral", "happy", "sad"], {"expression": True, "valence_arousal": i == 0})
        paths.append(p)
    out = str(tmp_path / "ens" / "model.keras")
    ensemble_main(["--members", *paths, "--va-weights", "1", "0", "--tta", "flip", "--out", out])
    info = read_model_info(out)
    assert info.class_names == ["neutral", "happy", "sad"] and info.va_trained  # the untrained VA head weighs 0
    meta = json.load(open(os.path.splitext(out)[0] + ".json"))
    assert meta["va_weights"] == [1.0, 0.0] and meta["expression_weights"] == [0.5, 0.5] and meta["tta"] == "flip"
    assert read_model_info(out).tta == "flip"  # predict and evaluate use these views by default
    with pytest.raises(SystemExit) as e:
        ensemble_main(["--members", *paths, "--out", out])
    assert e.value.code == 2 and "never overwrites" in capsys.readouterr().err
    other = str(tmp_path / "ens" / "other.keras")
    open(os.path.splitext(other)[0] + ".json", "w").write("{}")  # a sidecar of that name exists: kept
    for args, words in ((["--out", other], "other.json exists; an ensemble never overwrites"),
                        (["--expression-weights", "nan", "1", "--out", str(tmp_path / "n.keras")], "finite numbers"),
                        (["--va-weights", "inf", "1", "--out", str(tmp_path / "i.keras")], "finite numbers"),
                        (["--input-size", "-8", "--out", str(tmp_path / "s.keras")], "--input-size -8: out of range")):
        with pytest.raises(SystemExit) as e:
            ensemble_main(["--members", *paths, *args])
        err = capsys.readouterr().err.strip()
        assert e.value.code == 2 and words in err and len(err.splitlines()) == 1, err
    assert open(os.path.splitext(other)[0] + ".json").read() == "{}"
    for path in paths:  # metadata of another model (4 classes; the members predict 3)
        write_sidecar(path, ["neutral", "happy", "sad", "anger"], {"expression": True})
    with pytest.raises(SystemExit) as e:
        ensemble_main(["--members", *paths, "--out", str(tmp_path / "m.keras")])
    assert e.value.code == 2 and "do not belong together" in capsys.readouterr().err


def test_saved_ensemble_loads_through_the_library_loader(tmp_path):
    """`load_keras_model` (predict, evaluate, export) knows the ensemble's layers without importing its module."""
    import subprocess
    import sys

    build_ensemble([_member((16, 16, 3), 0), _member((8, 8, 1), 1)]).save(tmp_path / "e.keras")
    code = ("from fer_keras.model_info import load_keras_model; "
            f"m = load_keras_model({str(tmp_path / 'e.keras')!r}); print(sorted(m.output))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-1500:]
    assert res.stdout.strip().splitlines()[-1] == "['expression', 'valence_arousal']"


def test_choose_ensemble_grid_and_scores():
    """benchmarks/choose_ensemble.py: every grid point sums to 1, and mixing scores as the checkpoint monitor does."""
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
    from choose_ensemble import scores_for, weight_grid

    assert sorted(weight_grid(2, 0.5)) == [(0.0, 1.0), (0.5, 0.5), (1.0, 0.0)]
    three = list(weight_grid(3, 0.25))
    assert len(three) == 15 and all(abs(sum(w) - 1) < 1e-9 for w in three)
    # member 0 is right on the expressions, member 1 on valence/arousal: each output takes its own member's values
    labels = ["neutral", "happy", "neutral", "happy"]
    va = np.array([[0.1, 0.2], [0.5, -0.3], [-0.4, 0.0], [0.8, 0.6]])
    good = np.eye(8)[[0, 1, 0, 1]]
    preds = [{"s": {"probs": good, "va": np.zeros((4, 2))}},
             {"s": {"probs": good[:, ::-1].copy(), "va": va}}]
    truth = {"s": (labels, va, "8")}
    best = scores_for(preds, truth, (1.0, 0.0), (0.0, 1.0))
    assert best["s_accuracy"] == 1.0 and best["s_valence_ccc"] == pytest.approx(1.0)
    assert scores_for(preds, truth, (0.0, 1.0), (1.0, 0.0))["score"] < best["score"]
