"""evaluate_model.py: outputs, cross-preset mapping by name, --compare, --model-path, errors."""

import csv
import json
import os

import numpy as np
import pytest

from tiny import tiny_argv
from fer_keras.cli_evaluate import main as eval_main
from fer_keras.cli_train import main as train_main
from fer_keras.errors import DataError
from fer_keras.labels import class_mapping_matrix, map_probabilities
from fer_keras.labels import preset_classes

TINY = tiny_argv()


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, demo_root):
    runs = str(tmp_path_factory.mktemp("runs"))
    a = train_main(["--data", demo_root["csv"], "--labels", "8", "--runs-dir", runs, "--name", "a"] + TINY)
    b = train_main(["--data", demo_root["csv"], "--labels", "8", "--runs-dir", runs, "--name", "b",
                    "--seed", "3"] + TINY)
    return runs, a, b


def test_evaluate_run_writes_outputs(two_runs, capsys):
    runs, a, _ = two_runs
    out = eval_main(["--run", a, "--bootstrap", "50"])
    assert out == a  # the run's own default evaluation lands in the run directory
    m = json.load(open(os.path.join(a, "metrics.json")))
    assert m["info"]["split"] == "test" and m["expression"]["num_samples"] > 0
    assert m["valence_arousal"]["num_labelled"] == m["expression"]["num_samples"]  # demo CSV has VA
    assert len(m["bootstrap_95ci"]["accuracy"]) == 2
    rows = list(csv.DictReader(open(os.path.join(a, "predictions.csv"))))
    assert len(rows) == m["expression"]["num_samples"]
    probs = np.array([[float(r[f"p_{c}"]) for c in preset_classes("8")] for r in rows])
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-3)
    acc = np.mean([r["true"] == r["pred"] for r in rows])
    assert acc == pytest.approx(m["expression"]["accuracy"])
    md = open(os.path.join(a, "metrics.md")).read()
    assert "## Categorical" in md and "| contempt |" in md and "CCC" in md
    assert "accuracy" in capsys.readouterr().out


def test_cross_preset_evaluation(two_runs):
    runs, a, _ = two_runs
    out = eval_main(["--run", a, "--labels", "2"])
    assert out.startswith(os.path.join(a, "eval"))  # other presets never overwrite the run's own metrics
    m = json.load(open(os.path.join(out, "metrics.json")))
    assert m["info"]["class_names"] == ["positive", "negative"] and len(m["expression"]["confusion_matrix"]) == 2
    assert "mapped by name" in m["info"]["note"]


def test_mapping_matrix_by_name():
    mat = class_mapping_matrix(preset_classes("8"), "7")
    assert mat[preset_classes("8").index("contempt")].sum() == 0  # dropped
    p8 = np.full((1, 8), 1 / 8)
    p2 = map_probabilities(p8, preset_classes("8"), "2")
    np.testing.assert_allclose(p2, [[3 / 8, 5 / 8]])
    fer_order = ["anger", "disgust", "fear", "happy", "sad", "surprise", "neutral"]  # a different class order
    p = np.eye(7)[[3]]  # 'happy' in FER order
    assert preset_classes("7")[map_probabilities(p, fer_order, "7").argmax()] == "happy"
    with pytest.raises(DataError, match="cannot be scored on the 7-class preset"):
        class_mapping_matrix(preset_classes("2"), "7")


def test_compare_two_runs(two_runs, tmp_path):
    runs, a, b = two_runs
    out = eval_main(["--compare", a, b, "--out", str(tmp_path / "cmp")])
    md = open(os.path.join(out, "comparison.md")).read()
    rows = list(csv.DictReader(open(os.path.join(out, "comparison.csv"))))
    assert [r["run"] for r in rows] == [a, b] and "uar" in md
    for r in rows:
        assert 0 <= float(r["accuracy"]) <= 1


def test_model_path_infers_preset(two_runs, demo_root, tmp_path):
    runs, a, _ = two_runs
    out = eval_main(["--model-path", os.path.join(a, "model.keras"), "--data", demo_root["folder"],
                     "--labels", "7", "--out", str(tmp_path / "e")])
    m = json.load(open(os.path.join(out, "metrics.json")))
    assert m["info"]["model_class_names"] == preset_classes("8") and m["info"]["preset"] == "7"
    assert m["valence_arousal"]["num_labelled"] == 0  # folders have no VA


def test_errors(tmp_path, capsys):
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip")
    for argv, msg in [(["--model-path", str(bad), "--data", "."], "bad.keras: not a complete .keras file"),
                      (["--run", str(tmp_path)], "not a run directory"),
                      (["--model", "VGG16"], "--model VGG16: evaluate_model.py scores a trained model, not an "
                                             "architecture; train one (python train_model.py --model VGG16)")]:
        with pytest.raises(SystemExit) as e:
            eval_main(argv)
        assert e.value.code == 2
        assert msg in capsys.readouterr().err


