"""What a trained model is: its file, class names and which of its outputs were actually trained.

A run directory records this in `labels.json`; a standalone `.keras` file (a shipped or exported model) in a sidecar
`<stem>.json` beside it. A head that no training sample taught (the VA head of a model trained only on FER2013) is
marked untrained, and every consumer (predict, evaluate, export, the report) shows it as unavailable instead of
printing its numbers.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from fer_keras.calibration import Calibration, parse_calibration
from fer_keras.errors import ConfigError, ModelError
from fer_keras.limits import model_zip_problem
from fer_keras.labels import PRESETS
from fer_keras.io_utils import atomic_write_text
from fer_keras.run_dir import DATA_SUMMARY, LABELS, RunDir
from fer_keras.tasks import TASKS
from fer_keras.tta import TTA

VA_UNTRAINED_NOTE = ("valence/arousal unavailable: this model's valence_arousal head was never trained "
                     "(no VA labels in its training data)")


@dataclass
class ModelInfo:
    """`model_file`: the .keras file; `class_names`: output order, or None when unknown (then the preset of the
    output size is used); `trained_heads`: output name -> trained (missing = unknown, treated as trained); `tta`:
    the views `--tta auto` (the CLIs' default) averages, chosen on val data for the model (`"tta"` in its
    metadata; none when unset); `calibration`: the output prior `--calibration auto` applies (`"calibration"` in
    its metadata, see fer_keras/calibration.py; None when unset)."""

    model_file: str
    class_names: Optional[List[str]] = None
    trained_heads: Dict[str, bool] = field(default_factory=dict)
    tta: str = "none"  # the test-time augmentation its predictions use by default (fer_keras/tta.py)
    calibration: Optional[Calibration] = None
    # the SHA-256 of the .keras file its TFLite export (the `.tflite` beside it, a run's export/model_float.tflite)
    # was made from or shipped with: a `.tflite` of another model version is refused (`check_tflite_belongs`)
    tflite_model_sha256: Optional[str] = None

    @property
    def va_trained(self) -> bool:
        return bool(self.trained_heads.get("valence_arousal", True))


def sidecar_path(model_file: str) -> str:
    """`model.keras` -> `model.json`: the metadata file beside a standalone model."""
    return os.path.splitext(model_file)[0] + ".json"


def _read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: cannot read model metadata ({type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: model metadata is not a JSON object")
    return data


def _heads_from(meta: dict, summary: Optional[dict]) -> Dict[str, bool]:
    heads = meta.get("trained_heads")
    if isinstance(heads, dict):
        return {k: bool(v) for k, v in heads.items() if k in ("expression", "valence_arousal")}
    if summary:  # runs made before trained_heads was recorded: their data summary says whether VA was labelled
        train = summary.get("splits", {}).get("train", {})
        if "with_valence_arousal" in train:
            return {"expression": True, "valence_arousal": int(train["with_valence_arousal"]) > 0}
    return {}


def read_model_info(model: str) -> ModelInfo:
    """Reads a run directory (`model.keras` + `labels.json`) or a `.keras` file (+ its sidecar `.json`, if any)."""
    if os.path.isdir(model):
        run = RunDir(model)
        task = run.task()
        if run.is_run() and not TASKS.get(task).expression_model:
            raise ConfigError(f"{model}: a face-{task} run, not an expression model (give an expression run "
                              "directory or a .keras file)")
        model_file, labels, summary_path = run.model_path, run.file(LABELS), run.file(DATA_SUMMARY)
        meta = _read_json(labels) if os.path.isfile(labels) else {}
        summary = _read_json(summary_path) if os.path.isfile(summary_path) else None
    else:
        model_file = model
        side = sidecar_path(model)
        meta = _read_json(side) if os.path.isfile(side) else {}
        summary = None
    names = meta.get("class_names")
    if names is not None and not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
        raise ConfigError(f"{model}: class_names in its metadata is not a list of names")
    tta = meta.get("tta", "none")
    if not isinstance(tta, str) or tta not in TTA:
        raise ConfigError(f"{model}: tta {tta!r} in its metadata is no test-time augmentation (valid: "
                          f"{', '.join(TTA)})")
    heads = meta.get("trained_heads")
    if heads is not None and not (isinstance(heads, dict) and all(
            isinstance(heads[k], bool) for k in ("expression", "valence_arousal") if k in heads)):
        raise ConfigError(f"{model}: trained_heads in its metadata is not an object of true/false values")
    calibration = parse_calibration(meta.get("calibration"), names, model)
    sha = meta.get(TFLITE_SHA_KEY)
    if sha is not None and not (isinstance(sha, str) and len(sha) == 64):
        raise ConfigError(f"{model}: {TFLITE_SHA_KEY} in its metadata is not a SHA-256 hex digest")
    return ModelInfo(model_file, names, _heads_from(meta, summary), tta, calibration, sha)


TFLITE_SHA_KEY = "tflite_of_model_sha256"


def file_sha256(path: str) -> str:
    """The SHA-256 hex digest of a file's bytes."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _metadata_path(model: str) -> str:
    return RunDir(model).file(LABELS) if os.path.isdir(model) else sidecar_path(model)


def update_metadata(model: str, **values) -> str:
    """Sets (or, for a None value, removes) top-level keys of a model's metadata: `labels.json` of a run directory
    or the sidecar `.json` beside a `.keras` file (created when missing). Written atomically; returns its path."""
    path = _metadata_path(model)
    meta = _read_json(path) if os.path.isfile(path) else {}
    for k, v in values.items():
        if v is None:
            meta.pop(k, None)
        else:
            meta[k] = v
    atomic_write_text(path, json.dumps(meta, indent=2) + "\n")
    return path


