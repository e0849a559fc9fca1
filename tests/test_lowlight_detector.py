"""The low-light tiny-face detector: its training data (crops of real photos), its anchors, its compact file, the
routing of dark photos in `auto`, and the shipped model."""

import os

import cv2
import numpy as np
import pytest

from fer_keras.config import config_from_dict, read_yaml
from fer_keras.detection import faces as F
from fer_keras.detection.data import crop_sample, read_boxes_csv, read_detection
from fer_keras.detection.lowlight import brightness
from fer_keras.errors import ConfigError, DataError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOWLIGHT_CFG = os.path.join(ROOT, "configs", "lowlight_retinanet.yaml")


def _photo(rng, h=480, w=640):
    img = cv2.GaussianBlur(rng.integers(60, 200, (h, w, 3)).astype(np.uint8), (0, 0), 3)
    return np.ascontiguousarray(img)


def _boxes_folder(tmp_path, n=4):
    rng = np.random.default_rng(0)
    os.makedirs(tmp_path / "images")
    rows = ["file,x,y,w,h,label"]
    for i in range(n):
        cv2.imwrite(str(tmp_path / "images" / f"p{i}.jpg"), _photo(rng))
        rows += [f"p{i}.jpg,{10 + 40 * i},20,30,36,x", f"p{i}.jpg,300,200,12,12,y"]
    (tmp_path / "boxes.csv").write_text("\n".join(rows) + "\n")
    return str(tmp_path)


def test_boxes_csv_reader_holds_out_the_first_images_and_names_bad_rows(tmp_path):
    folder = _boxes_folder(tmp_path)
    t = read_boxes_csv(folder)
    assert len(t) == 4 and t.num_faces == 8
    np.testing.assert_allclose(t.boxes[1][0], [50, 20, 80, 56])
    held = read_detection(folder, skip_first=3)
    assert [os.path.basename(s) for s in held.sources] == ["p3.jpg"]
    both = read_detection(f"{folder},{folder}", skip_first=1)
    assert len(both) == 6
    with open(tmp_path / "boxes.csv", "a") as f:
        f.write("p0.jpg,1,2,abc,4,x\n")
    with pytest.raises(DataError, match=r"boxes.csv:10: not a number"):
        read_boxes_csv(folder)


def test_crops_rescale_faces_into_the_requested_range_and_keep_boxes_on_them():
    rng = np.random.default_rng(1)
    img = _photo(rng, 800, 1000)
    boxes = np.array([[100, 100, 140, 140], [500, 300, 620, 420], [800, 600, 816, 616]], np.float32)
    sizes = []
    for _ in range(60):
        crop, b = crop_sample(img, boxes, 128, rng, face_px=(8.0, 24.0), low_light_prob=0.0, negative_prob=0.0)
        assert crop.shape == (128, 128, 3) and crop.dtype == np.uint8
        assert np.all(b >= 0) and np.all(b <= 128) and np.all(b[:, 2:] > b[:, :2])
        sizes += list(np.sqrt(np.prod(b[:, 2:] - b[:, :2], axis=1)))
    # The face the crop was centred on has a side in [8, 24]; other faces scale with it (the 120 px one up to 72).
    assert len(sizes) >= 60 and np.median(sizes) < 40 and min(sizes) >= 3.0
    # The box still frames the pasted content: a white square on black stays inside its box after the crop.
    square = np.zeros((400, 400, 3), np.uint8)
    square[150:190, 200:240] = 255
    crop, b = crop_sample(square, np.array([[200, 150, 240, 190]], np.float32), 96, np.random.default_rng(3),
                          face_px=(20, 30), negative_prob=0.0)
    assert len(b) == 1
    x1, y1, x2, y2 = np.round(b[0]).astype(int)
    outside = np.ones(crop.shape[:2], bool)
    outside[max(y1 - 1, 0):y2 + 1, max(x1 - 1, 0):x2 + 1] = False
    assert crop[y1 + 1:y2 - 1, x1 + 1:x2 - 1].mean() > 150 and crop[outside].mean() < 40


