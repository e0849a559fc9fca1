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
