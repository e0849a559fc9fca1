"""`python evaluate_model.py`: evaluate a trained model on a test split (see `--help`)."""

from __future__ import annotations

import argparse
import dataclasses
import os

from fer_keras.cli_common import CliParser
from fer_keras.errors import ConfigError, cli_main
from fer_keras.expression.evaluate import comparison_table, evaluate_model_file, evaluate_run, run_kwargs
from fer_keras.io_utils import atomic_write_text
from fer_keras.pretrained import SHIPPED_MODELS, resolve_model, shipped_names_help
from fer_keras.run_dir import RunDir, new_run_dir, newest_run, run_task
from fer_keras.tasks import EvaluateOptions
from fer_keras.calibration import CALIBRATION_MODES
from fer_keras.metrics import CLASS_SCOPES
from fer_keras.tta import TTA


def build_parser() -> argparse.ArgumentParser:
    p = CliParser(prog="evaluate_model.py", description="Evaluate a trained model; writes "
                                "metrics.json, metrics.md and predictions.csv.", allow_abbrev=False)
    p.add_argument("--model", metavar="NAME|PATH",
                   help=f"a shipped model by name: {shipped_names_help()}; or a .keras file or run folder")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--run", help="run directory (default: the newest under --runs-dir)")
    src.add_argument("--model-path", help="a .keras file (its label preset is inferred from the output size)")
    src.add_argument("--compare", nargs="+", metavar="RUN", help="evaluate several runs on the same data")
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--data", help="evaluate on other data (default: the run's own)")
    p.add_argument("--format", help="format of --data (default auto)")
    p.add_argument("--split", default="test", choices=["test", "val", "train", "all"],
                   help="split to score (test falls back to val when the data has no test split)")
    p.add_argument("--labels", help="label preset to score in (default: the run's); mapping is by class name")
    p.add_argument("--fold", type=int, help="DFEW fold to score (default: the run's)")
    p.add_argument("--bootstrap", type=int, default=0, metavar="N", help="bootstrap resamples for 95%% CIs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--tta", choices=["auto", *TTA], default="auto",
                   help="test-time augmentation: flip = average with the horizontal mirror; crops = 4 corner + "
                        "centre crops (90%%) and their mirrors (10 views); auto (default) = the model's own "
                        "choice (the shipped default model: flip), none for a run that names none")
    p.add_argument("--calibration", choices=CALIBRATION_MODES, default="auto",
                   help="auto (default): the model's stored output prior, chosen on val data (see its model card); "
                        "none: the network's raw probabilities")
    p.add_argument("--classes", choices=CLASS_SCOPES, default="model",
                   help="when the data lacks some of the model's classes (CK+ has no neutral): the headline "
                        "accuracy takes the argmax over all the model's classes (model, default) or only over the "
                        "classes the data has (data); both are written to metrics.json and metrics.md")
    p.add_argument("--skip-bad", action="store_true")
    p.add_argument("--unsafe-load", action="store_true",
                   help="load models outside Keras safe mode (allows Lambda layers: only for files you trust)")
    p.add_argument("--out", help="output folder (default: the run directory, or run/eval/<data-split-preset>)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override data.* config keys")
    return p


@cli_main
def main(argv=None):
    a = build_parser().parse_args(argv)
    if a.fold is not None:
        a.set.append(f"data.fold={a.fold}")
    opts = EvaluateOptions(data=a.data, fmt=a.format, split=a.split, labels=a.labels, bootstrap=a.bootstrap,
                           seed=a.seed, batch_size=a.batch_size, skip_bad=a.skip_bad, overrides=tuple(a.set),
                           tta=a.tta, unsafe_load=a.unsafe_load, calibration=a.calibration, classes=a.classes,
                           out=a.out, verbose=True)
    if a.compare:
        return compare_runs(a.compare, opts, a.runs_dir)
    run, model_path = a.run, a.model_path
    if a.model:
        from fer_keras.models import MODELS  # imports Keras: only for this message

        if a.model in MODELS and a.model not in SHIPPED_MODELS and not os.path.exists(a.model):
            raise ConfigError(f"--model {a.model}: evaluate_model.py scores a trained model, not an architecture; "
                              f"train one (python train_model.py --model {a.model}) and pass --run runs/<name>, "
                              f"or name a shipped model ({', '.join(SHIPPED_MODELS.names())})")
        path = resolve_model(a.model)
        run, model_path = (path, None) if RunDir(path).is_run() else (None, path)
    if not run and not model_path:
        run = newest_run(a.runs_dir)
        if run is None:
            model_path = resolve_model("default")
            print(f"no run under {a.runs_dir}: scoring the shipped model {model_path}"
                  + ("" if a.data else " on the built-in synthetic demo data (pass --data for yours)"))
    if run:  # a run folder says its task
        return run_task(run).fn("evaluate")(RunDir(run), opts)[0]
    return evaluate_model_file(model_path, opts)[0]  # a .keras file without a run is an expression model


def compare_runs(runs, opts: EvaluateOptions, runs_dir: str) -> str:
    """`--compare`: each run scored on the same data (default: the first run's), and comparison.md / .csv."""
    if len(runs) < 2:
        raise ConfigError("--compare needs at least two runs")
    if opts.data is None:  # same data for all: the first run's
        first = RunDir.open(runs[0]).config()
        opts = dataclasses.replace(opts, data=first.data.path, fmt=first.data.format,
                                   labels=opts.labels or first.data.labels)
    out = opts.out or new_run_dir(runs_dir, None, "comparison")
    rows = []
    for r in runs:
        sub = os.path.join(out, os.path.basename(os.path.normpath(r)))
        _, res = evaluate_run(run=r, **{**run_kwargs(opts), "out": sub})
        rows.append({"run": r, "result": res})
    md, csv_text = comparison_table(rows)
    atomic_write_text(os.path.join(out, "comparison.md"), md)
    atomic_write_text(os.path.join(out, "comparison.csv"), csv_text)
    print(md)
    print(f"wrote {out}/comparison.md, comparison.csv")
    return out

