"""`python evaluate_model.py`: evaluate a trained model on a test split (see `--help`)."""

from __future__ import annotations

import argparse
import datetime as _dt
import os
from typing import Optional

from fer_keras.errors import ConfigError, cli_main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="evaluate_model.py", description="Evaluate a trained model; writes "
                                "metrics.json, metrics.md and predictions.csv.", allow_abbrev=False)
    p.add_argument("--model", help=argparse.SUPPRESS)  # a model *name* (as in train_model.py): explained below
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
    p.add_argument("--tta", choices=["none", "flip", "crops"], default="none",
                   help="test-time augmentation: flip = average with the horizontal mirror; crops = 4 corner + "
                        "centre crops (90%%) and their mirrors (10 views)")
    p.add_argument("--skip-bad", action="store_true")
    p.add_argument("--unsafe-load", action="store_true",
                   help="load models outside Keras safe mode (allows Lambda layers: only for files you trust)")
    p.add_argument("--out", help="output folder (default: the run directory, or run/eval/<data-split-preset>)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override data.* config keys")
    return p


def evaluate(run: Optional[str] = None, model_path: Optional[str] = None, data: Optional[str] = None,
             fmt: Optional[str] = None, split: str = "test", labels: Optional[str] = None, bootstrap: int = 0,
             seed: int = 0, batch_size: int = 64, skip_bad: bool = False, out: Optional[str] = None,
             overrides=(), tta: str = "none", unsafe_load: bool = False) -> tuple:
    """Evaluates one model; returns (output folder, result dict). See the CLI help for the arguments."""
    import numpy as np

    from fer_keras.config import Config, config_from_dict, parse_overrides, read_yaml, set_key
    from fer_keras.data.pipeline import load_all, load_data
    from fer_keras.errors import DataError, ModelError
    from fer_keras.evaluation import (check_expression_model, compute_metrics, load_keras_model, map_probabilities,
                                      predict_table, write_outputs)
    from fer_keras.io_utils import slug
    from fer_keras.labels import check_preset, preset_classes

    from fer_keras.model_info import VA_UNTRAINED_NOTE, read_model_info

    if run:
        if not os.path.isfile(os.path.join(run, "config.yaml")):
            raise ConfigError(f"{run}: not a run directory (no config.yaml)")
        cfg = config_from_dict(read_yaml(os.path.join(run, "config.yaml")), source=os.path.join(run, "config.yaml"))
        info = read_model_info(run)
        if info.class_names is None:
            raise ConfigError(f"{run}: no class names in labels.json (not a finished run directory?)")
        model_classes = info.class_names
        model_file = info.model_file
    else:
        cfg, model_file = Config(), model_path
        info = read_model_info(model_path)
    model = load_keras_model(model_file, safe_mode=not unsafe_load)
    shape, k = check_expression_model(model, model_file, info.class_names)
    temporal = len(shape) == 4  # (T, H, W, C): a clip model
    if temporal:
        cfg.model.frames = int(shape[0])
    h, w, c = shape[-3:]
    if not run and info.class_names and len(info.class_names) == k:
        model_classes = info.class_names
        cfg.data.labels = check_preset(str(k))
    elif not run:
        if str(k) not in ("8", "7", "5", "4", "2"):
            raise ModelError(f"{model_file}: expression output has {k} classes, not a known preset")
        model_classes = preset_classes(str(k))
        cfg.data.labels = str(k)
    default_data = data is None and labels is None and not overrides
    if data is not None:
        cfg.data.path, cfg.data.format = data, fmt or "auto"
        cfg.data.val_path = cfg.data.test_path = None
        cfg.data.sources = []  # a multi-source run scored on other data: that data only
    if labels is not None:
        cfg.data.labels = labels
    for key, value in parse_overrides(overrides).items():
        if not key.startswith("data."):
            raise ConfigError(f"evaluate --set only takes data.* keys, got {key!r}")
        set_key(cfg, key, value)  # the same validation as --set in training
    cfg.data.labels = check_preset(cfg.data.labels)
    cfg.data.image_size, cfg.data.channels, cfg.data.skip_bad = int(h), int(c), skip_bad
    bundle = load_all(cfg) if split == "all" else load_data(cfg, require_train=False)
    table, used_split, note = getattr(bundle, "test" if split == "all" else split), split, ""
    if split == "all":
        note = "Every sample of the data was scored (--split all), whatever split it belongs to."
    if table is None and split == "test":
        table, used_split = bundle.val, "val"
        note = "The data has no test split; the validation split was scored."
    if table is None or len(table) == 0:
        raise DataError(f"{cfg.data.path or 'demo data'}: no {split} split to evaluate")
    if table.frames is not None:  # clips: one prediction per clip
        from fer_keras.data.clips import clip_dataset, clip_probabilities

        if temporal:
            out_t = model.predict(clip_dataset(table, cfg, False, True, batch_size=batch_size).map(lambda x, y: x),
                                  verbose=0)
            pred = {k: np.asarray(out_t[k], np.float64) for k in ("expression", "valence_arousal")}
        else:
            pred = clip_probabilities(model, table, cfg, batch_size)
        note += " Clip-level scores: frame predictions averaged over each clip." if not temporal else ""
    elif temporal:
        raise DataError(f"{model_file} is a clip model; evaluate it on clip data (format dfew or clips)")
    else:
        pred = predict_table(model, table, cfg, batch_size, tta)
    probs = map_probabilities(pred["expression"], model_classes, cfg.data.labels)
    if not info.va_trained:  # an untrained head's outputs are not results
        pred["valence_arousal"] = np.full_like(pred["valence_arousal"], np.nan)
    result = compute_metrics(table.expression, probs, table.va, pred["valence_arousal"], bundle.class_names,
                             bootstrap, seed)
    if not info.va_trained:
        result["valence_arousal"].update(valence=None, arousal=None, unavailable=VA_UNTRAINED_NOTE)
        note += f" {VA_UNTRAINED_NOTE}."
    for name, sub in bundle.source_tables(used_split).items() if table.source_id is not None else ():
        m = table.source_id == bundle.source_names.index(name)
        result.setdefault("per_source", {})[name] = compute_metrics(
            sub.expression, probs[m], sub.va, pred["valence_arousal"][m], bundle.class_names, bootstrap, seed)
    if list(model_classes) != bundle.class_names:
        note += f" Model classes ({', '.join(model_classes)}) were mapped by name to the {cfg.data.labels}-class " \
                "preset."
    result["info"] = {"model": os.path.abspath(model_file), "run": run, "data": bundle.source,
                      "format": bundle.format, "split": used_split, "preset": cfg.data.labels,
                      "class_names": bundle.class_names, "model_class_names": list(model_classes),
                      "skipped_bad": len(bundle.bad), "note": note.strip(), "tta": tta,
                      "evaluated_at": _dt.datetime.now().isoformat(timespec="seconds")}
    if out is None:
        base = run or os.path.dirname(os.path.abspath(model_file))
        same = bool(run) and default_data and split == "test" and tta == "none"  # the run's own default evaluation
        # Other data is named by its folder and a hash of its full path: A/test and B/test never share a folder.
        import hashlib

        tag = "" if data is None else "-" + hashlib.sha1(os.path.abspath(data).encode()).hexdigest()[:6]
        stem = os.path.basename(os.path.normpath(cfg.data.path or ("sources" if cfg.data.sources else "demo")))
        out = base if same else os.path.join(base, "eval", slug(
            f"{stem}{tag}-{used_split}-{cfg.data.labels}"
            + (f"-fold{cfg.data.fold}" if bundle.format == "dfew" else "")
            + ("" if tta == "none" else f"-tta_{tta}")))
    write_outputs(out, result, table.sources, table.expression, probs, table.va, pred["valence_arousal"],
                  bundle.class_names)
    return out, result


