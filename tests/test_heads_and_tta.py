"""Untrained heads are reported as unavailable (predict, evaluate, export, the shipped model), and `predict --tta`
gives the views (and the numbers) of `evaluate_model.py --tta`."""

import csv
import json
import os

import numpy as np
import pytest

from tiny import tiny_argv
from fer_keras.cli_train import main as train_main
from fer_keras.model_info import read_model_info
from fer_keras.cli_predict import main as predict_main
from fer_keras.predict import FacePredictor

TINY = tiny_argv()


@pytest.fixture(scope="module")
def runs(tmp_path_factory, demo_root):
    """Two tiny runs on the same faces: one without VA labels (folder), one with (CSV)."""
    d = str(tmp_path_factory.mktemp("runs"))
    no_va = train_main(["--data", demo_root["folder"], "--labels", "8", "--runs-dir", d, "--name", "nova", *TINY])
    with_va = train_main(["--data", demo_root["csv"], "--labels", "8", "--runs-dir", d, "--name", "va", *TINY])
    return {"no_va": no_va, "va": with_va}


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_runs_record_trained_heads(runs):
    assert read_model_info(runs["no_va"]).va_trained is False
    assert read_model_info(runs["va"]).va_trained is True
    heads = json.load(open(os.path.join(runs["no_va"], "labels.json")))["trained_heads"]
    assert heads == {"expression": True, "valence_arousal": False, "train_samples_with_valence_arousal": 0}


def test_runs_without_a_record_fall_back_to_their_data_summary(runs, tmp_path):
    import shutil

    old = str(tmp_path / "old")
    shutil.copytree(runs["no_va"], old)
    labels = json.load(open(os.path.join(old, "labels.json")))
    labels.pop("trained_heads")
    json.dump(labels, open(os.path.join(old, "labels.json"), "w"))
    assert read_model_info(old).va_trained is False


def test_shipped_fer2013_model_is_marked_without_va():
    from fer_keras.pretrained import resolve_model

    info = read_model_info(resolve_model("fer2013"))
    assert info.va_trained is False and len(info.class_names) == 7
    assert read_model_info(resolve_model("default")).va_trained is True  # the default model learned VA


def test_evaluate_marks_untrained_va_unavailable(runs, demo_root):
    from fer_keras.expression.evaluate import evaluate_run as evaluate

    out, result = evaluate(run=runs["no_va"], data=demo_root["csv"], labels="8")  # data with VA labels
    va = result["valence_arousal"]
    assert va["valence"] is None and va["arousal"] is None and "never trained" in va["unavailable"]
    assert va["num_labelled"] > 0  # the labels exist; the model just cannot predict them
    assert "Unavailable" in open(os.path.join(out, "metrics.md")).read()
    rows = _rows(os.path.join(out, "predictions.csv"))
    assert rows and all(r["valence_pred"] == "" and r["arousal_pred"] == "" for r in rows)
    assert all(r["valence_true"] != "" for r in rows)
    _, trained = evaluate(run=runs["va"])
    assert trained["valence_arousal"]["valence"] is not None and "unavailable" not in trained["valence_arousal"]


def test_predict_leaves_untrained_va_empty_and_says_so(runs, demo_root, tmp_path, capsys):
    out = str(tmp_path / "pred")
    predict_main([demo_root["folder"], "--model", runs["no_va"], "--no-detect", "--out", out])
    assert "valence/arousal unavailable" in capsys.readouterr().out
    rows = _rows(os.path.join(out, "predictions.csv"))
    assert rows and all(r["valence"] == "" and r["arousal"] == "" for r in rows)
    assert all(r["valence"] is None for r in json.load(open(os.path.join(out, "predictions.json"))))
    out2 = str(tmp_path / "pred2")
    predict_main([demo_root["folder"], "--model", runs["va"], "--no-detect", "--out", out2])
    assert "unavailable" not in capsys.readouterr().out
    assert all(r["valence"] != "" for r in _rows(os.path.join(out2, "predictions.csv")))


