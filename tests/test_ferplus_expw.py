"""FER+ crowd votes and ExpW crops: readers, Microsoft's majority rule, soft labels into the preset, the soft-label
loss against a hand computation, and bad vote rows (one line naming the file and row)."""

import csv
import os

import cv2
import numpy as np
import pytest

from fer_keras.config import DataConfig
from fer_keras.data.formats import BadLog, detect_format, read_table
from fer_keras.data.pipeline import soft_to_preset, to_preset
from fer_keras.data.readers import FERPLUS_EMOTIONS, FERPLUS_OTHER, ferplus_majority
from fer_keras.errors import DataError
from fer_keras.losses import ExpressionLoss

COLS = FERPLUS_EMOTIONS + FERPLUS_OTHER
# (votes over neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF)
ROWS = [
    [8, 2, 0, 0, 0, 0, 0, 0, 0, 0],  # neutral by majority
    [0, 1, 9, 0, 0, 0, 0, 0, 0, 0],  # surprise (the single happiness vote is dropped by the rule)
    [0, 0, 0, 4, 4, 0, 0, 2, 0, 0],  # no majority: dropped by default, kept as sadness (first top vote) with keep
    [0, 0, 0, 0, 0, 0, 0, 0, 7, 3],  # no emotion vote at all: always dropped
    [1, 0, 0, 0, 0, 0, 0, 6, 3, 0],  # contempt 6 of 9 remaining votes (the 1 is dropped): majority
]


def _ferplus(tmp_path, rows=ROWS, missing=False):
    data = tmp_path / "data"
    imgs = data / "fer2013" / "train" / "x"
    imgs.mkdir(parents=True)
    (data / "ferplus" / "train").mkdir(parents=True)
    with open(data / "ferplus" / "train" / "votes.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "fer2013_label", "ferplus_name", *COLS, "pixel_mad"])
        for i, votes in enumerate(rows):
            rel = f"fer2013/train/x/{i}.jpg"
            if not (missing and i == 1):
                cv2.imwrite(str(data / rel), np.full((48, 48), 40 * i, np.uint8))
            w.writerow([rel, ["neutral", "happy", "sad", "fear", "angry"][i % 5], f"fer{i:07d}.png", *votes, 1.2])
    return str(data / "ferplus")


def test_majority_rule_matches_microsofts():
    assert ferplus_majority(np.array(ROWS)).tolist() == [0, 2, -1, 8, 7]


def test_ferplus_reader_hard_and_soft_labels(tmp_path):
    path = _ferplus(tmp_path)
    assert detect_format(path) == "ferplus"
    t = read_table(path, "auto", DataConfig(path=path), BadLog())
    assert t.names == ["neutral", "surprise", "contempt"] and t.splits == ["train"] * 3
    assert t.soft.shape == (3, 8) and t.soft_names[1] == "happy"
    np.testing.assert_allclose(t.soft[1], np.array(ROWS[1][:8]) / 10)
    assert sum(t.dropped.values()) == 2 and all(os.path.isfile(s) for s in t.sources)
    kept = read_table(path, "ferplus", DataConfig(path=path, ferplus_unknown="keep"), BadLog())
    assert kept.names == ["neutral", "surprise", "sad", "contempt"]


def test_ferplus_with_the_original_fer2013_labels(tmp_path):
    path = _ferplus(tmp_path)
    t = read_table(path, "ferplus", DataConfig(path=path, ferplus_labels="fer2013"), BadLog())
    assert t.names == ["neutral", "happy", "sad", "fear", "anger"]  # every row, its FER2013 label
    assert np.isnan(t.soft[3]).all() and np.isfinite(t.soft[[0, 1, 2, 4]]).all()  # no emotion vote: no soft label


def test_soft_labels_follow_the_preset(tmp_path):
    path = _ferplus(tmp_path)
    t = read_table(path, "ferplus", DataConfig(path=path), BadLog())
    seven = to_preset(t, "7", {})  # contempt is not in the 7-class preset: that face is dropped
    assert len(seven) == 2 and seven.soft.shape == (2, 7)
    np.testing.assert_allclose(seven.soft.sum(1), 1.0, atol=1e-6)
    # 5 classes: fear and sad merge, disgust and contempt into anger
    five = soft_to_preset(np.array([[0, 0, 0, 2, 0, 1, 3, 4]], np.float32),
                          ["neutral", "happy", "surprise", "sad", "anger", "disgust", "fear", "contempt"], "5")
    np.testing.assert_allclose(five, [[0, 0, 0.5, 0, 0.5]])  # neutral, happy, sad, surprise, anger
    assert np.isnan(soft_to_preset(np.array([[0, 0, 0, 0, 0, 0, 0, 1.0]]), ["neutral", "happy", "surprise", "sad",
                                                                            "anger", "disgust", "fear", "contempt"],
                                   "7")).all()


@pytest.mark.parametrize("votes,match", [([0] * 10, "must be whole non-negative counts"),
                                         ([5, -1, 0, 0, 0, 0, 0, 0, 0, 0], "must be whole non-negative")])
def test_bad_vote_rows_name_the_row(tmp_path, votes, match):
    path = _ferplus(tmp_path, ROWS[:1] + [votes])
    with pytest.raises(DataError, match=r"votes.csv:3: votes .* " + match):
        read_table(path, "ferplus", DataConfig(path=path), BadLog())


def test_vote_row_naming_a_missing_image(tmp_path):
    path = _ferplus(tmp_path, missing=True)
    with pytest.raises(DataError, match=r"votes.csv:3: image 'fer2013/train/x/1.jpg' not found"):
        read_table(path, "ferplus", DataConfig(path=path), BadLog())
    log = BadLog(skip=True)
    assert len(read_table(path, "ferplus", DataConfig(path=path), log)) == 2 and len(log) == 1


def test_expw_reader(tmp_path):
    root = tmp_path / "expw"
    (root / "images" / "happy").mkdir(parents=True)
    with open(root / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "photo", "top", "left", "right", "bottom"])
        for i, label in enumerate(["happy", "angry", "neutral"]):
            cv2.imwrite(str(root / "images" / "happy" / f"{i}.jpg"), np.zeros((16, 16, 3), np.uint8))
            w.writerow([f"images/happy/{i}.jpg", label, "p.jpg", 0, 0, 10, 10])
        w.writerow(["images/happy/0.jpg", "bored", "p.jpg", 0, 0, 10, 10])
    assert detect_format(str(root)) == "expw"
    with pytest.raises(DataError, match=r"labels.csv:5: expression label 'bored'"):
        read_table(str(root), "expw", DataConfig(path=str(root)), BadLog())
    t = read_table(str(root), "expw", DataConfig(path=str(root)), BadLog(skip=True))
    assert t.names == ["happy", "anger", "neutral"] and t.soft is None


