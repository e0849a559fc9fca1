"""Console-script entry points (`fer-train`, `fer-evaluate`, `fer-visualize`, `fer-predict`, `fer-export`).

Each CLI's `main(argv)` returns what it made (a run folder, a report path, predictions) for callers in Python; a
console-script wrapper passes its entry point's return value to `sys.exit`, where anything but None or 0 means
failure (and an object is printed to stderr). These wrappers run the same `main` and return 0: exit 0 on success,
2 on a user error (`errors.cli_main`), 1 only on a real failure (an uncaught exception).
"""

from __future__ import annotations

import importlib


def _run(module: str) -> int:
    importlib.import_module(module).main()
    return 0


def train() -> int:
    """`fer-train`: `python train_model.py`."""
    return _run("fer_keras.cli_train")


def evaluate() -> int:
    """`fer-evaluate`: `python evaluate_model.py`."""
    return _run("fer_keras.cli_evaluate")


def visualize() -> int:
    """`fer-visualize`: `python visualize_results.py`."""
    return _run("fer_keras.cli_visualize")


def predict() -> int:
    """`fer-predict`: `python -m fer_keras.predict`."""
    return _run("fer_keras.cli_predict")


def export() -> int:
    """`fer-export`: `python -m fer_keras.export`."""
    return _run("fer_keras.cli_export")
