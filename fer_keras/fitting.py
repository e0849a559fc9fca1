"""The fitting path shared by every task (expression and detection runs): runtime choices (device, XLA,
precision, strategy), the optimizer and its schedule, and the epoch callbacks (checkpoint, history, backup for
resuming, seeding, time limit, stop reports, the short epoch line).

Task code (the wings: `expression/` and `detection/`) builds its data, model and losses, and fits
through these; nothing here knows which task it serves.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from typing import Optional

import keras
import numpy as np
import tensorflow as tf

from fer_keras.config import Config
from fer_keras.data.augment import epoch_seed
from fer_keras.distributed import (follow_the_chief_callback, lost_worker_message, make_multiworker_strategy,
                                   parse_tf_config)
from fer_keras.errors import DataError, describe_os_error
from fer_keras.io_utils import atomic_path
from fer_keras.keras_compat import seed_generators
from fer_keras.models import MODELS
from fer_keras.run_dir import BACKUP, RUNTIME, RunDir, resume_command, write_json


# === Runtime choices ===

def has_gpu() -> bool:
    return bool(tf.config.list_physical_devices("GPU"))


def cpu_has_bf16() -> bool:
    """True when the CPU has native bfloat16 (AVX512_BF16 or AMX), where mixed_bfloat16 can pay off."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_runtime(train_cfg, model_name: str) -> dict:
    """Chooses XLA and precision for this device and model.

    XLA: `auto` = on with a GPU, off on CPU (measured 3-7x slower for training on this CPU, where oneDNN is faster).
    Precision: `auto` = mixed_float16 on GPU; on CPU mixed_bfloat16 only for models registered with
    `bf16_on_cpu=True` (VGG16, ResNet50, CustomCNN: measured faster, benchmarks/RESULTS.md) and only if the CPU
    has native bf16, else float32.
    """
    gpu = has_gpu()
    xla = {"on": True, "off": False}.get(train_cfg.xla, gpu)
    precision = train_cfg.precision
    if precision == "auto":
        if gpu:
            precision = "mixed_float16"
        elif getattr(MODELS.get(model_name), "bf16_on_cpu", False) and cpu_has_bf16():
            precision = "mixed_bfloat16"
        else:
            precision = "float32"
    return {"device": "gpu" if gpu else "cpu", "xla": bool(xla), "precision": precision}


def make_strategy(name: str) -> tf.distribute.Strategy:
    """`default` (one device), `mirrored` (all local GPUs; without GPUs, all logical CPU devices), `multiworker`
    (one replica per worker of the cluster in TF_CONFIG, each mirroring its local GPUs)."""
    if name == "mirrored":
        if not tf.config.list_logical_devices("GPU"):
            cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
            return tf.distribute.MirroredStrategy(cpus if len(cpus) > 1 else None)
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":  # created at start-up by distributed.start_worker (train_model.py does it)
        parse_tf_config()
        return make_multiworker_strategy()
    return tf.distribute.get_strategy()


def make_optimizer(t, schedule_steps: int):
    lr = t.learning_rate
    if t.schedule == "cosine":
        warm = t.warmup_epochs * schedule_steps // max(t.epochs, 1)
        total = max(schedule_steps - warm, 1)
        lr = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=t.learning_rate if warm == 0 else t.learning_rate * 0.1, decay_steps=total,
            alpha=min(t.min_learning_rate / t.learning_rate, 1.0),
            warmup_target=t.learning_rate if warm else None, warmup_steps=warm)
    ema = {"use_ema": True, "ema_momentum": t.ema_momentum} if t.ema_momentum > 0 else {}
    if t.optimizer == "sgd":
        return keras.optimizers.SGD(lr, momentum=t.momentum, nesterov=True, weight_decay=t.weight_decay or None,
                                    **ema)
    if t.optimizer == "adam":
        return keras.optimizers.Adam(lr, **ema)
    return keras.optimizers.AdamW(lr, weight_decay=t.weight_decay, **ema)


# === Epoch callbacks ===

