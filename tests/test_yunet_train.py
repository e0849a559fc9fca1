"""Training YuNet (detection runs with `detection.architecture: yunet`): prior order, SimOTA assignment, the EIoU and
head losses against hand computations, a few steps that lower the loss, and a tiny run through train → evaluate →
predict --detector RUN."""

import json
import math
import os

import numpy as np
import pytest

from fer_keras.detection import yunet_train as Y
from fer_keras.detection.data import read_darkface, write_dark_scenes

PTH = Y.DEFAULT_INIT


@pytest.fixture(scope="module")
def yunet():
    return Y.load_trained(PTH)


def test_priors_follow_the_order_of_the_flat_output(yunet):
    model = Y.build_training_model(yunet)
    x = np.random.default_rng(0).uniform(0, 255, (1, 64, 96, 3)).astype(np.float32)
    flat = np.asarray(model(x))
    priors = Y.grid_priors(64, 96)
    assert flat.shape == (1, len(priors), Y.FLAT) == (1, 8 * 12 + 4 * 6 + 2 * 3, 16)
    levels = Y.inference_model(model)(x)
    start = 8 * 12  # stride 16 starts after the stride-8 cells
    r, c = 2, 5
    k = start + r * 6 + c
    assert tuple(priors[k]) == (c * 16, r * 16, 16)
    np.testing.assert_allclose(flat[0, k, 2:6], np.asarray(levels["bbox_16"])[0, r, c], atol=1e-6)
    np.testing.assert_allclose(flat[0, k, 0], np.asarray(levels["cls_16"])[0, r, c, 0], atol=1e-6)
    np.testing.assert_allclose(flat[0, k, 6:], np.asarray(levels["kps_16"])[0, r, c], atol=1e-6)


def test_simota_takes_the_cheapest_priors_inside_the_face_near_its_centre():
    priors = Y.grid_priors(64, 64)
    face = np.array([[16, 16, 48, 48]], np.float32)
    boxes = np.repeat(face, len(priors), 0)  # every prediction is the face: IoU 1, dynamic k = 10
    scores = np.full(len(priors), 0.5, np.float32)
    scores[5] = 0.9  # a prior outside the face never wins, however confident
    idx, ious = Y.simota_assign(scores, priors, boxes, face)
    pos = np.nonzero(idx >= 0)[0]
    cx, cy = priors[pos, 0] + priors[pos, 2] / 2, priors[pos, 1] + priors[pos, 2] / 2
    assert len(pos) == 10 and 5 not in pos
    assert np.all((cx > 16) & (cx < 48) & (cy > 16) & (cy < 48))
    np.testing.assert_allclose(ious[pos], 1.0, atol=1e-6)
    # Predicted boxes that miss the face: dynamic k falls to 1, the best-overlapping prior is taken.
    boxes = np.tile(np.array([[0, 0, 4, 4]], np.float32), (len(priors), 1))
    boxes[20] = [18, 18, 46, 46]  # prior 20 = (4, 2) on stride 8: centre (36, 20), inside the face
    idx, ious = Y.simota_assign(scores, priors, boxes, face)
    assert list(np.nonzero(idx >= 0)[0]) == [20]
    assert abs(ious[20] - (28 * 28) / (32 * 32)) < 1e-5
    # No face: no positive.
    idx, _ = Y.simota_assign(scores, priors, boxes, np.zeros((0, 4), np.float32))
    assert np.all(idx == -1)


def test_a_prior_claimed_by_two_faces_goes_to_the_cheaper_one():
    priors = Y.grid_priors(64, 64)
    faces = np.array([[8, 8, 40, 40], [12, 12, 44, 44]], np.float32)
    boxes = np.repeat(faces[:1], len(priors), 0)  # predictions fit face 0 better than face 1
    scores = np.full(len(priors), 0.5)
    alone, _ = Y.simota_assign(scores, priors, boxes, faces[:1])
    idx, _ = Y.simota_assign(scores, priors, boxes, faces)
    np.testing.assert_array_equal(idx[alone == 0], 0)  # face 1 wanted some of these too: each went to face 0
    assert np.sum(idx == 0) == 10 and 0 < np.sum(idx == 1) < 6  # face 1 (dynamic k 6) kept only uncontested ones


