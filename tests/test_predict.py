"""Prediction CLI on generated images and a generated video: Haar detection + crop, --no-detect, batching,
smoothing, per-folder accuracy and output files."""

import csv
import json
import os

import cv2
import numpy as np
import pytest

from fer_keras.data.demo import generate
from fer_keras.detection.faces import DETECTORS, HaarDetector
from fer_keras.cli_predict import folder_accuracy, main as predict_main
from fer_keras.predict import FacePredictor, pad_box
from fer_keras.pretrained import resolve_model


@pytest.fixture(scope="module")
def run(tiny_run):
    return tiny_run


@pytest.fixture(scope="module")
def detectable_faces():
    """Demo faces (128 px) that OpenCV's Haar cascade finds, pasted into larger scenes later."""
    d = generate(5, 128, seed=0)
    det = HaarDetector()
    faces = [im for im in d["images"] if det(_scene(im, 40, 50))]
    assert len(faces) >= 3
    return faces


def _scene(face, x=40, y=50, size=(240, 320)):
    canvas = np.full(size + (3,), 90, np.uint8)
    canvas[y:y + face.shape[0], x:x + face.shape[1]] = face
    return canvas


def _rows(path):
    return list(csv.DictReader(open(path)))


# Drawn demo faces: the Haar cascade finds them, YuNet (auto) finds real faces only (tests/test_yunet_video.py).
@pytest.mark.parametrize("detector", ["haar", "blazeface-tiled"])
def test_detect_crop_and_outputs(run, detectable_faces, tmp_path, detector):
    img_dir = tmp_path / "imgs"
    img_dir.mkdir()
    for i, f in enumerate(detectable_faces[:3]):
        cv2.imwrite(str(img_dir / f"scene{i}.png"), cv2.cvtColor(_scene(f), cv2.COLOR_RGB2BGR))
    (img_dir / "blank.png").write_bytes(cv2.imencode(".png", np.full((100, 100, 3), 128, np.uint8))[1].tobytes())
    (img_dir / "broken.jpg").write_text("not an image")
    out = tmp_path / "out"
    predict_main([str(img_dir), "--model", run, "--out", str(out), "--annotate", "--save-crops",
                  "--detector", detector, "--largest-face"])
    rows = _rows(out / "predictions.csv")
    assert len(rows) == 3
    for r in rows:
        x, y = int(r["x"]), int(r["y"])
        # the detected (padded) box covers the pasted face's centre
        assert x <= 40 + 64 <= x + int(r["w"]) and y <= 50 + 64 <= y + int(r["h"])
        probs = [float(r[f"p_{c}"]) for c in ["neutral", "happy", "sad", "surprise", "fear", "disgust", "anger"]]
        assert abs(sum(probs) - 1) < 1e-4 and -1 <= float(r["valence"]) <= 1
    errors = {os.path.basename(r["source"]): r["problem"] for r in _rows(out / "errors.csv")}
    assert errors == {"blank.png": "no face found", "broken.jpg": "unreadable image"}
    assert len(os.listdir(out / "annotated")) == 3 and len(os.listdir(out / "crops")) == 3
    assert len(json.load(open(out / "predictions.json"))) == 3


def test_no_detect_batching_and_folder_accuracy(run, demo_root, tmp_path):
    out = tmp_path / "out"
    predict_main([demo_root["folder"], "--model", run, "--out", str(out), "--no-detect", "--batch-size", "7"])
    rows = _rows(out / "predictions.csv")
    n_images = sum(len(fs) for _, _, fs in os.walk(demo_root["folder"]))
    assert len(rows) == n_images and all(r["x"] == "0" for r in rows)
    acc = _rows(out / "folder_accuracy.csv")
    # 'contempt' is not in the 7-class model's classes and is not scored; the 7 others are
    assert sorted(r["class"] for r in acc) == sorted(["neutral", "happy", "sad", "surprise", "fear", "disgust",
                                                      "anger"])
    happy = next(r for r in acc if r["class"] == "happy")
    expect = np.mean([r["label"] == "happy" for r in rows if os.path.basename(os.path.dirname(r["source"]))
                      == "happy"])
    assert float(happy["accuracy"]) == pytest.approx(expect)


def test_batched_equals_one_by_one(run, detectable_faces):
    pred_big = FacePredictor(run, batch_size=64)
    pred_one = FacePredictor(run, batch_size=1)
    crops = [pred_big.prepare(f) for f in detectable_faces]
    a, b = pred_big.predict(crops), pred_one.predict(crops)
    np.testing.assert_allclose(a["expression"], b["expression"], atol=1e-5)
    np.testing.assert_allclose(a["valence_arousal"], b["valence_arousal"], atol=1e-5)


