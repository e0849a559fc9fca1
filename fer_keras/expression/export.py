"""Export of expression runs (the expression task's `export`): SavedModel (serving signature on raw uint8 images),
`.keras`, TFLite (float32, float16 weights, dynamic-range and int8 quantized: `TFLITE_FILES`); and one model file
outside a run (`export_model_file`). The dispatch by task is `fer_keras.export`, the command `cli_export.py`.

The SavedModel's `serving_default` takes a batch of raw uint8 images of any height/width, gray or RGB
(N,H,W,1 or N,H,W,3), converts the channels and resizes inside the graph, and returns `probabilities`,
`label_index`, `valence` and `arousal`. A second signature, `class_names`, returns the class names (also in
`assets/labels.txt`). It loads with plain `tf.saved_model.load` — no fer_keras import needed — and serves with
TensorFlow Serving:

    docker run -p 8501:8501 -v $PWD/runs/<name>/export/savedmodel:/models/fer/1 -e MODEL_NAME=fer tensorflow/serving
    curl -d '{"signature_name": "serving_default", "instances": [<H x W x 3 nested list of 0-255 ints>]}' \
        localhost:8501/v1/models/fer:predict
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Dict, Optional, Sequence

import numpy as np

from fer_keras.config import load_config
from fer_keras.data.images import decode_checked
from fer_keras.errors import ConfigError, DataError, FerError, ModelError
from fer_keras.io_utils import atomic_path, atomic_write_bytes
from fer_keras.limits import model_zip_problem
from fer_keras.model_info import load_keras_model, read_model_info, stamp_tflite, write_sidecar
from fer_keras.run_dir import EXPORT, LABELS, MODEL, RunDir
from fer_keras.tasks import TASKS
from fer_keras.tflite import keras_to_tflite

FORMATS = TASKS.get("expression").export_formats


def _serving_fn(model, size: int, channels: int, va_trained: bool = True):
    import tensorflow as tf

    def serve(images):
        x = tf.cast(images, tf.float32)
        c = tf.shape(x)[-1]
        if channels == 3:
            x = tf.cond(tf.equal(c, 1), lambda: tf.tile(x, [1, 1, 1, 3]), lambda: x[..., :3])
        else:
            x = tf.cond(tf.equal(c, 1), lambda: x[..., :1],
                        lambda: tf.reduce_sum(x[..., :3] * tf.constant([0.2989, 0.587, 0.114]), -1, keepdims=True))
        hw = tf.shape(x)[1:3]
        # Crops already at the model's size (the common serving case) skip the resize: it cost ~20% of the
        # batch-64 throughput of the 48 px model here while changing nothing.
        x = tf.cond(tf.reduce_all(tf.equal(hw, [size, size])), lambda: x,
                    lambda: tf.image.resize(x, [size, size], method="area", antialias=True))
        x = tf.ensure_shape(x, [None, size, size, channels])
        out = model(x, training=False)
        probs = tf.cast(out["expression"], tf.float32)
        va = tf.cast(out["valence_arousal"], tf.float32)
        if not va_trained:  # an untrained head serves NaN (documented in assets/model_info.json), not noise
            va = tf.fill(tf.shape(va), float("nan"))
        return {"probabilities": probs, "label_index": tf.argmax(probs, axis=-1, output_type=tf.int32),
                "valence": va[:, 0], "arousal": va[:, 1]}

    return serve


def float32_model(model):
    """The same model with every layer in float32 (weights copied). Mixed precision is a training choice; exported
    and shipped models run in float32 everywhere (bf16 math is slow or missing on many CPUs and in TFLite)."""
    import keras

    config = keras.saving.serialize_keras_object(model)

    def to_f32(o):
        if isinstance(o, dict):
            return {k: to_f32(v) for k, v in o.items()}
        if isinstance(o, list):
            return [to_f32(v) for v in o]
        return "float32" if o in ("mixed_bfloat16", "mixed_float16") else o

    def layers(m):  # an ensemble's members are nested models: their layers count too
        for layer in m.layers:
            yield layer
            if hasattr(layer, "layers"):
                yield from layers(layer)

    if all(layer.dtype_policy.name == "float32" for layer in layers(model)):
        return model
    clone = keras.saving.deserialize_keras_object(to_f32(config))
    clone.set_weights(model.get_weights())
    return clone


def export_savedmodel(model, class_names: Sequence[str], out_dir: str, trained_heads=None) -> str:
    """Writes a SavedModel with `serving_default` (uint8 images of any size) and `class_names` signatures.

    `trained_heads` (see `fer_keras.model_info`): an untrained valence_arousal head returns NaN valence/arousal,
    and `assets/model_info.json` says so."""
    import keras
    import tensorflow as tf

    _, size, _, channels = model.input_shape
    archive = keras.export.ExportArchive()
    archive.track(model)
    heads = dict(trained_heads or {})
    archive.add_endpoint("serving_default", _serving_fn(model, int(size), int(channels),
                                                        heads.get("valence_arousal", True)),
                         input_signature=[tf.TensorSpec([None, None, None, None], tf.uint8, name="images")])
    names = tf.constant(list(class_names))
    archive.add_endpoint("class_names", lambda: {"class_names": names}, input_signature=[])
    tmp = out_dir + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    archive.write_out(tmp, verbose=False)
    os.makedirs(os.path.join(tmp, "assets"), exist_ok=True)
    with open(os.path.join(tmp, "assets", "labels.txt"), "w") as f:
        f.write("\n".join(class_names) + "\n")
    with open(os.path.join(tmp, "assets", "model_info.json"), "w") as f:
        json.dump({"class_names": list(class_names), "trained_heads": heads}, f, indent=2)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    return out_dir


# TFLite weight formats: the only list of them (the export writes each; tests and docs read this).
TFLITE_FILES = {
    "float32": "model_float.tflite",    # what predict runs through LiteRT by default
    "float16": "model_float16.tflite",  # float16 weights (half the file), computed in float32: float32's outputs
    "dynamic": "model_dynamic.tflite",  # int8 weights, float activations: 4x smaller, slower on x86 XNNPACK
    "int8": "model_int8.tflite",        # int8 weights and activations (float32 in/out), calibrated on training images
}


def export_tflite(model, out_path: str, quantize=False, dynamic_batch: bool = False,
                  representative: Optional[np.ndarray] = None) -> str:
    """TFLite with a (1,H,W,C) float32 0-255 input (`dynamic_batch`: any batch size, as predict's LiteRT backend
    uses it).

    Args:
        quantize: a key of `TFLITE_FILES` (`float32`; `float16`: weights stored in half precision; `dynamic`:
            dynamic-range int8 weights; `int8`: full integer quantization of weights and activations with float32
            input and outputs); True/False mean `dynamic` / `float32`.
        representative: (N, H, W, C) 0-255 images the `int8` activation ranges are calibrated on (required for
            it; the training mix, unaugmented, as `representative_images` draws them).
    """
    import tensorflow as tf

    kind = {True: "dynamic", False: "float32"}.get(quantize, quantize)
    if kind not in TFLITE_FILES:
        raise ConfigError(f"TFLite quantization {quantize!r}: expected one of {', '.join(TFLITE_FILES)}")
    if kind == "int8" and (representative is None or len(representative) == 0):
        raise ConfigError("int8 TFLite export: needs representative images to calibrate activations")
    _, size, _, channels = model.input_shape

    def infer(x):
        out = model(x, training=False)
        return {"probabilities": tf.cast(out["expression"], tf.float32),
                "valence_arousal": tf.cast(out["valence_arousal"], tf.float32)}

    def calibration():
        for img in representative:
            yield {"image": np.asarray(img, np.float32)[None]}

    signature = [tf.TensorSpec([None if dynamic_batch else 1, size, size, channels], tf.float32, name="image")]
    data = keras_to_tflite(model, infer, signature, out_path, kind, calibration)
    atomic_write_bytes(out_path, data)
    return out_path


def representative_images(cfg, n: int = 256, seed: int = 0, shape: Optional[tuple] = None) -> np.ndarray:
    """`n` training images of a config (a run's: `RunDir(run).config()`) as (N, H, W, C), unaugmented, drawn in the
    proportions training draws its sources in: what an `int8` export calibrates its activation ranges on.

    Args:
        shape: (H, W, C) to decode them at (a model's input, e.g. an ensemble's); default the config's own.

    Raises:
        DataError: the config's training data cannot be read here.
    """
    import dataclasses

    from fer_keras.data.pipeline import load_data, make_dataset, weighted_sample  # TensorFlow: only to calibrate

    size, channels = cfg.data.image_size, cfg.data.channels
    if shape is not None and (shape[0], shape[2]) != (size, channels):
        if shape[0] != shape[1]:
            raise ConfigError(f"calibration images: a square input is expected, not {shape}")
        size, channels = int(shape[0]), int(shape[2])
    # Only n images are decoded (by the dataset below): the tables are read with file-signature checks and nothing
    # cached, instead of decoding the whole training set as a training run does.
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, image_size=size, channels=channels,
                                                            validate_images="header", cache="none"))
    data = load_data(cfg.data)
    if data.train.images is not None:  # decoded in memory already (a small dataset): nothing can fail to decode
        sample = weighted_sample(data.train, cfg.data, n, seed)
        return np.concatenate([np.asarray(x) for x, _ in make_dataset(sample, cfg, training=False, batch_size=64)])
    # Files: each decoded on its own, so a truncated file (which the header check cannot see; a run trained with
    # --skip-bad may have some) is skipped and counted instead of failing the export; a few spares are drawn.
    sample = weighted_sample(data.train, cfg.data, n + n // 4 + 4, seed)
    boxes = sample.boxes if sample.boxes is not None else np.full((len(sample), 4), np.nan, np.float32)
    images, bad = [], 0
    for path, box in zip(sample.sources, boxes):
        img, problem = decode_checked(path, np.asarray(box, np.float32), cfg.data)
        if problem:
            bad += 1
        else:
            images.append(img)
        if len(images) == n:
            break
    if len(images) < max(1, n // 2):
        raise DataError(f"calibration images: only {len(images)} of the {len(sample)} drawn training images decode "
                        f"({bad} do not): too few to calibrate int8 activations")
    if bad:
        print(f"calibration images: {bad} of the drawn training images do not decode (skipped)")
    return np.stack(images)


def tflite_predict(path: str, images: np.ndarray) -> Dict[str, np.ndarray]:
    """Runs a TFLite export one image at a time (its input is batch 1)."""
    import tensorflow as tf

    interp = tf.lite.Interpreter(model_path=path)
    runner = interp.get_signature_runner()
    probs, va = [], []
    for img in images.astype(np.float32):
        out = runner(image=img[None])
        probs.append(out["probabilities"][0]), va.append(out["valence_arousal"][0])
    return {"expression": np.array(probs), "valence_arousal": np.array(va)}


def half_precision_keras(model_file: str, out: str) -> str:
    """A copy of a `.keras` file whose float32 weights are stored in float16 (half the file, zip-deflated); Keras
    loads them back into the model's float32 variables, so it computes as before, with weights rounded to 11 bits
    (the shipped ensembles: outputs within 2e-3 of the float32 file)."""
    import tempfile
    import zipfile

    import h5py

    weights = "model.weights.h5"

    def halve(name, obj):
        if isinstance(obj, h5py.Dataset):
            data = obj[()]
            dst.create_dataset(name, data=data.astype(np.float16) if data.dtype == np.float32 else data)
        else:
            dst.require_group(name)
        dst[name].attrs.update(dict(obj.attrs))

    problem = model_zip_problem(model_file)
    if problem:
        raise ModelError(f"{model_file}: {problem}")
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(model_file) as src_zip:
        names = src_zip.namelist()
        if weights not in names:
            raise ConfigError(f"{model_file}: not a Keras 3 .keras file (no {weights} inside)")
        src_zip.extractall(tmp)
        with h5py.File(os.path.join(tmp, weights), "r") as src, h5py.File(os.path.join(tmp, "half.h5"), "w") as dst:
            dst.attrs.update(dict(src.attrs))
            src.visititems(halve)
        os.replace(os.path.join(tmp, "half.h5"), os.path.join(tmp, weights))
        with atomic_path(out) as part, zipfile.ZipFile(part, "w", zipfile.ZIP_DEFLATED) as z:
            for name in names:
                z.write(os.path.join(tmp, name), name)
    return out


def export_model_file(model_file: str, out: Optional[str], quantize: str = "float32",
                      calibration_config: Optional[str] = None) -> str:
    """One file of a `.keras` model outside a run, e.g. an ensemble (`fer_keras.models.ensemble`) or a shipped
    model: a TFLite file (any batch size; `int8` calibrates on `calibration_config`'s training images), or, for an
    `out` ending in `.keras` with `float16`, the model with its weights stored in half precision
    (`half_precision_keras`).

    Raises:
        ConfigError: no `out`, an existing `out`, `int8` without a calibration config, or a `.keras` `out` with
            another quantization than float16.
    """
    if not out or not out.endswith((".tflite", ".keras")):
        raise ConfigError(f"--out {out}: a .tflite (or, with --quantize float16, .keras) file to write is required "
                          "with --model")
    if os.path.exists(out):
        raise ConfigError(f"--out {out}: exists; an export never overwrites a file")
    if out.endswith(".keras"):
        if quantize != "float16":
            raise ConfigError(f"--out {out}: a .keras export stores float16 weights only (--quantize float16)")
        half_precision_keras(model_file, out)
        print(f"keras (float16 weights): {out} ({os.path.getsize(out) / 1e6:.1f} MB)")
        return out
    if quantize == "int8" and not calibration_config:
        raise ConfigError("--quantize int8: needs --calibration-config (the config whose training images "
                          "calibrate the activation ranges)")
    model = float32_model(load_keras_model(model_file))
    images = representative_images(load_config(calibration_config), shape=tuple(model.input_shape[1:])) \
        if quantize == "int8" else None
    export_tflite(model, out, quantize, dynamic_batch=True, representative=images)
    print(f"tflite ({quantize}): {out} ({os.path.getsize(out) / 1e6:.1f} MB)")
    if os.path.splitext(os.path.abspath(out))[0] == os.path.splitext(os.path.abspath(model_file))[0]:
        stamp_tflite(model_file)  # the .tflite beside its model: predict runs it only with this model version
    return out


def export_expression_run(run: RunDir, formats: Optional[Sequence[str]] = None) -> Dict[str, str]:
    """An expression run exports as a SavedModel (serving signature with class names), `.keras` (+ model.json) and
    TFLite in each of `TFLITE_FILES`' weight formats (any batch size; `int8` calibrated on the run's training
    images, skipped with a printed reason where they do not load)."""
    if not os.path.isfile(run.file(LABELS)):
        raise ConfigError(f"{run.path}: not a finished run directory (no {LABELS})")
    formats = list(FORMATS) if formats is None else formats
    wrong = [f for f in formats if f not in FORMATS]
    if wrong:  # e.g. compact, a detection format: checked before anything is written
        raise ConfigError(f"--format {wrong[0]}: not a format of an expression run (valid: {', '.join(FORMATS)}, "
                          "all)")
    info = read_model_info(run.path)
    if info.class_names is None:
        raise ConfigError(f"{run.path}: labels.json has no class_names")
    class_names = info.class_names
    model = float32_model(load_keras_model(info.model_file))
    out = run.file(EXPORT)
    os.makedirs(out, exist_ok=True)
    written = {}
    if "savedmodel" in formats:
        written["savedmodel"] = export_savedmodel(model, class_names, os.path.join(out, "savedmodel"),
                                                  info.trained_heads)
    if "keras" in formats:
        with atomic_path(os.path.join(out, MODEL)) as tmp:
            model.save(tmp)
        written["keras"] = os.path.join(out, MODEL)
        # Outside its run, the .keras file carries its class names and trained heads in model.json beside it.
        extra = {"calibration": info.calibration.to_dict()} if info.calibration is not None else {}
        written["keras_info"] = write_sidecar(written["keras"], class_names, info.trained_heads,
                                              run=os.path.basename(os.path.normpath(run.path)), **extra)
    if "tflite" in formats:
        # any batch size: predict's LiteRT backend runs whole batches of faces through it
        for kind, name in TFLITE_FILES.items():
            key = "tflite" if kind == "float32" else f"tflite_{kind}"
            if kind == "int8":
                try:
                    images = representative_images(run.config())
                except (FerError, OSError) as e:  # e.g. a run copied to a machine without its data
                    print(f"tflite int8: skipped, the run's training images do not load here "
                          f"({str(e).splitlines()[0]})")
                    continue
                written[key] = export_tflite(model, os.path.join(out, name), "int8", True, images)
            else:
                written[key] = export_tflite(model, os.path.join(out, name), kind, dynamic_batch=True)
        stamp_tflite(run.path)  # predict runs export/model_float.tflite only while model.keras is this version
    return written