def test_soft_label_loss_by_hand():
    """target = (1 - w) * smoothed one-hot + w * votes; rows with p = -1 keep the (smoothed) one-hot."""
    w, eps = 0.75, 0.1
    probs = np.array([[0.5, 0.3, 0.2], [0.2, 0.2, 0.6]], np.float32)
    votes = np.array([0.6, 0.4, 0.0])
    y = np.array([[0, *votes], [2, -1, -1, -1]], np.float32)
    loss = ExpressionLoss(3, label_smoothing=eps, distill_weight=w)
    got = loss.call(y, probs).numpy()
    onehot0 = np.array([1, 0, 0]) * (1 - eps) + eps / 3
    onehot1 = np.array([0, 0, 1]) * (1 - eps) + eps / 3
    expect0 = -np.sum(((1 - w) * onehot0 + w * votes) * np.log(probs[0]))
    expect1 = -np.sum(onehot1 * np.log(probs[1]))
    np.testing.assert_allclose(got, [expect0, expect1], rtol=1e-5)


@pytest.mark.parametrize("votes", [[1e308, 0, 0, 0, 0, 0, 0, 0, 0, 0], [2.5, 1, 0, 0, 0, 0, 0, 0, 0, 0]])
def test_vote_counts_must_be_whole_and_bounded(tmp_path, votes):
    path = _ferplus(tmp_path, ROWS[:1] + [votes])
    with pytest.raises(DataError, match=r"votes.csv:3: votes .* must be whole non-negative counts of at most 1000"):
        read_table(path, "ferplus", DataConfig(path=path), BadLog())
