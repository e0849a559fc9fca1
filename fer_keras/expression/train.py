"""Training expression runs (the expression task's `train`): config → data → model → `fit` → a run directory (its
files: `fer_keras.run_dir`).

An expression run also writes labels.json (preset and class names in output order), skipped.csv (inputs skipped
with data.skip_bad), init.json / distill.json (what `model.init_from` / `train.distill_from` contributed) and
tensorboard/ (with train.tensorboard).
"""

from __future__ import annotations

import csv
import math
import os
import time
from typing import Optional

import keras
import numpy as np
import tensorflow as tf

from fer_keras.config import Config
from fer_keras.data.augment import EPOCH_SEED_STRIDE
from fer_keras.data.clip_pipeline import clip_dataset, clip_probabilities
from fer_keras.data.pipeline import (DataBundle, class_weights, epoch_size, find_undecodable, load_data,
                                     make_dataset, weighted_sample)
from fer_keras.distributed import parse_tf_config, shard_options, weights_digest
from fer_keras.errors import ConfigError, FerError
from fer_keras.expression.evaluate import predict_table
from fer_keras.fitting import (finish_fit, fit_run, fit_verbosity, make_callbacks, make_optimizer, make_strategy,
                               resolve_runtime)
from fer_keras.io_utils import atomic_path
from fer_keras.keras_compat import flatten_layers
from fer_keras.keras_metrics import ExpressionAccuracy, MacroRecall, MaskedVAMetric
from fer_keras.labels import preset_classes, preset_for_classes
from fer_keras.losses import ExpressionLoss, ValenceArousalLoss
from fer_keras.metrics import ccc, expression_metrics, source_scores
from fer_keras.model_info import check_expression_model, load_keras_model, read_model_info
from fer_keras.models import MODELS, build_model
from fer_keras.models.ensemble import fit_input
from fer_keras.models.transfer import transfer_weights
from fer_keras.pretrained import resolve_model
from fer_keras.run_dir import DATA_SUMMARY, LABELS, RunDir, run_training


# === Compile ===

def compile_model(model: keras.Model, cfg: Config, num_classes: int, weights=None, schedule_steps: int = 1,
                  jit_compile: bool = False, soft_labels: bool = False) -> keras.Model:
    """Compiles with the two-head losses (VA masked), loss weights and the metrics that `fit` logs.

    `soft_labels`: the training data carries its own soft labels (FER+ votes), mixed in by
    `train.soft_label_weight`; a teacher (`train.distill_from`) mixes in by `train.distill_weight`.
    """
    t = cfg.train
    mix = t.distill_weight if t.distill_from else t.soft_label_weight if soft_labels else 0.0
    model.compile(
        optimizer=make_optimizer(t, schedule_steps),
        loss={"expression": ExpressionLoss(num_classes, t.label_smoothing, weights, distill_weight=mix),
              "valence_arousal": ValenceArousalLoss(t.va_loss)},
        loss_weights={"expression": t.expression_loss_weight, "valence_arousal": t.va_loss_weight},
        metrics={"expression": [ExpressionAccuracy(name="accuracy"),
                                MacroRecall(num_classes, name="uar")],
                 "valence_arousal": [MaskedVAMetric("ccc", name="ccc"), MaskedVAMetric("rmse", name="rmse")]},
        jit_compile=jit_compile,
    )
    return model


# === Callbacks ===

class ClipMetrics(keras.callbacks.Callback):
    """Clip-level validation for frame models on clip data: averages each clip's frame log-probabilities and adds
    `val_clip_war` (accuracy) and `val_clip_uar` to the epoch logs (before the checkpoint reads them)."""

    def __init__(self, table, cfg: Config):
        super().__init__()
        self.table, self.cfg = table, cfg

    def on_epoch_end(self, epoch, logs=None):

        probs = clip_probabilities(self.model, self.table, self.cfg)["expression"]
        m = expression_metrics(self.table.expression, probs, [str(i) for i in range(probs.shape[1])])
        if logs is not None:
            logs["val_clip_war"], logs["val_clip_uar"] = m["accuracy"], m["uar"]