def test_video_smoothing_and_annotated_output(run, detectable_faces, tmp_path):
    path = str(tmp_path / "clip.avi")
    w = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    for t in range(8):
        face = detectable_faces[t % 2]
        w.write(cv2.cvtColor(_scene(face), cv2.COLOR_RGB2BGR))
    w.release()
    raw, smooth = tmp_path / "raw", tmp_path / "smooth"
    # --no-detect: every frame is scored, so the smoothing is checked on all 8 frames
    predict_main([path, "--model", run, "--out", str(raw), "--no-detect", "--window", "1"])
    predict_main([path, "--model", run, "--out", str(smooth), "--window", "3", "--annotate", "--no-detect"])
    r, s = _rows(raw / "predictions.csv"), _rows(smooth / "predictions.csv")
    assert len(r) == len(s) == 8 and [x["frame"] for x in r] == [x["frame"] for x in s]
    cols = [k for k in r[0] if k.startswith("p_")] + ["valence", "arousal"]
    P = np.array([[float(x[c]) for c in cols] for x in r])
    S = np.array([[float(x[c]) for c in cols] for x in s])
    assert not np.allclose(P[0], P[1])  # two different faces alternate, so smoothing changes values
    for i in range(len(P)):  # moving average over the last 3 frames
        np.testing.assert_allclose(S[i], P[max(0, i - 2):i + 1].mean(0), atol=1e-5)
    video = smooth / "annotated" / "clip.mp4"
    cap = cv2.VideoCapture(str(video))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 8
    # with detection, frames where no face is found are counted in one errors.csv row, not fatal
    det = tmp_path / "det"
    predict_main([path, "--model", run, "--out", str(det), "--window", "3", "--detect-every", "1"])
    frames = {r["frame"] for r in _rows(det / "predictions.csv")}
    errors = _rows(det / "errors.csv")
    missed = 8 - len(frames)
    assert (errors[0]["problem"] == f"no face found in {missed} of 8 frames") if missed else not errors


