"""The kinds of run (tasks) and what each supplies: the one place that chooses between expression and detection runs.

A run's `config.yaml` names its task (`task: expression | detection`). Every step of a run's life asks its task here
for the function to call, instead of branching on the name. Each task is a wing, `fer_keras/<task>/`, with one
module per role (`fer_keras.<task>.<role>`); every role but `train` takes the run (`run: RunDir`) first:

    train_model.py          Task.train(cfg) -> run folder          (both fit through `fer_keras.fitting`)
    evaluate_model.py       Task.evaluate(run, EvaluateOptions) -> (output folder, metrics)
    visualize_results.py    Task.figures(run) -> {title: (file stem, figure function)}
    export                  Task.export(run, formats) -> {format: path}; `--export all` = Task.export_formats
    --detector <run>        Task.detector(run, min_score) -> a face detector (None: the run detects no faces)

Functions are named "module:function" and imported on first use, so reading this registry (config checks, `--help`)
imports no TensorFlow and nothing of a task that is not used, and this engine module imports nothing from a wing. A
new task is one wing and one registration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

from fer_keras.architectures import ARCHITECTURES
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



@dataclass(frozen=True)
class EvaluateOptions:
    """What `evaluate_model.py` (or `fer_keras.Run.evaluate`) asks of a task's `evaluate`; each task reads the
    options it knows (a detection run: `data`, `split`, `verbose`).

    Attributes:
        data, fmt: other data to score and its format (None: the run's own data).
        split: `test`, `val`, `train` or `all`.
        labels: score in this label preset (classes mapped by name); None: the run's.
        bootstrap, seed: bootstrap resamples for 95% confidence intervals (0 = none), and their seed.
        batch_size: samples per model call.
        skip_bad: skip (and list) samples that do not decode.
        overrides: `data.*` KEY=VALUE config overrides.
        tta, calibration, classes: test-time views, output prior and headline scope (`evaluate_model.py --help`).
        unsafe_load: load models outside Keras safe mode.
        out: output folder (None: the run's default).
        verbose: print the result table.
    """

    data: Optional[str] = None
    fmt: Optional[str] = None
    split: str = "test"
    labels: Optional[str] = None
    bootstrap: int = 0
    seed: int = 0
    batch_size: int = 64
    skip_bad: bool = False
    overrides: Sequence[str] = ()
    tta: str = "auto"
    calibration: str = "auto"
    classes: str = "model"
    unsafe_load: bool = False
    out: Optional[str] = None
    verbose: bool = False


# The house: one wing per task (`fer_keras/<task>/`, a name in TASKS), the engine floor under both (every other
# module), and on top the applications that use both wings and the commands (`cli_*.py`). tests/test_imports.py
# checks every import points down (docs/gen_layout.py lists each layer's modules).
APPLICATIONS = ("fer_keras", "fer_keras.api", "fer_keras.predict", "fer_keras.tracking", "fer_keras.console")

TASKS: Registry = Registry("task", ConfigError)

TASKS.register("expression")(Task(
    train="fer_keras.expression.train:train", evaluate="fer_keras.expression.evaluate:evaluate_expression_run",
    figures="fer_keras.expression.figures:expression_figures",
    export="fer_keras.expression.export:export_expression_run",
    export_formats=("savedmodel", "keras", "tflite"), expression_model=True, multiworker=True))

TASKS.register("detection")(Task(
    train="fer_keras.detection.train:train_detector", evaluate="fer_keras.detection.evaluate:evaluate_detection_run",
    figures="fer_keras.detection.figures:detection_figures", export="fer_keras.detection.export:export_detection_run",
    # every format some detection architecture writes (each run: its architecture's, fer_keras/architectures.py)
    export_formats=tuple(dict.fromkeys(f for n in ARCHITECTURES.names() for f in ARCHITECTURES.get(n).export_formats)),
    detector="fer_keras.detection.faces:detector_from_run"))


def task_of(cfg) -> Task:
    """The task of a Config (a run folder's: `fer_keras.run_dir.run_task`)."""
    return TASKS.get(cfg.task)


def tasks_with(flag: str) -> list:
    """Names of the tasks whose `flag` attribute is true (for error messages)."""
    return [name for name in TASKS.names() if getattr(TASKS.get(name), flag)]