class SourceMetrics(keras.callbacks.Callback):
    """Per-source validation for multi-source runs: adds `val_<source>_accuracy/_uar/_valence_ccc/_arousal_ccc/
    _score`, `val_score_in` / `val_score_out` (means over the in- and out-of-domain sources) and `val_score` (the two
    weighed by `train.out_of_domain_weight`, see `metrics.source_scores`) to the epoch logs, before the checkpoint
    reads them."""

    def __init__(self, table, source_names, cfg: Config):
        super().__init__()
        self.table, self.source_names, self.cfg = table, list(source_names), cfg

    def on_epoch_end(self, epoch, logs=None):

        pred = predict_table(self.model, self.table, self.cfg, batch_size=256)
        scores = source_scores(self.table.expression, pred["expression"], self.table.va, pred["valence_arousal"],
                               self.table.source_id, self.source_names,
                               [s.domain for s in self.cfg.data.sources], self.cfg.train.out_of_domain_weight)
        if logs is not None:
            logs.update({f"val_{k}": v for k, v in scores.items()})


def trained_heads(data: DataBundle) -> dict:
    """Which outputs a run's training data taught, per output: {"expression": bool, "valence_arousal": bool}, and
    the samples with VA labels. An output no sample taught is marked untrained, so predict/evaluate/export report
    it as unavailable instead of printing its (meaningless) numbers."""
    t = data.train
    n_va = int(np.sum(np.isfinite(t.valence) & np.isfinite(t.arousal)))
    return {"expression": len(t) > 0, "valence_arousal": n_va > 0, "train_samples_with_valence_arousal": n_va}


def describe_training(cfg: Config, data: DataBundle) -> str:
    """One line saying what this run trains on and from what weights (printed at the start of every run)."""
    d, m = cfg.data, cfg.model
    if d.sources:
        what = " + ".join(f"{s.name} ({s.path}, " + (f"weight {s.weight:g}" if s.use == "train" else "val only")
                          + (", out of domain" if s.domain == "out" else "") + ")" for s in d.sources)
    elif d.path is None:
        what = ("the built-in synthetic demo data (generated cartoon faces, not real ones: pass --data for your "
                "dataset)")
    else:
        what = f"{d.path} (format {d.format})"
    sizes = f"train {len(data.train)}, val {len(data.val) if data.val is not None else 0}, " \
            f"test {len(data.test) if data.test is not None else 0}"
    start = f"weights from {m.init_from}" if m.init_from else \
        "random weights" if (m.weights in (None, "none") or m.name.lower() == "customcnn") else f"{m.weights} weights"
    return (f"training {m.name} on {what}: {sizes}; {len(data.class_names)} classes (preset {d.labels}), "
            f"{d.image_size}x{d.image_size}x{d.channels}; starting from {start}")


def run_stem(cfg: Config) -> str:
    """`<model>-<data>`: the name stem of an unnamed expression run."""
    data_stem = "+".join(s.name for s in cfg.data.sources) if cfg.data.sources else \
        "demo" if cfg.data.path is None else os.path.splitext(os.path.basename(
        os.path.normpath(cfg.data.path)))[0]
    return f"{MODELS.canonical(cfg.model.name)}-{data_stem}"


# === Train ===