class BestModelCheckpoint(keras.callbacks.Callback):
    """Saves the model to `path` at the end of every epoch that improves `monitor` (as Keras' ModelCheckpoint with
    save_best_only), written to a temp file renamed into place so a kill never leaves a broken model.

    Args:
        path: the `.keras` file.
        monitor: the epoch log to watch; an epoch without it is skipped with Keras' warning.
        mode: `max` or `min`.
        best: the best value so far (a resumed run's, so its first epoch cannot overwrite a better model).
    """

    def __init__(self, path: str, monitor: str, mode: str = "max", best: Optional[float] = None):
        super().__init__()
        self.path, self.monitor, self.mode = path, monitor, mode
        self.best = best if best is not None else (-np.inf if mode == "max" else np.inf)

    def on_epoch_end(self, epoch, logs=None):
        current = (logs or {}).get(self.monitor)
        if current is None:
            warnings.warn(f"Can save best model only with {self.monitor} available, skipping.", stacklevel=2)
            return
        current = float(current)
        if current > self.best if self.mode == "max" else current < self.best:  # NaN never improves
            self.best = current
            with atomic_path(self.path) as tmp:
                self.model.save(tmp, overwrite=True)


class RunLogger(keras.callbacks.Callback):
    """Adds the learning rate and epoch time to the logs (so CSVLogger/TensorBoard record them)."""

    def __init__(self):
        super().__init__()
        self.epoch_times = []
        self._t0 = None

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        lr = self.model.optimizer.learning_rate
        logs["learning_rate"] = float(keras.ops.convert_to_numpy(lr))
        dt = time.perf_counter() - (self._t0 or time.perf_counter())
        self.epoch_times.append(dt)
        logs["epoch_seconds"] = dt


class EpochLine(keras.callbacks.Callback):
    """One short line per epoch for logs (non-terminal output): time, loss, the accuracy/UAR/CCC numbers that
    matter and the checkpoint metric, rounded; every metric stays in history.csv and TensorBoard.

    Keras' own epoch line lists every logged metric unrounded (17 of them, ~480 characters, for a multi-source run).
    """

    KEYS = (("loss", "loss"), ("expression_accuracy", "acc"), ("val_loss", "val loss"),
            ("val_expression_accuracy", "val acc"), ("val_expression_uar", "val UAR"),
            ("val_valence_arousal_ccc", "val VA CCC"), ("val_ap50", "val AP50"))

    def __init__(self, monitor: str, epochs: int, mode: str = "max"):
        super().__init__()
        self.monitor, self.epochs, self.mode = monitor, epochs, mode
        self.best = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        parts = [f"epoch {epoch + 1}/{self.epochs}"]
        if "epoch_seconds" in logs:
            parts[0] += f" ({logs['epoch_seconds']:.0f} s)"
        parts += [f"{label} {float(logs[k]):.4g}" for k, label in self.KEYS if k in logs and k != self.monitor]
        value = logs.get(self.monitor)
        if value is not None:
            v = float(value)
            better = self.best is None or (v > self.best if self.mode == "max" else v < self.best)
            self.best = v if better else self.best
            parts.append(f"{self.monitor} {v:.4g}" + (" (best)" if better else ""))
        print(" | ".join(parts), flush=True)


def batchnorm_layers(model) -> list:
    """The model's BatchNormalization layers that train (frozen ones run in inference mode and keep their statistics)."""
    return [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)
            and layer.trainable]


def recalibrate_batchnorm(model, batches) -> int:
    """Re-measures the moving mean and variance of every trainable BatchNorm layer as the plain average over
    `batches` (an iterable of input batches, e.g. training images) of their batch statistics, the weights unchanged.

    The moving statistics of a model belong to the weights they were collected under. An average of the weights
    (EMA) needs its own: on the default model's run, FER+ val accuracy of epoch 14's EMA rose from 76.4% to 82.5%
    once its statistics were re-measured on 100 batches of plain training images (docs/training-status.md).

    Returns:
        the number of batches used.
    """
    layers = batchnorm_layers(model)
    saved = [layer.momentum for layer in layers]
    n = 0
    try:
        for n, x in enumerate(batches, 1):
            for layer in layers:  # cumulative average: momentum k/(k+1) at the k-th batch (0-based)
                layer.momentum = (n - 1) / n
            model(x, training=True)
    finally:
        for layer, m in zip(layers, saved):
            layer.momentum = m
    return n


def _bn_state(model) -> list:
    return [(layer.moving_mean.numpy(), layer.moving_variance.numpy()) for layer in batchnorm_layers(model)]


def _set_bn_state(model, state) -> None:
    for layer, (mean, var) in zip(batchnorm_layers(model), state):
        layer.moving_mean.assign(mean)
        layer.moving_variance.assign(var)


