"""Limits that every input path shares (training, evaluation, prepare, predict, the detectors)."""

# Images with more pixels are bad input everywhere: a 438 KB PNG can declare 20000x20000 and take 3 GB to decode.
# data.max_image_pixels' default, the training header check's and predict's refusal.
MAX_IMAGE_PIXELS = 50_000_000

# A model file (.keras is a zip) whose members unpack to more bytes is refused before anything is extracted or
# loaded: a 2 MB zip can declare gigabytes. The largest model here unpacks to about 30 MB; ImageNet ResNet152s ~250 MB.
MAX_MODEL_BYTES = 2_000_000_000


def model_zip_problem(path: str):
    """Why a `.keras` file must not be unpacked (None when it may): not a zip, or members that declare more than
    MAX_MODEL_BYTES uncompressed in total."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return "not a complete .keras file (a .keras file is a zip archive; this one is truncated or something else)"
    try:
        with zipfile.ZipFile(path) as z:
            total = sum(i.file_size for i in z.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        return f"not a readable .keras zip ({e})"
    if total > MAX_MODEL_BYTES:
        return f"its members unpack to {total:,} bytes (the limit is {MAX_MODEL_BYTES:,}): refused unopened"
    return None
