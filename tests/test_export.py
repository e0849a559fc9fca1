"""Export: each format reloaded and compared with the Keras model; the SavedModel from a process that never
imports fer_keras. Tolerances: SavedModel and float TFLite 1e-5 (same float32 graph), dynamic-range and int8 TFLite 0.1
on probabilities (int8 weights; int8 activations calibrated on the run's training images)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tiny import tiny_argv
from fer_keras.cli_train import main as train_main
from fer_keras.model_info import load_keras_model
from fer_keras.cli_export import main as export_main
from fer_keras.export import export_run
from fer_keras.expression.export import tflite_predict


@pytest.fixture(scope="module")
def exported(tmp_path_factory, demo_root):
    runs = str(tmp_path_factory.mktemp("runs"))
    run = train_main(tiny_argv("--data", demo_root["csv"], "--labels", "5", "--runs-dir", runs,
                               "--precision", "float32"))  # exact comparisons below (bf16: the last test)
    return run, export_run(run)


@pytest.mark.slow
def test_savedmodel_in_plain_tensorflow_process(exported, tmp_path):
    run, paths = exported
    model = load_keras_model(os.path.join(run, "model.keras"))
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (3, 32, 32, 3)).astype(np.uint8)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "gray.npy", rng.integers(0, 256, (2, 50, 70, 1)).astype(np.uint8))
    script = f"""
import json, sys, numpy as np, tensorflow as tf
m = tf.saved_model.load({paths['savedmodel']!r})
out = m.signatures["serving_default"](images=tf.constant(np.load({str(tmp_path / 'x.npy')!r})))
gray = m.signatures["serving_default"](images=tf.constant(np.load({str(tmp_path / 'gray.npy')!r})))
names = [n.decode() for n in m.signatures["class_names"]()["class_names"].numpy()]
json.dump({{"probs": out["probabilities"].numpy().tolist(), "label": out["label_index"].numpy().tolist(),
           "valence": out["valence"].numpy().tolist(), "arousal": out["arousal"].numpy().tolist(),
           "gray_shape": list(gray["probabilities"].shape), "names": names,
           "fer_keras_imported": any(k.startswith("fer_keras") for k in sys.modules)}}, sys.stdout)