def stamp_tflite(model: str) -> str:
    """Records in a model's metadata that its TFLite export belongs to the `.keras` file as it is now."""
    return update_metadata(model, **{TFLITE_SHA_KEY: file_sha256(read_model_info(model).model_file)})


def check_tflite_belongs(model: str, info: ModelInfo, tflite: str) -> None:
    """Raises a one-line ModelError when `tflite` (the export beside a model) was made from another version of the
    model's `.keras` file than the one there now (a model retrained or rebuilt under the same name). An export
    without a record (made before records were kept) passes."""
    if info.tflite_model_sha256 is None or not os.path.isfile(info.model_file):
        return
    if file_sha256(info.model_file) != info.tflite_model_sha256:
        raise ModelError(f"{tflite}: exported from another version of {info.model_file} (the model changed since); "
                         f"export it again (python -m fer_keras.export) or run the model with --backend keras")


def check_expression_model(model, path: str, class_names=None) -> tuple:
    """Checks that `model` is a fer_keras expression model this package can feed and read, and that it agrees with
    its metadata.

    Returns:
        (input shape without the batch axis, number of expression classes).

    Raises:
        ModelError naming `path`: no `expression` output, an input without a fixed size, a `valence_arousal` output
        that is not 2 values, a class count that differs from the class names of its metadata (a model swapped
        under a run's labels.json), or a class count that is no label preset while the file carries no names.
    """
    names = [layer.name for layer in model.layers]
    if "expression" not in names:
        raise ModelError(f"{path}: not a fer_keras model (no output layer named 'expression'; layers end with "
                         f"{', '.join(names[-3:])})")
    shape = tuple(model.input_shape[1:]) if not isinstance(model.input_shape, list) else None
    if shape is None or len(shape) not in (3, 4) or any(d is None for d in shape):
        raise ModelError(f"{path}: input shape {model.input_shape} is not a fixed-size image (H, W, C) or clip "
                         "(T, H, W, C); fer_keras resizes faces to the model's input, so it must have one")
    k = int(model.get_layer("expression").output.shape[-1])
    check_class_count(path, k, class_names)
    if "valence_arousal" in names and int(model.get_layer("valence_arousal").output.shape[-1]) != 2:
        raise ModelError(f"{path}: the valence_arousal output has "
                         f"{int(model.get_layer('valence_arousal').output.shape[-1])} values, not 2")
    return shape, k


def check_class_count(path: str, k: int, class_names=None) -> None:
    """A model's expression output size `k` against its metadata's class names (or, without names, the presets)."""
    if class_names and len(class_names) != k:
        raise ModelError(f"{path}: the model's expression output has {k} classes but its metadata (labels.json or "
                         f"the .json beside it) names {len(class_names)} ({', '.join(class_names[:8])}): the model "
                         "and its metadata do not belong together")
    if not class_names and str(k) not in PRESETS:
        raise ModelError(f"{path}: the expression output has {k} classes, which is no label preset "
                         f"({', '.join(PRESETS)}), and no class names come with the model (labels.json or a "
                         "<model>.json beside it)")


def write_sidecar(model_file: str, class_names: List[str], trained_heads: Dict[str, bool], **extra) -> str:
    """Writes `<stem>.json` beside a standalone model (export, the shipped models)."""
    path = sidecar_path(model_file)
    atomic_write_text(path, json.dumps({"class_names": list(class_names), "trained_heads": dict(trained_heads),
                                        **extra}, indent=2) + "\n")
    return path


def write_calibration(model: str, calibration: Optional[Calibration]) -> str:
    """Stores `calibration` (None removes it) in a model's metadata: `labels.json` of a run directory, or the
    sidecar `.json` beside a `.keras` file (written with the model's class names when it has none yet). Returns the
    metadata file's path."""
    info = read_model_info(model)
    if calibration is not None and info.class_names is not None and calibration.class_names != info.class_names:
        raise ConfigError(f"{model}: the calibration's classes {calibration.class_names} differ from the model's "
                          f"{info.class_names}")
    extra = {} if calibration is None or info.class_names else {"class_names": list(calibration.class_names)}
    return update_metadata(model, calibration=None if calibration is None else calibration.to_dict(), **extra)


def load_keras_model(path: str, safe_mode: bool = True):
    """Loads a `.keras` file, by default in Keras safe mode (refuses Lambda layers, which would run arbitrary
    code from the file); errors name the file. `safe_mode=False` is the user's explicit opt-out."""
    import keras  # here, not at the top: reading a run's config must not wait for TensorFlow to import

    import fer_keras.keras_metrics  # noqa: F401  (register custom objects)
    import fer_keras.losses  # noqa: F401
    import fer_keras.models  # noqa: F401

    if not os.path.exists(path):
        raise ModelError(f"model file not found: {path}")
    if os.path.isfile(path) and path.endswith(".keras"):
        problem = model_zip_problem(path)  # Keras would say "File not found" for a truncated or foreign file
        if problem:
            raise ModelError(f"{path}: {problem}")
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=safe_mode)
    except Exception as e:  # corrupted zip, wrong format, unsafe Lambda
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "safe_mode" in msg or "Lambda" in msg:
            raise ModelError(f"{path}: cannot load model: it contains a Lambda layer (Python code stored in the "
                             "file), refused in safe mode; pass --unsafe-load only if you trust the file") from None
        raise ModelError(f"{path}: cannot load model ({msg})") from None
