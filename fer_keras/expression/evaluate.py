"""Evaluating expression runs (the expression task's `evaluate`): a trained model + a dataset split →
metrics.json, metrics.md, predictions.csv (`evaluate_run`).

Cross-dataset evaluation maps the model's classes into the test preset *by name* (an 8-class AffectNet model on
7-class FER2013 data, a 7-class model scored on the 2-class preset): probabilities of model classes that merge into
one test class are summed, classes the test preset drops (contempt in 7) are removed and the rest renormalized.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import hashlib
import io
import json
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from fer_keras import metrics as M
from fer_keras.calibration import apply as apply_calibration, check_mode as check_calibration_mode
from fer_keras.calibration import resolve as resolve_calibration
from fer_keras.config import Config, parse_overrides, set_key
from fer_keras.errors import ConfigError, DataError, ModelError
from fer_keras.io_utils import atomic_write_text, slug
from fer_keras.labels import check_preset, map_probabilities, preset_classes, preset_for_classes
from fer_keras.model_info import VA_UNTRAINED_NOTE, ModelInfo, check_expression_model, load_keras_model, read_model_info
from fer_keras.pretrained import HERE as PRETRAINED_HERE
from fer_keras.run_dir import RunDir
from fer_keras.tasks import EvaluateOptions
from fer_keras.tta import tta_views


# What evaluate can score (`--split`): a split of the data, or every sample of it.
SPLITS = ("test", "val", "train", "all")


def compute_metrics(y_true: np.ndarray, probs: np.ndarray, va_true: np.ndarray, va_pred: np.ndarray,
                    class_names: Sequence[str], bootstrap: int = 0, seed: int = 0) -> dict:
    """All expression and VA metrics, with optional bootstrap 95% CIs of accuracy, UAR and CCC."""
    out = {"expression": M.expression_metrics(y_true, probs, class_names), "valence_arousal": M.va_metrics(
        va_true, va_pred)}
    if bootstrap > 0:
        y_true, probs = np.asarray(y_true, np.int64), np.asarray(probs, np.float64)
        ci = {m.key: M.bootstrap_ci(m.fn, [y_true, probs], bootstrap, seed)
              for m in M.summary_metrics("expression") if m.ci}
        mask = np.isfinite(va_true).all(axis=1)
        for j, name in enumerate(("valence", "arousal")):
            if mask.sum() > 1:
                for m in M.summary_metrics("valence_arousal"):
                    if m.ci:
                        ci[f"{name}_{m.key}"] = M.bootstrap_ci(m.fn, [va_true[mask, j], va_pred[mask, j]],
                                                               bootstrap, seed)
        out["bootstrap_95ci"] = {"n": bootstrap, "seed": seed, **ci}
    return out


def predict_table(model, table, cfg, batch_size: int = 64, tta: str = "none") -> Dict[str, np.ndarray]:
    """Runs the model over a `SampleTable` (no augmentation); returns `expression` probs and `valence_arousal`.

    With `tta` (see `tta_views`), the predictions of every view are averaged.
    """
    from fer_keras.data.pipeline import make_dataset  # TensorFlow: when a model is scored, not for the tables

    outs = []
    for view in tta_views(tta):
        ds = make_dataset(table, cfg, training=False, batch_size=batch_size).map(lambda x, y, v=view: v(x))
        outs.append(model.predict(ds, verbose=0))
    return {k: np.mean([np.asarray(o[k], np.float64) for o in outs], axis=0)
            for k in ("expression", "valence_arousal")}


# === Writers ===

def write_predictions_csv(path: str, sources: Sequence[str], y_true: np.ndarray, probs: np.ndarray,
                          va_true: np.ndarray, va_pred: np.ndarray, class_names: Sequence[str]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["source", "true", "pred", "confidence", *[f"p_{c}" for c in class_names],
                "valence_true", "arousal_true", "valence_pred", "arousal_pred"])
    pred = probs.argmax(axis=1)
    for i in range(len(y_true)):
        vt = ["" if not np.isfinite(v) else f"{v:.4f}" for v in va_true[i]]
        w.writerow([sources[i], class_names[y_true[i]], class_names[pred[i]], f"{probs[i, pred[i]]:.4f}",
                    *[f"{p:.5f}" for p in probs[i]], *vt,
                    *["" if not np.isfinite(v) else f"{v:.4f}" for v in va_pred[i]]])  # empty: head untrained
    atomic_write_text(path, buf.getvalue())


def _fmt(v, pct=False):
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    return f"{100 * v:.2f}" if pct else f"{v:.3f}"


def display_path(path: str) -> str:
    """A path as a report shows it: relative to the working directory when it lies under it (a report copied to
    another machine should not start with this machine's home folder), else as given."""
    if not path or not os.path.isabs(str(path)):
        return path
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def metrics_markdown(result: dict) -> str:
    """Human tables in the style of the AffectNet paper: categorical (per class + overall) and continuous."""
    e, va, info = result["expression"], result["valence_arousal"], result.get("info", {})
    lines = [f"# Evaluation: {display_path(info.get('model', ''))}", "",
             f"Data: `{display_path(info.get('data', ''))}` split **{info.get('split', '')}**, preset "
             f"{info.get('preset', '')}, "
             f"{e['num_samples']} samples.", ""]
    if info.get("note"):
        lines += [info["note"], ""]
    lines += ["## Categorical", "", "| class | precision | recall | F1 | ROC-AUC | AP | support |",
              "|---|---|---|---|---|---|---|"]
    for name, m in e["per_class"].items():
        lines.append(f"| {name} | {_fmt(m['precision'])} | {_fmt(m['recall'])} | {_fmt(m['f1'])} | "
                     f"{_fmt(m['roc_auc'])} | {_fmt(m['ap'])} | {m['support']} |")
    ci = result.get("bootstrap_95ci", {})

    def with_ci(key, value):
        c = ci.get(key)
        return f"{_fmt(value, True)}" + (f" [{_fmt(c[0], True)}, {_fmt(c[1], True)}]" if c else "")

    lines += ["", "| metric | value |", "|---|---|"]
    lines += [f"| {m.label}{' %' if m.percent else ''} | "
              + (with_ci(m.key, e[m.key]) if m.percent else _fmt(e[m.key])) + " |"
              for m in M.summary_metrics("expression")]
    if e["classes_absent"]:
        lines += ["", f"Classes with no test samples (excluded from UAR and macro averages): "
                      f"{', '.join(e['classes_absent'])}."]
    scopes = result.get("classes")
    if scopes:
        lines += ["", "## Over which classes", "", "| argmax over | accuracy % | UAR % |", "|---|---|---|",
                  f"| all {len(info.get('class_names', [])) or ''} classes (model) | "
                  f"{_fmt(scopes['model']['accuracy'], True)} | {_fmt(scopes['model']['uar'], True)} |",
                  f"| the {len(scopes['data_classes'])} classes the data has (data) | "
                  f"{_fmt(scopes['data']['accuracy'], True)} | {_fmt(scopes['data']['uar'], True)} |", "",
                  f"Headline (the tables above): {scopes['headline']} (`--classes`)."]
    lines += ["", "## Continuous (valence / arousal)", ""]
    if va.get("unavailable"):
        lines.append(f"Unavailable: {va['unavailable'].split(': ', 1)[-1]}.")
    elif va["num_labelled"] == 0:
        lines.append(f"No valence/arousal labels in this split ({va['num_unlabelled']} samples unlabelled).")
    else:
        specs = M.summary_metrics("valence_arousal")
        lines += ["| | " + " | ".join(m.label for m in specs) + " |", "|---|" + "---|" * len(specs)]
        for name in ("valence", "arousal"):
            cells = []
            for m in specs:
                c = ci.get(f"{name}_{m.key}")
                cells.append(_fmt(va[name][m.key]) + (f" [{_fmt(c[0])}, {_fmt(c[1])}]" if c else ""))
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append(f"\n{va['num_labelled']} labelled, {va['num_unlabelled']} without VA labels (excluded).")
    if result.get("per_source"):
        lines += ["", "## Per source", "", "| source | n | accuracy % | UAR % | valence CCC | arousal CCC |",
                  "|---|---|---|---|---|---|"]
        for name, r in result["per_source"].items():
            e2, va2, ci2 = r["expression"], r["valence_arousal"], r.get("bootstrap_95ci", {})

            def cell(key, value, pct, c=ci2):
                b = c.get(key)
                return _fmt(value, pct) + (f" [{_fmt(b[0], pct)}, {_fmt(b[1], pct)}]" if b else "")

            lines.append(f"| {name} | {e2['num_samples']} | {cell('accuracy', e2['accuracy'], True)} | "
                         f"{cell('uar', e2['uar'], True)} | " + " | ".join(
                             cell(f"{d}_ccc", va2[d]["ccc"], False) if va2.get(d) else "–"
                             for d in ("valence", "arousal")) + " |")
    if ci:
        lines.append(f"\nBrackets: bootstrap 95% confidence intervals ({ci['n']} resamples, seed {ci['seed']}).")
    return "\n".join(lines) + "\n"


def write_outputs(out_dir: str, result: dict, sources, y_true, probs, va_true, va_pred, class_names) -> None:
    """Writes metrics.json, metrics.md and predictions.csv into `out_dir` (atomically)."""
    os.makedirs(out_dir, exist_ok=True)
    atomic_write_text(os.path.join(out_dir, "metrics.json"), json.dumps(result, indent=2))
    atomic_write_text(os.path.join(out_dir, "metrics.md"), metrics_markdown(result))
    write_predictions_csv(os.path.join(out_dir, "predictions.csv"), sources, y_true, probs, va_true, va_pred,
                          class_names)


def comparison_table(rows: List[dict]) -> tuple:
    """Side-by-side table (Markdown, CSV text) of the main metrics of several evaluations."""
    values = [M.compare_columns(r["result"]) for r in rows]
    cols = ["run", "model", *(values[0] if values else {})]
    table = [[r["run"], r["result"]["info"].get("model", ""), *v.values()] for r, v in zip(rows, values)]
    md = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in table:
        md.append("| " + " | ".join(str(v) if i < 2 else _fmt(v) for i, v in enumerate(row)) + " |")
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(cols)
    w.writerows([[("" if v is None else v) for v in row] for row in table])
    return "\n".join(md) + "\n", buf.getvalue()


# === evaluate_run: one model on one split, in steps ===

def _open_model(run: Optional[str], model_path: Optional[str], unsafe_load: bool):
    """(config, model info, model, model file, model class names or None) of a run directory or a `.keras` file."""
    if run:
        cfg = RunDir.open(run).config()
        info = read_model_info(run)
        if info.class_names is None:
            raise ConfigError(f"{run}: no class names in labels.json (not a finished run directory?)")
    else:
        cfg, info = Config(), read_model_info(model_path)
    model = load_keras_model(info.model_file if run else model_path, safe_mode=not unsafe_load)
    return cfg, info, model, info.model_file if run else model_path


def _model_classes(cfg: Config, info: ModelInfo, model_file: str, k: int, from_run: bool) -> List[str]:
    """The model's class names in output order; for a bare `.keras` file also sets the data preset to match."""
    if from_run:
        return info.class_names
    if info.class_names and len(info.class_names) == k:
        cfg.data.labels = check_preset(str(k))
        return info.class_names
    if preset_for_classes(k) is None:
        raise ModelError(f"{model_file}: expression output has {k} classes, not a known preset")
    cfg.data.labels = str(k)
    return preset_classes(str(k))


def _point_at_data(cfg: Config, data: Optional[str], fmt: Optional[str], labels: Optional[str], overrides,
                   shape, skip_bad: bool) -> None:
    """Sets the data the model is scored on: other data and preset if given, `--set data.*` overrides, and the
    model's input size."""
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
    h, w, c = shape[-3:]
    cfg.data.image_size, cfg.data.channels, cfg.data.skip_bad = int(h), int(c), skip_bad


def _pick_split(cfg: Config, split: str):
    """(bundle, table, split actually scored, note): `all` scores every sample; `test` falls back to val."""
    from fer_keras.data.pipeline import load_all, load_data  # TensorFlow: when a model is scored

    bundle = load_all(cfg.data) if split == "all" else load_data(cfg.data, require_train=False)
    table, used, note = getattr(bundle, "test" if split == "all" else split), split, ""
    if split == "all":
        note = "Every sample of the data was scored (--split all), whatever split it belongs to."
    if table is None and split == "test":
        table, used = bundle.val, "val"
        note = "The data has no test split; the validation split was scored."
    if table is None or len(table) == 0:
        raise DataError(f"{cfg.data.path or 'demo data'}: no {split} split to evaluate")
    return bundle, table, used, note


def _predict(model, table, cfg: Config, temporal: bool, model_file: str, batch_size: int, tta: str
             ) -> Tuple[Dict[str, np.ndarray], str]:
    """Both heads' predictions for every sample (clips: one per clip) and a note on how they were made."""
    if table.frames is not None:
        from fer_keras.data.clip_pipeline import clip_dataset, clip_probabilities  # TensorFlow: clip data only

        if temporal:
            out = model.predict(clip_dataset(table, cfg, False, True, batch_size=batch_size).map(lambda x, y: x),
                                verbose=0)
            return {k: np.asarray(out[k], np.float64) for k in ("expression", "valence_arousal")}, ""
        return (clip_probabilities(model, table, cfg, batch_size),
                " Clip-level scores: frame predictions averaged over each clip.")
    if temporal:
        raise DataError(f"{model_file} is a clip model; evaluate it on clip data (format dfew or clips)")
    return predict_table(model, table, cfg, batch_size, tta), ""


def _class_scopes(y_true: np.ndarray, probs: np.ndarray, class_names: Sequence[str], headline: str
                  ) -> Tuple[np.ndarray, Optional[dict]]:
    """(the headline probabilities, the two scopes' scores) when the data lacks some of the classes, else
    (probs, None). `model`: argmax over every class; `data`: argmax over the classes present in `y_true`."""
    present = np.unique(np.asarray(y_true, np.int64))
    if len(present) == len(class_names):
        return probs, None
    restricted = M.restrict_to_classes(probs, present)
    scopes = {"headline": headline, "data_classes": [class_names[i] for i in present]}
    for scope, p in (("model", probs), ("data", restricted)):
        scopes[scope] = {"accuracy": M.SUMMARY_METRICS["expression.accuracy"].fn(y_true, p),
                         "uar": M.SUMMARY_METRICS["expression.uar"].fn(y_true, p)}
    return (restricted if headline == "data" else probs), scopes


def _default_out(run: Optional[str], model_file: str, cfg: Config, data: Optional[str], used_split: str,
                 fmt: str, tta: str, own_default: bool) -> str:
    """The run folder itself for its own default evaluation, else `<run or model folder>/eval/<data-split-preset>`;
    a shipped model's under `runs/eval-<model>/` in the working folder (never inside the installed package).
    Other data is named by its folder and a hash of its full path: A/test and B/test never share a folder."""
    base = run or os.path.dirname(os.path.abspath(model_file))
    if not run and os.path.abspath(base) == os.path.abspath(PRETRAINED_HERE):
        base = os.path.join("runs", "eval-" + os.path.splitext(os.path.basename(model_file))[0])
    if own_default:
        return base
    tag = "" if data is None else "-" + hashlib.sha1(os.path.abspath(data).encode()).hexdigest()[:6]
    stem = os.path.basename(os.path.normpath(cfg.data.path or ("sources" if cfg.data.sources else "demo")))
    return os.path.join(base, "eval", slug(f"{stem}{tag}-{used_split}-{cfg.data.labels}"
                                           + (f"-fold{cfg.data.fold}" if fmt == "dfew" else "")
                                           + ("" if tta == "none" else f"-tta_{tta}")))


def evaluate_run(run: Optional[str] = None, model_path: Optional[str] = None, data: Optional[str] = None,
                 fmt: Optional[str] = None, split: str = "test", labels: Optional[str] = None, bootstrap: int = 0,
                 seed: int = 0, batch_size: int = 64, skip_bad: bool = False, out: Optional[str] = None,
                 overrides=(), tta: str = "auto", unsafe_load: bool = False, calibration: str = "auto",
                 classes: str = "model") -> tuple:
    """Evaluates one model (a run directory or a `.keras` file) on one split; writes metrics.json, metrics.md and
    predictions.csv and returns (output folder, result dict). The arguments are `evaluate_model.py`'s flags;
    `tta="auto"` uses the model's own default views (`ModelInfo.tta`), `calibration="auto"` its stored output
    prior (`ModelInfo.calibration`). When the data lacks some of the scored classes, both accuracies are stored
    (`result["classes"]`: over all classes, and with the argmax restricted to the data's) and `classes` (`model` or
    `data`) picks the headline (`result["expression"]`)."""
    if split not in SPLITS:
        raise ConfigError(f"split {split!r}: valid: {', '.join(SPLITS)}")
    if classes not in M.CLASS_SCOPES:
        raise ConfigError(f"--classes {classes!r}: valid: {', '.join(M.CLASS_SCOPES)}")
    check_calibration_mode(calibration)
    cfg, info, model, model_file = _open_model(run, model_path, unsafe_load)
    cal = resolve_calibration(info.calibration, calibration)
    tta = info.tta if tta == "auto" else tta
    shape, k = check_expression_model(model, model_file, info.class_names)
    temporal = len(shape) == 4  # (T, H, W, C): a clip model
    if temporal:
        cfg.model.frames = int(shape[0])
    model_classes = _model_classes(cfg, info, model_file, k, bool(run))
    own_default = bool(run) and data is None and labels is None and not overrides and split == "test" \
        and tta == info.tta
    _point_at_data(cfg, data, fmt, labels, overrides, shape, skip_bad)
    bundle, table, used_split, note = _pick_split(cfg, split)
    pred, how = _predict(model, table, cfg, temporal, model_file, batch_size, tta)
    note += how
    if cal is not None:
        note += f" Probabilities calibrated: {cal.describe()}."
    probs = map_probabilities(apply_calibration(pred["expression"], cal), model_classes, cfg.data.labels)
    if not info.va_trained:  # an untrained head's outputs are not results
        pred["valence_arousal"] = np.full_like(pred["valence_arousal"], np.nan)
    probs, scopes = _class_scopes(table.expression, probs, bundle.class_names, classes)
    result = compute_metrics(table.expression, probs, table.va, pred["valence_arousal"], bundle.class_names,
                             bootstrap, seed)
    if scopes:
        result["classes"] = scopes
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
    status = RunDir(run).status() if run else None
    if status not in (None, "finished"):  # scored mid-training: a later checkpoint may replace this model
        note += (f" This run is not finished (state: {status}): its model is the best checkpoint so far; evaluate "
                 "again once it finishes.")
    demo = data is None and cfg.data.path is None and not cfg.data.sources  # the built-in demo data
    if demo:
        note = ("Built-in synthetic demo data (generated cartoon faces, not real ones): these numbers show that the "
                "pipeline runs and learns, not how well a model reads real faces. " + note)
    result["info"] = {"model": os.path.abspath(model_file), "run": run, "data": bundle.source,
                      "format": bundle.format, "split": used_split, "preset": cfg.data.labels,
                      "class_names": bundle.class_names, "model_class_names": list(model_classes),
                      "skipped_bad": len(bundle.bad), "note": note.strip(), "tta": tta,
                      "calibration": cal.to_dict() if cal is not None else None, "run_status": status,
                      "evaluated_at": _dt.datetime.now().isoformat(timespec="seconds")}
    if demo:
        result["info"]["data_name"] = "synthetic demo faces"
    out = out or _default_out(run, model_file, cfg, data, used_split, bundle.format, tta, own_default)
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

    info = result["info"]
    t = Table(title=f"{display_path(info.get('model', ''))}: {info['split']} split, preset {info['preset']}, "
                    f"{e['num_samples']} samples")
    ci = result.get("bootstrap_95ci", {})
    for col in ("metric", "value"):
        t.add_column(col)
    for m in M.summary_metrics("expression"):
        v, c = e.get(m.key), ci.get(m.key)
        t.add_row(m.key, "–" if v is None else f"{v:.4f}" + (f" [{c[0]:.4f}, {c[1]:.4f}]" if c else ""))
    for name in ("valence", "arousal"):
        if va.get(name):
            t.add_row(f"{name} CCC / RMSE", f"{va[name]['ccc']:.4f} / {va[name]['rmse']:.4f}")
    if va.get("unavailable"):
        t.add_row("valence / arousal", "unavailable (head never trained)")
    Console().print(t)
    scopes = result.get("classes")
    if scopes:
        print(f"accuracy over all {len(info['class_names'])} classes {scopes['model']['accuracy']:.4f}; with the argmax "
              f"restricted to the {len(scopes['data_classes'])} classes the data has {scopes['data']['accuracy']:.4f} "
              f"(headline: {scopes['headline']})")
    for name, r in result.get("per_source", {}).items():
        e, va = r["expression"], r["valence_arousal"]
        line = f"{name}: {e['num_samples']} samples, accuracy {e['accuracy']:.4f}, UAR {e['uar']:.4f}"
        if va.get("valence") and va.get("arousal"):
            line += f", valence CCC {va['valence']['ccc']:.4f}, arousal CCC {va['arousal']['ccc']:.4f}"
        print(line)
    print(f"wrote {out}/metrics.json, metrics.md, predictions.csv")


def evaluate_expression_run(run: RunDir, opts: EvaluateOptions) -> Tuple[str, dict]:
    """Scores an expression run (the expression task's `evaluate`): writes metrics.json, metrics.md and
    predictions.csv and returns (output folder, result); with `opts.verbose`, prints the table and where the test
    accuracy lies against the range its recipe reached over seeds (`train.expected_accuracy`)."""
    out, result = evaluate_run(run=run.path, **run_kwargs(opts))
    if opts.verbose:
        _print_result(out, result)
        if result["info"]["split"] == "test" and not opts.data:
            line = expected_range_line(run.config().train.expected_accuracy, result["expression"]["accuracy"])
            if line:
                print(line)
    return out, result


def evaluate_model_file(model_path: str, opts: EvaluateOptions) -> Tuple[str, dict]:
    """Scores a `.keras` file outside a run (an expression model; its label preset inferred from its outputs) as
    `evaluate_expression_run` scores a run."""
    out, result = evaluate_run(model_path=model_path, **run_kwargs(opts))
    if opts.verbose:
        _print_result(out, result)
    return out, result


def run_kwargs(opts: EvaluateOptions) -> dict:
    """`evaluate_run`'s keyword arguments from evaluate options (every option but `verbose`)."""
    return {f.name: getattr(opts, f.name) for f in dataclasses.fields(opts) if f.name != "verbose"}


def expected_range_line(expected, accuracy: float) -> Optional[str]:
    """The line that puts a run's test accuracy beside the range its recipe reached over seeds (None: no range)."""
    if not expected:
        return None
    lo, hi = expected
    where = "within" if lo <= accuracy <= hi else "below" if accuracy < lo else "above"
    return (f"test accuracy {accuracy:.1%}: {where} the range this recipe reached over seeds "
            f"({lo:.1%}-{hi:.1%}, train.expected_accuracy)")