def train(cfg: Config, data: Optional[DataBundle] = None) -> str:
    """Trains `cfg.model` on `cfg.data` and returns the run directory.

    Args:
        cfg: the resolved config.
        data: already-loaded data (tests pass it to avoid re-reading); default: `load_data(cfg.data)`.

    Returns:
        Path of the run directory (see the module docstring for its contents).
    """
    t = cfg.train
    MODELS.canonical(cfg.model.name)  # fail fast on an unknown model name
    keras.utils.set_random_seed(t.seed)
    if t.seed == 0:
        # TF compares its (global seed mod 2^31-1, op seed) pair with (0, 0) in Python; with a global 0 that reads
        # the tensor op seeds (seed, epoch) of our tf.data shuffles as a bool and fails: train.seed=0 crashed.
        # Any other fixed global seed keeps runs reproducible.
        tf.random.set_seed(EPOCH_SEED_STRIDE)
    if t.deterministic:
        tf.config.experimental.enable_op_determinism()
    runtime = resolve_runtime(t, cfg.model.name)
    keras.mixed_precision.set_global_policy(runtime["precision"])
    try:
        return _train(cfg, data, runtime)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def all_layers(model: keras.Model):
    """Every layer of `model`, nested models (keras.applications backbones, TimeDistributed encoders) included."""
    for layer in model.layers:
        yield layer
        inner = getattr(layer, "layer", None)  # TimeDistributed and other wrappers
        for sub in (layer, inner):
            if isinstance(sub, keras.Model):
                yield from all_layers(sub)


def _init_from(model: keras.Model, path: str, class_names, run: RunDir) -> None:
    """Starts `model` from the weights of the model file or run directory `path` (see `transfer_weights`) and
    records what was copied in the run's init.json."""

    info = read_model_info(path)
    source = load_keras_model(info.model_file)
    names = info.class_names
    if names is None and "expression" in [layer.name for layer in source.layers]:
        k = int(source.get_layer("expression").output.shape[-1])
        names = preset_classes(preset_for_classes(k)) if preset_for_classes(k) else None
    report = transfer_weights(source, model, names, class_names)
    model_file = info.model_file
    run.write_json("init.json", {"init_from": model_file, **report})
    print(f"init from {model_file}: {len(report['copied'])} layers copied"
          + (f", expression classes {', '.join(report['classes_copied'])}" if report["classes_copied"] else "")
          + (f"; not copied: {'; '.join(report['skipped'])}" if report["skipped"] else ""))


def load_teacher(spec: str, key: str):
    """(ModelInfo, Keras model) of a teacher named by `key`'s value `spec`: a shipped model's name, a run folder or
    a `.keras` file; anything but an expression model (a detector, a clip model) is one ConfigError naming `key`."""
    try:
        info = read_model_info(resolve_model(spec))
        model = load_keras_model(info.model_file)
        shape, _ = check_expression_model(model, info.model_file, info.class_names)
    except FerError as e:
        raise ConfigError(f"{key}: {e}") from None
    if len(shape) != 3:
        raise ConfigError(f"{key}: {info.model_file} is a clip model; a teacher reads single images")
    return info, model


def teacher_probabilities(cfg: Config, data: DataBundle, run: RunDir) -> np.ndarray:
    """The teacher's (`train.distill_from`) probabilities for every training sample, in the run's classes.

    The teacher (any input size or channels: `fit_input`) sees each training image unaugmented through
    `train.distill_tta` views; its classes are mapped by name (a 7-class teacher gives contempt 0). Rows are NaN (no teacher) for samples of sources not in
    `train.distill_sources` and for samples whose class the teacher does not know. Writes `distill.json`.
    """

    t, d = cfg.train, cfg.data
    info, raw = load_teacher(t.distill_from, "train.distill_from")
    k = int(raw.get_layer("expression").output.shape[-1])
    teacher = fit_input(raw, (d.image_size, d.image_size, d.channels))  # any input size or channel count
    names = info.class_names or preset_classes(str(k))
    t0 = time.time()
    probs = predict_table(teacher, data.train, cfg, 64, t.distill_tta)["expression"]
    mapping = np.zeros((len(names), len(data.class_names)), np.float64)
    for i, n in enumerate(names):
        if n in data.class_names:
            mapping[i, data.class_names.index(n)] = 1.0
    soft = probs @ mapping
    soft /= np.maximum(soft.sum(axis=1, keepdims=True), 1e-12)
    taught = np.isin(np.array(data.class_names)[data.train.expression], names)
    if t.distill_sources and data.train.source_id is not None:
        ids = [data.source_names.index(n) for n in t.distill_sources]
        taught &= np.isin(data.train.source_id, ids)
    soft[~taught] = np.nan
    if not taught.any():
        shared = sorted(set(names) & set(data.class_names))
        raise ConfigError(f"train.distill_from {info.model_file}: the teacher teaches no training sample (its "
                          f"classes {', '.join(names)}; shared with this run: {', '.join(shared) or 'none'}"
                          + ("; check train.distill_sources" if shared else "") + ")")
    agree = float(np.mean(np.argmax(probs @ mapping, 1)[taught] == data.train.expression[taught])) \
        if taught.any() else None
    run.write_json("distill.json", {
        "teacher": info.model_file, "tta": t.distill_tta, "weight": t.distill_weight,
        "sources": t.distill_sources or "all", "samples_taught": int(taught.sum()), "samples": len(taught),
        "teacher_train_accuracy": agree, "seconds": round(time.time() - t0, 1)})
    print(f"distillation: {info.model_file} ({t.distill_tta} views) teaches {int(taught.sum())} of {len(taught)} "
          f"training samples (its accuracy on them {agree:.3f}), weight {t.distill_weight}")
    return soft.astype(np.float32)


