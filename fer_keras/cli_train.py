"""`python train_model.py`: train a multi-task expression model (see `python train_model.py --help`)."""

from __future__ import annotations

import argparse
import os
import signal
import sys

from fer_keras.config import load_config, parse_overrides, set_key
from fer_keras.data.formats import READERS
from fer_keras.distributed import finish_worker, start_worker
from fer_keras.cli_common import CliParser
from fer_keras.errors import ConfigError, cli_main, quiet_tensorflow_import
from fer_keras.export import export_run
from fer_keras.run_dir import RESUME_KEYS, RUNTIME, RunDir
from fer_keras.tasks import TASKS, task_of


def build_parser() -> argparse.ArgumentParser:
    # The registries are the lists of names the help shows (models import Keras: quietly, see errors.py).
    quiet_tensorflow_import()
    from fer_keras.models import MODELS  # after the quiet TensorFlow import above (models import Keras)

    p = CliParser(
        prog="train_model.py",
        description="Train a multi-task (expression + valence/arousal) model. With no --data it trains on the "
                    "built-in synthetic demo dataset.")
    p.add_argument("--task", choices=TASKS.names(),
                   help="expression (default) or detection: a face detector (configs/lowlight_yunet.yaml, "
                        "configs/lowlight_retinanet.yaml)")
    p.add_argument("--config", help="YAML config (configs/*.yaml); defaults come from fer_keras/config.py")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set train.learning_rate=3e-4 (repeatable)")
    p.add_argument("--model", help=" | ".join(f"{n} ({MODELS.get(n).default_size} px; {MODELS.get(n).cpu_size} on CPU)"
                                              for n in MODELS.names())
                   + " (case-insensitive; sizes as registered, set with --image-size)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--early-stopping", type=int, metavar="N",
                   help="stop when the checkpoint metric has not improved for N epochs (default 10; 0 = off)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--data", help="dataset path (folder, CSV, npy folder, FER2013 CSV, AffectNet folder/CSV)")
    p.add_argument("--format", help=f"auto | {' | '.join(READERS.names())}")
    p.add_argument("--labels", help="label preset: 8 | 7 | 5 | 4 | 2")
    p.add_argument("--image-size", type=int)
    p.add_argument("--fold", type=int, help="DFEW fold 1..5")
    p.add_argument("--weights", help="imagenet | none | path to a local .h5/.weights.h5 backbone file (imagenet: "
                                     "MobileNetV2 / EfficientNetLite0 from installed packages, keras.applications "
                                     "models download)")
    p.add_argument("--freeze-backbone", action="store_true", default=None)
    p.add_argument("--fine-tune-last", type=int, help="with --freeze-backbone: train the last N backbone layers")
    p.add_argument("--xla", choices=["auto", "on", "off"])
    p.add_argument("--precision", choices=["auto", "float32", "mixed_bfloat16", "mixed_float16"])
    p.add_argument("--seed", type=int)
    p.add_argument("--deterministic", action="store_true", default=None,
                   help="also make TF ops deterministic (enable_op_determinism, for GPUs) and read TFRecord "
                        "shards once in file order through the cache; data order and augmentation are "
                        "reproducible for a seed without it")
    p.add_argument("--skip-bad", action="store_true", default=None, help="skip bad samples and list them")
    p.add_argument("--name", help="run name under runs/; an unfinished run of that name resumes")
    p.add_argument("--resume", metavar="RUN",
                   help="continue the unfinished run folder RUN (named or not) with the config it was started with")
    p.add_argument("--runs-dir")
    p.add_argument("--export", choices=sorted({f for n in TASKS.names() for f in TASKS.get(n).export_formats})
                   + ["all"],
                   help="export the best model when training ends (same as python -m fer_keras.export)")
    return p


