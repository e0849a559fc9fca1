"""The Keras port of YuNet equals the ONNX model run by OpenCV, with weights converted from the PyTorch state dict
without torch. Tolerance: after matching each Keras box to the ONNX box of highest IoU, boxes and landmarks within
0.05 px and scores within 1e-3 (float32 kernels differ; measured differences were under 5e-4 px)."""

import os
import subprocess
import sys

import cv2
import matplotlib
import numpy as np
import pytest

from fer_keras.detection.faces import YUNET_MODEL, YuNetDetector
from fer_keras.detection.metrics import iou_matrix
from fer_keras.detection.yunet import KerasYuNetDetector, build_yunet

PTH = os.path.join(os.path.dirname(YUNET_MODEL), "yunet_n.pth")
FACES = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "faces")


def _photos():
    hopper = cv2.cvtColor(cv2.imread(os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "sample_data",
                                                  "grace_hopper.jpg")), cv2.COLOR_BGR2RGB)
    photos = [hopper, cv2.resize(hopper, (300, 360))]
    for name, k in (("wider", 4), ("facemask", 3)):
        folder = os.path.join(FACES, name, "images")
        if os.path.isdir(folder):  # real group photos (val files, never the benchmark's first 150)
            for f in sorted(os.listdir(folder))[150:150 + k]:
                photos.append(cv2.cvtColor(cv2.imread(os.path.join(folder, f)), cv2.COLOR_BGR2RGB))
    return photos


@pytest.fixture(scope="module")
def detectors():
    return KerasYuNetDetector(PTH, min_score=0.3), YuNetDetector(min_score=0.3)


@pytest.mark.slow
def test_port_equals_the_onnx_model(detectors):
    port, onnx = detectors
    total = 0
    for rgb in _photos():
        b1, s1, k1 = port.detect_landmarks(rgb)
        b2, s2, k2 = onnx.detect_landmarks(rgb)
        # faces scored right at the 0.3 threshold may fall on either side of it: compare those above 0.31
        b1, s1, k1 = b1[s1 >= 0.31], s1[s1 >= 0.31], k1[s1 >= 0.31]
        b2, s2, k2 = b2[s2 >= 0.31], s2[s2 >= 0.31], k2[s2 >= 0.31]
        assert len(b1) == len(b2)
        if not len(b1):
            continue
        j = iou_matrix(b1, b2).argmax(1)
        np.testing.assert_allclose(b1, b2[j], atol=0.05)
        np.testing.assert_allclose(k1, k2[j], atol=0.05)
        np.testing.assert_allclose(s1, s2[j], atol=1e-3)
        total += len(b1)
    assert total >= 2  # at least the two Grace Hopper faces were compared


