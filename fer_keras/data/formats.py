"""Every data format, registered: `read_table` here knows them all.

The base readers (folder, csv, npy, fer2013, affectnet) live in `readers.py`, the clip readers (dfew, clips) in
`clips.py` and the TFRecord shards (tfrecord) in `shards.py`; each registers itself in `readers.READERS` when
imported. This module imports all of them, so code that reads data through it never meets a half-filled registry.
"""

from __future__ import annotations

from fer_keras.data import clips as _clips  # noqa: F401  (registers dfew, clips)
from fer_keras.data import shards as _shards  # noqa: F401  (registers tfrecord)
from fer_keras.data.readers import READERS, BadLog, RawTable, detect_format

__all__ = ["READERS", "BadLog", "RawTable", "detect_format", "read_table"]


def read_table(path: str, fmt: str, cfg, log: BadLog) -> RawTable:
    """Reads `path` with the named (or detected) format reader."""
    fmt = detect_format(path) if fmt == "auto" else READERS.canonical(fmt)
    table = READERS.get(fmt)(path, cfg, log)
    table.origin = table.origin or path
    return table
