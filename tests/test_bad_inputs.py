"""The bad-input corpus (generated at test time): every case gives a one-line error naming the file/row/key and exit
code 2 through the CLIs, or is skipped and counted with --skip-bad; valid-but-unusual images (16-bit, RGBA, CMYK)
are read correctly; and no case modifies what an earlier run wrote."""

import csv
import hashlib
import os
import shutil

import cv2
import numpy as np
import pytest
from PIL import Image

from tiny import TINY_SETS, tiny_argv
from fer_keras.cli_evaluate import main as eval_main
from fer_keras.cli_train import main as train_main
from fer_keras.config import DataConfig
from fer_keras.data.pipeline import load_data

TINY = tiny_argv("--set", "data.val_fraction=0", "--set", "data.test_fraction=0")


def _face(i=0):
    rng = np.random.default_rng(i)
    return rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)


def _base(root):
    """A valid CSV dataset of 14 images (2 per class) that each case then breaks in one way."""
    os.makedirs(root / "img", exist_ok=True)
    rows = []
    for i in range(14):
        cv2.imwrite(str(root / "img" / f"{i}.png"), _face(i))
        rows.append([f"img/{i}.png", str(i % 7), "0.1", "-0.2"])
    return rows


def _csv(root, rows, header=("path", "expression", "valence", "arousal")):
    with open(root / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return str(root / "labels.csv")


def _img_case(writer):
    def make(root):
        rows = _base(root)
        writer(root / "img" / "bad")
        name = next(f for f in os.listdir(root / "img") if f.startswith("bad"))
        rows.append([f"img/{name}", "1", "", ""])
        return _csv(root, rows), []
    return make


def _row_case(row, header=None):
    def make(root):
        rows = _base(root) + [row]
        return _csv(root, rows, header or ("path", "expression", "valence", "arousal")), []
    return make


def _jpeg_bytes():
    return cv2.imencode(".jpg", _face())[1].tobytes()


def _npy_case(arrays):
    def make(root):
        for k, v in arrays.items():
            np.save(root / f"{k}.npy", v, allow_pickle=True)
        return str(root), []
    return make


def _folder_case(extra_dir, with_file=True):
    def make(root):
        for c in ("happy", "sad"):
            (root / c).mkdir()
            for i in range(3):
                cv2.imwrite(str(root / c / f"{i}.png"), _face(i))
        (root / extra_dir).mkdir()
        if with_file:
            cv2.imwrite(str(root / extra_dir / "x.png"), _face())
        return str(root), []
    return make


def _fer_case(pixels):
    def make(root):
        p = root / "fer.csv"
        with open(p, "w") as f:
            f.write("emotion,pixels,Usage\n")
            for i in range(7):
                f.write(f"{i}," + " ".join(["7"] * 2304) + ",Training\n")
            f.write(f"3,{pixels},Training\n")
        return str(p), []
    return make


def _affectnet_box(root):
    (root / "Manually_Annotated_Images" / "1").mkdir(parents=True)
    rows = []
    for i in range(8):
        cv2.imwrite(str(root / "Manually_Annotated_Images" / "1" / f"{i}.jpg"), _face(i))
        x = 500 if i == 7 else 0  # the last box lies outside its 40x40 image
        rows.append([f"1/{i}.jpg", x, 0, 30, 30, "", i % 7, 0.1, 0.1])
    with open(root / "training.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "facial_landmarks",
                    "expression", "valence", "arousal"])
        w.writerows(rows)
    return str(root), ["--format", "affectnet"]


def _truncated(path_stem, ext, data):
    (path_stem.parent / (path_stem.name + ext)).write_bytes(data)


def _affectnet_label(label):
    """A valid AffectNet official-CSV dataset of 8 faces, then one more row with `label` as its expression."""
    def make(root):
        _affectnet_box(root)
        with open(root / "training.csv", "a", newline="") as f:
            csv.writer(f).writerow(["1/0.jpg", 0, 0, 30, 30, "", label, 0.1, 0.1])
        text = (root / "training.csv").read_text().replace("\n500,", "\n0,")
        (root / "training.csv").write_text(text.replace("1/7.jpg,500", "1/7.jpg,0"))
        return str(root), ["--format", "affectnet"]
    return make