def teacher_valence_arousal(cfg: Config, data: DataBundle, run: RunDir) -> np.ndarray:
    """Valence/arousal targets for training: the labels where a sample has them, elsewhere the mean prediction of
    `train.va_teachers` (each through `train.va_teacher_tta` views, on the unaugmented image). Writes
    `va_teachers.json` (the teachers, how many samples they label, and their CCC on the labelled training samples).

    Raises:
        ConfigError: a teacher whose valence/arousal head was never trained, or a training set without any sample
            lacking valence/arousal (nothing to teach).
    """
    t, d = cfg.train, cfg.data
    va = np.array(data.train.va, np.float32, copy=True)
    missing = ~np.isfinite(va).all(axis=1)
    if not missing.any():
        raise ConfigError("train.va_teachers: every training sample has valence/arousal labels; nothing to teach")
    t0, preds, files = time.time(), [], []
    shape = (d.image_size, d.image_size, d.channels)
    for spec in t.va_teachers:
        info, model = load_teacher(spec, "train.va_teachers")
        if not info.va_trained or "valence_arousal" not in [layer.name for layer in model.layers]:
            raise ConfigError(f"train.va_teachers: {info.model_file} has no trained valence_arousal output")
        teacher = fit_input(model, shape)
        preds.append(predict_table(teacher, data.train, cfg, 64, t.va_teacher_tta)["valence_arousal"])
        files.append(info.model_file)
    mean = np.clip(np.mean(preds, axis=0), -1.0, 1.0)
    labelled = ~missing
    agreement = {f: {n: (round(float(ccc(va[labelled, k], p[labelled, k])), 4) if labelled.sum() > 1 else None)
                     for k, n in enumerate(("valence", "arousal"))} for f, p in zip(files + ["mean"], preds + [mean])}
    va[missing] = mean[missing]
    run.write_json("va_teachers.json", {
        "teachers": files, "tta": t.va_teacher_tta, "samples_taught": int(missing.sum()), "samples": len(va),
        "ccc_on_labelled_training_samples": agreement, "seconds": round(time.time() - t0, 1)})
    print(f"valence/arousal teachers: {', '.join(files)} ({t.va_teacher_tta} views) label {int(missing.sum())} of "
          f"{len(va)} training samples")
    return va


def _train(cfg: Config, data: Optional[DataBundle], runtime: dict) -> str:
    t_start = time.time()

    def start(run: RunDir, data: DataBundle) -> None:
        run.write_json(LABELS, {"preset": cfg.data.labels, "class_names": data.class_names,
                                "trained_heads": trained_heads(data)})
        run.write_json(DATA_SUMMARY, data.summary())
        if len(data.bad):
            with atomic_path(run.file("skipped.csv")) as tmp, open(tmp, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["source", "reason"])
                w.writerows(data.bad.items)

    # A start that fails before the first epoch ends (ImageNet weights offline, a bad init_from) removes the run.
    return run_training(cfg, run_stem(cfg), lambda: data or load_data(cfg.data), start,
                        lambda run, data, resuming: _fit(cfg, data, runtime, run, resuming, t_start))


