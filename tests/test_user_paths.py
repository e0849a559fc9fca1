"""User paths that must hold whatever the caller does: one Analyzer shared by threads, whole-number options,
shipped names against files of the same name."""

import os
import threading

import numpy as np
import pytest

import fer_keras
from fer_keras.errors import ConfigError
from fer_keras.predict import FacePredictor
from fer_keras.pretrained import resolve_model


def test_one_litert_predictor_is_safe_from_several_threads():
    """Threads sharing one predictor (LiteRT, batches of other sizes) each get their own images' outputs."""
    pred = FacePredictor(resolve_model("compact"), backend="litert", tta="none")
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, 256, (n, pred.size, pred.size, pred.channels)).astype(np.uint8)
               for n in (1, 3, 5, 2, 7, 4)]
    want = [pred.predict(list(b))["expression"] for b in batches]
    wrong, errors = [], []

    def work(k):
        try:
            for i in range(20):
                j = (k + i) % len(batches)
                got = pred.predict(list(batches[j]))["expression"]
                if not np.allclose(got, want[j], atol=1e-6):
                    wrong.append(j)
        except Exception as e:  # noqa: BLE001 - the test reports any failure of a thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and not wrong


@pytest.mark.parametrize("option, value", [("batch_size", 2.5), ("window", 2.5), ("min_face", 10.5),
                                           ("confirm", 1.5), ("batch_size", "8")])
def test_counting_options_take_whole_numbers_only(option, value):
    with pytest.raises(ConfigError, match=f"{option} {value!r}: out of range .*whole number"):
        fer_keras.Analyzer("compact", **{option: value})


def test_a_shipped_name_wins_over_a_file_of_that_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "default").mkdir()  # a folder named like the shipped model
    assert resolve_model("default").endswith(".keras") and os.path.isfile(resolve_model("default"))
    assert resolve_model("./default") == "./default"  # the local one, asked for as a path
    assert resolve_model(tmp_path / "default") == str(tmp_path / "default")  # Path objects work


def _captured_train(monkeypatch):
    """fer_keras.train with the training replaced by a recorder of the resolved config."""
    import fer_keras.api as api

    seen = {}

    class Task:
        def fn(self, role):
            return lambda cfg: seen.setdefault("cfg", cfg) and "run"

    monkeypatch.setattr(api, "task_of", lambda cfg: Task())
    monkeypatch.setattr(api, "Run", lambda path: path)
    monkeypatch.setattr(api, "quiet_tensorflow_import", lambda: None)
    return seen


def test_train_applies_every_override_and_named_parameter(monkeypatch, tmp_path):
    import pathlib

    seen = _captured_train(monkeypatch)
    fer_keras.train(overrides={"train.epochs": 1, "train.runs_dir": str(tmp_path / "r"),
                               "data.path": pathlib.Path(tmp_path / "faces")})
    cfg = seen.pop("cfg")
    assert cfg.train.epochs == 1 and cfg.train.runs_dir == str(tmp_path / "r")
    assert cfg.data.path == str(tmp_path / "faces")  # a Path, not the demo data
    fer_keras.train(data=pathlib.Path(tmp_path / "x"), epochs=2, runs_dir=tmp_path, overrides={"train.seed": 3})
    cfg = seen.pop("cfg")
    assert (cfg.data.path, cfg.train.epochs, cfg.train.runs_dir, cfg.train.seed) == (str(tmp_path / "x"), 2,
                                                                                      str(tmp_path), 3)
    with pytest.raises(ConfigError, match="train.epochs is given twice"):
        fer_keras.train(epochs=2, overrides={"train.epochs": 1})
    with pytest.raises(ConfigError, match="unknown config key 'train.epoch'"):
        fer_keras.train(overrides={"train.epoch": 1})


def test_a_tflite_of_another_model_version_is_refused(tmp_path):
    """The .tflite beside a .keras records the model it belongs to: a model rebuilt under the same name is refused
    with one line instead of being answered by the old export; --backend keras still runs the new one."""
    import shutil

    from fer_keras.errors import ModelError
    from fer_keras.model_info import load_keras_model, stamp_tflite

    src = resolve_model("compact")
    for ext in (".keras", ".tflite", ".json"):
        shutil.copy(os.path.splitext(src)[0] + ext, tmp_path / f"m{ext}")
    model = str(tmp_path / "m.keras")
    assert FacePredictor(model).backend == "litert"  # the shipped pair belongs together
    m = load_keras_model(model)
    m.get_layer("expression").bias.assign(m.get_layer("expression").bias.numpy() + 1.0)
    os.remove(model)
    m.save(model)  # rebuilt under the same name
    with pytest.raises(ModelError, match="m.tflite: exported from another version of .*m.keras"):
        FacePredictor(model)
    assert FacePredictor(model, backend="keras").backend == "keras"
    stamp_tflite(model)  # declared to belong (as export does after writing it)
    assert FacePredictor(model).backend == "litert"