def _dfew_escape(clip_id):
    """A generated DFEW layout whose train split of fold 1 names one clip outside the clip root."""
    def make(root):
        from fer_keras.data.demo import write_demo_clips

        data = write_demo_clips(str(root), "dfew", per_class=2, size=24, frames=4)
        outside = root / "outside" / "clipX"
        outside.mkdir(parents=True)
        for i in range(4):
            cv2.imwrite(str(outside / f"clipX_{i + 1:02d}.jpg"), _face(i))
        with open(os.path.join(data, "EmoLabel_DataSplit", "train(single-labeled)", "set_1.csv"), "a") as f:
            f.write(f"{clip_id},3\n")
        return data, ["--format", "dfew"]
    return make


def _folder_symlink(root):
    make = _folder_case("happy2", with_file=False)
    data, extra = make(root)
    os.rmdir(os.path.join(data, "happy2"))
    outside = root.parent / (root.name + "-outside")
    outside.mkdir()
    cv2.imwrite(str(outside / "x.png"), _face())
    os.symlink(outside / "x.png", os.path.join(data, "happy", "link.png"))
    return data, extra


def _npz_named_npy(root):
    np.savez(root / "expressions.npz", a=np.zeros(3))
    os.replace(root / "expressions.npz", root / "expressions.npy")
    np.save(root / "images.npy", np.zeros((3, 16, 16), np.uint8))
    return str(root), []


def _csv_bytes(data: bytes):
    def make(root):
        _base(root)
        (root / "labels.csv").write_bytes(data)
        return str(root / "labels.csv"), []
    return make