FLAG_KEYS = {
    "model": "model.name", "epochs": "train.epochs", "early_stopping": "train.early_stopping_patience",
    "batch_size": "data.batch_size", "data": "data.path",
    "format": "data.format", "labels": "data.labels", "image_size": "data.image_size", "fold": "data.fold",
    "weights": "model.weights",
    "freeze_backbone": "model.freeze_backbone", "fine_tune_last": "model.fine_tune_last", "xla": "train.xla",
    "precision": "train.precision", "seed": "train.seed", "deterministic": "train.deterministic",
    "skip_bad": "data.skip_bad", "name": "train.name", "runs_dir": "train.runs_dir", "task": "task",
}


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def resume_config(path: str, args, flags):
    """The config an unfinished run was started with, pointed at that run folder (`--resume RUN`)."""
    run = RunDir(path.rstrip("/\\"))
    if not run.is_run():
        raise ConfigError(f"--resume {path}: not a run folder (no config.yaml)")
    if run.status() == "finished":
        raise ConfigError(f"--resume {path}: the run already finished; nothing to resume")
    sets = parse_overrides(args.set or [])
    given = [k for k, v in flags.items() if v is not None] + (["--config"] if args.config else []) + [
        f"--set {k}" for k in sets if k not in RESUME_KEYS]
    if given:
        raise ConfigError(f"--resume takes the run's own config; drop {given[0]} (a changed run would not be the "
                          f"same run; only {', '.join(RESUME_KEYS)} may change)")
    try:
        cfg = run.config()
    except ConfigError as e:  # written by another fer_keras version, or edited by hand
        raise ConfigError(f"--resume {path}: its config no longer loads in this fer_keras version ({e}); continue it "
                          "with the version that started it, or start a new run") from None
    for key, value in sets.items():  # how long this sitting may last, how much it prints: not what is learned
        set_key(cfg, key, value)
    folder = os.path.abspath(run.path)  # exactly this folder: `.`, spaces and renamed folders included (run_folder)
    cfg.train.runs_dir, cfg.train.name = os.path.dirname(folder), os.path.basename(folder)
    return cfg


@cli_main
def main(argv=None) -> str:
    args = build_parser().parse_args(argv)
    # SIGTERM (a scheduler, `kill`) ends a training like Ctrl-C: the run says how to continue it.
    signal.signal(signal.SIGTERM, _interrupt)
    flags = {key: getattr(args, attr) for attr, key in FLAG_KEYS.items()}
    if args.resume:
        cfg = resume_config(args.resume, args, flags)
    else:
        cfg = load_config(args.config, args.set, flags)
    worker = None
    if os.environ.get("TF_CONFIG") and cfg.train.strategy != "multiworker":
        print("warning: TF_CONFIG is set but train.strategy is not multiworker: training on this machine alone "
              "(--set train.strategy=multiworker to train with the cluster it names)", file=sys.stderr)
    if cfg.train.strategy == "multiworker":  # before any TensorFlow op (collectives are set up at start-up)
        worker = start_worker(cfg)
    path = task_of(cfg).fn("train")(cfg)
    if worker is not None and not worker.chief:
        finish_worker(worker, path)
        print(f"done: {worker.describe()}; the run is written by worker 0")
        return path
    run = RunDir(path)
    if run.status() == "stopped":  # the time limit: run_training said how to continue
        return path
    rt = run.read_json(RUNTIME)
    speed = f" | {rt['train_images_per_second'] or 0:.0f} img/s" if rt.get("train_images_per_second") else ""
    best = f"{rt['best']:.4g}" if isinstance(rt.get("best"), (int, float)) else rt.get("best")
    print(f"done: {path} | best {rt['monitor']} = {best} | {rt['epochs_run']} epochs in "
          f"{rt['train_seconds']} s{speed}")
    if args.export:

        formats = None if args.export == "all" else [args.export]  # all: every format of the run's task
        for fmt, written in export_run(path, formats).items():
            print(f"exported {fmt}: {written}")
    return path
