"""Small file helpers: atomic writes and run directories that never overwrite earlier results."""

from __future__ import annotations

import contextlib
import datetime as _dt
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


@contextlib.contextmanager
def run_lock(runs_dir: str, name: str):
    """Holds an exclusive lock on the run `name` under `runs_dir` for the duration of the block.

    A second process that tries to train the same named run at the same time gets a ConfigError at once (two
    writers would interleave history.csv and checkpoints and corrupt the run for good). The lock is an OS file
    lock (`flock`) on `runs_dir/.<name>.lock`, so it is released when the process ends, even when killed: no stale
    locks. Where `fcntl` does not exist (Windows) no lock is taken.
    """
    from fer_keras.errors import ConfigError

    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    os.makedirs(runs_dir, exist_ok=True)
    path = os.path.join(runs_dir, f".{slug(name)}.lock")
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            owner = f.read().strip() or "another process"
            raise ConfigError(f"run {os.path.join(runs_dir, slug(name))} is being trained right now by {owner}; "
                              "wait for it to end or choose another --name") from None
        f.seek(0)
        f.truncate()
        f.write(f"process {os.getpid()}")
        f.flush()
        try:
            yield
        finally:
            # Removed while still held, so the runs folder keeps no lock files (a process that opened the old
            # file in between fails its non-blocking lock now, or locks a file nobody else will use).
            with contextlib.suppress(OSError):
                os.remove(path)
            fcntl.flock(f, fcntl.LOCK_UN)


def new_run_dir(runs_dir: str, name: str | None, default_stem: str) -> str:
    """Creates and returns a fresh run directory; an existing one is never reused silently.

    With an explicit `name`, the caller decides what an existing directory means (resume or error); without one,
    a timestamped name is made unique with a numeric suffix.
    """
    os.makedirs(runs_dir, exist_ok=True)
    if name:
        return os.path.join(runs_dir, slug(name))
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    stem = f"{slug(default_stem)}-{stamp}"
    for i in range(1000):
        path = os.path.join(runs_dir, stem if i == 0 else f"{stem}-{i}")
        try:
            os.makedirs(path)
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a unique run directory under {runs_dir}")


def newest_run(runs_dir: str = "runs") -> str | None:
    """The most recently modified run directory that has a config.yaml, or None."""
    if not os.path.isdir(runs_dir):
        return None
    cands = [os.path.join(runs_dir, d) for d in os.listdir(runs_dir)]
    cands = [d for d in cands if os.path.isfile(os.path.join(d, "config.yaml"))]
    return max(cands, key=os.path.getmtime) if cands else None
