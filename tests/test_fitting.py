"""fer_keras/fitting.py: runtime choices (device, XLA, precision), the optimizer and its schedule, the EMA of the
weights, the epoch callbacks' reports, and the one fit tail that every trainer shares."""

import json
import os

import numpy as np
import pytest

from fer_keras.fitting import resolve_runtime


@pytest.mark.parametrize("bf16_cpu", [True, False])
def test_runtime_defaults_on_cpu(monkeypatch, bf16_cpu):
    """The device is mocked, so the test means the same on a CPU and on a GPU machine."""
    from fer_keras import fitting
    from fer_keras.config import TrainConfig

    monkeypatch.setattr(fitting, "has_gpu", lambda: False)
    monkeypatch.setattr(fitting, "cpu_has_bf16", lambda: bf16_cpu)
    t = TrainConfig()
    # bf16 on CPU only where it was measured faster (registered bf16_on_cpu) and the CPU has native bf16.
    bf16 = "mixed_bfloat16" if bf16_cpu else "float32"
    assert resolve_runtime(t, "CustomCNN") == {"device": "cpu", "xla": False, "precision": bf16}
    assert resolve_runtime(t, "EfficientNetB0")["precision"] == "float32"
    assert resolve_runtime(t, "MobileNetV3Small")["precision"] == "float32"
    t.precision = "float32"
    assert resolve_runtime(t, "CustomCNN")["precision"] == "float32"
    t.precision = "auto"
    t.xla = "on"
    assert resolve_runtime(t, "CustomCNN")["xla"] is True
    t.precision = "mixed_bfloat16"
    assert resolve_runtime(t, "customcnn")["precision"] == "mixed_bfloat16"


def test_runtime_defaults_on_gpu(monkeypatch):
    """A GPU machine gets XLA and mixed_float16 by default, for every model; both can be forced off."""
    from fer_keras import fitting
    from fer_keras.config import TrainConfig

    monkeypatch.setattr(fitting, "has_gpu", lambda: True)
    t = TrainConfig()
    for name in ("CustomCNN", "EfficientNetB0", "VGG16"):
        assert resolve_runtime(t, name) == {"device": "gpu", "xla": True, "precision": "mixed_float16"}
    t.xla, t.precision = "off", "float32"
    assert resolve_runtime(t, "CustomCNN") == {"device": "gpu", "xla": False, "precision": "float32"}


def test_cosine_schedule_warmup_and_decay():
    from fer_keras.config import TrainConfig
    from fer_keras.fitting import make_optimizer

    t = TrainConfig(epochs=10, warmup_epochs=1, learning_rate=1e-2, min_learning_rate=1e-4)
    lr = make_optimizer(t, schedule_steps=100)._learning_rate  # the schedule object
    assert float(lr(0)) == pytest.approx(1e-3)  # warm-up starts at lr/10
    assert float(lr(10)) == pytest.approx(1e-2, rel=1e-3)  # end of warm-up
    assert float(lr(100)) == pytest.approx(1e-4, rel=1e-2)  # decayed to the floor


def test_ema_weights_are_judged_and_raw_weights_are_backed_up():
    """Between `enter` and `leave` the model holds the optimizer's average; after `leave` (where the backup is
    written) the raw weights; after fit, the average (Keras' finalize)."""
    import keras

    from fer_keras.config import TrainConfig
    from fer_keras.fitting import EMAWeights, make_optimizer

    class Record(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.kernels = []

        def on_epoch_end(self, epoch, logs=None):
            self.kernels.append(np.array(self.model.layers[-1].kernel))

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 4)).astype("float32"), rng.normal(size=(64, 1)).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    opt = make_optimizer(TrainConfig(epochs=3, learning_rate=0.1, ema_momentum=0.9, schedule="constant"), 3)
    model.compile(opt, "mse")
    ema, judged, kept = EMAWeights(), Record(), Record()
    averages = []

    class Average(keras.callbacks.Callback):  # what the optimizer holds as the average after `leave`
        def on_epoch_end(self, epoch, logs=None):
            averages.append(np.array(opt._model_variables_moving_average[0]))

    model.fit(x, y, epochs=3, batch_size=8, verbose=0, validation_data=(x, y),
              callbacks=[ema.enter, judged, ema.leave, kept, Average()])
    for a, j, k in zip(averages, judged.kernels, kept.kernels):
        np.testing.assert_allclose(j, a, atol=1e-6)  # judged = the average
        assert np.abs(j - k).max() > 1e-4  # the raw weights differ from it and are what training continues from
    np.testing.assert_allclose(np.array(model.layers[-1].kernel), averages[-1], atol=1e-6)