def test_eiou_loss_against_hand_computation():
    from keras import ops

    def eiou(p, t):
        return float(np.asarray(Y.eiou_loss(ops.convert_to_tensor(np.array([p], np.float32)),
                                            ops.convert_to_tensor(np.array([t], np.float32))))[0])

    assert abs(eiou([0, 0, 10, 10], [0, 0, 10, 10])) < 1e-6
    assert abs(eiou([0, 0, 10, 10], [0, 0, 10, 20]) - (0.5 - 0.05)) < 1e-5  # 1 - IoU = 0.5 >= 0.1: linear part
    d = 1 - 100 / 105
    assert abs(eiou([0, 0, 10, 10], [0, 0, 10, 10.5]) - 0.5 * d * d / 0.1) < 1e-5  # quadratic part
    # Disjoint boxes: the extended intersection goes negative, so the loss exceeds 1 - 0.05 and still has a gradient.
    assert eiou([0, 0, 10, 10], [20, 0, 30, 10]) > 0.95


def test_head_loss_against_hand_computation():
    """32x32 input: 16 + 4 + 1 priors, all outputs 0, one positive (prior 0, stride 8, IoU target 0.6, face
    (-4, -4, 4, 12)). Its predicted box is the prior ± stride / 2 = (-4, -4, 4, 4): IoU 0.5 → EIoU 0.45.
    Loss = (21 objectness BCEs at logit 0 + 1 class BCE at logit 0) * log 2 + 5 * 0.45, over 1 positive."""
    priors = Y.grid_priors(32, 32)
    y_pred = np.zeros((1, len(priors), Y.FLAT), np.float32)
    y_true = np.zeros((1, len(priors), Y.TARGET), np.float32)
    y_true[0, 0] = [1, 0.6, -4, -4, 4, 12]
    got = float(np.asarray(Y.make_loss(priors)(y_true, y_pred))[0])
    assert abs(got - (22 * math.log(2) + 5 * 0.45)) < 1e-4
    # Two images, the positive in one: the batch mean is the summed loss over the batch's one positive.
    both = np.asarray(Y.make_loss(priors)(np.concatenate([y_true, 0 * y_true]), np.concatenate([y_pred, y_pred])))
    assert abs(float(both.mean()) - (43 * math.log(2) + 5 * 0.45)) < 1e-4


