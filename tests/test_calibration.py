"""The calibrated output prior (fer_keras/calibration.py) and scoring data that lacks some of the model's classes:
the math, the sidecar round trip, the same labels through Keras, LiteRT and the API, `--calibration none` = raw
outputs, and the restricted accuracy against a hand count."""

import json
import os

import numpy as np
import pytest

from fer_keras.calibration import Calibration, logit_adjustment, parse_calibration
from fer_keras.errors import ConfigError
from fer_keras.metrics import restrict_to_classes

NAMES = ["neutral", "happy", "sad", "surprise", "anger"]


def test_logit_adjustment_divides_out_a_share_of_the_prior():
    prior = np.array([0.4, 0.3, 0.1, 0.1, 0.1])
    probs = np.array([[0.5, 0.2, 0.1, 0.1, 0.1], [0.3, 0.3, 0.2, 0.1, 0.1]])
    full = logit_adjustment(prior, 1.0, NAMES).apply(probs)
    want = probs / prior
    np.testing.assert_allclose(full, want / want.sum(1, keepdims=True), rtol=1e-6)
    half = logit_adjustment(prior, 0.5, NAMES).apply(probs)
    want = probs / np.sqrt(prior)
    np.testing.assert_allclose(half, want / want.sum(1, keepdims=True), rtol=1e-6)
    np.testing.assert_allclose(logit_adjustment(prior, 0.0, NAMES).apply(probs), probs, rtol=1e-6)
    assert full.shape == probs.shape and np.allclose(full.sum(1), 1.0)
    assert probs[0].argmax() == 0 and full[0].argmax() == 0  # 0.5/0.4 = 1.25 still leads 0.2/0.3, 0.1/0.1
    assert probs[1].argmax() == 0 and full[1].argmax() == 2  # 0.2/0.1 beats 0.3/0.4 once the prior is out


@pytest.mark.parametrize("meta, message", [
    ({"method": "magic", "class_names": NAMES, "bias": [0] * 5}, "method 'magic' is unknown"),
    ({"method": "logit_adjustment", "class_names": NAMES, "bias": [0] * 4}, "one per bias value"),
    ({"method": "logit_adjustment", "class_names": NAMES, "bias": [0, 0, 0, 0, float("nan")]}, "finite numbers"),
    ({"method": "logit_adjustment", "class_names": NAMES[::-1], "bias": [0] * 5}, "differ from the model's"),
    ([1, 2], "not a JSON object"),
])
def test_bad_stored_calibration_is_one_clear_error(meta, message):
    with pytest.raises(ConfigError, match=message):
        parse_calibration(meta, NAMES, "m.keras")


def test_restrict_to_classes_leaves_out_the_absent_ones():
    probs = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3]])
    out = restrict_to_classes(probs, [1, 2])
    np.testing.assert_allclose(out, [[0, 0.75, 0.25], [0, 0.625, 0.375]])


@pytest.fixture(scope="module")
def exported_run(tmp_path_factory, demo_root):
    from fer_keras.cli_train import main as train_main
    from fer_keras.export import export_run
    from tiny import tiny_argv

    runs = str(tmp_path_factory.mktemp("runs"))
    run = train_main(tiny_argv("--data", demo_root["csv"], "--labels", "5", "--runs-dir", runs,
                               "--precision", "float32"))
    paths = export_run(run, ["keras", "tflite"])
    return run, paths


def _crops(n=12, seed=0):
    return list(np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3)).astype(np.uint8))