def test_a_zip_bomb_model_file_is_refused_unopened(tmp_path, capsys):
    """A small .keras (a zip) whose members declare gigabytes: loading and exporting refuse it in one line, before
    extracting anything."""
    import zipfile

    from fer_keras.errors import ModelError
    from fer_keras.cli_export import main as export_main
    from fer_keras.limits import MAX_MODEL_BYTES
    from fer_keras.model_info import load_keras_model

    bomb = tmp_path / "bomb.keras"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("model.weights.h5", "w", force_zip64=True) as f:
            chunk = b"\0" * (1 << 24)
            for _ in range(MAX_MODEL_BYTES // len(chunk) + 1):
                f.write(chunk)
    assert bomb.stat().st_size < 10_000_000
    with pytest.raises(ModelError, match="unpack to .* bytes .*refused unopened"):
        load_keras_model(str(bomb))
    with pytest.raises(SystemExit) as e:
        export_main(["--model", str(bomb), "--quantize", "float16", "--out", str(tmp_path / "half.keras")])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and "refused unopened" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "half.keras").exists()


def test_a_gif_too_large_by_its_header_is_one_problem_not_a_traceback(tmp_path):
    import struct

    from fer_keras.predict import _file_kind, image_problem

    from PIL import Image

    small = tmp_path / "small.gif"
    frames = [Image.new("L", (8, 8), v) for v in (0, 255)]
    frames[0].save(small, save_all=True, append_images=frames[1:])
    data = bytearray(small.read_bytes())
    data[6:10] = struct.pack("<HH", 14000, 14000)  # the header now declares 196 MP (Pillow's own bomb error)
    gif = tmp_path / "huge.gif"
    gif.write_bytes(bytes(data))
    assert _file_kind(str(gif)) == "image"
    assert "image too large" in image_problem(str(gif))


def _oriented(tmp_path, fmt: str, value, name: str, tag_type: int = 3):
    """A 40x20 (w x h) photo, left half black, right half white, with EXIF Orientation `value` written with TIFF
    tag type `tag_type` (3 SHORT, 4 LONG, 2 ASCII text)."""
    from PIL import Image, TiffImagePlugin

    img = np.zeros((20, 40, 3), np.uint8)
    img[:, 20:] = 255
    ifd = TiffImagePlugin.ImageFileDirectory_v2()
    ifd[0x0112] = value
    ifd.tagtype[0x0112] = tag_type
    exif = b"Exif\x00\x00II\x2a\x00\x08\x00\x00\x00" + ifd.tobytes(8)
    path = str(tmp_path / f"{name}.{fmt}")
    Image.fromarray(img).save(path, exif=exif, **({"quality": 95} if fmt == "jpg" else {}))
    return path


@pytest.mark.parametrize("fmt", ["jpg", "png"])
@pytest.mark.parametrize("value, tag_type, upright_shape", [(1, 3, (20, 40)), (3, 3, (20, 40)), (6, 3, (40, 20)),
                                                            (8, 3, (40, 20)), (6, 4, (40, 20)), ("6", 2, (20, 40))])
def test_one_exif_policy_for_training_and_predict(tmp_path, fmt, value, tag_type, upright_shape):
    """JPEG and PNG, numeric and text orientation tags: training's decode and predict's read give the same
    upright image (a text tag is ignored by both)."""
    import tensorflow as tf

    from fer_keras.data.images import _decode_resize_fn
    from fer_keras.predict import read_rgb

    path = _oriented(tmp_path, fmt, value, f"o{value}", tag_type)
    from PIL import Image

    assert Image.open(path).getexif().get(0x0112) == value  # the tag as written (its type kept)
    got = read_rgb(path)
    assert got.shape[:2] == upright_shape
    data = tf.io.read_file(path)
    decoded = _decode_resize_fn()(data, tf.constant([np.nan] * 4, tf.float32), tf.constant(max(upright_shape)),
                                  tf.constant(3)).numpy()
    side = max(upright_shape)
    want = __import__("cv2").resize(got, (side, side), interpolation=__import__("cv2").INTER_AREA)
    assert np.abs(decoded.astype(int) - want.astype(int)).mean() < 8  # same orientation (JPEG noise aside)
    import fer_keras.api as api
    from PIL import Image

    np.testing.assert_array_equal(api._to_rgb(Image.open(path)), got)