class EMAWeights:
    """Puts the optimizer's moving average of the weights (`train.ema_momentum`) into the model where it is judged.

    Keras' `SwapEMAWeights(swap_on_epoch=True)` would leave the averaged weights in the model through the whole
    epoch end, so `BackupAndRestore` would save them as the raw weights and a resumed run would continue from the
    average. Here two callbacks share one state: `enter` (first in the list) swaps the average in for validation and
    at the epoch end, before the per-source metrics and the best checkpoint read the model; `leave` (just before the
    backup) swaps the raw weights back, so the backup holds what training continues from.

    With `bn_batches` (a function returning an iterable of training input batches; `train.bn_recalibration_batches`),
    the average also gets BatchNorm statistics of its own, measured once per epoch when it first enters the model
    (`recalibrate_batchnorm`); the raw weights get theirs back when they return.
    """

    def __init__(self, bn_batches=None):
        self.swapper = keras.callbacks.SwapEMAWeights()
        self.in_model = False
        self.bn_batches, self.raw_bn, self.average_bn = bn_batches, None, None
        self.enter, self.leave = _EMASwap(self, True), _EMASwap(self, False)

    def put(self, model: keras.Model, average: bool) -> None:
        if self.in_model != average:
            self.swapper.set_model(model)
            self.swapper._apply_to_ema_optimizers(self.swapper._tf_swap_variables,
                                                  self.swapper._backend_swap_variables)
            self.in_model = average
            if self.bn_batches is not None:
                if average:
                    self.raw_bn = _bn_state(model)
                    if self.average_bn is None:  # first time this epoch: measure the average's own statistics
                        recalibrate_batchnorm(model, self.bn_batches())
                        self.average_bn = _bn_state(model)
                    else:
                        _set_bn_state(model, self.average_bn)
                elif self.raw_bn is not None:
                    _set_bn_state(model, self.raw_bn)

    def new_epoch(self) -> None:
        self.average_bn = None  # the average moved on: its statistics are measured again


class _EMASwap(keras.callbacks.Callback):
    def __init__(self, state: EMAWeights, enter: bool):
        super().__init__()
        self.state, self.is_enter = state, enter

    def on_epoch_begin(self, epoch, logs=None):
        if self.is_enter:
            self.state.new_epoch()

    def on_test_begin(self, logs=None):
        if self.is_enter:
            self.state.put(self.model, True)

    def on_test_end(self, logs=None):
        if self.is_enter:
            self.state.put(self.model, False)

    def on_epoch_end(self, epoch, logs=None):
        self.state.put(self.model, self.is_enter)

    def on_train_end(self, logs=None):
        # normally a no-op: `leave` put the raw weights back before Keras' finalize_variable_values wrote the average
        self.state.put(self.model, False)


class TimeLimit(keras.callbacks.Callback):
    """Stops training before `minutes` of wall time have passed since `fit` began, so that the run can be resumed.

    At each epoch end it stops when the next epoch (as long as the last one) would not fit in the time left: the
    run then ends on an epoch boundary and `--resume` continues exactly where an uninterrupted run would be. As a
    fallback it also stops mid-epoch once the limit is passed (checked after every step; that epoch is cut short,
    still validated and checkpointed). Either way `RunBackup` keeps the backup, so the run stays resumable.
    """

    def __init__(self, minutes: float):
        super().__init__()
        self.seconds = 60.0 * minutes
        self.stopped_at_epoch = None  # the limit was passed during this epoch (cut short)
        self.stopped_after_epoch = None  # the next epoch would not have fit: stopped on the boundary

    @property
    def stopped(self) -> bool:
        return self.stopped_at_epoch is not None or self.stopped_after_epoch is not None

    def on_train_begin(self, logs=None):
        self._t0 = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch, self._epoch_t0 = epoch, time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if time.perf_counter() - self._t0 > self.seconds and not self.model.stop_training:
            self.model.stop_training = True
            self.stopped_at_epoch = self._epoch

    def on_epoch_end(self, epoch, logs=None):
        now = time.perf_counter()
        last_epoch = now - self._epoch_t0
        if (not self.model.stop_training and epoch + 1 < (self.params.get("epochs") or 0)
                and now - self._t0 + last_epoch > self.seconds):
            self.model.stop_training = True
            self.stopped_after_epoch = epoch