def test_flip_tta_averages_both_views(two_runs):
    from fer_keras.config import config_from_dict, read_yaml
    from fer_keras.data.pipeline import load_data
    from fer_keras.expression.evaluate import predict_table
    from fer_keras.model_info import load_keras_model

    runs, a, _ = two_runs
    cfg = config_from_dict(read_yaml(os.path.join(a, "config.yaml")))
    table = load_data(cfg.data).test
    model = load_keras_model(os.path.join(a, "model.keras"))
    plain = predict_table(model, table, cfg)
    tta = predict_table(model, table, cfg, tta="flip")
    flipped = model.predict(table.images[:, :, ::-1].astype("float32"), verbose=0)
    np.testing.assert_allclose(tta["expression"], (plain["expression"] + flipped["expression"]) / 2, atol=1e-5)
    out = eval_main(["--run", a, "--tta", "flip"])
    assert out.endswith("tta_flip") and json.load(open(os.path.join(out, "metrics.json")))["info"]["tta"] == "flip"


@pytest.mark.slow
def test_test_only_folder_split_all_and_the_shipped_model_default(demo_root, tmp_path, capsys):
    """A labelled dataset with only a test/ split (no train to cut from) is scored with --split test and
    --split all; with no run anywhere, the shipped model is scored and the console says so."""
    import shutil

    data = tmp_path / "testonly"
    shutil.copytree(demo_root["folder"], data / "test")
    n = sum(len(fs) for r, _, fs in os.walk(data) if os.path.basename(r) != "contempt")  # not in preset 7
    out = eval_main(["--runs-dir", str(tmp_path / "no-runs"), "--data", str(data), "--labels", "7",
                     "--out", str(tmp_path / "e1")])
    assert "scoring the shipped model" in capsys.readouterr().out
    m = json.load(open(os.path.join(out, "metrics.json")))
    assert m["info"]["split"] == "test" and m["expression"]["num_samples"] == n
    # --split all also scores train/val samples of a dataset that has them
    out = eval_main(["--runs-dir", str(tmp_path / "no-runs"), "--data", demo_root["folder"], "--labels", "7",
                     "--split", "all", "--out", str(tmp_path / "e2")])
    m = json.load(open(os.path.join(out, "metrics.json")))
    assert m["expression"]["num_samples"] == sum(len(fs) for r, _, fs in os.walk(demo_root["folder"])
                                                 if os.path.basename(r) != "contempt")


@pytest.mark.slow
def test_a_model_that_disagrees_with_its_metadata_is_refused_and_nothing_is_overwritten(tiny_run, tmp_path, capsys):
    """A run whose model.keras and labels.json do not belong together (a swapped model): evaluate and predict
    refuse it with one line naming it, and the run's earlier metrics stay byte-identical."""
    import shutil

    from fer_keras.cli_predict import main as predict_main

    run = str(tmp_path / "run")
    shutil.copytree(tiny_run, run)
    eval_main(["--run", run])
    before = open(os.path.join(run, "metrics.json"), "rb").read()
    labels = json.load(open(os.path.join(run, "labels.json")))
    labels["class_names"] = preset_classes("8")  # the 7-class model now sits under 8 names
    json.dump(labels, open(os.path.join(run, "labels.json"), "w"))
    capsys.readouterr()
    for main, argv in [(eval_main, ["--run", run]), (predict_main, [HOPPER_LIKE, "--model", run, "--no-detect",
                                                                     "--out", str(tmp_path / "p")])]:
        with pytest.raises(SystemExit) as e:
            main(argv)
        err = capsys.readouterr().err.strip()
        assert e.value.code == 2 and len(err.splitlines()) == 1
        assert "7 classes" in err and "names 8" in err and run in err
    assert open(os.path.join(run, "metrics.json"), "rb").read() == before


@pytest.mark.parametrize("meta, words", [({"tta": ["flip"]}, "tta ['flip']"),
                                         ({"class_names": []}, "class_names"),
                                         ({"trained_heads": {"valence_arousal": "yes"}}, "trained_heads")])
def test_bad_sidecar_values_are_one_line(tiny_run, tmp_path, meta, words):
    import shutil

    from fer_keras.errors import ConfigError
    from fer_keras.model_info import read_model_info

    model = str(tmp_path / "m.keras")
    shutil.copy(os.path.join(tiny_run, "model.keras"), model)
    json.dump({"class_names": preset_classes("7"), **meta}, open(str(tmp_path / "m.json"), "w"))
    with pytest.raises(ConfigError, match=words.replace("[", r"\[").replace("]", r"\]")):
        read_model_info(model)


HOPPER_LIKE = os.path.join(os.path.dirname(__import__("matplotlib").__file__), "mpl-data", "sample_data",
                           "grace_hopper.jpg")