def test_batchnorm_recalibration_measures_the_average_of_batch_statistics():
    import keras

    from fer_keras.fitting import recalibrate_batchnorm

    model = keras.Sequential([keras.Input((3,)), keras.layers.BatchNormalization(momentum=0.99)])
    rng = np.random.default_rng(0)
    batches = [rng.normal(loc=k, scale=1 + k, size=(16, 3)).astype("float32") for k in range(4)]
    assert recalibrate_batchnorm(model, batches) == 4
    bn = model.layers[0]
    np.testing.assert_allclose(bn.moving_mean, np.mean([b.mean(0) for b in batches], 0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(bn.moving_variance, np.mean([b.var(0) for b in batches], 0), rtol=1e-4)
    assert bn.momentum == 0.99  # restored


def test_ema_gets_its_own_batchnorm_statistics_and_the_backup_keeps_the_raw_ones():
    """With `bn_batches`, what is judged (and checkpointed) is the average with statistics measured for it; what the
    backup keeps (after `leave`) is the raw weights with the statistics training collected."""
    import keras

    from fer_keras.config import TrainConfig
    from fer_keras.fitting import EMAWeights, make_optimizer

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x @ rng.normal(size=(4, 1))).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8), keras.layers.BatchNormalization(),
                              keras.layers.Dense(1)])
    model.compile(make_optimizer(TrainConfig(epochs=3, learning_rate=0.1, ema_momentum=0.9, schedule="constant"),
                                 3), "mse")
    recal = [x[i:i + 16] for i in range(0, 64, 16)]
    ema = EMAWeights(lambda: iter(recal))
    seen = {"judged": [], "kept": []}

    class Record(keras.callbacks.Callback):
        def __init__(self, key):
            super().__init__()
            self.key = key

        def on_epoch_end(self, epoch, logs=None):
            dense, bn = self.model.layers[0], self.model.layers[1]
            seen[self.key].append((np.array(bn.moving_mean), np.array(dense.kernel), np.array(dense.bias)))

    model.fit(x, y, epochs=3, batch_size=8, verbose=0, validation_data=(x, y),
              callbacks=[ema.enter, Record("judged"), ema.leave, Record("kept")])
    for (mean_j, kernel_j, bias_j), (mean_k, kernel_k, _) in zip(seen["judged"], seen["kept"]):
        assert np.abs(kernel_j - kernel_k).max() > 1e-4  # judged: the average; kept: the raw weights
        # the judged statistics are the averaged weights' own, on the recalibration batches
        np.testing.assert_allclose(mean_j, (np.concatenate(recal) @ kernel_j + bias_j).mean(0), rtol=1e-4, atol=1e-4)
        assert np.abs(mean_j - mean_k).max() > 1e-3  # the backup keeps the statistics training collected


def test_stop_report_says_chance_level_and_why_training_stopped(capsys):
    """The console lines of #20: a model at chance after 3 epochs, early stopping and the time limit firing."""
    import types

    from fer_keras.fitting import StopReport, TimeLimit

    early = types.SimpleNamespace(stopped_epoch=4, patience=3)
    rep = StopReport("val_expression_uar", 7, early=early)
    rep.params = {"epochs": 30}
    rep.set_model(types.SimpleNamespace(stop_training=True))
    rep.on_train_begin()
    for epoch, uar in enumerate([0.143, 0.143, 0.150, 0.3, 0.3]):
        rep.on_epoch_end(epoch, {"val_expression_uar": uar})
    rep.on_train_end()
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("warning: after 3 epochs the model is still at chance level (expression UAR 0.150")
    assert out[1].startswith("stopped: early stopping after epoch 5 of 30: val_expression_uar did not improve for 3")
    limit = TimeLimit(0.5)
    limit.stopped_at_epoch = 11
    rep = StopReport("val_score", 8, early=types.SimpleNamespace(stopped_epoch=0, patience=3), time_limit=limit)
    rep.params = {"epochs": 30}
    rep.set_model(types.SimpleNamespace(stop_training=True))
    rep.on_train_begin()
    rep.on_epoch_end(0, {"val_expression_uar": 0.5})  # learning: no chance warning
    rep.on_epoch_end(2, {"val_expression_uar": 0.5})
    rep.on_train_end()
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith("stopped: the time limit (train.time_limit_minutes = 0.5) was "
                                               "reached during epoch 12 of 30")


def test_one_fit_tail_translates_what_stops_a_fit(tmp_path):
    """fitting.fit_run (used by the expression, RetinaNet and YuNet trainers): a write failure and an undecodable
    input are one line naming the run and the command that continues it."""
    import tensorflow as tf

    from fer_keras.errors import DataError
    from fer_keras.fitting import fit_run
    from fer_keras.run_dir import RunDir

    run = RunDir(str(tmp_path / "my run"))
    os.makedirs(run.file("backup"))

    def disk_full():
        raise OSError(28, "No space left on device", run.file("history.csv"))

    with pytest.raises(DataError, match=r"cannot write into the run folder .*my run.* --resume '.*my run'"):
        fit_run(disk_full, run)

    def undecodable():
        raise tf.errors.InvalidArgumentError(None, None, "Input is empty.")

    with pytest.raises(DataError, match=r"training stopped: /x.jpg: cannot decode .* --resume"):
        fit_run(undecodable, run, find_bad_file=lambda: ("/x.jpg", "cannot decode image"))
    with pytest.raises(tf.errors.UnavailableError):  # a lost peer is a failure of multi-worker training only
        fit_run(lambda: (_ for _ in ()).throw(tf.errors.UnavailableError(None, None, "peer")), run)


def test_runtime_json_has_one_schema(tiny_run):
    rt = json.load(open(os.path.join(tiny_run, "runtime.json")))
    assert {"task", "params", "epochs_run", "train_seconds", "median_epoch_seconds", "train_images_per_second",
            "monitor", "best", "versions", "machine"} <= set(rt) and rt["task"] == "expression"
