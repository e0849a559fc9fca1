"""The Python API (fer_keras/api.py): analyze images and videos, train → evaluate → report → export, bad input."""

import os
import subprocess
import sys
import time

import cv2
import matplotlib
import numpy as np
import pytest

import fer_keras
from tiny import TINY_ARGV

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOPPER = os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "sample_data", "grace_hopper.jpg")


@pytest.fixture(scope="module")
def group_photo(tmp_path_factory):
    """A 500x375 'group photo': Grace Hopper's face (matplotlib's sample photo) three times, at three sizes, one
    mirrored; as a JPEG file and as the RGB array decoded from it."""
    face = cv2.cvtColor(cv2.imread(HOPPER), cv2.COLOR_BGR2RGB)[60:420, 110:410]
    img = np.full((375, 500, 3), 120, np.uint8)
    for (x, y, w), flip in zip([(20, 60, 130), (190, 100, 100), (330, 40, 150)], [False, True, False]):
        f = cv2.resize(face[:, ::-1] if flip else face, (w, int(w * 1.2)), interpolation=cv2.INTER_AREA)
        img[y:y + f.shape[0], x:x + w] = f
    path = str(tmp_path_factory.mktemp("api") / "group.jpg")
    cv2.imwrite(path, cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    return path, cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)


def _python(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip()


def test_import_and_analyze_with_the_shipped_model_import_no_tensorflow(group_photo):
    out = _python("import sys, fer_keras; assert 'tensorflow' not in sys.modules; "
                  f"faces = fer_keras.analyze({group_photo[0]!r}); "
                  "print(len(faces), 'tensorflow' in sys.modules)")
    assert out == "3 False"


def test_path_and_array_give_the_same_faces(group_photo):
    path, rgb = group_photo
    from_path, from_array = fer_keras.analyze(path), fer_keras.analyze(rgb)
    assert len(from_path) == 3 and [f.to_dict() for f in from_path] == [f.to_dict() for f in from_array]
    f = from_path[0]
    assert set(f.probabilities) == {"neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt"}
    assert f.label == max(f.probabilities, key=f.probabilities.get) and f.confidence == f.probabilities[f.label]
    assert abs(sum(f.probabilities.values()) - 1) < 1e-3 and -1 <= f.valence <= 1 and -1 <= f.arousal <= 1
    from PIL import Image

    assert [g.to_dict() for g in fer_keras.analyze(Image.open(path))] == [g.to_dict() for g in from_path]
    largest = fer_keras.analyze(path, largest_face=True)
    assert len(largest) == 1 and largest[0].box == max((g.box for g in from_path), key=lambda b: b[2] * b[3])


def test_a_reused_analyzer_reloads_nothing(group_photo):
    analyzer = fer_keras.Analyzer()
    analyzer.analyze(group_photo[1])  # warm-up
    t0 = time.perf_counter()
    for _ in range(5):
        faces = analyzer.analyze(group_photo[1])
    per_call = (time.perf_counter() - t0) / 5
    assert len(faces) == 3 and per_call <= 0.15, f"{per_call:.3f} s a call"


def _moving_face_clip(path: str, frames: int, size, top: int, step: int) -> str:
    """An MP4 at 25 fps: Grace Hopper's face (120x144) moving right by `step` px a frame on a gray background."""
    face = cv2.resize(cv2.cvtColor(cv2.imread(HOPPER), cv2.COLOR_BGR2RGB)[60:420, 110:410], (120, 144),
                      interpolation=cv2.INTER_AREA)
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 25, size)
    for i in range(frames):
        img = np.full((size[1], size[0], 3), 90, np.uint8)
        img[top:top + 144, 60 + step * i:180 + step * i] = face
        writer.write(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def test_analyze_video_one_row_per_face_per_frame(group_photo, tmp_path):
    path = _moving_face_clip(str(tmp_path / "clip.mp4"), 40, (480, 360), top=100, step=5)
    table = fer_keras.Analyzer().analyze_video(path)
    assert list(table.columns[:10]) == ["source", "frame", "face", "track", "x", "y", "w", "h", "label",
                                        "confidence"]
    assert table["frame"].nunique() >= 0.95 * 40 and table["track"].nunique() == 1
    assert table.attrs["fps"] == pytest.approx(25.0)
    np.testing.assert_allclose(table["time"], table["frame"] / 25.0)
    summary = fer_keras.track_summary(table)
    assert len(summary) == 1 and summary["frames"][0] == len(table)
    assert summary["end_time"][0] == pytest.approx(table["time"].max())
    assert summary["label"][0] == table["label"].mode()[0] and 0 < summary["label_share"][0] <= 1
    assert len(fer_keras.Analyzer().analyze_video(path, max_frames=10)["frame"].unique()) == 10


def test_bgr_frames_lists_and_a_flat_table(group_photo):
    """`color="bgr"` reads OpenCV frames as the RGB array; a list of images gives a list per image; `table` is flat."""
    path, rgb = group_photo
    analyzer = fer_keras.Analyzer()
    want = [f.to_dict() for f in analyzer.analyze(rgb)]
    assert [f.to_dict() for f in analyzer.analyze(cv2.imread(path), color="bgr")] == want
    assert [f.to_dict() for f in analyzer.analyze(rgb[..., ::-1].copy())] != want  # BGR read as RGB differs
    both = analyzer.analyze([path, rgb])
    assert len(both) == 2 and [f.to_dict() for f in both[1]] == want
    table = analyzer.table([path, rgb])
    assert len(table) == 2 * len(want) and set(table["source"]) == {path, 1}
    assert table["label"].tolist()[:len(want)] == [f["label"] for f in want] and want[0]["track"] is None


@pytest.mark.parametrize("call, error, words", [
    (lambda: fer_keras.analyze("/no/such.jpg"), FileNotFoundError, "/no/such.jpg"),
    (lambda: fer_keras.analyze(np.zeros((40, 40, 3), np.float32)), ValueError, "dtype float32"),
    (lambda: fer_keras.analyze(np.zeros((40, 40, 4), np.uint8)), ValueError, "shape (40, 40, 4)"),
    (lambda: fer_keras.analyze([1, 2]), ValueError, "got int"),
    (lambda: fer_keras.analyze(np.zeros((9, 9, 3), np.uint8), color="hsv"), ValueError, "color 'hsv': valid: rgb, bgr"),
    (lambda: fer_keras.Analyzer(padd=0.1), ValueError, "unknown option 'padd' (did you mean 'padding'?)"),
    (lambda: fer_keras.Analyzer(tta="flp"), ValueError, "tta 'flp': valid: auto, none, flip, crops (did you mean 'flip'?)"),
    (lambda: fer_keras.Analyzer(backend="lite"), ValueError, "backend 'lite': valid: auto, keras, litert"),
    (lambda: fer_keras.Analyzer(calibration="off"), ValueError, "calibration 'off': valid: auto, none"),
    (lambda: fer_keras.analyze(np.zeros((9, 9, 3), np.uint8), colour=True), ValueError, "unknown option 'colour'"),
    (lambda: fer_keras.analyze(np.zeros((9, 9, 3), np.uint8), padding=5), ValueError, "padding 5"),
    (lambda: fer_keras.Analyzer(model="nosuch"), ValueError, "'nosuch'"),
    (lambda: fer_keras.Analyzer(model="defualt"), ValueError, "(did you mean 'default'?)"),
    (lambda: fer_keras.Analyzer(detector="yunett"), ValueError, "(did you mean 'yunet'?)"),
    (lambda: fer_keras.Analyzer(labels="77"), ValueError, "label preset '77'; valid: 8, 7, 5, 4, 2 (did you mean '7'?)"),
    (lambda: fer_keras.Analyzer(largest_face="yes"), ValueError, "largest_face 'yes': expected True or False"),
    (lambda: fer_keras.Analyzer(min_confidence="0.5"), ValueError, "min_confidence '0.5': out of range"),
    (lambda: fer_keras.Analyzer().analyze_video("/no/clip.mp4"), FileNotFoundError, "/no/clip.mp4"),
    (lambda: fer_keras.load_run("/no/run"), FileNotFoundError, "/no/run"),
    (lambda: fer_keras.train(overrides={"train.nosuch": 1}), ValueError, "train.nosuch"),
])
def test_bad_input_raises_value_errors_naming_it(call, error, words):
    with pytest.raises(error) as e:
        call()
    assert words in str(e.value) and "\n" not in str(e.value)


def test_an_undecodable_image_file_names_it(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="bad.jpg"):
        fer_keras.analyze(str(bad))


@pytest.mark.slow
def test_train_evaluate_report_export(demo_root, tmp_path):
    over = {}
    for flag, value in zip(TINY_ARGV[::2], TINY_ARGV[1::2]):  # the tiny run's --set k=v and --image-size
        if flag == "--set":
            k, v = value.split("=", 1)
            over[k] = v
    import warnings

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        run = fer_keras.train(model="CustomCNN", data=demo_root["csv"], epochs=1, runs_dir=str(tmp_path),
                              name="api", overrides={**over, "data.image_size": 32})
    assert not [w for w in seen if "shuffle" in str(w.message)], "Keras' shuffle warning reached an API caller"
    assert isinstance(run, fer_keras.Run) and run.status == "finished" and len(run.history) == 1
    metrics = run.evaluate()
    assert 0 <= metrics["expression"]["accuracy"] <= 1 and "per_class" in metrics["expression"]
    report = run.report()
    assert os.path.isfile(report) and report.endswith("report.html")
    exported = run.export("keras")
    assert os.path.isfile(exported["keras"])
    assert fer_keras.load_run(run.path).path == run.path
    model = fer_keras.load_model(run.path)
    assert model.get_layer("expression").output.shape[-1] == 7


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory):
    """The package built as a wheel and installed (without dependencies: this venv has them) into a folder of its
    own, with pip's console-script wrappers in its bin/."""
    tmp = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run(pip + ["wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"), ROOT], check=True,
                   capture_output=True)
    wheel = next((tmp / "dist").glob("fer_keras-*.whl"))
    subprocess.run(pip + ["install", "--no-deps", "--target", str(tmp / "site"), str(wheel)], check=True,
                   capture_output=True)
    return tmp / "site"


