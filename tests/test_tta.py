"""fer_keras/tta.py: the table of test-time augmentation views, in TensorFlow and in NumPy (LiteRT)."""

import numpy as np
import pytest


def test_crops_tta_views_are_corner_and_centre_crops_with_mirrors():
    import cv2

    from fer_keras.tta import tta_views, tta_views_numpy

    x = np.random.default_rng(0).integers(0, 256, (2, 40, 40, 1)).astype(np.float32)
    views = tta_views("crops")
    assert len(views) == 10 and len(tta_views("flip")) == 2 and len(tta_views("none")) == 1
    outs = [np.asarray(v(x)) for v in views]
    assert all(o.shape == x.shape for o in outs)
    # View 0 is the top-left 90% crop (36x36) resized back to 40x40; view 1 is its mirror.
    ref = cv2.resize(x[0, :36, :36, 0], (40, 40), interpolation=cv2.INTER_LINEAR)
    assert np.abs(outs[0][0, 4:-4, 4:-4, 0] - ref[4:-4, 4:-4]).mean() < 6.0  # same crop (resampling differs)
    np.testing.assert_allclose(outs[1], outs[0][:, :, ::-1], atol=1e-4)
    # The centre crop (view 8) differs from every corner crop.
    assert all(np.abs(outs[8] - outs[k]).mean() > 1.0 for k in (0, 2, 4, 6))
    with pytest.raises(ValueError, match="valid: none, flip, crops"):
        tta_views("rotate")
    # The NumPy views (predict's LiteRT backend) are the same images, to float rounding.
    for mode in ("none", "flip", "crops"):
        for tf_view, np_view in zip(tta_views(mode), tta_views_numpy(mode)):
            np.testing.assert_allclose(np_view(x.astype(np.uint8)), np.asarray(tf_view(x.astype(np.uint8))),
                                       atol=0.01)
