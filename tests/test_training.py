"""Training end to end: the overfit test, the run directory contract, the CLI and its errors."""

import json
import os

import numpy as np
import pytest
import yaml
from tiny import tiny_argv

from fer_keras.cli_train import main as train_main
from fer_keras.data.pipeline import load_data, make_dataset
from fer_keras.models import MODELS
from fer_keras.expression.train import train


def test_overfit_demo_learns(tiny_cfg, demo_root):
    """The whole pipeline must clearly learn a small demo set (catches wiring bugs no unit test sees)."""
    cfg = tiny_cfg
    cfg.data.path = demo_root["csv"]
    cfg.data.labels = "8"
    cfg.data.val_fraction = cfg.data.test_fraction = 0.0
    cfg.model.widths, cfg.model.blocks, cfg.model.head_units = [16, 32], [1, 1], 32
    cfg.model.dropout = 0.0
    cfg.augment.flip = False
    cfg.augment.rotation = cfg.augment.zoom = cfg.augment.translate = 0.0
    cfg.augment.brightness = cfg.augment.contrast = 0.0
    cfg.train.epochs = 30
    cfg.train.learning_rate = 3e-3
    cfg.train.monitor = "expression_accuracy"
    data = load_data(cfg.data)
    run = train(cfg, data)
    import csv

    with open(os.path.join(run, "history.csv")) as f:
        hist = list(csv.DictReader(f))
    first, last = float(hist[0]["expression_loss"]), float(hist[-1]["expression_loss"])
    assert last < 0.5 * first, (first, last)
    import keras

    model = keras.saving.load_model(os.path.join(run, "model.keras"))
    ds = make_dataset(data.train, cfg, training=False)
    pred = model.predict(ds, verbose=0)
    acc = np.mean(pred["expression"].argmax(1) == data.train.expression)
    assert acc > 0.6, acc  # chance is 1/8
    va_err = np.abs(pred["valence_arousal"] - data.train.va).mean()
    assert va_err < np.abs(data.train.va - data.train.va.mean(0)).mean()  # VA head beats predicting the mean


def test_run_directory_contract_and_no_overwrite(tiny_cfg, demo_root, capsys):
    runs = tiny_cfg.train.runs_dir
    unnamed = tiny_argv("--data", demo_root["folder"], "--runs-dir", runs)
    args = unnamed + ["--name", "r1"]
    run = train_main(args)
    for f in ("config.yaml", "labels.json", "data_summary.json", "model.keras", "history.csv", "runtime.json",
              "state.json"):
        assert os.path.isfile(os.path.join(run, f)), f
    cfg = yaml.safe_load(open(os.path.join(run, "config.yaml")))
    assert cfg["data"]["path"] == demo_root["folder"] and cfg["train"]["epochs"] == 1
    summary = json.load(open(os.path.join(run, "data_summary.json")))
    assert summary["splits"]["train"]["samples"] > 0 and summary["splits"]["train"]["with_valence_arousal"] == 0
    assert json.load(open(os.path.join(run, "labels.json")))["class_names"][0] == "neutral"
    rt = json.load(open(os.path.join(run, "runtime.json")))
    assert rt["xla"] is (rt["device"] == "gpu")  # the default: XLA on a GPU only (CPU: slower)
    mtime = os.path.getmtime(os.path.join(run, "model.keras"))
    with pytest.raises(SystemExit) as e:
        train_main(args)  # same name again: refused, nothing touched
    assert e.value.code == 2
    assert "already finished" in capsys.readouterr().err
    assert os.path.getmtime(os.path.join(run, "model.keras")) == mtime
    # without a name, runs get fresh directories
    a = train_main(unnamed)
    b = train_main(unnamed)
    assert a != b and os.path.isdir(a) and os.path.isdir(b)