def _fit(cfg: Config, data: DataBundle, runtime: dict, run: RunDir, resuming: bool, t_start: float) -> str:
    t, d = cfg.train, cfg.data
    num_classes = len(data.class_names)
    weights = None
    if d.balance == "class_weights":
        weights = class_weights(data.train.class_counts(num_classes), d.class_weight_smoothing).tolist()
    epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    temporal = bool(getattr(MODELS.get(cfg.model.name), "temporal", False))
    strategy = make_strategy(t.strategy)
    train_ds, val_ds, per_epoch, first_callbacks, monitor = _datasets(cfg, data, run, temporal, epoch_var,
                                                                      strategy.num_replicas_in_sync > 1)
    steps = t.steps_per_epoch or math.ceil(per_epoch / d.batch_size)
    with strategy.scope():
        model = _build(cfg, data, run, resuming, strategy.num_replicas_in_sync > 1)
        compile_model(model, cfg, num_classes, weights, schedule_steps=steps * t.epochs, jit_compile=runtime["xla"],
                      soft_labels=data.train.soft is not None)
    callbacks, logger = make_callbacks(cfg, run, monitor, epoch_var, first_callbacks, num_classes=num_classes,
                                       bn_batches=_bn_batches(cfg, data, temporal))
    print(describe_training(cfg, data))
    print(f"run: {run.path}{' (resuming)' if resuming else ''} | model {model.name} "
          f"{model.count_params():,} params | {runtime['device']} xla={runtime['xla']} {runtime['precision']} | "
          f"train {len(data.train)} val {len(data.val) if data.val is not None else 0}")
    fit_run(lambda: model.fit(train_ds, validation_data=val_ds, epochs=t.epochs, steps_per_epoch=t.steps_per_epoch,
                              callbacks=callbacks, verbose=fit_verbosity(t.verbose), shuffle=False),
            run, t.strategy, lambda: find_undecodable([data.train, data.val], d))
    if t.strategy == "multiworker":
        print(f"final weights digest {weights_digest(model)} (equal on every worker when the replicas are in sync)")
    n_per_epoch = (t.steps_per_epoch * d.batch_size) if t.steps_per_epoch else per_epoch
    finish_fit(run, model, cfg, logger, monitor, t.monitor_mode, n_per_epoch, t_start, **runtime,
               strategy=t.strategy, replicas=strategy.num_replicas_in_sync)
    return run.path


def _datasets(cfg: Config, data: DataBundle, run: RunDir, temporal: bool, epoch_var, multi_replica: bool):
    """(train, val `tf.data`, samples per epoch, the callbacks the checkpoint reads, the monitor) of a run: clip or
    image pipelines, teachers' targets filled in, sharded for multi-worker training."""
    t, d = cfg.train, cfg.data
    has_val = data.val is not None and len(data.val) > 0
    first_callbacks, monitor = [], t.monitor
    if data.train.frames is not None:  # clip data
        train_ds = clip_dataset(data.train, cfg, True, temporal, t.seed, epoch_var)
        val_ds = clip_dataset(data.val, cfg, False, temporal) if has_val else None
        per_epoch = len(data.train) * (1 if temporal else d.frames_per_clip)
        if not temporal and has_val:
            first_callbacks.append(ClipMetrics(data.val, cfg))
            if monitor == "val_expression_uar":  # the default: choose checkpoints by clip-level UAR
                monitor = "val_clip_uar"
    else:
        if temporal:
            raise ConfigError(f"{cfg.model.name} is a clip model; use clip data (data.format dfew or clips)")
        if data.source_names and has_val:
            first_callbacks.append(SourceMetrics(data.val, data.source_names, cfg))
            if monitor == "val_expression_uar":  # the default: choose checkpoints by the mean per-source score
                monitor = "val_score"
        _teach(cfg, data, run)
        # Keras 3 under a multi-replica strategy fails on a batch that does not split evenly across the replicas:
        # drop the last partial batch there (evaluate_model.py still scores every sample, on one device).
        if multi_replica and has_val and len(data.val) < d.batch_size:
            raise ConfigError(f"the val split has {len(data.val)} samples, fewer than one batch "
                              f"({d.batch_size}): multi-replica training drops partial batches, so validation would "
                              "be empty; lower data.batch_size or use more val data")
        train_ds = make_dataset(data.train, cfg, training=True, seed=t.seed, deterministic=t.deterministic,
                                epoch=epoch_var, drop_remainder=multi_replica)
        val_ds = make_dataset(data.val, cfg, training=False, drop_remainder=multi_replica) if has_val else None
        per_epoch = epoch_size(data.train, d)
    if t.steps_per_epoch:
        train_ds = train_ds.repeat()
    if t.strategy == "multiworker":  # explicit auto-shard policy (see fer_keras/distributed.py)
        files = len(data.train.shards) if getattr(data.train, "shards", None) else 0
        train_ds = train_ds.with_options(shard_options(files, parse_tf_config().count))
        val_ds = val_ds.with_options(shard_options()) if val_ds is not None else None
    if val_ds is None:
        monitor = monitor.replace("val_", "", 1)
    return train_ds, val_ds, per_epoch, first_callbacks, monitor