# (name, builder, expected text in the error, skippable with --skip-bad)
CASES = [
    ("zero-byte jpeg", _img_case(lambda p: _truncated(p, ".jpg", b"")), "bad.jpg: empty file", True),
    ("truncated jpeg", _img_case(lambda p: _truncated(p, ".jpg", _jpeg_bytes()[:300])), "bad.jpg:", True),
    ("truncated png", _img_case(lambda p: _truncated(
        p, ".png", cv2.imencode(".png", _face())[1].tobytes()[:200])), "bad.png:", True),
    ("text named jpg", _img_case(lambda p: (p.parent / "bad.jpg").write_text("hello")), "bad.jpg: not a JPEG", True),
    ("1x1 image", _img_case(lambda p: cv2.imwrite(str(p) + ".png", np.zeros((1, 1, 3), np.uint8))),
     "bad.png: image is 1x1, smaller than 8 px", True),
    ("10000x10000 image", _img_case(lambda p: Image.new("L", (10000, 10000)).save(str(p) + ".png")),
     "bad.png: image is 10000x10000 (100 MP), over data.max_image_pixels", True),
    ("webp image", _img_case(lambda p: Image.fromarray(_face()).save(str(p) + ".tif")),
     "bad.tif: unsupported image format TIFF", True),
    ("missing image file", _row_case(["img/nope.png", "1", "", ""]), "labels.csv:16: image file not found", True),
    ("label out of range", _row_case(["img/0.png", "12", "", ""]), "labels.csv:16: expression label 12", True),
    ("non-integer label", _row_case(["img/0.png", "1.5", "", ""]), "labels.csv:16: expression label '1.5'", True),
    ("unknown label name", _row_case(["img/0.png", "bored", "", ""]), "labels.csv:16: expression label 'bored'",
     True),
    ("NaN valence", _row_case(["img/0.png", "1", "nan", "0"]), "labels.csv:16: valence/arousal 'nan'", True),
    ("inf arousal", _row_case(["img/0.png", "1", "0", "-inf"]), "labels.csv:16: valence/arousal '-inf'", True),
    ("valence out of range", _row_case(["img/0.png", "1", "2.5", "0"]), "labels.csv:16: valence/arousal 2.5",
     True),
    ("path escapes root", _row_case(["../../../etc/hosts", "1", "", ""]), "labels.csv:16: image path", True),
    ("absolute path outside root", _row_case(["/etc/hosts", "1", "", ""]), "escapes the data root", True),
    ("CSV missing column", _row_case(["img/0.png", "1"], header=("path", "label")),
     "labels.csv: missing column 'expression'", False),
    ("CSV renamed path column", _row_case(["img/0.png", "1"], header=("file", "expression")),
     "labels.csv: missing column 'path'", False),
    ("unknown class folder", _folder_case("bored"), "bored: unknown class folder 'bored'", True),
    ("empty class folder", _folder_case("surprise", with_file=False), "surprise: class folder has no images", True),
    ("npy length mismatch", _npy_case({"images": np.zeros((5, 16, 16), np.uint8),
                                       "expressions": np.zeros(4, np.int64)}),
     "images.npy has 5 samples but expressions.npy has 4", False),
    ("pickled npy", _npy_case({"images": np.zeros((2, 16, 16), np.uint8),
                               "expressions": np.array([{"x": 1}, {"y": 2}], dtype=object)}),
     "expressions.npy: expressions holds pickled Python objects", False),
    ("FER2013 wrong pixel count", _fer_case(" ".join(["1"] * 100)), "fer.csv:9: expected 2304 pixels", True),
    ("FER2013 non-numeric pixels", _fer_case("a b c"), "fer.csv:9: pixels are not space-separated numbers", True),
    ("AffectNet box outside image", _affectnet_box, "lies mostly outside the 40x40 image", True),
    # second pass (issue 19): silent corruption and escapes
    ("CSV duplicated expression header", _row_case(["img/0.png", "1", "3", "0.1"],
                                                   header=("path", "expression", "expression", "arousal")),
     "labels.csv: column 'expression' appears 2 times in the header", False),
    ("AffectNet fractional expression", _affectnet_label("3.7"), "training.csv:10: expression '3.7' is not an integer",
     True),
    ("AffectNet infinite expression", _affectnet_label("inf"), "training.csv:10: expression 'inf' is not an integer",
     True),
    ("FER2013 NaN pixels", _fer_case(" ".join(["nan"] * 2304)), "fer.csv:9: pixel values must be integers", True),
    ("FER2013 fractional pixels", _fer_case(" ".join(["12.7"] * 2304)), "fer.csv:9: pixel values must be integers",
     True),
    ("npy NaN pixels", _npy_case({"images": np.where(np.arange(5)[:, None, None] == 3, np.nan,
                                                     np.full((5, 16, 16), 9.0)),
                                  "expressions": np.zeros(5, np.int64)}),
     "images.npy: image 3 has NaN or infinite pixels", False),
    ("npy 1x1 images", _npy_case({"images": np.zeros((5, 1, 1), np.uint8), "expressions": np.zeros(5, np.int64)}),
     "images.npy: images are 1x1 pixels, smaller than data.min_image_side=8", False),
    ("npy strings as valence", _npy_case({"images": np.zeros((5, 16, 16), np.uint8),
                                          "expressions": np.zeros(5, np.int64),
                                          "valence": np.array(["0.1"] * 5)}),
     "valence.npy: expected numbers, got dtype <U3", False),
    ("npz named .npy", _npz_named_npy, "expressions.npy: expressions is an .npz archive", False),
    ("npy (N,0,0) images", _npy_case({"images": np.zeros((3, 0, 0), np.uint8), "expressions": np.zeros(3, np.int64)}),
     "images.npy: images are 0x0 pixels", False),
    ("200k-character CSV cell", _row_case(["img/0.png", "x" * 200_000, "", ""]), "labels.csv: cannot read it", False),
    ("DFEW clip id escapes root", _dfew_escape("../../../outside/clipX"), "escapes the data root", True),
    ("DFEW absolute clip path", _dfew_escape("/etc"), "escapes the data root", True),
    ("folder symlink out of root", _folder_symlink, "link.png: links out of the data root", True),
    ("UTF-16 CSV", _csv_bytes("path,expression\nimg/0.png,1\n".encode("utf-16")),
     "labels.csv: cannot read it (not UTF-8 text", False),
    ("NUL byte in a CSV path", _row_case(["img/0.png\x00", "1", "", ""]),
     "labels.csv:16: image path contains a NUL", True),
]

