"""YuNet through OpenCV, its thresholds from the settings file, face tracks in a generated video, progress lines,
--largest-face, bad videos, and the LiteRT backend against the Keras model."""

import csv
import io
import json
import os

import cv2
import matplotlib
import numpy as np
import pytest

from fer_keras.detection import faces as F
from fer_keras.model_info import read_model_info
from fer_keras.cli_predict import main as predict_main
from fer_keras.predict import FacePredictor
from fer_keras.progress import Progress, format_eta

HOPPER = os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "sample_data", "grace_hopper.jpg")


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def face():
    """Grace Hopper's face (matplotlib's sample photo), 120 px wide, RGB."""
    rgb = cv2.cvtColor(cv2.imread(HOPPER), cv2.COLOR_BGR2RGB)
    return cv2.resize(rgb[60:420, 110:410], (120, 144), interpolation=cv2.INTER_AREA)


def _scene(face, x, y, w=480, h=360, second=None):
    img = np.full((h, w, 3), 90, np.uint8)
    img[y:y + face.shape[0], x:x + face.shape[1]] = face
    if second is not None:
        img[10:10 + second.shape[0], w - 10 - second.shape[1]:w - 10] = second
    return img


def test_yunet_finds_the_face_with_landmarks(face):
    det = F.make_detector("yunet")
    boxes, scores, marks = det.detect_landmarks(_scene(face, 200, 120))
    assert len(boxes) == 1 and scores[0] >= det.min_score
    x1, y1, x2, y2 = boxes[0]
    assert 190 <= x1 < x2 <= 330 and 110 <= y1 < y2 <= 275  # on the pasted face
    assert marks.shape == (1, 5, 2) and np.all((marks[0, :, 0] > x1) & (marks[0, :, 0] < x2))
    assert marks[0, 0, 1] < marks[0, 3, 1]  # eyes above the mouth corners
    assert det(np.full((240, 320, 3), 90, np.uint8)) == []


def test_yunet_thresholds_come_from_the_settings_file(tmp_path):
    with open(F.YUNET_SETTINGS) as f:
        shipped = json.load(f)
    assert F.YuNetDetector().min_score == pytest.approx(shipped["score_threshold"])
    assert "val_results" in shipped and shipped["val_photos"]  # chosen on val photos, with the measurements
    own = tmp_path / "s.json"
    own.write_text(json.dumps({"score_threshold": 0.77, "upscale_to": 0}))
    det = F.YuNetDetector(settings=str(own))
    assert det.min_score == 0.77 and det.upscale_to == 0
    assert F.YuNetDetector(settings=str(own), min_score=0.2).min_score == 0.2


def test_detector_registry_is_the_list_of_names():
    assert {"auto", "yunet", "haar", "lowlight", "blazeface"} <= set(F.DETECTORS.names())
    with pytest.raises(Exception, match="not a detector name \\(" + ", ".join(F.DETECTORS.names())):
        F.make_detector("yolo")


def test_auto_routes_dark_photos(face):
    calls = []

    class Stub:
        def __init__(self, name):
            self.name = name

        def detect(self, rgb):
            calls.append(self.name)
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)

    auto = F.AutoFaceDetector(Stub("normal"), Stub("dark"), dark_below=60)
    auto(_scene(face, 10, 10))
    auto((_scene(face, 10, 10) * 0.1).astype(np.uint8))
    assert calls == ["normal", "dark"]
    assert F.AutoFaceDetector(Stub("normal"), None).is_dark(np.zeros((8, 8, 3), np.uint8)) is False


def test_progress_lines_in_a_log():
    buf = io.StringIO()
    p = Progress("clip.mp4", 250, "frames", every=100, stream=buf)
    for _ in range(250):
        p.update()
    p.close()
    lines = buf.getvalue().splitlines()
    assert len(lines) == 3 and lines[0].startswith("clip.mp4: 100/250 frames (40%)") and "ETA" in lines[0]
    assert lines[-1].startswith("clip.mp4: 250/250 frames (100%)")
    assert format_eta(3725) == "1h02m" and format_eta(65) == "1m05s" and format_eta(4) == "4s"


def _video(path, frames):
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (frames[0].shape[1], frames[0].shape[0]))
    for f in frames:
        w.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    w.release()
    return str(path)