def test_export_carries_the_untrained_mark(runs, demo_root, tmp_path):
    import shutil

    import tensorflow as tf

    from fer_keras.export import export_run

    run = str(tmp_path / "nova")
    shutil.copytree(runs["no_va"], run)
    written = export_run(run, ["savedmodel", "keras"])
    sm = tf.saved_model.load(written["savedmodel"])
    img = tf.constant(np.random.default_rng(0).integers(0, 255, (2, 40, 40, 3)), tf.uint8)
    out = sm.signatures["serving_default"](images=img)
    assert np.isnan(out["valence"].numpy()).all() and np.isnan(out["arousal"].numpy()).all()
    assert np.isfinite(out["probabilities"].numpy()).all()
    info = json.load(open(os.path.join(written["savedmodel"], "assets", "model_info.json")))
    assert info["trained_heads"]["valence_arousal"] is False
    # the exported .keras file outside its run still knows (sidecar model.json)
    assert read_model_info(written["keras"]).va_trained is False
    assert FacePredictor(written["keras"]).va_trained is False


@pytest.mark.slow
@pytest.mark.parametrize("tta", ["flip", "crops"])
def test_predict_tta_matches_evaluate_tta(runs, demo_root, tmp_path, tta):
    """The same images through `predict --no-detect --tta` and `evaluate_model.py --tta` give the same
    probabilities (32 px demo faces, a 32 px model: no resizing on either path)."""
    from fer_keras.expression.evaluate import evaluate_run as evaluate

    out_eval, _ = evaluate(run=runs["va"], data=demo_root["folder"], labels="8", split="train", tta=tta,
                           out=str(tmp_path / "eval"))
    ev = {r["source"]: r for r in _rows(os.path.join(out_eval, "predictions.csv"))}
    out = str(tmp_path / "pred")
    predict_main([demo_root["folder"], "--model", runs["va"], "--no-detect", "--tta", tta, "--out", out])
    pr = _rows(os.path.join(out, "predictions.csv"))
    names = json.load(open(os.path.join(runs["va"], "labels.json")))["class_names"]
    matched = 0
    for r in pr:
        e = ev.get(os.path.abspath(r["source"])) or ev.get(r["source"])
        if e is None:
            continue
        matched += 1
        np.testing.assert_allclose([float(r[f"p_{c}"]) for c in names], [float(e[f"p_{c}"]) for c in names],
                                   atol=2e-4)
        np.testing.assert_allclose([float(r["valence"]), float(r["arousal"])],
                                   [float(e["valence_pred"]), float(e["arousal_pred"])], atol=2e-4)
    assert matched >= 50
    # and TTA changes the numbers (it is not a no-op)
    plain = FacePredictor(runs["va"]).predict([np.asarray(cv2_read(p)) for p in sorted(ev)[:8]])
    aug = FacePredictor(runs["va"], tta=tta).predict([np.asarray(cv2_read(p)) for p in sorted(ev)[:8]])
    assert not np.allclose(plain["expression"], aug["expression"], atol=1e-6)


def cv2_read(path):
    import cv2

    return cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)


