"""Every reader on generated data, format detection, and bad input (one-line errors or skip-and-count)."""

import csv
import os

import numpy as np
import pytest

from fer_keras.config import DataConfig
from fer_keras.data.pipeline import load_data
from fer_keras.data.formats import BadLog, detect_format, read_table
from fer_keras.errors import DataError
from fer_keras.labels import CANONICAL


def _cfg(path, **kw):
    d = DataConfig(path=path, image_size=32, **kw)
    return d


@pytest.mark.parametrize("fmt", ["folder", "csv", "npy", "fer2013", "affectnet"])
def test_each_reader_and_detection(demo_root, fmt):
    path = demo_root[fmt]
    assert detect_format(path) == fmt
    t = read_table(path, "auto", _cfg(path), BadLog())
    n_classes = 7 if fmt == "fer2013" else 8
    assert len(t) > 0 and set(t.names) <= set(CANONICAL) and len(set(t.names)) == n_classes
    has_va = fmt in ("csv", "npy", "affectnet")
    assert np.isfinite(t.valence).all() == has_va
    if fmt == "fer2013":
        assert t.images.shape[1:] == (48, 48, 1) and set(t.splits) == {"train", "val", "test"}
    if fmt == "affectnet":
        assert t.boxes.shape == (len(t), 4) and set(t.splits) == {"train", "val"}
        assert sum(t.dropped.values()) == 1  # the label-9 row


def test_affectnet_per_image_annotation_layout(demo_root):
    path = os.path.join(demo_root["affectnet"], "val_set")
    t = read_table(path, "affectnet", _cfg(path), BadLog())
    assert len(t) == 40 and np.isfinite(t.arousal).all()


def test_affectnet_crops_to_box(demo_root):
    """The face was pasted at the box; cropping must recover it (mean abs diff small vs the uncropped canvas)."""
    path = demo_root["affectnet"]
    bundle = load_data(_cfg(path, labels="8", channels=3, val_fraction=0.0))
    from fer_keras.data.demo import generate

    d = generate(12, 32, 0)
    src = bundle.train.sources[0]
    i = int(os.path.basename(src).split(".")[0])
    diff = np.abs(bundle.train.images[0].astype(float) - d["images"][i].astype(float)).mean()
    assert diff < 12, diff  # JPEG noise only


@pytest.mark.parametrize("fmt,preset,expected_classes", [("folder", "7", 7), ("csv", "5", 5), ("npy", "2", 2),
                                                        ("fer2013", "4", 4), ("affectnet", "8", 8)])
def test_load_data_splits_and_presets(demo_root, fmt, preset, expected_classes):
    path = demo_root[fmt]
    b = load_data(_cfg(path, labels=preset, channels=1))
    assert len(b.class_names) == expected_classes
    assert b.train.images.shape[1:] == (32, 32, 1) and b.train.images.dtype == np.uint8
    assert b.val is not None and len(b.val) > 0
    total = len(b.train) + len(b.val) + (len(b.test) if b.test is not None else 0)
    assert total > 0
    if preset == "7" and fmt != "fer2013":
        assert any("contempt" in k for k in b.dropped)


def test_stratified_split_is_deterministic_and_stratified(demo_root):
    path = demo_root["folder"]
    a = load_data(_cfg(path, labels="8", val_fraction=0.25, test_fraction=0.25))
    b = load_data(_cfg(path, labels="8", val_fraction=0.25, test_fraction=0.25))
    assert a.val.sources == b.val.sources
    assert set(a.train.sources).isdisjoint(a.val.sources) and set(a.val.sources).isdisjoint(a.test.sources)
    assert a.val.class_counts(8) == [3] * 8


# === Bad input ===

def _write_csv(path, rows, header=("path", "expression", "valence", "arousal")):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return str(path)


@pytest.fixture
def img_dir(tmp_path, demo_root):
    """A folder with one good image copied from the demo data."""
    import shutil

    src = os.path.join(demo_root["folder"], "happy")
    shutil.copy(os.path.join(src, sorted(os.listdir(src))[0]), tmp_path / "good.png")
    return tmp_path


@pytest.mark.parametrize("row,msg", [
    (["good.png", "9", "0.1", "0.1"], r"bad.csv:3: expression label 9 is out of range"),
    (["good.png", "2.5", "0.1", "0.1"], r"bad.csv:3: expression label '2.5' is not an integer"),
    (["good.png", "grumpy", "0.1", "0.1"], r"bad.csv:3: .*neither an integer nor a known class"),
    (["good.png", "1", "nan", "0.1"], r"bad.csv:3: valence/arousal 'nan' is not finite"),
    (["good.png", "1", "0.1", "inf"], r"bad.csv:3: valence/arousal 'inf' is not finite"),
    (["good.png", "1", "1.5", "0.1"], r"bad.csv:3: valence/arousal 1.5 is outside \[-1, 1\]"),
    (["good.png", "1", "x", "0.1"], r"bad.csv:3: valence/arousal 'x' is not a number"),
    (["missing.png", "1", "0.1", "0.1"], r"bad.csv:3: image file not found"),
    (["../../etc/passwd", "1", "0.1", "0.1"], r"bad.csv:3: image path '../../etc/passwd' escapes the data root"),
])
def test_csv_bad_rows(img_dir, row, msg):
    path = _write_csv(img_dir / "bad.csv", [["good.png", "happy", "0.5", ""], row])
    with pytest.raises(DataError, match=msg):
        read_table(path, "csv", _cfg(path), BadLog())
    log = BadLog(skip=True)
    t = read_table(path, "csv", _cfg(path), log)
    assert len(t) == 1 and len(log) == 1  # skipped and counted