def test_video_tracks_progress_and_largest_face(tiny_run, face, tmp_path, capsys):
    small = cv2.resize(face, (80, 96), interpolation=cv2.INTER_AREA)
    frames = [_scene(face, 20 + 12 * t, 150, second=small) for t in range(24)]
    path = _video(tmp_path / "walk.avi", frames)
    predict_main([path, "--model", tiny_run, "--out", str(tmp_path / "o"), "--detect-every", "2"])
    rows = _rows(tmp_path / "o" / "predictions.csv")
    err = capsys.readouterr().err
    assert "walk.avi: 24/24 frames (100%)" in err and "frames/s" in err
    big = [r for r in rows if int(r["w"]) > 75]
    assert len(big) == 24 and len({r["track"] for r in big}) == 1  # the moving face keeps one id
    assert len({r["track"] for r in rows}) == 2 and {r["frame"] for r in rows} == {str(i) for i in range(24)}
    predict_main([path, "--model", tiny_run, "--out", str(tmp_path / "l"), "--largest-face", "-q"])
    largest = _rows(tmp_path / "l" / "predictions.csv")
    assert len(largest) == 24 and all(int(r["w"]) > 75 for r in largest)
    assert "frames/s" not in capsys.readouterr().err  # -q: no progress


def test_images_report_every_face_by_default(tiny_run, face, tmp_path, capsys):
    small = cv2.resize(face, (80, 96), interpolation=cv2.INTER_AREA)
    d = tmp_path / "happy"
    d.mkdir()
    for i in range(3):
        cv2.imwrite(str(d / f"{i}.png"), cv2.cvtColor(_scene(face, 40 * i, 150, second=small), cv2.COLOR_RGB2BGR))
    predict_main([str(d), "--model", tiny_run, "--out", str(tmp_path / "o")])
    rows = _rows(tmp_path / "o" / "predictions.csv")
    assert len(rows) == 6 and "images: 3/3 images (100%)" in capsys.readouterr().err
    acc = _rows(tmp_path / "o" / "folder_accuracy.csv")
    assert int(acc[0]["total"]) == 3  # a labelled folder is scored by each image's largest face
    predict_main([str(d), "--model", tiny_run, "--out", str(tmp_path / "l"), "--largest-face"])
    assert len(_rows(tmp_path / "l" / "predictions.csv")) == 3


def test_bad_videos_are_one_line_each(tiny_run, face, tmp_path, capsys):
    empty = tmp_path / "empty.avi"
    cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120)).release()
    full = _video(tmp_path / "full.avi", [_scene(face, 20, 20)] * 20)
    data = open(full, "rb").read()
    trunc = tmp_path / "trunc.avi"
    trunc.write_bytes(data[:len(data) // 2])
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video")
    out = tmp_path / "o"
    predict_main([str(empty), str(trunc), str(garbage), "--model", tiny_run, "--out", str(out), "--annotate"])
    errors = {os.path.basename(r["source"]): r["problem"] for r in _rows(out / "errors.csv")}
    err = capsys.readouterr().err
    assert errors["garbage.mp4"] == "cannot open video" and "garbage.mp4: cannot open video" in err
    assert errors["empty.avi"].startswith("no frame could be decoded")
    assert errors["trunc.avi"].startswith("truncated: decoded ") and "of the 20 frames" in errors["trunc.avi"]
    rows = _rows(out / "predictions.csv")
    assert not any(r["source"].endswith("empty.avi") for r in rows)
    assert not os.path.exists(out / "annotated" / "empty.mp4")  # nothing written as if it succeeded


@pytest.mark.slow
def test_litert_backend_equals_keras_on_the_shipped_model():
    """A float32 TFLite export through LiteRT (views made in NumPy) equals the Keras model (views in the graph).
    `compact` ships float32; the default's int8 export is compared with its Keras model in test_pretrained."""
    from fer_keras.predict import tflite_sibling
    from fer_keras.pretrained import resolve_model

    model = resolve_model("compact")
    if model is None or tflite_sibling(model, model) is None:
        pytest.skip("no shipped model with a TFLite export in this install")
    pytest.importorskip("ai_edge_litert")
    keras_p, lite_p = FacePredictor(model, backend="keras"), FacePredictor(model, backend="auto")
    assert lite_p.backend == "litert" and lite_p.class_names == keras_p.class_names
    assert lite_p.tta == keras_p.tta == read_model_info(model).tta  # the model's own views by default
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (keras_p.size, keras_p.size, keras_p.channels), dtype=np.uint8)
             for _ in range(37)]
    for tta in ("none", "flip", "crops"):  # the TTA views are made in NumPy for LiteRT, in the graph for Keras
        keras_p, lite_p = FacePredictor(model, backend="keras", tta=tta), FacePredictor(model, tta=tta)
        assert lite_p.backend == "litert"
        a, b = keras_p.predict(crops), lite_p.predict(crops)
        np.testing.assert_allclose(b["expression"], a["expression"], atol=1e-4 if tta == "none" else 2e-3)
        np.testing.assert_allclose(b["valence_arousal"], a["valence_arousal"], atol=1e-4 if tta == "none" else 2e-3)


