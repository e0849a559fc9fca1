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
    base, ext = os.path.splitext(os.path.basename(path))
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
