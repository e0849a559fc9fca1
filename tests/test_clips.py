"""Clip datasets (DFEW layout and generic clip folders) on generated clips: readers, folds, missing frames/clips,
frame sampling, clip-level scoring, presets, class counts, frame and temporal models end to end."""

import csv
import json
import os
import shutil

import numpy as np
import pytest

from tiny import tiny_argv
import tensorflow as tf

from fer_keras.cli_evaluate import main as eval_main
from fer_keras.cli_train import main as train_main
from fer_keras.config import Config, DataConfig
from fer_keras.data.clip_pipeline import clip_dataset, clip_probabilities, sample_indices
from fer_keras.cli_counts import main as counts_main
from fer_keras.data.demo import write_demo_clips
from fer_keras.data.pipeline import load_data
from fer_keras.data.formats import BadLog, detect_format, read_table
from fer_keras.errors import DataError
from fer_keras.labels import DFEW_ORDER


@pytest.fixture(scope="module")
def clip_root(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("clips"))
    return {"dfew": write_demo_clips(out, "dfew", per_class=5, size=32, frames=8),
            "clips": write_demo_clips(out, "clips", per_class=3, size=32, frames=8)}


def _cfg(path, **kw):
    return DataConfig(path=path, image_size=32, **kw)


def test_dfew_reader_and_folds(clip_root):
    path = clip_root["dfew"]
    assert detect_format(path) == "dfew" and detect_format(clip_root["clips"]) == "clips"
    tests = []
    for fold in range(1, 6):
        t = read_table(path, "auto", _cfg(path, fold=fold), BadLog())
        assert len(t) == 35 and set(t.splits) == {"train", "test"}
        assert all(len(f) == 8 for f in t.frames)
        tests.append({s for s, sp in zip(t.sources, t.splits) if sp == "test"})
    assert set.union(*tests) == set(t.sources) and sum(map(len, tests)) == 35  # each clip tested in one fold
    # labels follow DFEW's order (1 = happy), mapped by name
    ids = {os.path.basename(s): n for s, n in zip(t.sources, t.names)}
    with open(os.path.join(path, "EmoLabel_DataSplit", "test(single-labeled)", "set_1.csv")) as f:
        for row in list(csv.reader(f))[1:]:
            assert ids[row[0]] == DFEW_ORDER[int(row[1]) - 1]


def test_missing_clip_and_missing_frames(clip_root, tmp_path):
    root = tmp_path / "dfew"
    shutil.copytree(clip_root["dfew"], root)
    clips_dir = root / "Clip" / "clip_224x224_16f"
    for f in sorted(os.listdir(clips_dir / "00002"))[::2]:  # a clip with missing frames: still usable
        os.remove(clips_dir / "00002" / f)
    shutil.rmtree(clips_dir / "00003")  # a clip named by the split CSV but absent
    with pytest.raises(DataError, match=r"set_1.csv:\d+: clip folder 00003 not found"):
        read_table(str(root), "dfew", _cfg(str(root)), BadLog())
    log = BadLog(skip=True)
    t = read_table(str(root), "dfew", _cfg(str(root)), log)
    assert len(t) == 34 and len(log) == 1
    assert sorted(len(f) for f in t.frames)[0] == 4
    for f in os.listdir(clips_dir / "00004"):
        os.remove(clips_dir / "00004" / f)
    log = BadLog(skip=True)
    read_table(str(root), "dfew", _cfg(str(root)), log)
    assert any("clip has no frames" in why for _, why in log.items)


def test_presets_apply_to_clips(clip_root):
    b = load_data(_cfg(clip_root["dfew"], labels="2", val_fraction=0.25))
    assert b.class_names == ["positive", "negative"] and b.train.frames is not None
    assert b.summary()["splits"]["test"]["class_counts"] == {"positive": 3, "negative": 4}


def test_frame_sampling():
    idx = sample_indices(tf.constant(16), 4, tf.constant([1, 2], tf.int64), training=False).numpy()
    assert idx.tolist() == [2, 6, 10, 14]
    tr = sample_indices(tf.constant(16), 4, tf.constant([1, 2], tf.int64), training=True).numpy()
    assert all(4 * i <= v < 4 * (i + 1) for i, v in enumerate(tr))  # one frame per segment
    short = sample_indices(tf.constant(2), 4, tf.constant([1, 2], tf.int64), training=False).numpy()
    assert short.max() <= 1  # short clips repeat frames


@pytest.mark.slow
def test_training_dataset_samples_frames_per_clip(clip_root):
    cfg = Config()
    cfg.data = _cfg(clip_root["clips"], frames_per_clip=3, batch_size=5)
    b = load_data(cfg.data)
    ds = clip_dataset(b.train, cfg, training=True, temporal=False, seed=1)
    n = sum(int(x.shape[0]) for x, _ in ds)
    assert n == 3 * len(b.train)
    cfg.model.frames = 4
    x, y = next(iter(clip_dataset(b.train, cfg, training=True, temporal=True, seed=1)))
    assert x.shape[1:] == (4, 32, 32, 3) and y["expression"].shape[0] == x.shape[0]