def test_a_box_found_by_one_detection_never_becomes_a_track(tiny_run, face, tmp_path):
    """Track confirmation on a synthetic sequence: the face is found by every detection, a false box (a 'car
    window') by one only. The face is reported in every frame (its first frames once it is confirmed), the false
    box's track never, and the drop is counted."""
    from fer_keras.predict import Results, predict_video
    from fer_keras.tracking import FaceTracker

    t = FaceTracker(min_hits=2)
    a, = t.update([(10, 10, 50, 50)], 0)
    assert not t.confirmed(a)
    t.update([(12, 10, 50, 50)], 5)
    assert t.confirmed(a)

    path = str(tmp_path / "clip.mp4")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 25, (480, 360))
    for _ in range(30):
        writer.write(cv2.cvtColor(_scene(face, 100, 100), cv2.COLOR_RGB2BGR))
    writer.release()
    calls = []

    def detector(rgb):  # the face every time; a false box on the second detection only
        calls.append(1)
        return [(100, 100, 120, 144)] + ([(300, 20, 150, 120)] if len(calls) == 2 else [])

    pred = FacePredictor(tiny_run)
    results = Results()
    predict_video(pred, path, detector, 0.0, 5, results, detect_every=5, progress=False)
    assert [r["frame"] for r in results.rows] == list(range(30))
    assert {r["track"] for r in results.rows} == {0}
    assert results.unconfirmed_tracks == 1 and results.unconfirmed_rows == 5  # frames 5-9 of the false box
    results, calls[:] = Results(), []
    predict_video(pred, path, detector, 0.0, 5, results, detect_every=5, progress=False, confirm=1)
    assert {r["track"] for r in results.rows} == {0, 1} and results.unconfirmed_tracks == 0  # 1 = every box
    # A clip too short for 3 detections (8 frames, detections at 0 and 5): the face that both found is reported,
    # the box that one found is not.
    results, calls[:] = Results(), []
    predict_video(pred, path, detector, 0.0, 5, results, detect_every=5, progress=False, max_frames=8)
    assert [r["frame"] for r in results.rows] == list(range(8)) and {r["track"] for r in results.rows} == {0}
    assert results.unconfirmed_tracks == 1


def test_an_animated_gif_is_predicted_frame_by_frame(tiny_run, face, tmp_path, capsys):
    from PIL import Image

    from fer_keras.predict import expand_inputs

    frames = [Image.fromarray(_scene(face, 20 + 10 * t, 40, w=240, h=200)) for t in range(6)]
    anim, still = tmp_path / "anim.gif", tmp_path / "still.gif"
    frames[0].save(anim, save_all=True, append_images=frames[1:], duration=100, loop=0)
    frames[0].save(still)
    assert expand_inputs([str(anim), str(still)]) == [("video", str(anim)), ("image", str(still))]
    predict_main([str(anim), str(still), "--model", tiny_run, "--out", str(tmp_path / "o"), "--no-detect", "-q"])
    rows = _rows(tmp_path / "o" / "predictions.csv")
    assert sorted(int(r["frame"]) for r in rows if r["source"].endswith("anim.gif")) == list(range(6))
    assert len([r for r in rows if r["source"].endswith("still.gif")]) == 1


def test_a_video_that_changes_frame_size_loses_no_frame(tiny_run, face, tmp_path, monkeypatch, capsys):
    """A stream whose resolution changes mid-way (OpenCV then returns frames of the new size): every frame is
    predicted, the tracks restart at the change, the annotated video keeps every frame at the first size, and one
    warning line says so."""
    import fer_keras.predict as P

    frames = [_scene(face, 10, 10, w=200, h=170)] * 4 + [_scene(face, 30, 30, w=240, h=200)] * 5

    class Capture:  # a stream that switches resolution after 4 frames
        def __init__(self, source):
            self.left = [cv2.cvtColor(f, cv2.COLOR_RGB2BGR) for f in frames]

        def isOpened(self):
            return True

        def get(self, prop):
            return {cv2.CAP_PROP_FPS: 10.0, cv2.CAP_PROP_FRAME_COUNT: float(len(frames))}.get(prop, 0.0)

        def read(self):
            return (True, self.left.pop(0)) if self.left else (False, None)

        def release(self):
            pass

    monkeypatch.setattr(P.cv2, "VideoCapture", Capture)
    src = tmp_path / "stream.mp4"
    src.write_bytes(b"")
    results = P.Results()
    pred = P.FacePredictor(tiny_run)
    P.predict_video(pred, str(src), lambda rgb: [(10, 10, 120, 120)], 0.0, 5, results, out_dir=str(tmp_path / "o"),
                    annotate_out=True, detect_every=3, progress=False, confirm=1)
    monkeypatch.undo()
    assert [r["frame"] for r in results.rows] == list(range(9))
    assert len({r["track"] for r in results.rows[:4]}) == 1 and results.rows[4]["track"] != results.rows[3]["track"]
    err = capsys.readouterr().err
    assert err.count("frame size changed") == 1 and "from 200x170 to 240x200 at frame 4" in err
    cap = cv2.VideoCapture(str(tmp_path / "o" / "annotated" / "stream.mp4"))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 9 and int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == 200