CLI_CASES = [
    (["--model", "AlexNet"], "unknown model 'AlexNet'"),
    (["--format", "hdf5"], "data.format: 'hdf5' is not one of"),
    (["--labels", "9"], "unknown label preset '9'"),
    (["--set", "model.widht=3"], "unknown config key 'model.widht'"),
    (["--set", "train.epochs=many"], "train.epochs: cannot use 'many' as int"),
]


@pytest.fixture(scope="module")
def earlier_run(tmp_path_factory, demo_root):
    """A finished run whose files must not change while the bad inputs are tried."""
    runs = tmp_path_factory.mktemp("runs")
    run = train_main(["--data", demo_root["folder"], "--runs-dir", str(runs), "--name", "earlier"] + TINY)

    def digest():
        h = hashlib.sha256()
        for d, _, files in sorted(os.walk(run)):
            for f in sorted(files):
                h.update(f.encode())
                h.update(open(os.path.join(d, f), "rb").read())
        return h.hexdigest()

    before = digest()
    yield str(runs), run
    assert digest() == before, "a bad-input case modified an earlier run"


@pytest.mark.parametrize("name,make,expected,skippable", CASES, ids=[c[0] for c in CASES])
def test_bad_input_case(name, make, expected, skippable, tmp_path, earlier_run, capsys):
    runs, _ = earlier_run
    data, extra = make(tmp_path)
    with pytest.raises(SystemExit) as e:
        train_main(["--data", data, "--runs-dir", runs] + extra + TINY)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert expected in err, err
    assert os.listdir(runs) == ["earlier"]  # no half-made run directory is left behind
    if skippable:
        cfg = DataConfig(path=data, image_size=32, skip_bad=True, val_fraction=0, test_fraction=0,
                         format=extra[1] if extra else "auto")
        bundle = load_data(cfg)
        assert len(bundle.bad) == 1 and len(bundle.train) > 0
        source, reason = bundle.bad.items[0]
        # Skipped for the reason the error gave, and the error names the skipped file.
        assert reason and reason in err, (reason, err)
        assert os.path.basename(source.split(":")[0]) in err, (source, err)


@pytest.mark.parametrize("argv,expected", CLI_CASES)
def test_bad_cli_arguments(argv, expected, earlier_run, demo_root, capsys):
    runs, _ = earlier_run
    with pytest.raises(SystemExit) as e:
        train_main(["--data", demo_root["folder"], "--runs-dir", runs] + argv + TINY)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and expected in err and len(err.splitlines()) == 1