@pytest.mark.slow
def test_console_scripts_of_the_wheel_exit_0_on_success_and_2_on_user_error(installed_wheel, group_photo, demo_root,
                                                                              tmp_path):
    env = {**os.environ, "PYTHONPATH": str(installed_wheel)}

    def script(name, *args):
        return subprocess.run([str(installed_wheel / "bin" / name), *args], capture_output=True, text=True,
                              cwd=tmp_path, env=env, timeout=600)

    for name in ("fer-train", "fer-evaluate", "fer-visualize", "fer-predict", "fer-export"):
        assert script(name, "--help").returncode == 0, name
    proc = script("fer-predict", group_photo[0], "--out", "pred")
    assert proc.returncode == 0 and len(proc.stderr) < 300, proc.stderr
    assert "3 faces from 1 inputs" in proc.stdout
    proc = script("fer-train", "--data", demo_root["csv"], "--runs-dir", "runs", "--name", "w", *TINY_ARGV)
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert script("fer-evaluate", "--run", "runs/w").returncode == 0
    assert script("fer-visualize", "--run", "runs/w").returncode == 0
    assert script("fer-export", "--run", "runs/w", "--format", "keras").returncode == 0
    for name, args in [("fer-train", ["--model", "Nope"]), ("fer-evaluate", ["--model", "nosuch"]),
                       ("fer-visualize", ["--run", "/no/run"]), ("fer-predict", ["/no/photo.jpg"]),
                       ("fer-export", ["--run", "/no/run"])]:
        proc = script(name, *args)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, (name, proc.stderr)