class RunBackup(keras.callbacks.BackupAndRestore):
    """Keras' BackupAndRestore made safe to kill at any moment, and kept by a run that `TimeLimit` stopped (it is
    not finished).

    Each epoch's weights go to a new file, `epoch<N>.weights.h5`, written under a temporary name and renamed; only
    then does `training_metadata.json` (also renamed into place) point at it, and the older file is removed. A
    SIGINT or `kill -9` during the write leaves the previous epoch's pair intact, so `--resume` always finds a
    readable backup. Backups written before this (Keras' in-place `latest.weights.h5`) are still read.

    Restoring happens in `restore()`, called by `ResumeFirst` at the very start of training: the backup is read
    before anything else is touched, and only once it has loaded are history.csv's rows of later epochs removed.
    """

    def __init__(self, backup_dir: str, time_limit: Optional[TimeLimit] = None, run: Optional[RunDir] = None):
        super().__init__(backup_dir, delete_checkpoint=True)
        self.time_limit, self.run = time_limit, run
        self._restored = False

    def _meta(self) -> dict:
        if not os.path.isfile(self._training_metadata_path):
            return {}
        try:
            with open(self._training_metadata_path, encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError) as e:
            raise OSError(f"{self._training_metadata_path}: {e}") from None

    def _load_model(self):
        meta = self._meta()
        weights = os.path.join(self.backup_dir, meta["weights"]) if meta.get("weights") else self._weights_path
        if os.path.isfile(weights):
            if self.model.optimizer is not None and not self.model.optimizer.built:
                self.model.optimizer.build(self.model.trainable_variables)
            self.model.load_weights(weights)
        elif meta.get("weights"):
            raise OSError(f"{weights}: missing, though training_metadata.json names it")
        if "epoch" in meta:
            self.model._initial_epoch = int(meta["epoch"])

    def restore(self) -> None:
        """Loads the backup (a resumed run); then trims history.csv to the epochs the backup holds."""
        if self._restored:
            return
        try:
            self._load_model()
        except (OSError, ValueError, KeyError) as e:  # a read: the backup is damaged, not the run folder
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise DataError(f"{self.backup_dir}: this run's backup cannot be read ({first}); it was damaged or "
                            "written by another fer_keras version. Move that folder away and resume again to "
                            "restart the run's training from its first epoch, or restore it from a copy") from None
        self._restored = True
        if self.run is not None:
            # rows of epochs after the backup (written before a stop that came ahead of the backup) go, so each
            # epoch has one history row
            self.run.trim_history(int(self._meta().get("epoch", 0)))

    def on_train_begin(self, logs=None):
        self.restore()

    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        name = f"epoch{self._current_epoch:04d}.weights.h5"
        with atomic_path(os.path.join(self.backup_dir, name)) as tmp:
            self.model.save_weights(tmp, overwrite=True)
        write_json(self._training_metadata_path,
                   {"epoch": self._current_epoch, "batch": self._last_batch_seen, "weights": name})
        for old in os.listdir(self.backup_dir):  # the previous epoch's file, Keras' in-place one
            if old != name and old.endswith(".weights.h5"):  # also a temp file a kill left
                os.remove(os.path.join(self.backup_dir, old))

    def on_train_end(self, logs=None):
        if self.time_limit is not None and self.time_limit.stopped:
            return
        super().on_train_end(logs)


class ResumeFirst(keras.callbacks.Callback):
    """Placed first among the callbacks: restores the run's backup before any other callback opens a file (the
    history logger appends to history.csv, which the restore may trim)."""

    def __init__(self, backup: RunBackup):
        super().__init__()
        self.backup = backup

    def on_train_begin(self, logs=None):
        self.backup.restore()


