"""Export dispatch: a run exports in its task's formats, through the task's `export` role (the expression wing's
`fer_keras/expression/export.py`, the detection wing's per-architecture modules).

    python -m fer_keras.export --run runs/<name> [--format savedmodel|keras|tflite|all]
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

from fer_keras.run_dir import RunDir, run_task


def export_run(run: str, formats: Optional[Sequence[str]] = None) -> Dict[str, str]:
    """Exports `run/model.keras` into `run/export/` in `formats` (default: every format of the run's task);
    returns {format: path}."""
    return run_task(run).fn("export")(RunDir(run), None if formats is None else list(formats))


if __name__ == "__main__":  # `python -m fer_keras.export` runs the CLI, cli_export.py (no import back to it)
    import runpy

    runpy.run_module("fer_keras.cli_export", run_name="__main__")