def test_api_page_is_generated_from_the_docstrings():
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "docs", "gen_api.py"), "--check"], capture_output=True,
                          text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_public_name_has_a_google_style_docstring():
    from fer_keras import api

    for name in fer_keras.__all__:
        obj = getattr(api, name)
        assert (obj.__doc__ or "").strip(), name
    assert "Args:" in api.train.__doc__ and "Returns:" in api.Analyzer.analyze.__doc__


def test_min_confidence_drops_the_faces_below_it_and_counts_them(group_photo, tmp_path):
    """The expression-confidence floor: faces whose top probability is below it are dropped (API: photos and video;
    the CLI counts them in its summary); the floor between the faces' own confidences splits them exactly."""
    path, rgb = group_photo
    analyzer = fer_keras.Analyzer()
    faces = analyzer.analyze(rgb)
    conf = sorted(f.confidence for f in faces)
    assert conf[0] < conf[-1], "the three faces need different confidences for this test"
    floor = (conf[0] + conf[-1]) / 2
    kept = fer_keras.Analyzer(min_confidence=floor).analyze(rgb)
    assert [f.to_dict() for f in kept] == [f.to_dict() for f in faces if f.confidence >= floor]
    assert fer_keras.Analyzer(min_confidence=0.0).analyze(rgb) == faces
    assert fer_keras.Analyzer(min_confidence=1.0).analyze(rgb) == []
    with pytest.raises(ValueError, match="min_confidence 1.5: out of range"):
        fer_keras.Analyzer(min_confidence=1.5)

    from fer_keras.cli_predict import main

    results = main([path, "--min-confidence", f"{floor}", "--out", str(tmp_path / "out"), "--quiet"])
    assert len(results.rows) == len(kept) and results.low_confidence == len(faces) - len(kept)
    assert all(r["confidence"] >= floor for r in results.rows)


def test_min_confidence_on_video_keeps_the_track_and_counts_the_rows(tmp_path):
    path = _moving_face_clip(str(tmp_path / "clip.mp4"), 20, (320, 240), top=40, step=3)
    everything = fer_keras.Analyzer().analyze_video(path)
    floor = float(everything["confidence"].median())
    table = fer_keras.Analyzer(min_confidence=floor).analyze_video(path)
    assert 0 < len(table) < len(everything), "the clip's rows need different confidences for this test"
    assert (table["confidence"] >= floor).all() and len(table) == (everything["confidence"] >= floor).sum()
    assert table.attrs["low_confidence_rows"] == len(everything) - len(table)
