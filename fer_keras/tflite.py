"""Keras -> TFLite, written once for every model the project exports (expression models, YuNet): the converter run
quietly (its log lines and deprecation warnings are kept off the console), and a failed conversion is one error line
(the converter's own last error line), not hundreds of lines of MLIR dump."""

from __future__ import annotations

import re
import warnings

from fer_keras.errors import ModelError, stderr_captured


TFLITE_OPTIMIZATIONS = ("float32", "dynamic", "float16", "int8")


def keras_to_tflite(model, endpoint, input_signature, what: str, optimize: str = "float32",
                    representative=None) -> bytes:
    """The TFLite flatbuffer of a Keras 3 model's `endpoint`.

    Keras 3 models convert through a SavedModel (the converter's concrete-function path loses their variables).

    Args:
        model: the Keras model whose variables `endpoint` uses.
        endpoint: a function of the inputs described by `input_signature` (returning a tensor or a dict of them).
        input_signature: a list of `tf.TensorSpec`.
        what: names the model in errors (e.g. the output path).
        optimize: `float32`; `dynamic` (int8 weights, float activations); `float16` (half-precision weights);
            `int8` (int8 weights and activations, calibrated on `representative`).
        representative: for `int8`, a callable yielding the converter's representative inputs.

    Raises:
        ModelError: a failed conversion, in one line.
    """
    import tempfile

    import keras
    import tensorflow as tf

    if optimize not in TFLITE_OPTIMIZATIONS:
        raise ValueError(f"optimize {optimize!r}: expected one of {', '.join(TFLITE_OPTIMIZATIONS)}")
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", endpoint, input_signature=input_signature)
    with tempfile.TemporaryDirectory() as tmp:
        archive.write_out(tmp, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        if optimize != "float32":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if optimize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if optimize == "int8":
            converter.representative_dataset = representative
        return convert_quietly(converter, what)


def convert_quietly(converter, what: str) -> bytes:
    """`converter.convert()` (a `tf.lite.TFLiteConverter`) with its output captured.

    Raises:
        ModelError: naming `what` (the model being converted) and the converter's reason, in one line.
    """
    with warnings.catch_warnings(), stderr_captured() as log:
        warnings.simplefilter("ignore")
        try:
            return converter.convert()
        except Exception as e:  # noqa: BLE001 - the converter raises several kinds; all become one line
            log.seek(0)
            text = log.read().decode("utf-8", "replace") + "\n" + str(e)
            errors = [ln.strip() for ln in text.splitlines() if re.search(r"\berror\b", ln, re.I) and ln.strip()]
            reason = (errors[-1] if errors else (str(e).strip().splitlines() or [type(e).__name__])[-1])[:300]
            raise ModelError(f"{what}: TFLite conversion failed ({reason})") from None