def test_corrupted_model_and_foreign_run(earlier_run, tmp_path, capsys):
    runs, run = earlier_run
    other = tmp_path / "copy"
    shutil.copytree(run, other)
    with open(other / "model.keras", "r+b") as f:
        f.truncate(1000)
    with pytest.raises(SystemExit) as e:
        eval_main(["--run", str(other)])
    assert e.value.code == 2 and "model.keras: not a complete .keras file" in capsys.readouterr().err
    shutil.copy(os.path.join(run, "model.keras"), other / "model.keras")
    text = open(other / "config.yaml").read().replace("version: 1", "version: 99")
    (other / "config.yaml").write_text(text)
    with pytest.raises(SystemExit) as e:
        eval_main(["--run", str(other)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "config version 99 is not supported" in err and "config.yaml" in err


def test_unusual_but_valid_images_are_read(tmp_path):
    """16-bit PNG, RGBA PNG and CMYK JPEG decode to the expected 8-bit RGB content."""
    base = np.tile(np.linspace(0, 255, 32, dtype=np.uint8), (32, 1))
    Image.fromarray(base.astype(np.uint16) * 257).save(tmp_path / "g16.png")
    Image.fromarray(np.dstack([base] * 3 + [np.full_like(base, 128)]), "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(np.dstack([base] * 3)).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=100)
    rows = [[n, "happy", "", ""] for n in ("g16.png", "rgba.png", "cmyk.jpg")]
    path = _csv(tmp_path, rows)
    b = load_data(DataConfig(path=path, image_size=32, channels=1, val_fraction=0, test_fraction=0))
    assert len(b.train) == 3
    for img in b.train.images:
        assert abs(img[..., 0].astype(float).mean(axis=0) - base.mean(axis=0)).mean() < 8


def test_lambda_model_refused_in_safe_mode_unless_opted_out(tmp_path, demo_root, capsys):
    import keras

    inp = keras.Input((32, 32, 3))
    x = keras.layers.Lambda(lambda t: t / 255.0)(inp)  # arbitrary code stored in the file
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, {"expression": keras.layers.Dense(7, activation="softmax", name="expression")(x),
                              "valence_arousal": keras.layers.Dense(2, activation="tanh", name="valence_arousal")(x)})
    path = str(tmp_path / "lambda.keras")
    model.save(path)
    argv = ["--model-path", path, "--data", demo_root["folder"], "--labels", "7", "--out", str(tmp_path / "e")]
    with pytest.raises(SystemExit) as e:
        eval_main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and "lambda.keras: cannot load model" in err and "safe" in err.lower()
    assert eval_main(argv + ["--unsafe-load"])  # the explicit opt-out loads it


@pytest.mark.slow
def test_image_that_fails_only_at_decode_time_is_one_line(tmp_path, earlier_run, capsys):
    """With header-only validation (data too big to decode up front), a truncated JPEG reaches tf.data: training
    stops with one line that names the file (found by decoding the split after tf.data failed), not a TensorFlow
    traceback."""
    runs, _ = earlier_run
    rows = _base(tmp_path)
    jpeg = _jpeg_bytes()
    (tmp_path / "img" / "cut.jpg").write_bytes(jpeg[:len(jpeg) // 2])
    rows += [["img/cut.jpg", "1", "", ""]] * 20  # drawn in the first batch whatever the shuffle
    data = _csv(tmp_path, rows)
    with pytest.raises(SystemExit) as e:
        train_main(["--data", data, "--runs-dir", runs, "--set", "data.validate_images=header",
                    "--set", "data.cache=none"] + TINY)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1, err
    assert "training stopped:" in err and "cut.jpg: cannot decode image" in err and "tf.data" in err, err
    assert "rerun the same command" in err
    assert os.listdir(runs) == ["earlier"]  # failed in its first epoch: nothing to resume, no run left


# One case of each class, run as a user runs it: a subprocess with TensorFlow's own logging (the in-process tests
# above read capsys, which does not see what TensorFlow writes to file descriptor 2).
PER_CLASS = ["truncated jpeg", "10000x10000 image", "label out of range", "NaN valence", "path escapes root",
             "CSV duplicated expression header", "unknown class folder", "npy NaN pixels", "FER2013 NaN pixels",
             "AffectNet fractional expression", "DFEW clip id escapes root", "folder symlink out of root",
             "UTF-16 CSV"]


@pytest.mark.slow
@pytest.mark.parametrize("name", PER_CLASS)
def test_bad_input_class_as_the_user_sees_it(name, tmp_path, earlier_run):
    import subprocess
    import sys

    runs, _ = earlier_run
    _, make, expected, _ = next(c for c in CASES if c[0] == name)
    data, extra = make(tmp_path)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {k: v for k, v in os.environ.items() if k not in ("FER_KERAS_TF_LOGS", "FER_KERAS_DEBUG")}
    proc = subprocess.run([sys.executable, os.path.join(root, "train_model.py"), "--data", data, "--runs-dir", runs]
                          + extra + TINY, capture_output=True, text=True, env=env, timeout=600)
    err = proc.stderr.strip()
    assert proc.returncode == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err and expected in err, err
    assert os.listdir(runs) == ["earlier"]


def test_predict_refuses_a_decompression_bomb_and_goes_on(tmp_path):
    """A small PNG that declares 64 megapixels is reported in errors.csv, never decoded; the other image is."""
    from fer_keras.cli_predict import main as predict_main

    Image.new("L", (8000, 8000)).save(tmp_path / "bomb.png", optimize=True)
    assert os.path.getsize(tmp_path / "bomb.png") < 1 << 20
    cv2.imwrite(str(tmp_path / "face.png"), _face())
    out = tmp_path / "out"
    predict_main([str(tmp_path / "bomb.png"), str(tmp_path / "face.png"), "--no-detect", "--out", str(out)])
    errors = open(out / "errors.csv").read()
    assert "bomb.png" in errors and "image too large (8000x8000 pixels" in errors
    assert "face.png" in open(out / "predictions.csv").read()


def _png_header_only(path, width, height):
    """A PNG of a few dozen bytes whose header declares `width` x `height` (no pixel data at all)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00")) +
                     chunk(b"IEND", b""))


def test_predict_refuses_a_400_megapixel_header_without_decoding(tmp_path):
    """20000x20000 declared: above Pillow's own bomb limit (it raises instead of reporting the size), refused by
    the header alone; the normal photo next to it is processed."""
    import resource
    import time

    from fer_keras.cli_predict import main as predict_main

    _png_header_only(tmp_path / "huge.png", 20000, 20000)
    cv2.imwrite(str(tmp_path / "face.png"), _face())
    out = tmp_path / "out"
    rss0, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.time()
    predict_main([str(tmp_path / "huge.png"), str(tmp_path / "face.png"), "--no-detect", "--out", str(out)])
    errors = open(out / "errors.csv").read()
    assert "huge.png" in errors and "image too large (" in errors  # by its header, whatever Pillow's own limit
    assert "face.png" in open(out / "predictions.csv").read()
    assert time.time() - t0 < 30 and resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0 < 1 << 20  # KB


def test_no_detect_keeps_a_one_pixel_wide_image(tmp_path):
    from fer_keras.cli_predict import main as predict_main

    cv2.imwrite(str(tmp_path / "thin.png"), np.full((40, 1, 3), 120, np.uint8))
    out = tmp_path / "out"
    predict_main([str(tmp_path / "thin.png"), "--no-detect", "--out", str(out)])
    assert "thin.png" in open(out / "predictions.csv").read()


def test_missing_webcam_is_an_error(tmp_path, capsys):
    from fer_keras.cli_predict import main as predict_main

    with pytest.raises(SystemExit) as e:
        predict_main(["97", "--out", str(tmp_path / "o")])
    assert e.value.code == 2 and "webcam 97: cannot open it" in capsys.readouterr().err


def test_truncated_keras_file_is_named_as_truncated(tmp_path):
    from fer_keras.errors import ModelError
    from fer_keras.pretrained import resolve_model
    from fer_keras.model_info import load_keras_model

    bad = tmp_path / "cut.keras"
    bad.write_bytes(open(resolve_model("default"), "rb").read()[:3000])
    with pytest.raises(ModelError, match=r"cut.keras: not a complete .keras file"):
        load_keras_model(str(bad))


@pytest.mark.slow
def test_teacher_sharing_no_class_is_one_line(tiny_run, demo_root, tmp_path):
    """A 7-class teacher for a 2-class (positive/negative) student names no class of the run."""
    from fer_keras.errors import ConfigError
    from fer_keras.config import load_config
    from fer_keras.expression.train import train

    cfg = load_config(None, [f"data.path={demo_root['csv']}", "data.labels=2", "data.image_size=32", *TINY_SETS,
                             "train.epochs=1", f"train.runs_dir={tmp_path}", f"train.distill_from={tiny_run}"])
    with pytest.raises(ConfigError, match=r"teaches no training sample .*shared with this run: none"):
        train(cfg)
    assert os.listdir(tmp_path) in ([], [f for f in os.listdir(tmp_path) if f.startswith(".")])  # no run left