def _print_result(out, result):
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # rich is a dependency, but keep evaluation usable without it
        print(open(os.path.join(out, "metrics.md")).read())
        return
    e, va = result["expression"], result["valence_arousal"]
    t = Table(title=f"{result['info']['split']} split, preset {result['info']['preset']}, {e['num_samples']} samples")
    for col in ("metric", "value"):
        t.add_column(col)
    for k in ("accuracy", "uar", "macro_f1", "weighted_f1", "kappa", "top2_accuracy", "roc_auc_macro", "ap_macro"):
        v = e[k]
        t.add_row(k, "–" if v is None else f"{v:.4f}")
    for name in ("valence", "arousal"):
        if va.get(name):
            t.add_row(f"{name} CCC / RMSE", f"{va[name]['ccc']:.4f} / {va[name]['rmse']:.4f}")
    if va.get("unavailable"):
        t.add_row("valence / arousal", "unavailable (head never trained)")
    Console().print(t)
    for name, r in result.get("per_source", {}).items():
        e, va = r["expression"], r["valence_arousal"]
        line = f"{name}: {e['num_samples']} samples, accuracy {e['accuracy']:.4f}, UAR {e['uar']:.4f}"
        if va.get("valence") and va.get("arousal"):
            line += f", valence CCC {va['valence']['ccc']:.4f}, arousal CCC {va['arousal']['ccc']:.4f}"
        print(line)
    print(f"wrote {out}/metrics.json, metrics.md, predictions.csv")