def test_api_takes_16_bit_gray_and_names_a_folder(tmp_path):
    from PIL import Image

    import fer_keras.api as api
    from fer_keras.errors import DataError

    wide = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16)
    im = Image.fromarray(wide)
    assert im.mode == "I;16"
    rgb = api._to_rgb(im)
    np.testing.assert_array_equal(rgb[..., 0], np.round(wide / 257.0).astype(np.uint8))  # scaled, not clipped
    with pytest.raises(DataError, match="a folder; analyze takes one image"):
        fer_keras.analyze(str(tmp_path))


@pytest.mark.parametrize("error", [KeyboardInterrupt, ImportError])
def test_a_failed_tensorflow_import_shows_its_reason_and_ctrl_c_stays_quiet(error, monkeypatch, capsys):
    """The hidden load-time lines are printed when the import fails (they say why); after Ctrl-C nothing of them."""
    import builtins
    import sys

    from fer_keras.errors import quiet_tensorflow_import

    real = builtins.__import__

    def failing(name, *a, **k):
        if name == "tensorflow":
            os.write(2, b"libtensorflow: the reason\n")
            raise error("stopped")
        return real(name, *a, **k)

    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    monkeypatch.delenv("FER_KERAS_TF_LOGS", raising=False)
    monkeypatch.setattr(builtins, "__import__", failing)
    with pytest.raises(error):
        quiet_tensorflow_import()
    err = capsys.readouterr().err
    assert ("the reason" in err) == (error is ImportError)


def test_labels_stay_in_the_image_and_off_the_other_faces():
    from fer_keras.predict import _overlaps, annotate, label_box

    boxes = [(10, 60, 100, 100), (10, 170, 100, 100), (560, 5, 78, 90)]  # a face under another; one at the right edge
    faces = [(x, y, x + w, y + h) for x, y, w, h in boxes]
    placed = []
    for i, b in enumerate(boxes):
        r = label_box(b, (120, 20), (300, 640), [f for j, f in enumerate(faces) if j != i] + placed)
        placed.append(r)
        assert 0 <= r[0] and r[2] <= 640 and 0 <= r[1] and r[3] <= 300  # inside the image
        assert not any(_overlaps(r, f) for j, f in enumerate(faces) if j != i)
    assert not _overlaps(placed[0], placed[1])
    img = annotate(np.zeros((300, 640, 3), np.uint8), boxes, ["happy"] * 3, [0.9] * 3, [(0.5, 0.5)] * 3)
    assert img.shape == (300, 640, 3) and img[-5:, :40].max() > 0  # the dial's legend in the corner


def test_evaluating_a_shipped_model_writes_in_the_working_folder_and_a_bad_split_is_named(tmp_path, monkeypatch):
    from fer_keras.config import Config
    from fer_keras.expression.evaluate import _default_out, evaluate_run

    monkeypatch.chdir(tmp_path)
    out = _default_out(None, resolve_model("compact"), Config(), "/data/faces", "all", "folder", "none", False)
    assert out.startswith(os.path.join("runs", "eval-multitask_customcnn")) and not os.path.isabs(out)
    with pytest.raises(ConfigError, match="split 'testing': valid: test, val, train, all"):
        evaluate_run(model_path=resolve_model("compact"), split="testing")


def test_min_face_drops_small_faces_for_every_detector():
    """`min_face` filters any detector's boxes by their shorter side (not only Haar's), also on video streams."""
    from fer_keras.detection import faces as F

    class Two:
        min_score = 0.5

        def detect(self, rgb):
            return np.array([[0, 0, 14, 18], [10, 10, 90, 100]], np.float32), np.array([0.9, 0.8], np.float32)

    F.DETECTORS.register("two-test")(lambda min_face=48, min_score=None: Two())
    try:
        assert len(F.make_detector("two-test").detect(np.zeros((120, 120, 3), np.uint8))[0]) == 2
        det = F.make_detector("two-test", min_face=20)
        boxes, scores = det.detect(np.zeros((120, 120, 3), np.uint8))
        assert boxes.tolist() == [[10, 10, 90, 100]] and scores.tolist() == [pytest.approx(0.8)]
        assert det.min_score == 0.5 and F.for_stream(det).min_face == 20
        assert isinstance(F.make_detector("haar", min_face=30), F.HaarDetector)  # Haar applies it itself
    finally:
        F.DETECTORS._items.pop("two-test"), F.DETECTORS._names.pop("two-test")