@pytest.mark.slow
def test_a_few_steps_lower_the_loss(yunet, tmp_path):
    import keras

    from fer_keras.config import DetectionConfig
    from fer_keras.detection.data import crop_batches

    root = write_dark_scenes(str(tmp_path / "scenes"), n=4, size=(160, 128), seed=0, faces=(1, 3))
    det = DetectionConfig(train_crop=64, face_px=[16.0, 32.0])
    x, y = next(crop_batches(read_darkface(root), det, 4, 0, 0))
    bgr = np.ascontiguousarray(x[..., ::-1])
    keras.utils.set_random_seed(0)
    model = Y.build_training_model(Y.load_trained(PTH))
    priors = Y.grid_priors(64, 64)
    targets = Y.targets_for_batch(np.asarray(model(bgr)), priors, [b[c >= 0] for b, c in zip(y["boxes"],
                                                                                             y["classes"])])
    assert targets[..., 0].sum() >= 1
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=Y.make_loss(priors))
    loss = model.fit(bgr, targets, batch_size=4, epochs=12, verbose=0).history["loss"]
    assert loss[-1] < 0.7 * loss[0], loss


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_tiny_yunet_run_trains_evaluates_and_detects(tmp_path, monkeypatch):
    import tensorflow as tf

    from fer_keras.cli_evaluate import main as evaluate_main
    from fer_keras.cli_train import main as train_main
    from fer_keras.cli_visualize import main as visualize_main
    from fer_keras.detection.faces import make_detector
    from fer_keras.cli_export import main as export_main
    from fer_keras.detection.yunet import KerasYuNetDetector
    from fer_keras.errors import ConfigError

    monkeypatch.setenv("FER_KERAS_DATA", str(tmp_path / "data"))
    common = ["--task", "detection", "--runs-dir", str(tmp_path / "runs"), "--batch-size", "2",
              "--set", "detection.architecture=yunet", "--set", "detection.scenes=8", "--set", "train.verbose=0",
              "--set", "train.steps_per_epoch=2", "--set", "train.tensorboard=false"]
    with pytest.raises(SystemExit):  # YuNet trains on crops
        train_main(common + ["--name", "nocrop", "--epochs", "1"])
    run = train_main(common + ["--name", "yn", "--epochs", "2", "--set", "detection.train_crop=64",
                               "--set", "detection.val_low_light=true"])
    for f in ("config.yaml", "history.csv", "model.keras", "metrics.json", "runtime.json"):
        assert os.path.isfile(os.path.join(run, f)), f
    hist = open(os.path.join(run, "history.csv")).read().splitlines()
    assert len(hist) == 3 and "val_recall_1fppi_dark" in hist[0] and "val_ap30" in hist[0]
    m = json.load(open(os.path.join(run, "metrics.json")))
    assert set(m) == {"val", "val-dark"} and 0.0 <= m["val-dark"]["recall"] <= 1.0
    rt = json.load(open(os.path.join(run, "runtime.json")))
    assert rt["architecture"] == "yunet" and rt["task"] == "detection"
    assert rt["monitor"] == "val_recall_1fppi"  # train.monitor left unset: YuNet's own score, not RetinaNet's AP
    assert {"params", "epochs_run", "train_seconds", "train_images_per_second", "monitor", "best", "versions",
            "machine"} <= set(rt)  # the one schema of fitting.finish_fit
    # The run directory is a detector for predict, with landmarks (the frozen landmark head is still there).
    det = make_detector(run, min_score=0.0)
    assert isinstance(det, KerasYuNetDetector)
    scene = np.zeros((96, 128, 3), np.uint8)
    boxes, scores, kps = det.detect_landmarks(scene)
    assert boxes.shape[1] == 4 and kps.shape[1:] == (5, 2)
    out = evaluate_main(["--run", run])
    assert os.path.isfile(os.path.join(out, "metrics.json"))
    report = visualize_main(["--run", run])
    assert os.path.isfile(report) and os.path.isfile(os.path.join(run, "plots", "pr_curve_val-dark.png"))
    with pytest.raises(SystemExit):  # the refusal lists what a YuNet run exports, not the RetinaNet's compact
        export_main(["--run", run, "--format", "compact"])
    written = export_main(["--run", run, "--format", "savedmodel"])
    served = tf.saved_model.load(written["savedmodel"]).signatures["serving_default"]
    x = np.random.default_rng(0).uniform(0, 255, (1, 64, 96, 3)).astype(np.float32)
    ref = det.model(x)
    got = served(images=tf.constant(x))
    np.testing.assert_allclose(got["bbox_16"].numpy(), np.asarray(ref["bbox_16"]), atol=1e-4)
    with pytest.raises(ConfigError, match="cannot load the YuNet model"):
        Y.load_trained(str(tmp_path / "missing.keras"))
    # Where an expression model is expected (--model, model.init_from, train.distill_from): one clear line.
    from fer_keras.model_info import read_model_info

    with pytest.raises(ConfigError, match="a face-detection run, not an expression model"):
        read_model_info(run)


def test_low_light_yunet_dark_path_is_built_on_the_first_dark_photo(monkeypatch, tmp_path):
    """`auto` with the fine-tuned YuNet as its dark path must not import TensorFlow for bright photos (start-up)."""
    from fer_keras.detection import faces as F

    calls = []

    class Stub:
        def detect(self, rgb):
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)

    lazy = F.LazyDetector(lambda: calls.append(1) or Stub())
    assert calls == []
    for _ in range(2):
        boxes, _ = lazy.detect(np.zeros((8, 8, 3), np.uint8))
    assert calls == [1] and boxes.shape == (0, 4)
    shipped = tmp_path / "yunet_lowlight.keras"
    shipped.write_bytes(b"")
    monkeypatch.setattr(F, "YUNET_LOWLIGHT", str(shipped))
    assert isinstance(F.dark_path("yunet-lowlight", 0.4), F.LazyDetector)
    monkeypatch.setattr(F, "YUNET_LOWLIGHT", str(tmp_path / "missing.keras"))
    assert F.dark_path("yunet-lowlight", 0.4) is None  # not shipped: YuNet itself on dark photos
