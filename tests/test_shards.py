"""Prepared TFRecord shards: same pixels and labels as the original files, streaming, resume, bad input."""

import copy
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from fer_keras.data import shards as S
from fer_keras.data.pipeline import load_data, make_dataset
from fer_keras.cli_prepare import main as prepare_main
from fer_keras.data.prepare import prepare
from fer_keras.errors import DataError


def _cfg(tiny_cfg, path, fmt="auto", labels="7"):
    cfg = copy.deepcopy(tiny_cfg)
    cfg.data.path, cfg.data.format, cfg.data.labels = path, fmt, labels
    return cfg


@pytest.mark.parametrize("fmt", ["csv", "affectnet"])  # affectnet: crops come from the face boxes
def test_shards_hold_the_same_crops_and_labels_as_the_files(demo_root, tiny_cfg, tmp_path, fmt):
    cfg = _cfg(tiny_cfg, demo_root[fmt], fmt)
    manifest = prepare(cfg, str(tmp_path / "shards"), shard_size=25, log_fn=lambda *_: None)
    orig = load_data(cfg.data)
    prepared = load_data(_cfg(tiny_cfg, str(tmp_path / "shards")).data)
    assert prepared.format == "tfrecord" and prepared.class_names == orig.class_names
    for s in ("train", "val", "test"):
        a, b = getattr(orig, s), getattr(prepared, s)
        if a is None:  # AffectNet has train and val only
            assert b is None and s not in manifest["samples"]
            continue
        assert manifest["samples"][s] == len(a) == len(b)
        assert b.sources == a.sources
        np.testing.assert_array_equal(b.expression, a.expression)
        np.testing.assert_array_equal(b.va, a.va)
        np.testing.assert_array_equal(b.images, a.images)  # in the cache budget: decoded into memory once
    assert sum(manifest["counts"]["train"].values()) == len(orig.train)


def test_streamed_shards_match_in_memory_batches(demo_root, tiny_cfg, tmp_path):
    cfg = _cfg(tiny_cfg, demo_root["csv"])
    prepare(cfg, str(tmp_path / "shards"), shard_size=30, log_fn=lambda *_: None)
    orig = load_data(cfg.data)
    stream_cfg = _cfg(tiny_cfg, str(tmp_path / "shards"))
    stream_cfg.data.cache = "none"
    streamed = load_data(stream_cfg.data)
    assert streamed.train.images is None and len(streamed.train.shards) == 3  # 77 train samples / 30
    # Evaluation order and deterministic training batches (same shuffle seed) are identical to in-memory data.
    for split, training in (("val", False), ("train", True)):
        a = list(make_dataset(getattr(orig, split), cfg, training, deterministic=True, seed=3))
        b = list(make_dataset(getattr(streamed, split), stream_cfg, training, deterministic=True, seed=3))
        assert len(a) == len(b)
        for (xa, ya), (xb, yb) in zip(a, b):
            np.testing.assert_array_equal(xa.numpy(), xb.numpy())
            np.testing.assert_array_equal(ya["expression"].numpy(), yb["expression"].numpy())
    # Non-deterministic training interleaves shards in a new order each epoch, but sees every sample once.
    epoch = tf.Variable(0, dtype=tf.int64)
    stream_cfg.augment.flip = stream_cfg.augment.rotation = stream_cfg.augment.zoom = 0
    stream_cfg.augment.translate = stream_cfg.augment.brightness = stream_cfg.augment.contrast = 0
    ds = make_dataset(streamed.train, stream_cfg, True, epoch=epoch)
    labels = np.concatenate([y["expression"].numpy() for _, y in ds])
    np.testing.assert_array_equal(np.sort(labels), np.sort(orig.train.expression))


def test_prepare_resumes_and_never_mixes_settings(demo_root, tiny_cfg, tmp_path, capsys):
    out = str(tmp_path / "shards")
    args = ["--data", demo_root["csv"], "--image-size", "32", "--out", out, "--shard-size", "40"]
    prepare_main(args)
    first = json.load(open(os.path.join(out, S.MANIFEST)))
    victim = os.path.join(out, first["shards"][1]["file"])
    os.remove(victim)  # as if killed while writing it: the final name only appears when a shard is complete
    open(os.path.join(out, ".train-00001-of-00002.abc.tmp.tfrecord"), "wb").write(b"half a shard")
    capsys.readouterr()
    prepare_main(args)
    assert "1 shards written" in capsys.readouterr().out
    again = json.load(open(os.path.join(out, S.MANIFEST)))
    assert again["shards"] == first["shards"]
    assert len(load_data(_cfg(tiny_cfg, out).data).train) == first["samples"]["train"]  # the temp file is not read
    with pytest.raises(SystemExit):
        prepare_main(args[:3] + ["48"] + args[4:])
    assert "image_size=32" in capsys.readouterr().err


def test_preset_mapping_and_shape_checks_when_reading_shards(demo_root, tiny_cfg, tmp_path):
    out = str(tmp_path / "shards8")
    m = prepare(_cfg(tiny_cfg, demo_root["csv"], labels="8"), out, shard_size=50, log_fn=lambda *_: None)
    assert m["counts"]["train"]["contempt"] > 0
    cfg7 = _cfg(tiny_cfg, out, labels="7")
    cfg7.data.cache = "none"
    data = load_data(cfg7.data)
    assert "contempt" not in data.class_names and data.dropped  # dropped and counted, as with the files
    n = sum(1 for _ in make_dataset(data.val, cfg7, False).unbatch())
    assert n == len(data.val)
    bad = _cfg(tiny_cfg, out)
    bad.data.image_size = 48
    with pytest.raises(DataError, match="prepared at 32 px"):
        load_data(bad.data)


def test_prepare_bad_image_error_or_skip(demo_root, tiny_cfg, tmp_path):
    import shutil

    root = str(tmp_path / "folder")
    shutil.copytree(demo_root["folder"], root)
    cls = os.path.join(root, "happy")
    victim = os.path.join(cls, sorted(os.listdir(cls))[0])
    with open(victim, "wb") as f:
        f.write(b"\xff\xd8\xff\xe0 not really a jpeg")
    cfg = _cfg(tiny_cfg, root)
    with pytest.raises(DataError, match=os.path.basename(victim)):
        prepare(cfg, str(tmp_path / "a"), log_fn=lambda *_: None)
    cfg.data.skip_bad = True
    m = prepare(cfg, str(tmp_path / "b"), log_fn=lambda *_: None)
    assert m["skipped_bad"] == 1 and os.path.basename(victim) in m["skipped_examples"][0]
    assert len(load_data(_cfg(tiny_cfg, str(tmp_path / "b")).data).train) == m["samples"]["train"]


def test_train_from_streamed_shards(demo_root, tiny_cfg, tmp_path):
    from fer_keras.expression.train import train

    out = str(tmp_path / "shards")
    prepare(_cfg(tiny_cfg, demo_root["csv"]), out, shard_size=30, log_fn=lambda *_: None)
    cfg = _cfg(tiny_cfg, out)
    cfg.data.cache = "none"
    run = train(cfg)
    hist = open(os.path.join(run, "history.csv")).read().splitlines()
    assert len(hist) == 2 and json.load(open(os.path.join(run, "data_summary.json")))["format"] == "tfrecord"
