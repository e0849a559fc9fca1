"""User mistakes as a user sees them: each CLI runs as a subprocess (TensorFlow logging as a user gets it) and must
exit 2 with exactly one stderr line that names the key/file, no traceback, and leave earlier outputs untouched."""

import os
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest

from tiny import tiny_argv
from fer_keras.io_utils import slug
from fer_keras.run_dir import run_lock

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = tiny_argv("--set", "data.demo_per_class=4", "--set", "data.demo_size=32")


def run_cli(args, cwd):
    env = {k: v for k, v in os.environ.items() if k not in ("FER_KERAS_TF_LOGS", "FER_KERAS_DEBUG")}
    return subprocess.run([sys.executable] + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def assert_one_line_error(proc, *expected):
    err = proc.stderr.strip()
    assert proc.returncode == 2, (proc.returncode, err)
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for e in expected:
        assert e in err, err


@pytest.fixture(scope="module")
def face_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("faces")
    cv2.imwrite(str(d / "face.png"), np.random.default_rng(0).integers(0, 255, (48, 48, 3), dtype=np.uint8))
    return str(d)


@pytest.mark.slow
@pytest.mark.parametrize("argv,expected", [
    (["--batch-size", "0"], "config key data.batch_size: 0 is out of range"),
    (["--image-size", "0"], "config key data.image_size: 0 is out of range"),
    (["--epochs", "0"], "config key train.epochs: 0 is out of range"),
    (["--set", "data.val_fraction=1.5"], "config key data.val_fraction: 1.5 is out of range"),
    (["--set", "data.val_fraction=0.6", "--set", "data.test_fraction=0.5"], "must be below 1"),
    (["--set", "train.learning_rate=nan"], "train.learning_rate: nan is out of range"),
    (["--data", "/nonexistent/faces"], "/nonexistent/faces"),
])
def test_training_range_and_path_errors(argv, expected, tmp_path):
    # TINY first: the case's own flag (e.g. --epochs 0) comes later and wins.
    proc = run_cli([os.path.join(ROOT, "train_model.py"), "--runs-dir", str(tmp_path / "runs")] + TINY + argv,
                   tmp_path)
    assert_one_line_error(proc, expected)
    assert not os.path.isdir(tmp_path / "runs") or os.listdir(tmp_path / "runs") == []


@pytest.mark.parametrize("argv,expected", [
    (["--padding", "-0.6"], "--padding -0.6: out of range"),
    (["--batch-size", "0"], "--batch-size 0: out of range"),
    (["--min-score", "1.5"], "--min-score 1.5: out of range"),
])
def test_predict_range_errors(argv, expected, face_dir, tmp_path):
    proc = run_cli(["-m", "fer_keras.predict", face_dir, "--no-detect", "--out", str(tmp_path / "out")] + argv,
                   ROOT)
    assert_one_line_error(proc, expected)


def test_predict_output_under_a_file_is_one_line(face_dir, tmp_path):
    (tmp_path / "afile").write_text("x")
    proc = run_cli(["-m", "fer_keras.predict", face_dir, "--no-detect", "--out", str(tmp_path / "afile" / "out")],
                   ROOT)
    assert_one_line_error(proc, str(tmp_path / "afile" / "out"))


def test_predict_missing_input_is_reported_and_the_rest_processed(face_dir, tmp_path):
    out = tmp_path / "out"
    proc = run_cli(["-m", "fer_keras.predict", face_dir, str(tmp_path / "gone.png"), "--no-detect", "--out",
                    str(out)], ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "gone.png: no such file" in proc.stderr and "Traceback" not in proc.stderr
    assert "face.png" in (out / "predictions.csv").read_text()
    assert 'gone.png,"no such file, folder or webcam index"' in (out / "errors.csv").read_text()
    proc = run_cli(["-m", "fer_keras.predict", str(tmp_path / "gone.png"), "--no-detect"], tmp_path)
    assert_one_line_error(proc, "gone.png: no such file, folder or webcam index")


@pytest.mark.slow
def test_same_named_run_cannot_be_trained_twice_at_once(tmp_path):
    runs = str(tmp_path / "runs")
    with run_lock(os.path.join(runs, "shared")):
        proc = run_cli([os.path.join(ROOT, "train_model.py"), "--runs-dir", runs, "--name", "shared"] + TINY,
                       tmp_path)
    assert_one_line_error(proc, "is being trained right now by process", "choose another --name")
    assert not os.path.exists(os.path.join(runs, "shared"))


@pytest.mark.slow
def test_a_failed_start_leaves_no_run(tmp_path):
    runs = tmp_path / "runs"
    proc = run_cli([os.path.join(ROOT, "train_model.py"), "--runs-dir", str(runs), "--name", "bad-init",
                    "--set", f"model.init_from={tmp_path / 'missing.keras'}"] + TINY, tmp_path)
    assert_one_line_error(proc, "missing.keras")
    assert os.listdir(runs) == []


def test_run_names_stay_distinct_and_inside_the_runs_folder():
    assert slug(".") == slug("..") == "run"
    assert slug("日本") == "日本" and slug("中文") == "中文"
    assert slug("a/../b") == "a-..-b" and "/" not in slug("../../etc")


def test_foreign_keras_models_are_refused_with_the_file_named(tmp_path, capsys):
    """Models predict/evaluate cannot use: no `expression` output, no fixed input size, 3 classes without names."""
    import keras

    from fer_keras.cli_predict import main as predict_main

    def save(name, inp, heads):
        x = keras.layers.GlobalAveragePooling2D()(inp)
        outputs = {h: keras.layers.Dense(k, name=h)(x) for h, k in heads.items()}
        path = str(tmp_path / name)
        keras.Model(inp, outputs).save(path)
        return path

    cases = [
        (save("noexpr.keras", keras.Input((32, 32, 3)), {"logits": 7}), "noexpr.keras: not a fer_keras model"),
        (save("dynamic.keras", keras.Input((None, None, 3)), {"expression": 7}),
         "dynamic.keras: input shape (None, None, None, 3) is not a fixed-size image"),
        (save("three.keras", keras.Input((32, 32, 3)), {"expression": 3}),
         "three.keras: the expression output has 3 classes, which is no label preset"),
    ]
    img = tmp_path / "face.png"
    cv2.imwrite(str(img), np.zeros((40, 40, 3), np.uint8))
    for path, expected in cases:
        with pytest.raises(SystemExit) as e:
            predict_main([str(img), "--model", path, "--no-detect", "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err.strip()
        assert e.value.code == 2 and len(err.splitlines()) == 1 and expected in err, err


@pytest.mark.skipif(__import__("fer_keras.predict").predict.can_show(), reason="this machine can open windows")
def test_show_without_a_gui_says_so(face_dir, tmp_path):
    proc = run_cli(["-m", "fer_keras.predict", face_dir, "--no-detect", "--show", "--out", str(tmp_path / "o")],
                   ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "note: --show needs a window and" in proc.stderr and "continuing without it" in proc.stderr


@pytest.mark.slow
def test_a_training_console_is_quiet_and_says_what_it_trains_on(tmp_path):
    """Issue 20: what a user sees from a plain demo training, as a subprocess writing to a log (not a terminal)."""
    proc = run_cli([os.path.join(ROOT, "train_model.py"), "--runs-dir", str(tmp_path / "runs"),
                    *tiny_argv("--epochs", "2", "--set", "train.verbose=-1", "--set", "data.demo_per_class=4",
                               "--set", "data.demo_size=32")], tmp_path)
    assert proc.returncode == 0, proc.stderr
    for noise in ("I0000", "W0000", "E0000", "oneDNN", "absl", "UserWarning", "shuffle=True", "Traceback"):
        assert noise not in proc.stderr, proc.stderr
    out = proc.stdout
    assert "training CustomCNN on the built-in synthetic demo data (generated cartoon faces, not real ones" in out
    epochs = [ln for ln in out.splitlines() if ln.startswith("epoch ")]
    # one short line per epoch in a log (no progress-bar redraws, not Keras' 17-metric line), rounded numbers
    assert [ln.split(" ")[1] for ln in epochs] == ["1/2", "2/2"] and "\r" not in out and "Epoch " not in out
    assert all(len(ln) < 200 and not re.search(r"\d\.\d{6,}", ln) for ln in epochs), epochs
    assert "done: " in out


def test_same_file_names_in_two_folders_keep_both_outputs(tmp_path):
    """--annotate / --save-crops of a/face.png and b/face.png used to overwrite each other."""
    for d, seed in (("a", 1), ("b", 2)):
        (tmp_path / d).mkdir()
        cv2.imwrite(str(tmp_path / d / "face.png"),
                    np.random.default_rng(seed).integers(0, 255, (48, 48, 3), dtype=np.uint8))
    out = tmp_path / "out"
    proc = run_cli(["-m", "fer_keras.predict", str(tmp_path / "a"), str(tmp_path / "b"), "--no-detect",
                    "--annotate", "--save-crops", "--out", str(out)], ROOT)
    assert proc.returncode == 0, proc.stderr
    assert len(os.listdir(out / "annotated")) == 2 and len(os.listdir(out / "crops")) == 2


@pytest.mark.slow
def test_truncated_run_files_are_one_line(tmp_path):
    """A run directory whose labels.json was cut short: evaluate names the file, no traceback."""
    import shutil

    src = os.path.join(ROOT, "fer_keras", "pretrained")
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(os.path.join(src, "multitask_customcnn.keras"), run / "model.keras")
    (run / "config.yaml").write_text("data:\n  labels: '8'\n")
    (run / "labels.json").write_text('{"preset": "8", "class_na')
    proc = run_cli([os.path.join(ROOT, "evaluate_model.py"), "--run", str(run)], tmp_path)
    assert_one_line_error(proc, "labels.json: cannot read model metadata")


def test_an_unknown_flag_is_one_line_with_the_nearest_option(capsys):
    """A wrong flag prints one error line naming it and the nearest valid option (by spelling or by another tool's
    name for it), not the whole usage text."""
    from fer_keras.cli_predict import main as predict_main
    from fer_keras.cli_evaluate import main as evaluate_main

    for main, flag, near in ((predict_main, "--threshold", "--min-score"), (predict_main, "--anotate", "--annotate"),
                             (evaluate_main, "--bootstrp", "--bootstrap")):
        with pytest.raises(SystemExit) as e:
            main(["x.jpg" if main is predict_main else "--run", flag, "1"] if main is predict_main else
                 ["--run", "r", flag, "1"])
        err = capsys.readouterr().err.strip()
        assert e.value.code == 2 and len(err.splitlines()) == 1, err
        assert f"unknown option {flag} (did you mean {near}?)" in err


def test_a_wrong_option_value_names_the_nearest_valid_one(capsys):
    """A value outside a flag's choices, or a registry name misspelt, names the nearest valid value."""
    from fer_keras.cli_predict import main as predict_main
    from fer_keras.models import MODELS

    with pytest.raises(SystemExit) as e:
        predict_main(["x.jpg", "--tta", "flp"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1, err
    assert "invalid choice: 'flp'" in err and "(did you mean 'flip'?)" in err
    with pytest.raises(ValueError, match=r"unknown model 'MobileNetV22'.*\(did you mean 'MobileNetV2'\?\)"):
        MODELS.canonical("MobileNetV22")


def test_predict_help_has_examples_and_stated_defaults(capsys):
    from fer_keras.cli_predict import main as predict_main

    with pytest.raises(SystemExit):
        predict_main(["--help"])
    out = capsys.readouterr().out
    assert "examples:" in out and "(default: predictions)" in out and "faces per model call (default: 64)" in out
    assert out.split("\n\n")[1].rstrip().endswith(".")  # the description is a whole sentence