@cli_main
def main(argv=None):
    a = build_parser().parse_args(argv)
    if a.fold is not None:
        a.set.append(f"data.fold={a.fold}")
    common = dict(data=a.data, fmt=a.format, split=a.split, labels=a.labels, bootstrap=a.bootstrap, seed=a.seed,
                  batch_size=a.batch_size, skip_bad=a.skip_bad, overrides=a.set, tta=a.tta,
                  unsafe_load=a.unsafe_load)
    if a.compare:
        from fer_keras.evaluation import comparison_table
        from fer_keras.io_utils import atomic_write_text, new_run_dir

        if len(a.compare) < 2:
            raise ConfigError("--compare needs at least two runs")
        rows = []
        if a.data is None:  # same data for all: the first run's
            from fer_keras.config import config_from_dict, read_yaml

            first = config_from_dict(read_yaml(os.path.join(a.compare[0], "config.yaml")))
            common["data"], common["fmt"] = first.data.path, first.data.format
            common["labels"] = common["labels"] or first.data.labels
        out = a.out or new_run_dir(a.runs_dir, None, "comparison")
        for r in a.compare:
            sub = os.path.join(out, os.path.basename(os.path.normpath(r)))
            _, res = evaluate(run=r, out=sub, **common)
            rows.append({"run": r, "result": res})
        md, csv_text = comparison_table(rows)
        atomic_write_text(os.path.join(out, "comparison.md"), md)
        atomic_write_text(os.path.join(out, "comparison.csv"), csv_text)
        print(md)
        print(f"wrote {out}/comparison.md, comparison.csv")
        return out
    if a.model:
        raise ConfigError(f"--model {a.model}: evaluate_model.py scores a trained model, not an architecture; "
                          f"train one (python train_model.py --model {a.model}) and pass --run runs/<name>, or "
                          "pass --model-path file.keras")
    run, model_path = a.run, a.model_path
    if not run and not model_path:
        from fer_keras.io_utils import newest_run
        from fer_keras.predict import default_model

        run = newest_run(a.runs_dir)
        if run is None:
            model_path = default_model()
            if model_path is None:
                raise ConfigError(f"no run found under {a.runs_dir} and no shipped model; pass --run or "
                                  "--model-path")
            print(f"no run under {a.runs_dir}: scoring the shipped model {model_path}"
                  + ("" if a.data else " on the built-in synthetic demo data (pass --data for yours)"))
    if run and run_task(run) == "detection":
        from fer_keras.detection.train import evaluate_detector_run

        split = "val" if a.split == "test" and a.data is None else a.split
        out, m = evaluate_detector_run(run, split, a.data)
        print(f"AP@0.5 {m['ap50']:.4f} | AP@0.5:0.95 {m['ap50_95']:.4f} | recall at 0.1/0.5/1 FP per image "
              f"{m['recall@0.1fppi']:.3f}/{m['recall@0.5fppi']:.3f}/{m['recall@1fppi']:.3f} | "
              f"{m['images']} images, {m['faces']} faces")
        print(f"wrote {out}/metrics.json, pr_curve.csv, detections.csv")
        return out
    out, result = evaluate(run=run, model_path=model_path, out=a.out, **common)
    _print_result(out, result)
    return out


def run_task(run: str) -> str:
    """`expression` or `detection`, from the run's config.yaml (expression when it has none)."""
    from fer_keras.config import read_yaml

    path = os.path.join(run, "config.yaml")
    return read_yaml(path).get("task", "expression") if os.path.isfile(path) else "expression"
