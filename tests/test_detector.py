"""The RetinaNet face detector: head initialisation, learning, save/load, and the CLIs (train → evaluate →
visualize → export → predict --detector) on tiny synthetic dark scenes."""

import json
import math
import os

import numpy as np
import pytest

pytest.importorskip("keras_hub")

from fer_keras.detection import retinanet as R  # noqa: E402
from fer_keras.detection.data import detection_batches, read_darkface, write_dark_scenes  # noqa: E402
from fer_keras.errors import ConfigError  # noqa: E402


def _tiny_batch(tmp_path, n=4, size=(96, 64)):
    root = write_dark_scenes(str(tmp_path / "scenes"), n=n, size=size, seed=0, faces=(1, 2))
    x, y = next(detection_batches(read_darkface(root), size, n, False))
    return x / 255.0, {"boxes": y["boxes"], "labels": y["classes"]}


def test_heads_use_the_retinanet_paper_initialisation():
    det = R.build_retinanet("resnet10", head_convs=1)
    cls_bias = np.asarray(det.classification_head.prediction_layer.bias)
    box_bias = np.asarray(det.box_head.prediction_layer.bias)
    np.testing.assert_allclose(cls_bias, -math.log(99.0), rtol=1e-6)  # every anchor starts at p = 0.01
    np.testing.assert_array_equal(box_bias, 0.0)  # KerasHub puts the prior bias here by default
    assert abs(float(np.std(np.asarray(det.classification_head.prediction_layer.kernel))) - 0.01) < 0.002
    with pytest.raises(ConfigError, match="multiples of 32"):
        R.check_input_size(100, 64)
    with pytest.raises(ConfigError, match="unknown detection backbone 'resnet99'; valid: resnet10, resnet18"):
        R.build_retinanet("resnet99")


@pytest.mark.slow
def test_a_few_steps_reduce_the_loss_and_save_load_round_trips(tmp_path):
    import keras

    x, y = _tiny_batch(tmp_path)
    keras.utils.set_random_seed(0)
    det = R.build_retinanet("resnet10", head_convs=1)
    R.compile_retinanet(det, keras.optimizers.Adam(1e-3))
    # One batch, one step per epoch: the training loss of the first step vs the last (training-mode BN).
    loss = det.fit(x, y, batch_size=4, epochs=15, verbose=0).history["loss"]
    assert loss[-1] < 0.5 * loss[0], loss

    path = str(tmp_path / "det.keras")
    det.save(path)
    again = R.load_detector(path)
    a, b = det(x, training=False), again(x, training=False)
    for k in ("cls_logits", "bbox_regression"):
        np.testing.assert_allclose(np.asarray(a[k]), np.asarray(b[k]), atol=1e-5)
    d1, d2 = R.predict_boxes(det, x, 4), R.predict_boxes(again, x[:3], 4)  # a short batch is padded
    assert len(d2) == 3 and all(d.shape[1] == 5 for d in d1)
    np.testing.assert_allclose(d1[0], d2[0], atol=1e-4)
    with pytest.raises(ConfigError, match="cannot load the detector"):
        R.load_detector(str(tmp_path / "missing.keras"))
    # detection.weights: start from a local weights file of the same detector (nothing is downloaded).
    det.save_weights(str(tmp_path / "det.weights.h5"))
    warm = R.build_retinanet("resnet10", head_convs=1, weights=str(tmp_path / "det.weights.h5"))
    np.testing.assert_allclose(np.asarray(warm(x)["cls_logits"]), np.asarray(a["cls_logits"]), atol=1e-5)
    with pytest.raises(ConfigError, match="cannot load detector weights"):
        R.build_retinanet("resnet18", head_convs=1, weights=str(tmp_path / "det.weights.h5"))  # other shape


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_detection_run_through_the_clis(tmp_path, monkeypatch, capsys):
    import cv2
    import tensorflow as tf

    from fer_keras.cli_evaluate import main as evaluate_main
    from fer_keras.cli_train import main as train_main
    from fer_keras.cli_visualize import main as visualize_main
    from fer_keras.cli_export import main as export_main
    from fer_keras.cli_predict import main as predict_main

    monkeypatch.setenv("FER_KERAS_DATA", str(tmp_path / "data"))
    run = train_main(["--task", "detection", "--runs-dir", str(tmp_path / "runs"), "--name", "det", "--epochs", "2",
                      "--batch-size", "4", "--set", "detection.scenes=12", "--set", "detection.image_width=128",
                      "--set", "detection.image_height=96", "--set", "detection.head_convs=1",
                      "--set", "train.steps_per_epoch=2", "--set", "train.verbose=0"])
    for f in ("config.yaml", "data_summary.json", "history.csv", "model.keras", "metrics.json", "runtime.json"):
        assert os.path.isfile(os.path.join(run, f)), f
    hist = open(os.path.join(run, "history.csv")).read().splitlines()
    assert len(hist) == 3 and "val_ap50" in hist[0]
    m = json.load(open(os.path.join(run, "metrics.json")))["val"]
    assert m["images"] == 8 and 0.0 <= m["ap50"] <= 1.0
    with pytest.raises(SystemExit):  # never overwrite a run
        train_main(["--task", "detection", "--runs-dir", str(tmp_path / "runs"), "--name", "det"])
    assert "runs are never overwritten" in capsys.readouterr().err

    out = evaluate_main(["--run", run])
    assert json.load(open(os.path.join(out, "metrics.json"))) == m  # same model, same data, same numbers
    report = visualize_main(["--run", run])
    assert os.path.isfile(report)
    assert os.path.isfile(os.path.join(run, "plots", "pr_curve_val.png"))
    assert os.path.isfile(os.path.join(run, "plots", "detections_val.png"))

    written = export_main(["--run", run, "--format", "savedmodel"])
    served = tf.saved_model.load(written["savedmodel"]).signatures["serving_default"]
    scene = cv2.cvtColor(cv2.imread(os.path.join(tmp_path, "data", "dark-scenes-12", "val", "image", "00001.png")),
                         cv2.COLOR_BGR2RGB)
    out = served(images=tf.constant(scene[None]))
    assert out["boxes"].shape[-1] == 4 and out["scores"].shape[:2] == out["boxes"].shape[:2]
    # The SavedModel (letterboxing in the graph) and the Python detector agree on the boxes.
    from fer_keras.detection.faces import RetinaNetFaceDetector, make_detector
    from fer_keras.run_dir import RunDir

    py = RetinaNetFaceDetector.from_run(RunDir.open(run), min_score=0.0)
    n = int(out["num_detections"][0])
    boxes = py(scene)
    assert len(boxes) == len([b for b in out["boxes"][0][:n].numpy() if b[2] - b[0] >= 2 and b[3] - b[1] >= 2])

    with pytest.raises(ConfigError, match="an expression run|not a run directory"):
        make_detector(str(tmp_path))
    res = predict_main([os.path.join(tmp_path, "data", "dark-scenes-12", "val", "image"), "--detector", run,
                        "--min-score", "0.0", "--out", str(tmp_path / "pred"), "--model",
                        _tiny_expression_model(tmp_path)])
    assert len(res.rows) + len(res.errors) >= 8