class StopReport(keras.callbacks.Callback):
    """Says what a user needs to know about how training went, one line each: a model still at chance level
    after `chance_epochs` epochs, and why training stopped early (early stopping, the time limit, NaN loss)."""

    def __init__(self, monitor: str, num_classes: int, chance_epochs: int = 3, early=None, time_limit=None):
        super().__init__()
        self.monitor, self.num_classes, self.chance_epochs = monitor, num_classes, chance_epochs
        self.early, self.time_limit = early, time_limit
        self.last_epoch, self.epochs_planned = None, None

    def on_train_begin(self, logs=None):
        self.epochs_planned = self.params.get("epochs")

    def on_epoch_end(self, epoch, logs=None):
        self.last_epoch = epoch
        logs = logs or {}
        uar = logs.get("val_expression_uar", logs.get("expression_uar"))
        if epoch + 1 == self.chance_epochs and uar is not None and uar <= 1.0 / self.num_classes + 0.02:
            print(f"warning: after {epoch + 1} epochs the model is still at chance level (expression UAR "
                  f"{uar:.3f}, chance = 1/{self.num_classes} = {1.0 / self.num_classes:.3f}); it has learned "
                  "nothing yet: check the data and labels, the learning rate, or train longer", flush=True)

    def on_train_end(self, logs=None):
        if self.last_epoch is None:
            return
        if self.time_limit is not None and self.time_limit.stopped_at_epoch is not None:
            print(f"stopped: the time limit (train.time_limit_minutes = {self.time_limit.seconds / 60:g}) was "
                  f"reached during epoch {self.time_limit.stopped_at_epoch + 1} of {self.epochs_planned}; that "
                  "epoch ended early (its remaining steps were skipped) and was still validated", flush=True)
        elif self.time_limit is not None and self.time_limit.stopped_after_epoch is not None:
            print(f"stopped: after epoch {self.time_limit.stopped_after_epoch + 1} of {self.epochs_planned}, as "
                  f"another epoch would not end within the time limit (train.time_limit_minutes = "
                  f"{self.time_limit.seconds / 60:g})", flush=True)
        elif self.early is not None and self.early.stopped_epoch > 0:
            print(f"stopped: early stopping after epoch {self.early.stopped_epoch + 1} of {self.epochs_planned}: "
                  f"{self.monitor} did not improve for {self.early.patience} epochs "
                  "(train.early_stopping_patience / --early-stopping; 0 = off)", flush=True)
        elif self.model.stop_training and self.last_epoch + 1 < (self.epochs_planned or 0):
            print(f"stopped after epoch {self.last_epoch + 1}: the loss became NaN", flush=True)


class EpochSeeder(keras.callbacks.Callback):
    """Keys all training randomness to (seed, epoch): sets the data pipeline's epoch variable and reseeds the
    model's own random layers (dropout) at each epoch start. A run resumed by BackupAndRestore at epoch k then
    sees the same data order, augmentation and dropout masks as an uninterrupted run."""

    def __init__(self, epoch_var: tf.Variable, seed: int):
        super().__init__()
        self.epoch_var = epoch_var
        self.seed = seed

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_var.assign(epoch)
        for i, gen in enumerate(seed_generators(self.model)):
            gen.state.assign(np.array([epoch_seed(self.seed, epoch), i], np.int64))


