"""Small file helpers: atomic writes (a kill never leaves a half-written file) and safe names."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile


@contextlib.contextmanager
def atomic_path(path: str):
    """Yields a temporary path next to `path`; on success it is renamed over `path` (atomic on POSIX).

    A crash or kill leaves the old file (or nothing), never a half-written one. The temp name keeps the suffix so
    writers that look at the extension (e.g. `model.save("x.keras")`) still work.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    name = os.path.basename(path)
    # Keras' save_weights takes only names ending in .weights.h5: a compound suffix stays whole
    base, ext = (name[:-len(".weights.h5")], ".weights.h5") if name.endswith(".weights.h5") else \
        os.path.splitext(name)
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=f".tmp{ext}", dir=folder)
    os.close(fd)
    try:
        yield tmp
        # mkstemp creates 0600 files; give the result the permissions a plain open() would (0666 - umask).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_text(path: str, text: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)


def atomic_write_bytes(path: str, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def slug(text: str) -> str:
    """A file-name-safe form of a run name: letters (any script), digits, `_`, `.`, `-`; others become `-`.

    Names made only of dots (`.`, `..`) would point at the runs folder or above it: they become `run`.
    """
    s = re.sub(r"[^\w.-]+", "-", str(text)).strip("-")
    return "run" if not s or set(s) == {"."} else s


def write_image(path: str, bgr) -> None:
    """`cv2.imwrite`, checked: OpenCV returns False (or raises for an unknown extension) where Python would raise,
    so a crop or annotated image that cannot be written (a read-only folder, a full disk, a name over the
    file-system limit) would vanish silently. Raises OSError naming `path`."""
    import cv2

    try:
        ok = cv2.imwrite(path, bgr)
    except cv2.error as e:
        raise OSError(f"{path}: cannot write the image ({str(e).strip().splitlines()[-1][:120]})") from None
    if not ok:
        folder = os.path.dirname(path) or "."
        why = "the folder is not writable" if not os.access(folder, os.W_OK) else \
            "name too long" if len(os.path.basename(path)) > 255 else "disk full or unwritable"
        raise OSError(f"{path}: cannot write the image ({why})")