def test_low_light_crops_are_dark_and_seeded():
    img = _photo(np.random.default_rng(2))
    boxes = np.array([[200, 150, 260, 210]], np.float32)
    a = crop_sample(img, boxes, 160, np.random.default_rng(5), low_light_prob=1.0)
    b = crop_sample(img, boxes, 160, np.random.default_rng(5), low_light_prob=1.0)
    np.testing.assert_array_equal(a[0], b[0])
    assert brightness(a[0]) < 45 < brightness(crop_sample(img, boxes, 160, np.random.default_rng(5))[0])


def _positives(det, side, boxes, max_boxes):
    """Positive anchors the detector's label encoder assigns to `boxes` (padded like training batches)."""
    gt = np.full((1, max_boxes, 4), -1.0, np.float32)
    cls = np.full((1, max_boxes), -1.0, np.float32)
    gt[0, :len(boxes)], cls[0, :len(boxes)] = boxes, 0
    _, labels = det.label_encoder(images=np.zeros((1, side, side, 3), np.float32), gt_boxes=gt, gt_classes=cls)
    return int(np.sum(np.asarray(labels) == 0))


def test_lowlight_anchors_give_every_5_to_40_px_face_a_positive_anchor():
    from fer_keras.detection.retinanet import build_kwargs, build_retinanet

    det_cfg = config_from_dict(read_yaml(LOWLIGHT_CFG)).detection
    det = build_retinanet(**build_kwargs(det_cfg))
    rng = np.random.default_rng(0)
    side, n = det_cfg.train_crop, det_cfg.max_boxes
    for px in (5, 7, 10, 16, 24, 32, 40):
        for cx, cy in rng.uniform(px, side - px, (4, 2)):
            box = [[cx - px / 2, cy - px / 2, cx + px / 2, cy + px / 2]]
            assert _positives(det, side, box, n) >= 1, f"a {px} px face at ({cx:.0f}, {cy:.0f}) has no anchor"
    # Without forced matching a 5 px face gets none: the test above depends on the config.
    det_cfg.force_match = False
    plain = build_retinanet(**build_kwargs(det_cfg))
    assert _positives(plain, side, [[97, 97, 102, 102]], n) == 0  # between two anchor centres


@pytest.mark.slow
def test_compact_file_round_trips_and_names_a_bad_file(tmp_path):
    from fer_keras.detection.retinanet import build_retinanet, load_compact, save_compact

    build = dict(backbone="resnet10", head_convs=1, anchor_size=1.0, anchor_ratios=[1.0])
    det = build_retinanet(**build, seed=3)
    path = save_compact(det, build, {"image_width": 128, "image_height": 96, "min_score": 0.3}, str(tmp_path / "d.npz"))
    back, inference = load_compact(path)
    assert inference["image_width"] == 128
    x = np.random.default_rng(0).random((1, 96, 128, 3)).astype(np.float32)
    a, b = det(x, training=False), back(x, training=False)
    np.testing.assert_allclose(np.asarray(a["cls_logits"]), np.asarray(b["cls_logits"]), atol=0.05)
    assert os.path.getsize(path) < 0.6 * 4 * det.count_params()  # float16: about half of float32
    # As a detector with an image pyramid: each scale is its own static input shape (a retrace generalised to
    # unknown sizes broke KerasHub's anchor generator at the second scale), on photos of several sizes.
    pyramid = F.RetinaNetFaceDetector.from_file(path, min_score=0.0)
    pyramid.test_scales = (1.0, 0.5)
    for shape in ((96, 128, 3), (200, 150, 3), (64, 64)):
        boxes, scores = pyramid.detect(np.random.default_rng(1).integers(0, 255, shape).astype(np.uint8))
        assert boxes.shape == (len(scores), 4)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="bad.npz: not a compact detector file"):
        load_compact(str(tmp_path / "bad.npz"))


class _Recorder:
    def __init__(self):
        self.calls = 0

    def detect(self, rgb):
        self.calls += 1
        return np.array([[1, 2, 31, 32]], np.float32), np.array([0.9], np.float32)

    def __call__(self, rgb):
        self.calls += 1
        return [(1, 2, 30, 30)]