def test_errors_are_clear(run, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        predict_main([str(tmp_path / "nope.jpg"), "--model", run, "--out", str(tmp_path / "o")])
    assert e.value.code == 2 and "nope.jpg: no such file" in capsys.readouterr().err
    bad_video = tmp_path / "bad.mp4"
    bad_video.write_bytes(b"garbage")
    predict_main([str(bad_video), "--model", run, "--out", str(tmp_path / "o2")])
    assert _rows(tmp_path / "o2" / "errors.csv")[0]["problem"] == "cannot open video"
    with pytest.raises(SystemExit) as e:
        predict_main([str(bad_video), "--model", run, "--out", str(tmp_path / "o3"), "--detector", "yolo"])
    assert e.value.code == 2 and (f"--detector 'yolo': not a detector name ({', '.join(DETECTORS.names())}) "
                                  "nor a run directory") in capsys.readouterr().err


def test_pad_box_and_folder_accuracy_aliases():
    assert pad_box((10, 10, 20, 20), 0.5, 35, 100) == (0, 0, 35, 40)
    rows = [{"source": "/x/angry/1.jpg", "frame": "", "label": "anger"},
            {"source": "/x/angry/2.jpg", "frame": "", "label": "sad"},
            {"source": "/x/pos/3.jpg", "frame": "", "label": "positive"}]
    acc = folder_accuracy(rows, ["neutral", "happy", "sad", "surprise", "fear", "disgust", "anger"])
    assert acc == [{"folder": "/x/angry", "class": "anger", "correct": 1, "total": 2, "accuracy": 0.5}]
    acc2 = folder_accuracy(rows[2:], ["positive", "negative"])
    assert acc2[0]["accuracy"] == 1.0


def test_flat_folder_with_labels_csv_is_scored(tmp_path):
    """JAFFE-style: images in one folder, their labels in labels.csv (any of the usual column names)."""
    from fer_keras.errors import DataError
    from fer_keras.cli_predict import read_folder_labels

    (tmp_path / "labels.csv").write_text("File,Emotion\na.jpg,HAPPY\nb.jpg,sadness\nc.jpg,happy\n")
    labels = read_folder_labels(str(tmp_path))
    assert labels[os.path.abspath(tmp_path / "b.jpg")] == "sadness"
    rows = [{"source": str(tmp_path / f), "frame": "", "label": lab}
            for f, lab in (("a.jpg", "happy"), ("b.jpg", "happy"), ("c.jpg", "happy"), ("d.jpg", "sad"))]
    acc = folder_accuracy(rows, ["neutral", "happy", "sad", "surprise", "fear", "disgust", "anger"], None, labels)
    by_class = {r["class"]: (r["correct"], r["total"]) for r in acc}
    assert by_class == {"happy": (2, 2), "sad": (0, 1)}  # d.jpg has no label and its folder no class name
    assert read_folder_labels(str(tmp_path / "nothing")) == {}
    (tmp_path / "labels.csv").write_text("name,emotion\na.jpg,happy\n")
    with pytest.raises(DataError, match="needs a path column"):
        read_folder_labels(str(tmp_path))
    (tmp_path / "labels.csv").write_bytes("file,emotion\nä.jpg,happy\n".encode("latin-1"))  # not UTF-8
    with pytest.raises(DataError, match=r"labels.csv: not UTF-8 text"):
        read_folder_labels(str(tmp_path))


def test_gray_model_with_gray_detector_decodes_straight_to_gray(detectable_faces, tmp_path, monkeypatch):
    """A gray 48x48x1 model (`compact`) with Haar reads images as grayscale (no colour decode); it finds the same
    face as the RGB path (annotating needs colour), up to the few pixels that a different gray conversion moves a
    box."""
    import fer_keras.predict as P

    flags = []
    real_imread = cv2.imread
    monkeypatch.setattr(P.cv2, "imread", lambda path, flag=cv2.IMREAD_COLOR: flags.append(flag) or
                        real_imread(path, flag))
    pred = FacePredictor(resolve_model("compact"))
    assert pred.channels == 1
    path = str(tmp_path / "scene.png")
    cv2.imwrite(path, cv2.cvtColor(_scene(detectable_faces[0]), cv2.COLOR_RGB2BGR))
    gray, rgb = P.Results(), P.Results()
    P.predict_images(pred, [path], HaarDetector(), 0.15, False, gray, progress=False)
    P.predict_images(pred, [path], HaarDetector(), 0.15, False, rgb, str(tmp_path / "o"), annotate_out=True,
                     progress=False)
    ignore = cv2.IMREAD_IGNORE_ORIENTATION  # OpenCV's EXIF handling off: images.py's one policy turns them
    assert flags == [cv2.IMREAD_GRAYSCALE | ignore, cv2.IMREAD_COLOR | ignore]
    assert len(gray.rows) == len(rgb.rows) == 1
    (gx, gy, gw, gh), (cx, cy, cw, ch) = ([r[k] for k in "xywh"] for r in (gray.rows[0], rgb.rows[0]))
    inter = max(0, min(gx + gw, cx + cw) - max(gx, cx)) * max(0, min(gy + gh, cy + ch) - max(gy, cy))
    assert inter / (gw * gh + cw * ch - inter) > 0.8


def test_an_output_image_that_cannot_be_written_is_listed_not_silent(tmp_path, capsys):
    """cv2.imwrite returns False instead of raising: a crop whose name is over the file-system limit (the input's
    252-character name + "_face0.png") is listed in errors.csv and counted in the summary line."""
    from fer_keras.cli_predict import main

    name = "a" * 248 + ".png"
    cv2.imwrite(str(tmp_path / name), np.full((64, 64, 3), 128, np.uint8))
    out = tmp_path / "out"
    main([str(tmp_path / name), "--no-detect", "--save-crops", "--out", str(out)])
    errors = (out / "errors.csv").read_text()
    assert "cannot write the image (name too long)" in errors
    assert "1 problems" in capsys.readouterr().out
    assert "a" * 248 in (out / "predictions.csv").read_text()  # the prediction itself is kept


def test_unprepared_crops_are_refused_by_shape():
    """Crops not passed through `prepare` (here 48 px gray for the 112 px RGB default) are one clear ValueError, not
    silent nonsense from a resized LiteRT input."""
    pred = FacePredictor(resolve_model("default"))
    with pytest.raises(ValueError, match=r"crops of shape \(48, 48, 1\): this model reads \(112, 112, 3\)"):
        pred.predict([np.zeros((48, 48, 1), np.uint8)])
    assert pred.predict([pred.prepare(np.zeros((48, 48, 1), np.uint8))])["expression"].shape == (1, 8)
