"""Export of detection runs (the detection task's `export`): each run in its architecture's formats, written by the
architecture's own module (`retinanet_run.export`, `yunet_run.export`; the table: `fer_keras/architectures.py`)."""

from __future__ import annotations

from typing import Dict, Optional, Sequence

from fer_keras.architectures import architecture_of
from fer_keras.errors import ConfigError
from fer_keras.run_dir import RunDir


def export_detection_run(run: RunDir, formats: Optional[Sequence[str]] = None) -> Dict[str, str]:
    """A detection run exports in its architecture's formats (`ARCHITECTURES`; default: all of them)."""
    cfg = run.config()
    arch = architecture_of(cfg)
    formats = list(arch.export_formats) if formats is None else formats
    bad = [f for f in formats if f not in arch.export_formats]
    if bad:  # checked before anything is written
        raise ConfigError(f"{run.path}: a {cfg.detection.architecture} detection run exports as "
                          f"{', '.join(arch.export_formats)}, not {bad[0]}")
    return arch.fn("export")(run, formats)