def _teach(cfg: Config, data: DataBundle, run: RunDir) -> None:
    """Fills in the teachers' targets of the training samples: `train.distill_from`'s soft labels and
    `train.va_teachers`' valence/arousal (each recorded in the run)."""
    t = cfg.train
    if t.distill_from:
        if data.train.soft is not None:
            raise ConfigError("train.distill_from: the training data has soft labels of its own (FER+ votes); "
                              "distil from a teacher or learn from the votes, not both in one run")
        if data.train.images is None and data.train.shards is not None:
            raise ConfigError("train.distill_from needs the training images in memory or as files; streamed "
                              "TFRecord shards carry their own labels (raise data.cache_budget_mb)")
        data.train.soft = teacher_probabilities(cfg, data, run)
    if t.va_teachers:
        if data.train.images is None and data.train.shards is not None:
            raise ConfigError("train.va_teachers needs the training images in memory or as files; streamed "
                              "TFRecord shards carry their own labels (raise data.cache_budget_mb)")
        va = teacher_valence_arousal(cfg, data, run)
        data.train.valence, data.train.arousal = va[:, 0], va[:, 1]


def _build(cfg: Config, data: DataBundle, run: RunDir, resuming: bool, multi_replica: bool) -> keras.Model:
    """The run's model (inside the strategy's scope): built, BatchNorm synchronised across replicas, started from
    `model.init_from` (a new run only), BatchNorm frozen with `model.freeze_batchnorm`."""
    d = cfg.data
    model = build_model(cfg.model, len(data.class_names), (d.image_size, d.image_size, d.channels))
    if multi_replica:
        # BatchNorm statistics over the global batch, not each replica's share of it: the result then does not
        # depend on how many devices split the batch.
        for layer in flatten_layers(model):
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.synchronized = True
    if cfg.model.init_from and not resuming:
        _init_from(model, cfg.model.init_from, data.class_names, run)
    if cfg.model.freeze_batchnorm:  # non-trainable BatchNorm runs in inference mode in Keras 3
        for layer in all_layers(model):
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
    return model


def _bn_batches(cfg: Config, data: DataBundle, temporal: bool):
    """With an EMA and `train.bn_recalibration_batches`: a function giving the batches the EMA's BatchNorm statistics
    are measured on (plain training inputs, in the proportions training mixes its sources in); else None."""
    t, d = cfg.train, cfg.data
    if not (t.ema_momentum > 0 and t.bn_recalibration_batches):
        return None
    n = t.bn_recalibration_batches * d.batch_size
    bn_ds = (clip_dataset(data.train, cfg, False, temporal) if data.train.frames is not None else
             make_dataset(weighted_sample(data.train, d, n, t.seed), cfg, training=False)).repeat()
    return lambda: (tf.cast(x, tf.float32) for x, _ in bn_ds.take(t.bn_recalibration_batches))
