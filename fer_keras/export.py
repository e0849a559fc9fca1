"""Export a trained run: SavedModel (serving signature on raw uint8 images), `.keras`, TFLite (float and
dynamic-range quantized).

    python -m fer_keras.export --run runs/<name> [--format savedmodel|keras|tflite|all]

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

import argparse
import json
import os
import shutil
from typing import Dict, Optional, Sequence

import numpy as np

from fer_keras.errors import ConfigError, cli_main
from fer_keras.io_utils import atomic_path, atomic_write_bytes
from fer_keras.model_info import load_keras_model, read_model_info, write_sidecar
from fer_keras.run_dir import EXPORT, LABELS, MODEL, RunDir, run_task
from fer_keras.tasks import TASKS

FORMATS = TASKS.get("expression").export_formats
DETECTION_FORMATS = TASKS.get("detection").export_formats


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

    if all(layer.dtype_policy.name == "float32" for layer in model.layers):
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


def export_tflite(model, out_path: str, quantize: bool, dynamic_batch: bool = False) -> str:
    """TFLite with a (1,H,W,C) float32 0-255 input (`dynamic_batch`: any batch size, as predict's LiteRT backend
    uses it); `quantize` = dynamic-range (int8 weights)."""
    import tensorflow as tf

    import tempfile

    import keras

    _, size, _, channels = model.input_shape

    def infer(x):
        out = model(x, training=False)
        return {"probabilities": tf.cast(out["expression"], tf.float32),
                "valence_arousal": tf.cast(out["valence_arousal"], tf.float32)}

    # Keras 3 models convert through a SavedModel (the converter's concrete-function path loses their variables).
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", infer,
                         input_signature=[tf.TensorSpec([None if dynamic_batch else 1, size, size, channels], tf.float32,
                                                         name="image")])
    with tempfile.TemporaryDirectory() as tmp:
        archive.write_out(tmp, verbose=False)
        conv = tf.lite.TFLiteConverter.from_saved_model(tmp)
        if quantize:
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
        data = conv.convert()

    atomic_write_bytes(out_path, data)
    return out_path


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


def export_run(run: str, formats: Optional[Sequence[str]] = None) -> Dict[str, str]:
    """Exports `run/model.keras` into `run/export/` in `formats` (default: every format of the run's task);
    returns {format: path}."""
    return run_task(run).fn("export")(run, None if formats is None else list(formats))


def export_expression_run(run: str, formats: Optional[Sequence[str]] = None) -> Dict[str, str]:
    """An expression run exports as a SavedModel (serving signature with class names), `.keras` (+ model.json) and
    TFLite (float and dynamic-range quantized, any batch size)."""
    rd = RunDir(run)
    if not os.path.isfile(rd.file(LABELS)):
        raise ConfigError(f"{run}: not a finished run directory (no {LABELS})")
    formats = list(FORMATS) if formats is None else formats
    wrong = [f for f in formats if f not in FORMATS]
    if wrong:  # e.g. compact, a detection format: checked before anything is written
        raise ConfigError(f"--format {wrong[0]}: not a format of an expression run (valid: {', '.join(FORMATS)}, "
                          "all)")
    info = read_model_info(run)
    if info.class_names is None:
        raise ConfigError(f"{run}: labels.json has no class_names")
    class_names = info.class_names
    model = float32_model(load_keras_model(info.model_file))
    out = rd.file(EXPORT)
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
        written["keras_info"] = write_sidecar(written["keras"], class_names, info.trained_heads,
                                              run=os.path.basename(os.path.normpath(run)))
    if "tflite" in formats:
        # any batch size: predict's LiteRT backend runs whole batches of faces through it
        written["tflite"] = export_tflite(model, os.path.join(out, "model_float.tflite"), quantize=False,
                                          dynamic_batch=True)
        written["tflite_dynamic"] = export_tflite(model, os.path.join(out, "model_dynamic.tflite"), quantize=True,
                                                  dynamic_batch=True)
    return written


@cli_main
def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m fer_keras.export", description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True)
    p.add_argument("--format", default="all", choices=sorted(set(FORMATS + DETECTION_FORMATS)) + ["all"],
                   help="all: every format of the run's kind (detection runs: savedmodel, keras, compact)")
    a = p.parse_args(argv)
    written = export_run(a.run, None if a.format == "all" else [a.format])
    for k, v in written.items():
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(v) for f in fs) \
            if os.path.isdir(v) else os.path.getsize(v)
        print(f"{k}: {v} ({size / 1e6:.1f} MB)")
    return written


if __name__ == "__main__":
    main()
