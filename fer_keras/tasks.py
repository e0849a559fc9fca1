"""The kinds of run (tasks) and what each supplies: the one place that chooses between expression and detection runs.

A run's `config.yaml` names its task (`task: expression | detection`). Every step of a run's life asks its task here
for the function to call, instead of branching on the name:

    train_model.py          Task.train(cfg) -> run folder          (both fit through `fer_keras.fitting`)
    evaluate_model.py       Task.evaluate(run, args) -> output folder
    visualize_results.py    Task.figures(run) -> {title: (file stem, figure function)}
    export                  Task.export(run, formats) -> {format: path}; `--export all` = Task.export_formats
    --detector <run>        Task.detector(run, min_score) -> a face detector (None: the run detects no faces)

Functions are named "module:function" and imported on first use, so reading this registry (config checks, `--help`)
imports no TensorFlow and nothing of a task that is not used. A new task is one registration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

from fer_keras.detection.architectures import ARCHITECTURES
from fer_keras.errors import ConfigError
from fer_keras.registry import Registry, Roles


@dataclass(frozen=True)
class Task(Roles):
    """What one kind of run supplies to the shared run life (see the module docstring for each role).

    Attributes:
        train, evaluate, figures, export: "module:function" of each role.
        export_formats: what `--export all` writes for a run of this task.
        detector: "module:function" that turns a finished run into a face detector, or None.
        expression_model: its model.keras scores expressions (predict, evaluate --model-path, init_from take it).
        multiworker: may train with train.strategy=multiworker.
    """

    train: str
    evaluate: str
    figures: str
    export: str
    export_formats: Tuple[str, ...]
    detector: Optional[str] = None
    expression_model: bool = False
    multiworker: bool = False



TASKS: Registry = Registry("task", ConfigError)

TASKS.register("expression")(Task(
    train="fer_keras.training:train", evaluate="fer_keras.cli_evaluate:evaluate_expression_run",
    figures="fer_keras.report:expression_figures", export="fer_keras.export:export_expression_run",
    export_formats=("savedmodel", "keras", "tflite"), expression_model=True, multiworker=True))

TASKS.register("detection")(Task(
    train="fer_keras.detection.train:train_detector", evaluate="fer_keras.detection.evaluate:evaluate_detection_run",
    figures="fer_keras.detection.figures:detection_figures", export="fer_keras.detection.export:export_detection_run",
    # every format some detection architecture writes (each run: its architecture's, detection/architectures.py)
    export_formats=tuple(dict.fromkeys(f for n in ARCHITECTURES.names() for f in ARCHITECTURES.get(n).export_formats)),
    detector="fer_keras.detection.faces:detector_from_run"))


def task_of(cfg) -> Task:
    """The task of a Config (a run folder's: `fer_keras.run_dir.run_task`)."""
    return TASKS.get(cfg.task)


def tasks_with(flag: str) -> list:
    """Names of the tasks whose `flag` attribute is true (for error messages)."""
    return [name for name in TASKS.names() if getattr(TASKS.get(name), flag)]