def test_calibration_round_trips_and_labels_agree_across_backends(exported_run, tmp_path):
    from fer_keras.model_info import read_model_info, write_calibration
    from fer_keras.predict import FacePredictor

    run, _ = exported_run
    raw = FacePredictor(run, backend="keras", calibration="none").predict(_crops())["expression"]
    prior = raw.mean(axis=0)  # the model's own mean prediction: tau 1 moves labels away from its favourite class
    cal = logit_adjustment(prior, 1.0, read_model_info(run).class_names, chosen_on="test data")
    write_calibration(run, cal)
    try:
        stored = read_model_info(run).calibration
        assert stored.bias == pytest.approx(cal.bias, abs=1e-6) and stored.tau == 1.0
        assert stored.chosen_on == "test data"
        keras_out = FacePredictor(run, backend="keras").predict(_crops())["expression"]
        lite_out = FacePredictor(run, backend="litert").predict(_crops())["expression"]
        np.testing.assert_allclose(keras_out, cal.apply(raw), atol=1e-5)
        np.testing.assert_allclose(lite_out, keras_out, atol=1e-4)
        assert keras_out.argmax(1).tolist() == lite_out.argmax(1).tolist()
        import fer_keras

        faces = fer_keras.Analyzer(run, detector=None, backend="litert").analyze(_crops(1)[0])
        assert faces[0].label == read_model_info(run).class_names[int(keras_out[0].argmax())]
        # --calibration none: the raw outputs, on both backends
        for backend in ("keras", "litert"):
            none = FacePredictor(run, backend=backend, calibration="none").predict(_crops())["expression"]
            np.testing.assert_allclose(none, raw, atol=1e-4)
    finally:
        write_calibration(run, None)
    assert read_model_info(run).calibration is None


def test_calibration_in_a_keras_sidecar_and_an_unknown_mode(exported_run):
    from fer_keras.model_info import read_model_info, write_calibration
    from fer_keras.predict import FacePredictor

    _, paths = exported_run
    model_file = paths["keras"]
    names = read_model_info(model_file).class_names
    cal = logit_adjustment([0.5, 0.2, 0.1, 0.1, 0.1], 0.7, names)
    side = write_calibration(model_file, cal)
    try:
        assert json.load(open(side))["calibration"]["tau"] == 0.7
        assert isinstance(read_model_info(model_file).calibration, Calibration)
        with pytest.raises(ConfigError, match="calibration 'off': valid: auto, none"):
            FacePredictor(model_file, calibration="off")
    finally:
        write_calibration(model_file, None)


def test_evaluate_scores_both_class_scopes_and_the_calibration(exported_run, tmp_path, demo_root):
    """A tiny folder without one of the model's classes: the restricted accuracy equals a hand count made from the
    model's own probabilities (predictions.csv), and --classes picks the headline."""
    import csv
    import shutil

    from fer_keras.expression.evaluate import evaluate_run

    run, _ = exported_run
    data = tmp_path / "no_neutral"
    for cls in sorted(os.listdir(demo_root["folder"])):
        if cls in ("neutral", "disgust", "fear", "contempt"):  # neutral is the model's; the rest no 5-class name
            continue
        shutil.copytree(os.path.join(demo_root["folder"], cls), data / cls)
    out_model, res = evaluate_run(run=run, data=str(data), split="all", out=str(tmp_path / "m"))
    rows = list(csv.DictReader(open(os.path.join(out_model, "predictions.csv"))))
    names = res["info"]["class_names"]
    present = sorted({names.index(r["true"]) for r in rows})
    assert names.index("neutral") not in present
    probs = np.array([[float(r[f"p_{c}"]) for c in names] for r in rows])
    truth = np.array([names.index(r["true"]) for r in rows])
    hand_model = float(np.mean(probs.argmax(1) == truth))
    keep = np.full(len(names), -np.inf)
    keep[present] = 0.0
    hand_data = float(np.mean((probs + keep).argmax(1) == truth))
    assert res["classes"]["model"]["accuracy"] == pytest.approx(hand_model)
    assert res["classes"]["data"]["accuracy"] == pytest.approx(hand_data)
    assert res["expression"]["accuracy"] == pytest.approx(hand_model) and res["classes"]["headline"] == "model"
    assert "## Over which classes" in open(os.path.join(out_model, "metrics.md")).read()
    _, res_data = evaluate_run(run=run, data=str(data), split="all", out=str(tmp_path / "d"), classes="data")
    assert res_data["expression"]["accuracy"] == pytest.approx(hand_data)
    assert res_data["classes"]["model"]["accuracy"] == pytest.approx(hand_model)
    with pytest.raises(ConfigError, match="--classes 'both'"):
        evaluate_run(run=run, data=str(data), split="all", out=str(tmp_path / "x"), classes="both")
    # A stored calibration is applied (and named) unless --calibration none
    from fer_keras.model_info import read_model_info, write_calibration

    cal = logit_adjustment([0.6, 0.1, 0.1, 0.1, 0.1], 1.0, read_model_info(run).class_names)
    write_calibration(run, cal)
    try:
        _, calibrated = evaluate_run(run=run, data=str(data), split="all", out=str(tmp_path / "c"))
        _, none = evaluate_run(run=run, data=str(data), split="all", out=str(tmp_path / "n"), calibration="none")
    finally:
        write_calibration(run, None)
    assert calibrated["info"]["calibration"]["method"] == "logit_adjustment"
    assert none["info"]["calibration"] is None
    assert none["classes"]["model"]["accuracy"] == pytest.approx(hand_model)
    recal = cal.apply(probs)
    assert calibrated["classes"]["model"]["accuracy"] == pytest.approx(float(np.mean(recal.argmax(1) == truth)))