@pytest.mark.parametrize("argv,msg", [
    (["--model", "AlexNet"], "unknown model 'AlexNet'; valid: " + ", ".join(MODELS.names())),  # the registry
    (["--set", "train.epochz=1"], "unknown config key 'train.epochz'"),
    (["--labels", "6"], "unknown label preset '6'"),
    (["--data", "/nonexistent/data"], "/nonexistent/data: no such file or folder"),
    (["--format", "parquet", "--data", "."], "data.format: 'parquet' is not one of"),
    (["--config", "/nonexistent.yaml"], "config file not found"),
])
def test_cli_bad_input_one_line_exit_2(argv, msg, capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        train_main(argv + ["--runs-dir", str(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and len(err.splitlines()) == 1 and "Traceback" not in err


def _tiny_args(demo_root, runs, *extra):
    return tiny_argv("--data", demo_root["csv"], "--runs-dir", runs, *extra)


@pytest.mark.slow
def test_interrupted_named_run_resumes(demo_root, tmp_path, monkeypatch):
    """BackupAndRestore: a run that dies after epoch 2 of 4 continues at epoch 3 when the same command is rerun."""
    import keras

    import fer_keras.expression.train as T

    class Crash(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("simulated crash")

    real = T.make_callbacks
    def with_crash(*a, **k):
        cbs, logger = real(*a, **k)
        return cbs + [Crash()], logger

    monkeypatch.setattr(T, "make_callbacks", with_crash)
    args = _tiny_args(demo_root, str(tmp_path), "--epochs", "4", "--name", "resume")
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_main(args)
    run = str(tmp_path / "resume")
    assert json.load(open(os.path.join(run, "state.json")))["status"] == "running"
    monkeypatch.setattr(T, "make_callbacks", real)
    train_main(args)
    import csv

    epochs = [int(r["epoch"]) for r in csv.DictReader(open(os.path.join(run, "history.csv")))]
    assert epochs == [0, 1, 2, 3]  # epoch 1 was backed up before the crash; training resumed at epoch 2
    assert json.load(open(os.path.join(run, "state.json")))["status"] == "finished"
    assert not os.path.exists(os.path.join(run, "backup"))


def test_resume_with_changed_config_is_refused(demo_root, tmp_path, capsys):
    run = tmp_path / "x"
    run.mkdir()
    (run / "state.json").write_text('{"status": "running"}')
    from fer_keras.config import Config, save_config

    save_config(Config(), str(run / "config.yaml"))
    with pytest.raises(SystemExit):
        train_main(_tiny_args(demo_root, str(tmp_path), "--epochs", "1", "--name", "x"))
    assert "different config" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("extra", [
    ["--precision", "mixed_bfloat16", "--set", "train.schedule=plateau", "--set", "train.optimizer=sgd"],
    ["--set", "train.schedule=step", "--set", "data.balance=class_weights", "--set", "train.va_loss=both",
     "--set", "train.label_smoothing=0.1", "--set", "train.optimizer=adam"],
    ["--set", "data.balance=oversample", "--set", "train.early_stopping_patience=1", "--deterministic"],
    ["--set", "train.strategy=mirrored", "--set", "train.schedule=constant"],
    ["--xla", "on", "--precision", "mixed_bfloat16"],  # the GPU default path (XLA) must compile every metric
    ["--set", "train.ema_momentum=0.9"],
])
def test_training_options_run(demo_root, tmp_path, extra):
    run = train_main(_tiny_args(demo_root, str(tmp_path), "--epochs", "2", *extra))
    import csv

    rows = list(csv.DictReader(open(os.path.join(run, "history.csv"))))
    assert rows and all(np.isfinite(float(r["loss"])) for r in rows)
    assert "learning_rate" in rows[0] and "val_expression_uar" in rows[0]


@pytest.mark.slow
def test_time_limit_stops_training_and_keeps_a_model(demo_root, tmp_path, capsys):
    run = train_main(_tiny_args(demo_root, str(tmp_path), "--epochs", "50", "--set", "train.time_limit_minutes=0.0001"))
    rows = list(open(os.path.join(run, "history.csv")))
    assert len(rows) == 2  # header + the one epoch that the limit cut short (still validated)
    assert os.path.isfile(os.path.join(run, "model.keras"))
    assert json.load(open(os.path.join(run, "state.json")))["status"] == "stopped"  # resumable, not finished
    assert f"--resume {run}" in capsys.readouterr().out


@pytest.mark.slow
def test_time_limited_run_resumed_in_a_second_process_has_one_row_per_epoch(demo_root, tmp_path):
    """The spanning-sessions workflow: a time limit stops the run, `--resume` in a new process (with a new limit)
    finishes it; every epoch has exactly one history row and the run ends finished."""
    import csv
    import subprocess
    import sys

    run = train_main(_tiny_args(demo_root, str(tmp_path), "--epochs", "3", "--name", "span",
                                "--set", "train.time_limit_minutes=0.0001"))
    assert json.load(open(os.path.join(run, "state.json")))["status"] == "stopped"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, os.path.join(root, "train_model.py"), "--resume", run,
                           "--set", "train.time_limit_minutes=30"], capture_output=True, text=True, cwd=root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    epochs = [int(r["epoch"]) for r in csv.DictReader(open(os.path.join(run, "history.csv")))]
    assert epochs == [0, 1, 2]
    assert json.load(open(os.path.join(run, "state.json")))["status"] == "finished"
    assert not os.path.exists(os.path.join(run, "backup"))


@pytest.mark.slow
def test_resume_refuses_a_changed_model_but_takes_a_new_time_limit(demo_root, tmp_path, capsys):
    run = train_main(_tiny_args(demo_root, str(tmp_path), "--epochs", "2", "--name", "r",
                                "--set", "train.time_limit_minutes=0.0001"))
    with pytest.raises(SystemExit) as e:
        train_main(["--resume", run, "--set", "train.learning_rate=0.1"])
    assert e.value.code == 2 and "drop --set train.learning_rate" in capsys.readouterr().err


@pytest.mark.slow
def test_skip_bad_lists_skipped_samples(demo_root, tmp_path):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(demo_root["folder"], root)
    (root / "happy" / "broken.png").write_bytes(b"")
    run = train_main(tiny_argv("--data", str(root), "--runs-dir", str(tmp_path / "runs"), "--skip-bad"))
    text = open(os.path.join(run, "skipped.csv")).read()
    assert "broken.png" in text and "empty file" in text
    assert json.load(open(os.path.join(run, "data_summary.json")))["skipped_bad"] == 1


def _read_history(run):
    import csv

    return [{k: v for k, v in r.items() if k != "epoch_seconds"} for r in csv.DictReader(
        open(os.path.join(run, "history.csv")))]


@pytest.mark.slow
@pytest.mark.parametrize("flag", [[], ["--deterministic"]], ids=["default", "op-determinism"])
def test_reruns_are_bit_identical(demo_root, tmp_path, flag):
    """Same command, same history and weights: on CPU also without `--deterministic` (data order and augmentation
    are keyed by seed, epoch and batch; the parallel tf.data maps keep their order)."""
    import keras

    args = _tiny_args(demo_root, str(tmp_path), "--epochs", "2", *flag,
                      "--set", "augment.blur_prob=0.5", "--set", "augment.erasing_prob=0.5")
    a, b = train_main(args + ["--name", "a"]), train_main(args + ["--name", "b"])
    assert _read_history(a) == _read_history(b)
    for wa, wb in zip(*[keras.saving.load_model(os.path.join(r, "model.keras")).get_weights() for r in (a, b)]):
        np.testing.assert_array_equal(wa, wb)


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(demo_root, tmp_path):
    """Kill training with SIGKILL during epoch 3, rerun the same command: it resumes from the last finished epoch,
    runs the same number of epochs, and ends with the weights of an uninterrupted run (default mode, without
    --deterministic)."""
    import signal
    import subprocess
    import sys
    import time

    import keras

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    common = _tiny_args(demo_root, str(tmp_path), "--epochs", "4",
                        "--set", "model.widths=[16]", "--set", "data.batch_size=4")
    cmd = [sys.executable, os.path.join(repo, "train_model.py")] + common
    env = {**os.environ, "PYTHONPATH": repo}
    ref = subprocess.run(cmd + ["--name", "ref"], env=env, capture_output=True, timeout=600)
    assert ref.returncode == 0, ref.stderr[-1500:]
    ref_epoch_s = json.load(open(tmp_path / "ref" / "runtime.json"))["median_epoch_seconds"]
    proc = subprocess.Popen(cmd + ["--name", "killed"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    hist = tmp_path / "killed" / "history.csv"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if hist.exists() and len(hist.read_text().splitlines()) >= 3:  # header + 2 finished epochs
            time.sleep(0.4 * ref_epoch_s)  # into epoch 3
            break
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(hist.read_text().splitlines()) == 3, "killed after epoch 3 finished, not during it"
    assert json.load(open(tmp_path / "killed" / "state.json"))["status"] == "running"
    again = subprocess.run(cmd + ["--name", "killed"], env=env, capture_output=True, timeout=600)
    assert again.returncode == 0, again.stderr[-1500:]
    epochs = [int(r["epoch"]) for r in _read_history(str(tmp_path / "killed"))]
    assert epochs[-1] == 3 and sorted(set(epochs)) == [0, 1, 2, 3]
    w_ref = keras.saving.load_model(str(tmp_path / "ref" / "model.keras")).get_weights()
    w_res = keras.saving.load_model(str(tmp_path / "killed" / "model.keras")).get_weights()
    for a, b in zip(w_ref, w_res):
        np.testing.assert_array_equal(a, b)
    assert _read_history(str(tmp_path / "ref"))[-1] == _read_history(str(tmp_path / "killed"))[-1]


@pytest.mark.slow
def test_interrupted_unnamed_run_resumes_with_the_printed_command(demo_root, tmp_path, monkeypatch, capsys):
    """Ctrl-C after epoch 2 of an unnamed run prints `--resume <run>`; that command finishes the same folder with
    one history row per epoch."""
    import csv as _csv

    import keras

    from fer_keras.expression import train as training
    from fer_keras.cli_train import main as train_main
    from tiny import tiny_argv

    class StopAfter(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    real = training.make_callbacks

    def with_interrupt(*a, **k):
        callbacks, logger = real(*a, **k)
        return callbacks + [StopAfter()], logger

    monkeypatch.setattr(training, "make_callbacks", with_interrupt)
    argv = tiny_argv("--data", demo_root["csv"], "--labels", "7", "--runs-dir", str(tmp_path), "--epochs", "4")
    with pytest.raises(SystemExit) as e:
        train_main(argv)
    assert e.value.code == 130
    err = capsys.readouterr().err
    line = next(ln for ln in err.splitlines() if "train_model.py --resume" in ln)
    run = line.split("--resume", 1)[1].strip()
    assert os.path.isdir(run) and os.path.dirname(run) == str(tmp_path)
    monkeypatch.setattr(training, "make_callbacks", real)
    assert train_main(["--resume", run]) == run
    with open(os.path.join(run, "history.csv")) as f:
        epochs = [int(r["epoch"]) for r in _csv.DictReader(f)]
    assert epochs == [0, 1, 2, 3]
    with pytest.raises(SystemExit):
        train_main(["--resume", run])  # finished: nothing to resume
    assert "already finished" in capsys.readouterr().err


@pytest.mark.slow
def test_failed_write_at_an_epoch_end_redoes_that_epoch(demo_root, tmp_path, monkeypatch, capsys):
    """The checkpoint write of epoch 2 fails (a full disk, a read-only folder): the error names the run folder and
    the command that continues it; continuing redoes epoch 2, and history.csv has one row per epoch."""
    import csv as _csv

    from fer_keras import fitting
    from fer_keras.cli_train import main as train_main
    from tiny import tiny_argv

    real = fitting.BestModelCheckpoint.on_epoch_end

    def failing(self, epoch, logs=None):
        if epoch == 1:
            raise PermissionError(13, "Permission denied", os.path.join(os.path.dirname(self.path), "x.tmp"))
        return real(self, epoch, logs)

    monkeypatch.setattr(fitting.BestModelCheckpoint, "on_epoch_end", failing)
    argv = tiny_argv("--data", demo_root["csv"], "--labels", "7", "--runs-dir", str(tmp_path), "--epochs", "3",
                     "--name", "w")
    with pytest.raises(SystemExit) as e:
        train_main(argv)
    run = os.path.join(str(tmp_path), "w")
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"cannot write into the run folder {run}" in err and f"--resume {run}" in err
    monkeypatch.setattr(fitting.BestModelCheckpoint, "on_epoch_end", real)
    train_main(["--resume", run])
    with open(os.path.join(run, "history.csv")) as f:
        assert [int(r["epoch"]) for r in _csv.DictReader(f)] == [0, 1, 2]


@pytest.mark.slow
@pytest.mark.parametrize("folder", ["my run", "."])
def test_resume_continues_exactly_that_folder(demo_root, tmp_path, monkeypatch, capsys, folder):
    """`--resume 'runs/my run'` and `--resume .` continue that folder (not a new run named by its slug), and the
    printed command quotes the path so that a shell keeps it one word."""
    import shlex

    runs = tmp_path / "runs"
    run = train_main(_tiny_args(demo_root, str(runs), "--epochs", "2", "--name", "span",
                                "--set", "train.time_limit_minutes=0.0001"))
    target = runs / "my run"
    os.rename(run, target)
    out = capsys.readouterr().out
    if folder == ".":
        monkeypatch.chdir(target)
        arg = "."
    else:
        arg = str(target)
    done = train_main(["--resume", arg, "--set", "train.time_limit_minutes=30"])
    assert os.path.abspath(done) == str(target) and sorted(os.listdir(runs)) == ["my run"]
    assert json.load(open(target / "state.json"))["status"] == "finished"
    assert "--resume " + shlex.quote(run) in out  # the printed command of the first sitting, quoted


@pytest.mark.slow
def test_resume_of_a_run_being_trained_is_refused(demo_root, tmp_path, capsys):
    """One writer per run, named or not: `--resume` while another live process holds the run is one line naming
    it; the evaluation note does not suggest `--resume` then."""
    from fer_keras.run_dir import newest_run, run_lock

    runs = tmp_path / "runs"
    run = train_main(_tiny_args(demo_root, str(runs), "--epochs", "2", "--set", "train.time_limit_minutes=0.0001"))
    capsys.readouterr()
    with run_lock(run):  # what the first writer holds while it trains (an unnamed run too)
        with pytest.raises(SystemExit) as e:
            train_main(["--resume", run])
        assert e.value.code == 2
        assert f"is being trained right now by process {os.getpid()}" in capsys.readouterr().err
        assert newest_run(str(runs)) is None
        note = capsys.readouterr().err
        assert "being trained right now" in note and "--resume" not in note
    newest_run(str(runs))
    assert "--resume" in capsys.readouterr().err  # no live writer any more: resuming is the advice


@pytest.mark.slow
def test_a_damaged_backup_is_a_read_error_naming_it(demo_root, tmp_path, capsys):
    """A truncated backup is reported as what it is (a damaged backup that cannot be read), not as an unwritable
    run folder with advice that repeats the failing command."""
    run = train_main(_tiny_args(demo_root, str(tmp_path), "--epochs", "3", "--name", "dmg",
                                "--set", "train.time_limit_minutes=0.0001"))
    weights = [os.path.join(r, f) for r, _, fs in os.walk(os.path.join(run, "backup")) for f in fs
               if f.endswith(".h5")]
    assert weights
    for w in weights:
        with open(w, "r+b") as f:
            f.truncate(100)
    capsys.readouterr()
    history = open(os.path.join(run, "history.csv")).read()
    with pytest.raises(SystemExit) as e:
        train_main(["--resume", run, "--set", "train.time_limit_minutes=30"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1
    assert "backup cannot be read" in err and "cannot write" not in err
    assert open(os.path.join(run, "history.csv")).read() == history  # the failed resume deleted nothing


@pytest.mark.slow
def test_sigkill_during_the_backup_write_then_resume(demo_root, tmp_path):
    """`kill -9` while the third epoch's backup is being written (half the weights file on disk): the resume
    continues from the second epoch's backup, and history.csv ends with one row per epoch."""
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    args = _tiny_args(demo_root, str(tmp_path), "--epochs", "4", "--name", "k")
    script = f"""
import os, signal, sys
import keras
from fer_keras.cli_train import main
real = keras.Model.save_weights
def dying(self, filepath, *a, **k):
    if "backup" in str(filepath) and "epoch0003" in str(filepath):
        real(self, filepath, *a, **k)
        size = os.path.getsize(filepath)
        with open(filepath, "r+b") as f:
            f.truncate(size // 2)  # the write is half done
        os.kill(os.getpid(), signal.SIGKILL)
    return real(self, filepath, *a, **k)
keras.Model.save_weights = dying
main({args!r})
"""
    env = {**os.environ, "PYTHONPATH": repo}
    died = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=600)
    assert died.returncode == -9, died.stderr[-1500:]
    run = tmp_path / "k"
    backup = sorted(os.listdir(run / "backup"))
    assert [f for f in backup if not f.startswith(".")] == ["epoch0002.weights.h5", "training_metadata.json"]
    assert len(_read_history(str(run))) == 3  # epoch 3's row was written before its backup
    again = subprocess.run([sys.executable, os.path.join(repo, "train_model.py"), "--resume", str(run)], env=env,
                           capture_output=True, timeout=600)
    assert again.returncode == 0, again.stderr[-1500:]
    assert [int(r["epoch"]) for r in _read_history(str(run))] == [0, 1, 2, 3]
    assert not os.path.exists(run / "backup")


@pytest.mark.parametrize("change, words", [("key", "unknown config key 'train.removed_key'"),
                                           ("version", "config version 99")])
def test_resume_of_a_run_whose_config_no_longer_loads_is_one_line(tmp_path, capsys, change, words):
    from fer_keras.config import Config, save_config

    run = tmp_path / "old"
    run.mkdir()
    save_config(Config(), str(run / "config.yaml"))
    (run / "state.json").write_text('{"status": "stopped"}')
    text = (run / "config.yaml").read_text()
    text = text.replace("train:\n", "train:\n  removed_key: 1\n") if change == "key" else \
        "version: 99\n" + "\n".join(ln for ln in text.splitlines() if not ln.startswith("version:"))
    (run / "config.yaml").write_text(text)
    with pytest.raises(SystemExit) as e:
        train_main(["--resume", str(run)])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1
    assert "no longer loads in this fer_keras version" in err and words in err
