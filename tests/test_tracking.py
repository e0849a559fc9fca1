"""fer_keras/tracking.py: one id per face across frames, smoothing per track, label hysteresis, and the motion of
boxes between detections."""

import numpy as np
import pytest

from fer_keras.tracking import FaceTracker, hysteresis_label, label_changes


def test_tracker_keeps_one_id_per_face_and_smooths_per_track():
    tr = FaceTracker(window=3, margin=0.0)
    ids = [tr.update([(10 + 5 * t, 10, 50, 50), (300 - 5 * t, 200, 40, 40)]) for t in range(10)]
    assert all(i == ids[0] for i in ids) and ids[0][0] != ids[0][1]
    assert tr.update([], 10) == [] and tr.update([(60, 10, 50, 50)], 11) == [ids[0][0]]  # a missed frame
    a, b = ids[0]
    _, p, _ = tr.smooth(a, np.array([1.0, 0.0]), np.array([0.5, 0.5]))
    _, q, _ = tr.smooth(b, np.array([0.0, 1.0]), np.array([-0.5, 0.5]))
    assert p.tolist() == [1.0, 0.0] and q.tolist() == [0.0, 1.0]  # never mixed across faces


def test_hysteresis_stops_flicker():
    rng = np.random.default_rng(0)
    probs = [np.array([0.5 + d, 0.5 - d]) for d in rng.uniform(-0.04, 0.04, 200)]  # a steady, ambiguous face
    plain = [int(np.argmax(p)) for p in probs]
    held, cur = [], None
    for p in probs:
        cur = hysteresis_label(p, cur, 0.1)
        held.append(cur)
    assert label_changes(plain) > 50 and label_changes(held) == 0
    assert hysteresis_label(np.array([0.2, 0.8]), 0, 0.1) == 1  # a clear change still goes through


def test_boxes_move_on_between_detections_and_vanish_with_the_face():
    tr = FaceTracker()
    a = tr.update([(100, 100, 40, 40)], 0)[0]
    assert tr.update([(110, 96, 40, 40)], 5) == [a]  # 2 px right, -0.8 px down per frame
    boxes, ids = tr.predict(8, 640, 480)
    assert ids == [a] and boxes == [(116, 94, 40, 40)]
    assert tr.predict(8, 120, 480)[0] == [(116, 94, 4, 40)]  # clipped to the image
    tr.update([], 10)  # the face left: nothing is carried to the frames after
    assert tr.predict(12, 640, 480) == ([], [])


def test_best_matching_equals_scipys_assignment():
    """The tracker's own matching (exhaustive for few faces, SciPy's solver for crowds) finds the assignment of
    SciPy's `linear_sum_assignment` on every shape a frame can have, square or not."""
    from scipy.optimize import linear_sum_assignment

    from fer_keras.tracking import best_matching

    rng = np.random.default_rng(0)
    for shape in [(1, 1), (1, 5), (5, 1), (2, 3), (3, 2), (4, 4), (6, 6), (5, 7), (7, 5), (9, 9), (12, 3)]:
        for _ in range(20):
            sim = rng.uniform(0, 1, shape) * (rng.uniform(0, 1, shape) > 0.3)
            rows, cols = best_matching(sim)
            ref_rows, ref_cols = linear_sum_assignment(-sim)
            assert len(rows) == len(ref_rows) == min(shape)
            assert sim[rows, cols].sum() == pytest.approx(sim[ref_rows, ref_cols].sum())
            assert list(rows) == sorted(rows) and len(set(cols)) == len(cols)
    assert [len(a) for a in best_matching(np.zeros((0, 3)))] == [0, 0]


def test_a_video_does_not_import_scipy_for_a_few_faces():
    import subprocess
    import sys

    code = ("import sys; from fer_keras.tracking import FaceTracker; t = FaceTracker(); "
            "t.update([(0, 0, 10, 10), (20, 20, 10, 10)], 0); t.update([(1, 0, 10, 10), (21, 20, 10, 10)], 1); "
            "print('scipy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