"""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ""}
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["fer_keras_imported"] is False
    ref = model.predict(x.astype("float32"), verbose=0)
    np.testing.assert_allclose(got["probs"], ref["expression"], atol=1e-5)
    np.testing.assert_allclose(got["valence"], ref["valence_arousal"][:, 0], atol=1e-5)
    np.testing.assert_allclose(got["arousal"], ref["valence_arousal"][:, 1], atol=1e-5)
    assert got["label"] == ref["expression"].argmax(1).tolist()
    assert got["gray_shape"] == [2, 5]
    assert got["names"] == ["neutral", "happy", "sad", "surprise", "anger"]
    assert open(os.path.join(paths["savedmodel"], "assets", "labels.txt")).read().split() == got["names"]


def test_keras_and_tflite_exports_match(exported):
    run, paths = exported
    model = load_keras_model(os.path.join(run, "model.keras"))
    x = np.random.default_rng(1).integers(0, 256, (4, 32, 32, 3)).astype("float32")
    ref = model.predict(x, verbose=0)
    again = load_keras_model(paths["keras"]).predict(x, verbose=0)
    np.testing.assert_allclose(again["expression"], ref["expression"], atol=1e-6)
    flt = tflite_predict(paths["tflite"], x)
    np.testing.assert_allclose(flt["expression"], ref["expression"], atol=1e-5)
    np.testing.assert_allclose(flt["valence_arousal"], ref["valence_arousal"], atol=1e-5)
    half = tflite_predict(paths["tflite_float16"], x)  # float16 weights: float32's outputs to 1e-2
    np.testing.assert_allclose(half["expression"], ref["expression"], atol=1e-2)
    assert os.path.getsize(paths["tflite_float16"]) < os.path.getsize(paths["tflite"])
    q = tflite_predict(paths["tflite_dynamic"], x)
    np.testing.assert_allclose(q["expression"], ref["expression"], atol=0.1)
    assert os.path.getsize(paths["tflite_dynamic"]) < os.path.getsize(paths["tflite"])
    # int8 weights and activations, calibrated on the run's own training images
    q8 = tflite_predict(paths["tflite_int8"], x)
    np.testing.assert_allclose(q8["expression"], ref["expression"], atol=0.1)
    np.testing.assert_allclose(q8["valence_arousal"], ref["valence_arousal"], atol=0.1)
    assert os.path.getsize(paths["tflite_int8"]) < os.path.getsize(paths["tflite"])


def test_tflite_quantization_names_come_from_the_registry(exported, tmp_path):
    from fer_keras.errors import ConfigError
    from fer_keras.expression.export import TFLITE_FILES, export_tflite

    run, paths = exported
    assert {os.path.basename(paths[k]) for k in ("tflite", "tflite_float16", "tflite_dynamic", "tflite_int8")} == \
        set(TFLITE_FILES.values())
    model = load_keras_model(os.path.join(run, "model.keras"))
    with pytest.raises(ConfigError, match="expected one of float32, float16, dynamic, int8"):
        export_tflite(model, str(tmp_path / "m.tflite"), "int4")
    with pytest.raises(ConfigError, match="needs representative images"):
        export_tflite(model, str(tmp_path / "m.tflite"), "int8")
    assert not os.path.exists(tmp_path / "m.tflite")


def test_train_export_flag_uses_the_same_exporter(demo_root, tmp_path):
    run = train_main(tiny_argv("--data", demo_root["csv"], "--runs-dir", str(tmp_path), "--export", "keras"))
    assert os.path.isfile(os.path.join(run, "export", "model.keras"))
    assert not os.path.exists(os.path.join(run, "export", "savedmodel"))


def test_export_cli_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        export_main(["--run", str(tmp_path)])
    assert e.value.code == 2 and "not a finished run directory" in capsys.readouterr().err


def test_mixed_precision_models_export_in_float32():
    import keras

    from fer_keras.config import ModelConfig
    from fer_keras.expression.export import float32_model
    from fer_keras.models import build_model

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        m = build_model(ModelConfig(name="CustomCNN", widths=[8], blocks=[1]), 7, (32, 32, 1))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    f32 = float32_model(m)
    assert {layer.dtype_policy.name for layer in f32.layers} == {"float32"}
    x = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 1)).astype("float32")
    a = np.asarray(m(x)["expression"], np.float32)
    b = np.asarray(f32(x)["expression"])
    np.testing.assert_allclose(a, b, atol=0.02)  # bf16 rounding of the original; same weights
    assert float32_model(f32) is f32


def test_an_ensemble_of_a_bf16_trained_member_exports_in_float32(tmp_path):
    """The members' own layers count: an ensemble whose member was trained in mixed_bfloat16 (its top-level layers
    all float32) becomes float32 throughout and converts to TFLite (int8 conversion failed on the bf16 ops)."""
    import keras

    from fer_keras.config import ModelConfig
    from fer_keras.expression.export import export_tflite, float32_model
    from fer_keras.models import build_model
    from fer_keras.models.ensemble import build_ensemble

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        bf16 = build_model(ModelConfig(name="CustomCNN", widths=[8], blocks=[1]), 8, (32, 32, 1))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    plain = build_model(ModelConfig(name="CustomCNN", widths=[8], blocks=[1]), 8, (32, 32, 1))
    ens = build_ensemble([plain, bf16])
    assert {layer.dtype_policy.name for layer in ens.layers} == {"float32"}  # the bf16 is inside a member
    f32 = float32_model(ens)
    assert f32 is not ens
    inner = [layer for m in f32.layers if hasattr(m, "layers") for layer in m.layers]
    assert inner and {layer.dtype_policy.name for layer in inner} == {"float32"}
    rep = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 1)).astype("float32")
    path = export_tflite(f32, str(tmp_path / "e.tflite"), quantize="int8", representative=rep)
    assert os.path.getsize(path) > 0


def test_compact_is_refused_for_an_expression_run(exported, capsys):
    run, _ = exported
    before = sorted(os.listdir(os.path.join(run, "export")))
    with pytest.raises(SystemExit) as e:
        export_main(["--run", run, "--format", "compact"])
    assert e.value.code == 2 and "--format compact: not a format of an expression run" in capsys.readouterr().err
    assert sorted(os.listdir(os.path.join(run, "export"))) == before


def test_a_keras_file_with_float16_weights_computes_as_the_float32_one(exported, tmp_path, capsys):
    """`export --model X.keras --quantize float16 --out Y.keras`: half the weights' bytes, loaded back into float32
    variables, the same outputs to 1e-2; other quantizations to .keras and an existing output are refused."""
    run, _ = exported
    src = os.path.join(run, "model.keras")
    out = str(tmp_path / "half.keras")
    export_main(["--model", src, "--quantize", "float16", "--out", out])
    half = load_keras_model(out)
    assert {v.dtype for v in half.weights} == {"float32"}
    assert os.path.getsize(out) < 0.7 * os.path.getsize(src)
    x = np.random.default_rng(2).integers(0, 256, (4, 32, 32, 3)).astype("float32")
    ref = load_keras_model(src).predict(x, verbose=0)
    got = half.predict(x, verbose=0)
    np.testing.assert_allclose(got["expression"], ref["expression"], atol=1e-2)
    np.testing.assert_allclose(got["valence_arousal"], ref["valence_arousal"], atol=1e-2)
    capsys.readouterr()
    for argv, msg in ((["--quantize", "int8", "--out", str(tmp_path / "q.keras")], "float16 weights only"),
                      (["--quantize", "float16", "--out", out], "never overwrites")):
        with pytest.raises(SystemExit) as e:
            export_main(["--model", src, *argv])
        assert e.value.code == 2 and msg in capsys.readouterr().err


def test_a_failed_conversion_is_one_line(monkeypatch):
    """The converter's log and a failure's dump stay off the console: one ModelError naming the model and the
    converter's last error line."""
    import os as _os

    from fer_keras.errors import ModelError
    from fer_keras.tflite import convert_quietly

    class Failing:
        def convert(self):
            _os.write(2, b"loc(fused): error: 'tf.BadOp' op is neither a custom op nor a flex op\n" * 400)
            raise RuntimeError("ConverterError: see above")

    class Quiet:
        def convert(self):
            _os.write(2, b"W0000 converter noise\n")
            return b"tflite bytes"

    with pytest.raises(ModelError) as e:
        convert_quietly(Failing(), "m.keras")
    assert "m.keras: TFLite conversion failed" in str(e.value) and "neither a custom op" in str(e.value)
    assert "\n" not in str(e.value)
    assert convert_quietly(Quiet(), "m.keras") == b"tflite bytes"


def test_int8_calibration_skips_truncated_images(tmp_path, capsys):
    """A training folder with truncated JPEGs (the header check passes them): calibration decodes each image on its
    own, skips and counts the bad ones, and returns the images it asked for."""
    import cv2

    from fer_keras.config import Config
    from fer_keras.expression.export import representative_images

    rng = np.random.default_rng(0)
    for cls in ("happy", "sad"):
        (tmp_path / cls).mkdir()
        for i in range(10):
            path = tmp_path / cls / f"{i}.jpg"
            cv2.imwrite(str(path), rng.integers(0, 256, (40, 40, 3)).astype(np.uint8))
            if i < 4:
                data = path.read_bytes()
                path.write_bytes(data[:len(data) * 3 // 5])  # truncated: its header still reads
    cfg = Config()
    cfg.data.path, cfg.data.image_size, cfg.data.val_fraction, cfg.data.test_fraction = str(tmp_path), 32, 0.0, 0.0
    cfg.data.validate_images = "header"
    images = representative_images(cfg, n=8)
    assert 4 <= len(images) <= 8 and images.shape[1:] == (32, 32, 3)  # 14 drawn (with spares), the bad ones skipped
    assert "do not decode (skipped)" in capsys.readouterr().out
