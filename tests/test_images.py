"""fer_keras/data/images.py: one decoder policy. A phone photo (JPEG with an EXIF orientation) is seen upright by
training/evaluation/prepare (decode_resize in tf.data) and by predict (OpenCV), as Pillow's exif_transpose shows it."""

import io

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps


def _phone_photo(orientation: int) -> bytes:
    base = np.zeros((48, 48, 3), np.uint8)
    base[:10, :20] = 255
    base[30:, 30:, 1] = 200
    base[5:15, 35:45, 2] = 180
    im = Image.fromarray(base)
    exif = im.getexif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=100, exif=exif)
    return buf.getvalue()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_training_evaluation_and_predict_see_the_same_upright_pixels(orientation, tmp_path):
    import tensorflow as tf

    from fer_keras.config import DataConfig
    from fer_keras.data.images import decode_checked
    from fer_keras.predict import read_rgb

    path = tmp_path / "phone.jpg"
    path.write_bytes(_phone_photo(orientation))
    upright = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB")).astype(int)
    stored = np.asarray(Image.open(path).convert("RGB")).astype(int)
    trained, problem = decode_checked(str(path), np.full(4, np.nan, np.float32),
                                      DataConfig(image_size=48, channels=3))
    predicted = read_rgb(str(path))
    assert problem is None and tf.is_tensor(tf.constant(trained))
    for seen in (trained, predicted):
        assert np.abs(seen - upright).mean() < 3  # JPEG decoders differ by a few grey levels, not by geometry
        if orientation != 1:
            assert np.abs(seen - stored).mean() > 20  # and the stored (sideways) pixels are not what is seen


@pytest.mark.parametrize("shape", [(48, 48, 3), (200, 160, 3), (48, 48, 1)])
def test_predict_resize_matches_the_training_decode(shape, tmp_path):
    """What predict feeds a model (`resize_array`, OpenCV) equals what training fed it (`decode_resize`, TensorFlow's
    area resize) within one grey level, upscaling (48 px faces for a 112 px model) and downscaling alike."""
    import tensorflow as tf

    from fer_keras.data.images import decode_resize, resize_array

    img = np.random.default_rng(0).integers(0, 256, shape).astype(np.uint8)
    path = str(tmp_path / "face.png")
    cv2.imwrite(path, img if shape[2] == 1 else img[..., ::-1])
    trained = decode_resize(tf.io.read_file(path), tf.constant([np.nan] * 4, tf.float32), tf.constant(112),
                            tf.constant(3)).numpy().astype(int)
    served = resize_array(img[None], 112, 3)[0].astype(int)
    assert np.abs(trained - served).max() <= 1