def test_the_report_names_the_calibration_and_both_class_scopes():
    from fer_keras.report import headline, metric_tables

    cal = logit_adjustment([0.4, 0.3, 0.1, 0.1, 0.1], 0.6, NAMES).to_dict()
    metrics = {"info": {"class_names": NAMES, "calibration": cal, "split": "all", "preset": "5", "model": "m.keras"},
               "expression": {"num_samples": 10, "accuracy": 0.5, "uar": 0.4, "per_class": {}},
               "classes": {"headline": "data", "data_classes": NAMES[1:], "model": {"accuracy": 0.5, "uar": 0.4},
                           "data": {"accuracy": 0.7, "uar": 0.6}}}
    assert "calibration logit_adjustment (tau 0.6)" in headline(metrics, "run")
    tables = dict(metric_tables(metrics))
    assert "the 4 classes the data has (data) ← headline" in tables["Over which classes"]
    assert "0.700" in tables["Over which classes"]


def test_an_unfinished_runs_scores_say_so(exported_run, tmp_path):
    from fer_keras.expression.evaluate import evaluate_run

    run, _ = exported_run
    state = os.path.join(run, "state.json")
    before = open(state).read()
    try:
        with open(state, "w") as f:
            json.dump({"status": "stopped"}, f)
        _, res = evaluate_run(run=run, out=str(tmp_path / "e"))
    finally:
        with open(state, "w") as f:
            f.write(before)
    assert res["info"]["run_status"] == "stopped" and "not finished (state: stopped)" in res["info"]["note"]
    _, done = evaluate_run(run=run, out=str(tmp_path / "f"))
    assert done["info"]["run_status"] == "finished" and "not finished" not in done["info"]["note"]


def test_the_class_bias_search_lowers_an_over_predicted_class_within_its_floor():
    """benchmarks/choose_calibration.py's coordinate search: on predictions that favour class 0 too much, the
    search shifts class 0 down and raises accuracy; a floor on another number keeps it from going further."""
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
    from choose_calibration import search_class_bias

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 600)
    logits = rng.normal(0, 1, (600, 3))
    logits[np.arange(600), y] += 1.5
    logits[:, 0] += 1.2  # class 0 over-predicted
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    names = ["neutral", "happy", "sad"]

    def score_of(cal):
        acc = float(np.mean(cal.apply(probs).argmax(1) == y))
        return {"score": acc, "recall_0": float(np.mean(cal.apply(probs)[y == 0].argmax(1) == 0))}

    raw = score_of(Calibration("class_bias", names, [0.0, 0.0, 0.0]))
    cal, best = search_class_bias(np.zeros(3), names, score_of, 0.1, 2.0, 2)
    assert best["score"] > raw["score"] + 0.05 and cal.bias[0] < min(cal.bias[1:])
    floor = raw["recall_0"] - 0.02
    cal2, best2 = search_class_bias(np.zeros(3), names, score_of, 0.1, 2.0, 2, lambda r: r["recall_0"] >= floor)
    assert best2["recall_0"] >= floor and best2["score"] <= best["score"]
