"""The task registry is the one place that chooses between expression and detection runs."""

import os
import re

import pytest

from fer_keras.config import Config, set_key
from fer_keras.errors import ConfigError
from fer_keras.tasks import TASKS, task_of

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_role_of_every_task_resolves():
    for name in TASKS.names():
        task = TASKS.get(name)
        for role in ("train", "evaluate", "figures", "export") + (("detector",) if task.detector else ()):
            assert callable(task.fn(role)), (name, role)
        assert task.export_formats


def test_every_role_of_every_detection_architecture_resolves():
    from fer_keras.config import choices
    from fer_keras.architectures import ARCHITECTURES

    assert choices("detection.architecture") == tuple(ARCHITECTURES.names())
    for name in ARCHITECTURES.names():
        arch = ARCHITECTURES.get(name)
        for role in ("fit", "detector", "evaluate", "export"):
            assert callable(arch.fn(role)), (name, role)
        assert set(arch.export_formats) <= set(TASKS.get("detection").export_formats)


def test_config_task_choices_are_the_registry():
    cfg = Config()
    for name in TASKS.names():
        set_key(cfg, "task", name)
        assert task_of(cfg) is TASKS.get(name)
    with pytest.raises(ConfigError, match="'segmentation' is not one of"):
        set_key(cfg, "task", "segmentation")


@pytest.mark.parametrize("pattern, registry", [(r"""task(\(\))?\s*[!=]=\s*["']""", "tasks.py"),
                                               (r"""architecture\s*[!=]=""", "architectures.py")])
def test_no_branch_on_a_name_outside_its_registry(pattern, registry):
    """Code asks the task (fer_keras/tasks.py) or the detection architecture (detection/architectures.py) for its
    function instead of comparing names."""
    pattern = re.compile(pattern)
    hits = []
    for folder, _, files in os.walk(os.path.join(ROOT, "fer_keras")):
        for f in files:
            if f.endswith(".py") and f != registry:
                path = os.path.join(folder, f)
                for i, line in enumerate(open(path, encoding="utf-8"), 1):
                    if pattern.search(line):
                        hits.append(f"{os.path.relpath(path, ROOT)}:{i}: {line.strip()}")
    assert not hits, hits


def test_an_expression_run_as_a_detector_is_one_line(tiny_run):
    from fer_keras.detection.faces import make_detector

    with pytest.raises(ConfigError, match="a run of task .expression.; --detector takes a face-detection run"):
        make_detector(tiny_run)


def test_export_all_is_the_tasks_formats(tiny_run, monkeypatch):
    from fer_keras import export
    from fer_keras.expression import export as expression_export

    seen = {}
    monkeypatch.setattr(expression_export, "export_expression_run", lambda run, formats: seen.__setitem__("f", formats))
    export.export_run(tiny_run)
    assert seen["f"] is None  # `all`: each task's export takes its own formats (a YuNet run has no compact)
    export.export_run(tiny_run, ["keras"])
    assert seen["f"] == ["keras"]


def test_each_architecture_owns_its_options_and_its_default_monitor():
    """A `detection.*` option of one architecture set on another's run is a one-line error, and a detection run left
    at the expression default monitor checkpoints by its own architecture's score (`Architecture.monitor`)."""
    from fer_keras.architectures import ARCHITECTURES
    from fer_keras.detection.train import check_options

    cfg = Config()
    set_key(cfg, "task", "detection")
    set_key(cfg, "detection.architecture", "retinanet")
    set_key(cfg, "detection.backbone", "resnet18")
    check_options(cfg)  # its own option
    set_key(cfg, "detection.yunet_init", "x.pth")
    with pytest.raises(ConfigError, match="detection.yunet_init is an option of the yunet architecture; this "
                                          "run's detection.architecture is retinanet"):
        check_options(cfg)
    set_key(cfg, "detection.architecture", "yunet")
    set_key(cfg, "detection.train_crop", 320)
    with pytest.raises(ConfigError, match="detection.backbone is an option of the retinanet architecture"):
        check_options(cfg)
    owners = [n for n in ARCHITECTURES.names() for _ in ARCHITECTURES.get(n).options]
    options = [o for n in ARCHITECTURES.names() for o in ARCHITECTURES.get(n).options]
    assert len(set(options)) == len(options), owners  # each option has one owner
    assert {n: ARCHITECTURES.get(n).monitor for n in ARCHITECTURES.names()} == {
        "retinanet": "val_ap50", "yunet": "val_recall_1fppi"}