@pytest.mark.slow
def test_a_model_names_its_own_views_and_tta_auto_uses_them(runs, tmp_path, capsys):
    """`"tta"` in a model's metadata is what `--tta auto` (the default) uses for images; videos use none; a wrong
    value is one line naming the file."""
    import shutil

    from fer_keras.errors import ConfigError
    from fer_keras.expression.evaluate import evaluate_run

    run = str(tmp_path / "run")
    shutil.copytree(runs["va"], run)
    assert FacePredictor(run).tta == "none"  # a run that names nothing
    labels = json.load(open(os.path.join(run, "labels.json")))
    json.dump({**labels, "tta": "flip"}, open(os.path.join(run, "labels.json"), "w"))
    p = FacePredictor(run)
    assert p.tta == "flip" and read_model_info(run).tta == "flip"
    rng = np.random.default_rng(1)
    crops = [rng.integers(0, 256, (p.size, p.size, p.channels), dtype=np.uint8) for _ in range(5)]
    plain = FacePredictor(run, tta="none").predict(crops)
    np.testing.assert_allclose(p.with_tta("none").predict(crops)["expression"], plain["expression"], atol=1e-6)
    assert not np.allclose(p.predict(crops)["expression"], plain["expression"], atol=1e-6)
    _, res = evaluate_run(run=run, split="test")
    assert res["info"]["tta"] == "flip"
    json.dump({**labels, "tta": "rotate"}, open(os.path.join(run, "labels.json"), "w"))
    with pytest.raises(ConfigError, match="tta 'rotate' in its metadata is no test-time augmentation"):
        FacePredictor(run)


def test_predict_tta_rejects_unknown_view(runs, demo_root, capsys):
    with pytest.raises(SystemExit) as e:
        predict_main([demo_root["folder"], "--model", runs["va"], "--tta", "rotate"])
    assert e.value.code == 2


def test_predict_labels_maps_probabilities_like_evaluate(runs, demo_root, tmp_path, capsys):
    """`predict --labels 2` reports an 8-class model as positive/negative (probabilities summed by class name, as
    evaluate_model.py maps them) and scores pos/neg folders in that preset, with an overall accuracy/UAR line."""
    import shutil

    from fer_keras.labels import map_probabilities
    from fer_keras.labels import map_name, normalize_name, preset_classes

    root = tmp_path / "pn"
    for cls in sorted(os.listdir(demo_root["folder"])):  # regroup the demo faces into pos/ and neg/ folders
        side = preset_classes("2")[map_name(cls, "2")][:3]
        os.makedirs(root / side, exist_ok=True)
        for f in sorted(os.listdir(os.path.join(demo_root["folder"], cls)))[:3]:
            shutil.copy(os.path.join(demo_root["folder"], cls, f), root / side / f"{cls}_{f}")
    out = str(tmp_path / "p2")
    predict_main([str(root), "--model", runs["va"], "--no-detect", "--labels", "2", "--out", out, "-v"])
    printed = capsys.readouterr().out
    rows = _rows(os.path.join(out, "predictions.csv"))
    assert {k for k in rows[0] if k.startswith("p_")} == {"p_positive", "p_negative"}
    plain = FacePredictor(runs["va"])
    imgs = [cv2_read(r["source"]) for r in rows]
    expect = map_probabilities(plain.predict([plain.prepare(i) for i in imgs])["expression"],
                               plain.class_names, "2")
    np.testing.assert_allclose([[float(r["p_positive"]), float(r["p_negative"])] for r in rows], expect, atol=1e-5)
    acc = {os.path.basename(r["folder"]): r for r in _rows(os.path.join(out, "folder_accuracy.csv"))}
    assert set(acc) == {"pos", "neg"} and acc["pos"]["class"] == "positive"
    truth = np.array([normalize_name(os.path.basename(os.path.dirname(r["source"]))) for r in rows])
    pred = np.array([r["label"] for r in rows])
    summary = json.load(open(os.path.join(out, "accuracy.json")))
    assert summary["accuracy"] == pytest.approx(np.mean(truth == pred))
    assert summary["uar"] == pytest.approx(np.mean([np.mean(pred[truth == c] == c) for c in ("positive",
                                                                                              "negative")]))
    assert "overall: accuracy" in printed and "face 0:" in printed  # -v: one line per face
    # without --labels, the 8-class model cannot score pos/neg folders: it says so instead of skipping silently
    predict_main([str(root), "--model", runs["va"], "--no-detect", "--out", str(tmp_path / "p8")])
    assert "2 class-named folder(s) not scored" in capsys.readouterr().out