def test_csv_missing_column(img_dir):
    path = _write_csv(img_dir / "cols.csv", [["good.png", "1"]], header=("file", "label"))
    with pytest.raises(DataError, match="cols.csv: missing column 'path'"):
        read_table(path, "csv", _cfg(path), BadLog())
    t = read_table(path, "csv", _cfg(path, csv_path_col="file", csv_expression_col="label"), BadLog())
    assert t.names == ["happy"] and np.isnan(t.valence[0])  # absent VA columns = missing


def test_corrupt_images_fail_or_are_skipped(img_dir):
    (img_dir / "empty.png").write_bytes(b"")
    (img_dir / "text.jpg").write_text("hello, not an image")
    good = (img_dir / "good.png").read_bytes()
    (img_dir / "trunc.png").write_bytes(good[: len(good) // 2])
    rows = [["good.png", "1", "", ""], ["empty.png", "1", "", ""], ["text.jpg", "2", "", ""],
            ["trunc.png", "3", "", ""]] + [["good.png", str(i % 7), "", ""] for i in range(10)]
    path = _write_csv(img_dir / "imgs.csv", rows)
    with pytest.raises(DataError, match=r"empty.png: empty file \(0 bytes\)"):
        load_data(_cfg(path, val_fraction=0, test_fraction=0))
    b = load_data(_cfg(path, val_fraction=0, test_fraction=0, skip_bad=True))
    reasons = dict(b.bad.items)
    assert len(b.train) == 11 and len(b.bad) == 3
    assert "not a JPEG/PNG/BMP/GIF" in reasons[str(img_dir / "text.jpg")]
    assert "cannot decode" in reasons[str(img_dir / "trunc.png")]


def test_folder_unknown_and_empty_class(tmp_path, demo_root):
    import shutil

    root = tmp_path / "f"
    shutil.copytree(demo_root["folder"], root)
    (root / "bored").mkdir()
    with pytest.raises(DataError, match="unknown class folder 'bored'"):
        read_table(str(root), "folder", _cfg(str(root)), BadLog())
    shutil.rmtree(root / "bored")
    (root / "sadness").mkdir()
    with pytest.raises(DataError, match="sadness: class folder has no images"):
        read_table(str(root), "folder", _cfg(str(root)), BadLog())


def test_npy_length_mismatch_and_pickle(tmp_path):
    np.save(tmp_path / "images.npy", np.zeros((4, 8, 8), np.uint8))
    np.save(tmp_path / "expressions.npy", np.zeros(3, np.int64))
    with pytest.raises(DataError, match="images.npy has 4 samples but expressions.npy has 3"):
        read_table(str(tmp_path), "npy", _cfg(str(tmp_path)), BadLog())
    np.save(tmp_path / "expressions.npy", np.array([{"a": 1}] * 4, dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="pickled Python objects"):
        read_table(str(tmp_path), "npy", _cfg(str(tmp_path)), BadLog())


def test_fer2013_wrong_pixel_count(tmp_path):
    path = _write_csv(tmp_path / "fer.csv", [["3", " ".join(["0"] * 2304), "Training"],
                                             ["3", " ".join(["0"] * 100), "Training"]],
                      header=("emotion", "pixels", "Usage"))
    with pytest.raises(DataError, match="fer.csv:3: expected 2304 pixels"):
        read_table(path, "fer2013", _cfg(path), BadLog())


def test_empty_dataset_and_missing_path(tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        load_data(_cfg(str(tmp_path / "nope")))
    path = _write_csv(tmp_path / "e.csv", [])
    with pytest.raises(DataError, match="no training samples"):
        load_data(_cfg(path))
    # Evaluating data none of whose classes the preset has: says so, and what was dropped (not "training").
    import cv2
    import numpy as np

    cv2.imwrite(str(tmp_path / "c.png"), np.zeros((32, 32, 3), np.uint8))
    path = _write_csv(tmp_path / "contempt.csv", [["c.png", "contempt", "", ""]])
    with pytest.raises(DataError, match=r"no samples of the preset's classes .*preset 7.*dropped .*contempt"):
        load_data(_cfg(path, labels="7"), require_train=False)


def test_split_image_folders_are_not_mistaken_for_clips(tmp_path, demo_root):
    import shutil

    shutil.copytree(demo_root["folder"], tmp_path / "d" / "train")
    shutil.copytree(demo_root["folder"], tmp_path / "d" / "val")
    assert detect_format(str(tmp_path / "d")) == "folder"


def test_reader_registry_is_complete_on_import_in_a_fresh_process():
    """`data.formats` registers every reader itself: no other module has to be imported first (it used to take
    `data.pipeline`'s side-effect import for `read_table('dfew')` to work)."""
    import subprocess
    import sys

    code = "from fer_keras.data.formats import READERS; print(','.join(sorted(READERS.names())))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    import fer_keras.data.clip_pipeline  # noqa: F401  (every module that could register a reader)
    import fer_keras.data.pipeline  # noqa: F401
    from fer_keras.data.formats import READERS

    assert out.split(",") == sorted(READERS.names())
    assert {"affectnet", "clips", "csv", "dfew", "expw", "fer2013", "ferplus", "folder", "npy", "tfrecord"} <= set(
        READERS.names())


def test_short_csv_row_is_bad_input_not_label_none(tmp_path):
    import cv2

    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((16, 16, 3), np.uint8))
    (tmp_path / "labels.csv").write_text("path,expression\na.png,happy\na.png\n")
    path = str(tmp_path / "labels.csv")
    with pytest.raises(DataError, match=r"labels.csv:3: the row has 1 fields, the header 2"):
        read_table(path, "csv", _cfg(path), BadLog())
    log = BadLog(skip=True)
    assert read_table(path, "csv", _cfg(path), log).names == ["happy"] and len(log) == 1