def _tiny_expression_model(tmp_path) -> str:
    from fer_keras.config import ModelConfig
    from fer_keras.models import build_model

    m = build_model(ModelConfig(name="CustomCNN", widths=[8], blocks=[1]), 7, (32, 32, 3))
    path = str(tmp_path / "expr.keras")
    m.save(path)
    return path


@pytest.mark.slow
def test_interrupted_detection_run_resumes(tmp_path, monkeypatch):
    """A named detection run that dies after epoch 2 of 3 continues at epoch 3 when the same command is rerun."""
    import csv

    import keras

    from fer_keras.run_dir import RunDir
    import fer_keras.detection.retinanet_run as T  # the RetinaNet fit, which takes the shared make_callbacks
    from fer_keras.cli_train import main as train_main

    class Crash(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("simulated crash")

    real = T.make_callbacks

    def with_crash(*a, **k):
        cbs, logger = real(*a, **k)
        return cbs + [Crash()], logger

    monkeypatch.setenv("FER_KERAS_DATA", str(tmp_path / "data"))
    args = ["--task", "detection", "--runs-dir", str(tmp_path / "runs"), "--name", "det", "--epochs", "3",
            "--batch-size", "2", "--set", "detection.scenes=6", "--set", "detection.image_width=64",
            "--set", "detection.image_height=64", "--set", "detection.head_convs=1",
            "--set", "train.steps_per_epoch=1", "--set", "train.verbose=0"]
    monkeypatch.setattr(T, "make_callbacks", with_crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_main(args)
    run = str(tmp_path / "runs" / "det")
    assert json.load(open(os.path.join(run, "state.json")))["status"] == "running"
    assert RunDir(run).resume_epoch() == 2
    monkeypatch.setattr(T, "make_callbacks", real)
    train_main(args)
    epochs = [int(r["epoch"]) for r in csv.DictReader(open(os.path.join(run, "history.csv")))]
    assert epochs == [0, 1, 2]  # epochs 0-1 were backed up before the crash; training resumed at epoch 2
    assert json.load(open(os.path.join(run, "runtime.json")))["resumed_at_epoch"] == 2
    assert json.load(open(os.path.join(run, "state.json")))["status"] == "finished"
    assert not os.path.exists(os.path.join(run, "backup"))
