"""Low light: a physically motivated degradation (to train and test detectors) and automatic brightening.

The degradation follows how a camera makes a dark photo: the sRGB image is linearised (inverse gamma), scaled by an
exposure gain, turned into photo-electrons with Poisson shot noise and Gaussian read noise, slightly blurred (motion
/ defocus), gamma-encoded again, quantised and JPEG-compressed. The gain is chosen so that the mean brightness lands
in DARK FACE's range (mean 19-41 of 255 over its 6,000 training images).
"""

from __future__ import annotations

from typing import Tuple

import cv2
import numpy as np

DARK_FACE_MEAN = (19.0, 41.0)  # DARK FACE images' mean brightness range (0-255)
SRGB_GAMMA = 2.2


def brightness(rgb: np.ndarray) -> float:
    """Mean luma (0-255) of an RGB or grayscale uint8 image, measured on a <= 64 px thumbnail (fast)."""
    small = rgb
    if max(rgb.shape[:2]) > 64:
        f = 64.0 / max(rgb.shape[:2])
        small = cv2.resize(rgb, (max(1, round(rgb.shape[1] * f)), max(1, round(rgb.shape[0] * f))),
                           interpolation=cv2.INTER_AREA)
    if small.ndim == 3:
        small = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    return float(np.mean(small))


def degrade_low_light(rgb: np.ndarray, rng: np.random.Generator, mean: Tuple[float, float] = DARK_FACE_MEAN,
                      full_well: Tuple[float, float] = (150.0, 1500.0), read_noise: Tuple[float, float] = (1.0, 6.0),
                      blur: Tuple[float, float] = (0.0, 1.2), jpeg_quality: Tuple[int, int] = (40, 90)
                      ) -> np.ndarray:
    """A low-light version of a normally exposed uint8 RGB photo.

    Args:
        rgb: (H, W, 3) uint8.
        rng: the random generator (all draws come from it: same seed, same image).
        mean: range of the output's mean brightness (0-255); one value is drawn per image.
        full_well: photo-electrons of a white pixel at the drawn exposure; fewer electrons = more shot noise.
        read_noise: sensor read noise in electrons (Gaussian sigma).
        blur: Gaussian blur sigma range in pixels (0 = none).
        jpeg_quality: JPEG quality range of the re-encoding.

    Returns:
        (H, W, 3) uint8.
    """
    linear = (rgb.astype(np.float32) / 255.0) ** SRGB_GAMMA
    target = rng.uniform(*mean) / 255.0
    # Noise-free output mean = gain^(1/gamma) * mean(rgb/255); solve for the gain that hits the target.
    src = max(float(np.mean(rgb)) / 255.0, 1e-3)
    gain = min((target / src) ** SRGB_GAMMA, 1.0)
    well = rng.uniform(*full_well)
    electrons = linear * gain * well
    noisy = rng.poisson(np.maximum(electrons, 0.0)).astype(np.float32)
    noisy += rng.normal(0.0, rng.uniform(*read_noise), noisy.shape).astype(np.float32)
    linear_out = np.clip(noisy / well, 0.0, 1.0)
    sigma = rng.uniform(*blur)
    if sigma > 0.3:
        linear_out = cv2.GaussianBlur(linear_out, (0, 0), sigma)
    out = np.clip(255.0 * linear_out ** (1.0 / SRGB_GAMMA) + 0.5, 0, 255).astype(np.uint8)
    ok, enc = cv2.imencode(".jpg", out[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(*jpeg_quality))])
    return cv2.imdecode(enc, cv2.IMREAD_COLOR)[..., ::-1].copy() if ok else out


def brighten(rgb: np.ndarray, target: float = 110.0) -> np.ndarray:
    """Brightens a dark image with the gamma that maps its mean brightness to about `target`, then CLAHE on luma.

    The gamma curve lifts shadows more than highlights (like an exposure correction); CLAHE then restores local
    contrast that the noise floor flattened. Images at or above `target` are returned unchanged.
    """
    mean = max(brightness(rgb), 1.0)
    if mean >= target:
        return rgb
    gamma = float(np.clip(np.log(target / 255.0) / np.log(mean / 255.0), 0.2, 1.0))
    lut = np.clip(255.0 * (np.arange(256) / 255.0) ** gamma + 0.5, 0, 255).astype(np.uint8)
    out = cv2.LUT(rgb, lut)
    if out.ndim == 2:
        return cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(out)
    lab = cv2.cvtColor(out, cv2.COLOR_RGB2LAB)
    lab[..., 0] = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(lab[..., 0])
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