def make_callbacks(cfg: Config, run: RunDir, monitor: str, epoch_var: Optional[tf.Variable], first=(),
                   mode: Optional[str] = None, num_classes: Optional[int] = None, bn_batches=None):
    """The epoch callbacks of every run (expression and detection): `first` (metrics that the checkpoint reads),
    epoch seeding (when the data pipeline has an `epoch_var`), backup for resuming, best checkpoint (its best value
    restored from history.csv), history, NaN stop, schedule, early stopping, time limit, TensorBoard. `bn_batches`:
    with an EMA of the weights, the training batches its BatchNorm statistics are measured on (see `EMAWeights`)."""
    t = cfg.train
    mode = mode or t.monitor_mode
    logger = RunLogger()
    # Resuming: the best value so far comes from history.csv's epochs before the backup's, so the first resumed
    # epoch cannot overwrite a better model. Nothing is deleted here: the backup is read first (ResumeFirst).
    ckpt = BestModelCheckpoint(run.model_path, monitor, mode, run.best_so_far(monitor, mode, run.resume_epoch()))
    # The backup comes after the checkpoint and the history row: an epoch counts as done for resuming only once
    # both are written (a failed write at an epoch end redoes that epoch instead of losing it).
    ema = EMAWeights(bn_batches) if t.ema_momentum > 0 else None
    time_limit = TimeLimit(t.time_limit_minutes) if t.time_limit_minutes else None
    backup = RunBackup(run.file(BACKUP), time_limit, run)
    cbs = [ResumeFirst(backup), logger, *([ema.enter] if ema else []), *first,
           *([EpochSeeder(epoch_var, t.seed)] if epoch_var is not None else []),
           ckpt,
           keras.callbacks.CSVLogger(run.history_path, append=True),
           *([ema.leave] if ema else []),
           backup,
           *([follow_the_chief_callback()] if t.strategy == "multiworker" else []),
           keras.callbacks.TerminateOnNaN()]
    if t.schedule == "plateau":
        cbs.append(keras.callbacks.ReduceLROnPlateau(monitor=monitor, mode=mode, factor=t.plateau_factor,
                                                     patience=t.plateau_patience, min_lr=t.min_learning_rate))
    elif t.schedule == "step":
        cbs.append(keras.callbacks.LearningRateScheduler(
            lambda epoch, lr: t.learning_rate * t.step_factor ** (epoch // max(t.step_every, 1))))
    early = None
    if t.early_stopping_patience > 0:
        early = keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=t.early_stopping_patience,
                                              restore_best_weights=False)
        cbs.append(early)
    if time_limit is not None:
        cbs.append(time_limit)
    if num_classes:
        cbs.append(StopReport(monitor, num_classes, early=early, time_limit=time_limit))
    if t.tensorboard:
        cbs.append(keras.callbacks.TensorBoard(run.file("tensorboard"), write_graph=False,
                                               profile_batch=0))
    if t.verbose == -1 and not sys.stdout.isatty():  # a log: our short epoch line instead of Keras' long one
        cbs.append(EpochLine(monitor, t.epochs, mode))
    return cbs, logger


def fit_verbosity(verbose: int) -> int:
    """Keras `fit` verbosity: -1 (auto) is a progress bar with ETA on a terminal; in a log Keras prints nothing and
    `EpochLine` one short line per epoch (a progress bar written to a log file is one endless line of carriage
    returns)."""
    if verbose != -1:
        return verbose
    return 1 if sys.stdout.isatty() else 0  # in a log, EpochLine prints one short line per epoch


# === The fit and its tail, shared by every trainer (expression, RetinaNet, YuNet) ===

def fit_run(fit, run: RunDir, strategy_name: str = "default", find_bad_file=None) -> None:
    """Runs `fit()` (a `model.fit` call) and turns what can stop it into one line that says how to continue.

    Args:
        fit: the call that trains.
        run: the run (its folder goes into the `--resume` command).
        strategy_name: `train.strategy` (a lost peer is only a failure of multi-worker training).
        find_bad_file: for an undecodable input, a function returning (file, problem) or None.
    """
    try:
        fit()
    except tf.errors.InvalidArgumentError as e:
        # A file that passed the header check but fails to decode mid-epoch (data.validate_images=header, used
        # for data too big to decode up front). Finished epochs are kept in backup/: the run resumes.
        first = (e.message or str(e)).strip().splitlines()[0][:300]
        kept = os.path.exists(run.file(BACKUP))
        then = (f"continue with: {resume_command(run.path)}" if kept else
                "rerun the same command (no epoch had finished, nothing was kept)")
        found = find_bad_file() if find_bad_file else None
        if found:
            raise DataError(f"training stopped: {found[0]}: {found[1]} (tf.data: {first}); fix or remove it (or "
                            f"use --skip-bad with --set data.validate_images=full), then {then}") from None
        raise DataError(f"training stopped: an input failed in the tf.data pipeline ({first}); find the file with "
                        "--set data.validate_images=full (decodes every image before training), fix or remove it, "
                        f"and {then}") from None
    except (tf.errors.UnavailableError, tf.errors.CancelledError, tf.errors.DeadlineExceededError,
            tf.errors.AbortedError, tf.errors.InternalError) as e:  # a collective op whose peer is gone
        if strategy_name != "multiworker":
            raise
        raise DataError(lost_worker_message(run.path, e)) from None
    except OSError as e:  # a checkpoint, history row or backup could not be written (disk full, permissions)
        raise DataError(f"training stopped: cannot write into the run folder {run.path} "
                        f"({describe_os_error(e)}); fix that and continue with: {resume_command(run.path)}") from None


def finish_fit(run: RunDir, model, cfg: Config, logger: "RunLogger", monitor: str, mode: str,
               images_per_epoch: int, t_start: float, **extra) -> dict:
    """The end of every fit: the final model when no epoch produced a checkpoint, and runtime.json in one schema
    (task, timings, speed, the monitor's best value, versions; `extra` adds the trainer's own keys, e.g. the
    device and precision or the detector's architecture). Returns what it wrote."""
    import platform

    if not os.path.isfile(run.model_path):  # the monitor never produced a value: keep the final model
        with atomic_path(run.model_path) as tmp:
            model.save(tmp)
    times = logger.epoch_times[1:] or logger.epoch_times
    runtime = {
        "task": cfg.task, **extra, "params": int(model.count_params()), "epochs_run": len(logger.epoch_times),
        "train_seconds": round(time.time() - t_start, 1),
        "median_epoch_seconds": float(np.median(times)) if times else None,
        "train_images_per_second": float(images_per_epoch / np.median(times)) if times else None,
        "monitor": monitor, "best": run.best_so_far(monitor, mode),
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__, "python": platform.python_version()},
        "machine": f"{platform.machine()} {os.cpu_count()} cpus",
    }
    run.write_json(RUNTIME, runtime)
    return runtime
