"""Limits that every input path shares (training, evaluation, prepare, predict, the detectors)."""

# Images with more pixels are bad input everywhere: a 438 KB PNG can declare 20000x20000 and take 3 GB to decode.
# data.max_image_pixels' default, the training header check's and predict's refusal.
MAX_IMAGE_PIXELS = 50_000_000