@pytest.mark.slow
def test_weights_convert_without_torch():
    code = ("import importlib.abc, sys\n"
            "class NoTorch(importlib.abc.MetaPathFinder):\n"  # any import of torch now fails
            "    def find_spec(self, name, path, target=None):\n"
            "        if name.split('.')[0] == 'torch': raise ImportError('torch is blocked')\n"
            "sys.meta_path.insert(0, NoTorch())\n"
            "from fer_keras.detection.yunet import load_yunet\n"
            f"m = load_yunet({PTH!r}); print(m.count_params())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-500:]
    assert int(out.stdout.strip().splitlines()[-1]) == build_yunet()[0].count_params()


# Each runtime variant of YuNet against the ONNX model run by OpenCV, after matching boxes by IoU: the largest box
# difference allowed as a fraction of the face's side, and the largest score difference. float16 and int8 store
# rounded weights; measured on these photos: float32 under 1e-4 / 1e-4, float16 0.010 / 0.0025 (min IoU 0.975), int8
# 0.029 / 0.051 (min IoU 0.93). The tolerances are about twice that.
RUNTIME_TOLERANCE = {"float32": (1e-3, 1e-3), "float16": (0.02, 0.005), "int8": (0.06, 0.1)}


@pytest.mark.slow
@pytest.mark.parametrize("weights", sorted(RUNTIME_TOLERANCE))
def test_litert_variants_equal_the_onnx_model(weights, tmp_path, detectors):
    from fer_keras.detection.yunet import export_tflite, inference_model, load_yunet
    from fer_keras.detection.yunet_lite import LiteRTYuNetDetector

    path = export_tflite(inference_model(load_yunet(PTH)), str(tmp_path / f"yunet_{weights}.tflite"), weights)
    lite, onnx = LiteRTYuNetDetector(path, min_score=0.2, threads=2), detectors[1]
    box_tol, score_tol = RUNTIME_TOLERANCE[weights]
    total = 0
    for rgb in _photos():
        b1, s1 = onnx.detect(rgb)  # its faces above 0.3 ...
        b2, s2 = lite.detect(rgb)  # ... found by the variant at a lower threshold (scores near 0.3 may cross it)
        if not len(b1):
            continue
        assert len(b2), "the variant found no face where the ONNX model found some"
        iou = iou_matrix(b1, b2)
        j = iou.argmax(1)
        assert iou[np.arange(len(b1)), j].min() >= 0.5
        side = np.sqrt(np.prod(b1[:, 2:] - b1[:, :2], axis=1))[:, None]
        assert (np.abs(b2[j] - b1) / side).max() <= box_tol
        np.testing.assert_allclose(s2[j], s1, atol=score_tol)
        total += len(b1)
    assert total >= 2


def test_two_pass_finds_the_faces_of_the_full_pass():
    """The two-pass detector answers from its 320 px pass on a close-up (boxes within a few px of the full pass's) and
    falls back to the full photo when the faces are small."""
    from fer_keras.detection.faces import TwoPassDetector

    hopper = _photos()[0]
    full = YuNetDetector(min_score=0.3)
    two = TwoPassDetector(YuNetDetector(min_score=0.3))
    calls = []
    real_detect = two.full.detect
    two.full.detect = lambda rgb: calls.append(rgb.shape) or real_detect(rgb)
    b1, s1 = full.detect(hopper)
    b2, s2 = two.detect(hopper)
    assert calls == [] and len(b2) >= 1  # the close-up needed no full pass
    # Every face of the full pass the first pass may answer for (>= trust_side px) is there, within a few px; a
    # smaller box of the full pass (here a 20 px one on her uniform) is what the first pass may miss.
    big = b1[np.sqrt(np.prod(b1[:, 2:] - b1[:, :2], axis=1)) >= two.trust_side]
    assert len(big) >= 1 and iou_matrix(big, b2).max(axis=1).min() >= 0.8
    # A small copy of the face in a large frame: the 320 px pass cannot trust what it sees; the full pass runs.
    frame = np.full((960, 1280, 3), 90, np.uint8)
    frame[400:400 + 64, 600:600 + 54] = cv2.resize(hopper[40:400, 100:400], (54, 64), interpolation=cv2.INTER_AREA)
    two.detect(frame)
    assert calls == [(960, 1280, 3)]


@pytest.mark.slow
def test_auto_runs_the_runtime_and_passes_its_settings_chose(tmp_path, monkeypatch):
    """`auto` builds YuNet on LiteRT, in two passes, when the settings file says so (and OpenCV when the LiteRT file
    is missing), with the file's threshold; `--detector yunet-litert` is that runtime alone."""
    import json

    from fer_keras.detection import faces as F
    from fer_keras.detection.yunet import export_tflite, inference_model, load_yunet
    from fer_keras.detection.yunet_lite import LiteRTYuNetDetector

    lite = export_tflite(inference_model(load_yunet(PTH)), str(tmp_path / "yunet_n.tflite"))
    settings = tmp_path / "yunet_n.json"
    settings.write_text(json.dumps({"score_threshold": 0.55, "runtime": "litert", "two_pass": True,
                                    "litert_threads": 1}))
    monkeypatch.setattr(F, "YUNET_SETTINGS", str(settings))
    monkeypatch.setattr(F, "YUNET_TFLITE", lite)
    auto = F.make_detector("auto")
    assert isinstance(auto.normal, F.TwoPassDetector) and isinstance(auto.normal.full, LiteRTYuNetDetector)
    assert auto.normal.full.min_score == 0.55 and auto.normal.full.threads == 1
    hopper = _photos()[0]
    assert len(auto(hopper)) >= 1 and len(F.make_detector("yunet-litert")(hopper)) >= 1
    monkeypatch.setattr(F, "YUNET_TFLITE", str(tmp_path / "missing.tflite"))
    assert isinstance(F.make_detector("auto").normal.full, F.YuNetDetector)  # not installed: OpenCV