def test_clip_probabilities_average_log_probs(clip_root):
    import keras

    cfg = Config()
    cfg.data = _cfg(clip_root["clips"], val_fraction=0.34)
    b = load_data(cfg.data)
    inp = keras.Input((32, 32, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255.0)(inp))
    model = keras.Model(inp, {"expression": keras.layers.Dense(7, activation="softmax", name="expression")(pooled),
                              "valence_arousal": keras.layers.Dense(2, name="valence_arousal")(pooled)})
    out = clip_probabilities(model, b.val, cfg)
    from fer_keras.data.images import decode_resize

    frames = [decode_resize(tf.io.read_file(f), tf.constant([np.nan] * 4), 32, 3).numpy()
              for f in b.val.frames[0]]
    p = model.predict(np.stack(frames).astype("float32"), verbose=0)["expression"]
    ref = np.exp(np.log(p).mean(0))
    np.testing.assert_allclose(out["expression"][0], ref / ref.sum(), rtol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["CustomCNN", "TemporalCNN", "R3D"])
def test_train_and_evaluate_on_clips(clip_root, tmp_path, model):
    run = train_main(tiny_argv("--model", model, "--data", clip_root["dfew"], "--epochs", "2", "--runs-dir",
                               str(tmp_path), "--set", "model.frames=4", "--set", "data.val_fraction=0.25",
                               "--set", "data.batch_size=4"))
    rt = json.load(open(os.path.join(run, "runtime.json")))
    assert rt["monitor"] == ("val_clip_uar" if model == "CustomCNN" else "val_expression_uar")
    hist = list(csv.DictReader(open(os.path.join(run, "history.csv"))))
    assert rt["monitor"] in hist[0]
    eval_main(["--run", run])
    m = json.load(open(os.path.join(run, "metrics.json")))
    assert m["expression"]["num_samples"] == 7  # fold-1 test clips, one prediction per clip
    assert m["info"]["split"] == "test"
    out = eval_main(["--run", run, "--fold", "2"])  # another fold's test clips, written apart
    assert out.endswith("fold2")
    assert json.load(open(os.path.join(out, "metrics.json")))["expression"]["num_samples"] == 7


def test_counts_cli(clip_root, tmp_path, capsys):
    out = tmp_path / "counts"
    result = counts_main(["--data", clip_root["dfew"], "--out", str(out)])
    assert sorted(result) == [1, 2, 3, 4, 5]
    for rows in result.values():
        for preset in ("7", "5", "4", "2"):
            total = sum(r["count"] for r in rows if r["preset"] == preset)
            assert total == 35  # every clip counted once per preset (DFEW has no contempt to drop)
    text = (out / "class_counts.md").read_text()
    assert "## Fold 3" in text and "| 2 | negative |" in text
    assert (out / "class_counts.csv").read_text().startswith("fold,preset,split,class,count")


def test_temporal_augmentation_is_one_draw_per_clip(clip_root):
    """A clip of identical frames stays a clip of identical frames after training augmentation (one flip, rotation,
    zoom, shift, brightness per clip), while different clips get different draws."""
    import tensorflow as tf

    from fer_keras.config import Config
    from fer_keras.data.augment import build_augmenter
    from fer_keras.data.clip_pipeline import augment_clips

    cfg = Config()
    aug = build_augmenter(cfg.augment, seed=3)
    frame = np.random.default_rng(0).integers(0, 255, (1, 1, 32, 32, 3)).astype("float32")
    clips = tf.constant(np.repeat(np.repeat(frame, 5, axis=1), 4, axis=0))  # 4 clips x 5 identical frames
    out = augment_clips(aug, clips, tf.constant([7, 1], tf.int64)).numpy()
    assert out.shape == clips.shape
    for c in range(4):
        for t in range(1, 5):
            np.testing.assert_allclose(out[c, t], out[c, 0], atol=1e-4)
    assert not np.allclose(out[0, 0], out[1, 0])  # independent draws between clips


@pytest.mark.slow
def test_validate_images_full_finds_a_frame_that_passes_the_header_check(clip_root, tmp_path):
    """A frame whose header is fine but whose data is cut: `data.validate_images=full` (what the mid-epoch decode
    error advises) names it, instead of the same tf.data error again."""
    root = tmp_path / "dfew"
    shutil.copytree(clip_root["dfew"], root)
    frame = sorted((root / "Clip" / "clip_224x224_16f" / "00002").iterdir())[0]
    data = frame.read_bytes()
    frame.write_bytes(data[:-150])  # header intact, pixels truncated
    cfg = _cfg(str(root), validate_images="full")
    with pytest.raises(DataError, match=frame.name):
        load_data(cfg)
    header_only = load_data(_cfg(str(root), validate_images="header"))  # the header check alone lets it through
    assert len(header_only.train) + len(header_only.test) == 35