def test_auto_merges_the_dark_detectors_boxes_with_blazefaces_on_dark_photos_only():
    auto = F.TiledBlazeFaceDetector.__new__(F.TiledBlazeFaceDetector)
    dark_det, blaze_calls = _Recorder(), []
    auto.dark_detector, auto.dark_below, auto.tile, auto.tile_above, auto.iou_threshold = dark_det, 60.0, 0, 512, 0.3

    class _Blaze:  # BlazeFace finds one face (the dark detector finds it too, framed a little differently)
        def detect(self, rgb):
            blaze_calls.append(rgb.shape)
            return np.array([[3, 2, 33, 32], [100, 50, 130, 80]], np.float32), np.array([0.8, 0.7], np.float32)

    auto.short = auto.back = _Blaze()
    dark = np.full((120, 160, 3), 25, np.uint8)
    bright = np.full((120, 160, 3), 140, np.uint8)
    boxes, scores = auto.detect(dark)
    assert dark_det.calls == 1 and len(blaze_calls) == 2  # the back and short-range passes + the dark detector
    # The shared face is one box (weighted between the two), best first; BlazeFace's other face stays.
    assert boxes.shape == (2, 4) and scores[0] >= scores[1]
    assert 1 < boxes[0, 0] < 3 and np.allclose(boxes[1], [100, 50, 130, 80])
    assert all(w == h for _, _, w, h in auto(dark))  # predict's crops (x, y, w, h) are square
    auto.detect(bright)
    assert dark_det.calls == 2 and len(blaze_calls) == 6  # a bright photo: BlazeFace only


def test_unknown_detector_lists_the_valid_names():
    with pytest.raises(ConfigError, match=", ".join(F.DETECTORS.names())):  # the registry is the list
        F.make_detector("no-such-detector")


def _scene_with_a_real_face(rng, scale=0.25):
    """A generated 1080x720 scene with one real face pasted in: matplotlib's sample photo of Grace Hopper (a real
    photo that ships with matplotlib, so no dataset is needed); returns (scene, face box x1 y1 x2 y2)."""
    import matplotlib.cbook
    from PIL import Image

    photo = np.asarray(Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")).convert("RGB"))
    small = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    scene = _photo(rng, 720, 1080)
    x0, y0 = 400, 250
    scene[y0:y0 + small.shape[0], x0:x0 + small.shape[1]] = small
    face = np.array([168, 142, 366, 340], np.float32) * scale + [x0, y0, x0, y0]  # BlazeFace's box on the photo
    return scene, face


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isfile(F.LOWLIGHT_MODEL), reason="no shipped low-light detector")
def test_shipped_lowlight_detector_finds_a_real_face_in_a_generated_scene_normal_and_dark():
    from fer_keras.detection.lowlight import degrade_low_light
    from fer_keras.detection.metrics import iou_matrix

    rng = np.random.default_rng(0)
    scene, face = _scene_with_a_real_face(rng)
    det = F.make_detector("retinanet")
    for img in (scene, degrade_low_light(scene, rng)):
        boxes, scores = det.detect(img)
        assert len(boxes) >= 1
        assert iou_matrix(boxes[:3], face[None]).max() >= 0.3, (boxes[:3], scores[:3])


def test_crowd_crops_leave_one_padding_row_for_forced_matching(tmp_path):
    """KerasHub's label encoder with force_match indexes past the boxes of an image whose every row is a face (a
    crowd crop crashed a training run): crops keep at most max_boxes - 1 faces, and the encoder accepts them."""
    from fer_keras.detection.retinanet import build_kwargs, build_retinanet
    from fer_keras.detection.data import crop_batches

    os.makedirs(tmp_path / "images")
    cv2.imwrite(str(tmp_path / "images" / "crowd.jpg"), _photo(np.random.default_rng(0), 400, 400))
    rows = ["file,x,y,w,h"] + [f"crowd.jpg,{10 + 19 * (i % 20)},{10 + 19 * (i // 20)},12,12" for i in range(400)]
    (tmp_path / "boxes.csv").write_text("\n".join(rows) + "\n")
    det_cfg = config_from_dict(read_yaml(LOWLIGHT_CFG)).detection
    det_cfg.max_boxes, det_cfg.train_crop, det_cfg.face_px = 16, 128, [12.0, 12.0]
    x, y = next(crop_batches(read_boxes_csv(str(tmp_path)), det_cfg, 1, 0, 0))
    assert (y["classes"][0] == 0).sum() == 15 and y["classes"][0, -1] == -1
    encoder = build_retinanet(**build_kwargs(det_cfg)).label_encoder
    encoder(images=x / 255.0, gt_boxes=y["boxes"], gt_classes=y["classes"])  # raised before the fix
