"""Real faces, side by side: the shipped models against the `fer` package on the held-out real-face splits.

    python benchmarks/bench_real_faces.py [--config configs/multitask.yaml] [--bootstrap 1000] [--tta auto none crops]
        [--candidates runs/mobilenet-v1]

Evaluation sets (face crops, no detection: what `python -m fer_keras.predict --no-detect` does, with each model's own
test-time views unless `--tta` names others):
- `fer2013-test`: the half of FER2013 PublicTest that configs/multitask.yaml holds out as its test split (the other
  half picks checkpoints), 7 classes;
- `affectnet-test`: the 10% test split of the AffectNet subset in configs/multitask.yaml (seeded, stratified; part
  of AffectNet's validation set, so not "AffectNet validation accuracy"), 8 classes with valence/arousal, and the
  same faces without contempt for 7-class tools.
Each tool reads the image files itself: fer_keras through `FacePredictor` (the predict CLI's path and default views,
`--tta auto`; `--tta none flip crops` adds a row per view set), `fer` (pip,
mini-Xception, 7 classes) through `FER().detect_emotions(image, face_rectangles=[whole crop])` in a subprocess. An
8-class model is scored on 7-class sets by dropping contempt and renormalising (as evaluate_model.py does).
Also measured: faces/s of the default model at batch 64 for `--tta none|flip|crops`.
Writes `benchmarks/results/real_faces.json` and prints a Markdown table. Needs ../shared/data (research-only).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)


def test_sets(config: str) -> dict:
    """{set name: (paths, labels as canonical names, VA (N,2) NaN where absent)} from the config's sources."""
    from fer_keras.config import load_config
    from fer_keras.data.pipeline import read_source_splits
    from fer_keras.labels import preset_classes

    cfg = load_config(config)
    sets = {}
    for s in cfg.data.sources:
        b = read_source_splits(cfg.data, s)
        if b.test is None:
            continue
        names = preset_classes(cfg.data.labels)
        sets[f"{s.name}-test"] = (list(b.test.sources), [names[i] for i in b.test.expression], b.test.va)
    return sets


def ours(model: str, paths, batch_size: int = 64, tta: str = "auto", calibration: str = "auto") -> dict:
    """Probabilities (by class name) and VA of a fer_keras model on face crops, as `predict --no-detect` makes
    them (`tta="auto"`: the model's own views, `calibration="auto"`: its stored output prior, both predict's
    defaults), and the classification faces/s (decoding excluded)."""
    from fer_keras.predict import FacePredictor, read_rgb

    p = FacePredictor(model, batch_size, tta=tta, calibration=calibration)  # LiteRT when it has a TFLite export
    crops = [p.prepare(read_rgb(f)) for f in paths]
    p.predict(crops[:batch_size])  # warm-up (tracing)
    t0 = time.perf_counter()
    out = p.predict(crops)
    dt = time.perf_counter() - t0
    return {"class_names": p.class_names, "probs": out["expression"], "va": out["valence_arousal"],
            "faces_per_s": len(paths) / dt, "va_trained": p.va_trained}


def worker_fer(paths_file: str, offset: int) -> None:
    """Subprocess: the `fer` package on each crop; prints one JSON line {class_names, probs}."""
    import cv2
    from fer.fer import FER

    det = FER(mtcnn=False, offsets=(offset, offset))
    paths = json.load(open(paths_file))
    names = ["anger", "disgust", "fear", "happy", "sad", "surprise", "neutral"]  # fer's labels, canonical names
    keys = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    probs = []
    for f in paths:
        img = cv2.imread(f)
        h, w = img.shape[:2]
        res = det.detect_emotions(img, face_rectangles=[(0, 0, w, h)])
        probs.append([res[0]["emotions"][k] for k in keys] if res else [1.0 / 7] * 7)
    print(json.dumps({"class_names": names, "probs": probs}))


def fer_package(paths, offset: int) -> dict:
    import tempfile

    try:
        import fer  # noqa: F401
    except ImportError:
        raise SystemExit("the `fer` package (the comparison baseline) is not installed: "
                         "pip install --no-deps -r requirements-bench.txt") from None
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(list(paths), f)
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, "--worker-fer", f.name, "--fer-offset", str(offset)],
                         capture_output=True, text=True,
                         cwd=ROOT, timeout=3600)
    dt = time.perf_counter() - t0
    os.unlink(f.name)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"fer worker failed (rc {out.returncode}): {out.stderr[-1500:]}")
    r = json.loads(lines[-1])
    return {"class_names": r["class_names"], "probs": np.array(r["probs"], np.float64),
            "va": np.full((len(paths), 2), np.nan), "faces_per_s_incl_load": len(paths) / dt, "va_trained": False}


def score(pred: dict, labels, va_true, preset: str, bootstrap: int) -> dict:
    """Accuracy/UAR (95% bootstrap CIs) in `preset` over the samples whose class the preset has; VA CCC/RMSE/SAGR."""
    from fer_keras.expression.evaluate import compute_metrics
    from fer_keras.labels import map_probabilities
    from fer_keras.labels import map_name, preset_classes

    idx = np.array([map_name(n, preset) is not None for n in labels])
    y = np.array([map_name(n, preset) for n, k in zip(labels, idx) if k], np.int64)
    probs = map_probabilities(np.asarray(pred["probs"], np.float64)[idx], pred["class_names"], preset)
    va_p = np.asarray(pred["va"], np.float64)[idx]
    m = compute_metrics(y, probs, np.asarray(va_true)[idx], va_p, preset_classes(preset), bootstrap, 0)
    ci = m.get("bootstrap_95ci", {})
    out = {"n": int(len(y)), "accuracy": m["expression"]["accuracy"], "accuracy_ci": ci.get("accuracy"),
           "uar": m["expression"]["uar"], "uar_ci": ci.get("uar")}
    va = m["valence_arousal"]
    if pred["va_trained"] and va.get("valence"):
        for d in ("valence", "arousal"):
            out[f"{d}_ccc"], out[f"{d}_ccc_ci"] = va[d]["ccc"], ci.get(f"{d}_ccc")
            out[f"{d}_rmse"], out[f"{d}_sagr"] = va[d]["rmse"], va[d]["sagr"]
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=os.path.join(ROOT, "configs", "multitask.yaml"))
    p.add_argument("--model", help="fer_keras model (default: the shipped default)")
    p.add_argument("--baseline", default=os.path.join(ROOT, "fer_keras", "pretrained", "fer2013_customcnn.keras"),
                   help="a second fer_keras model to show beside it (default: the FER2013-only model)")
    p.add_argument("--tta", nargs="+", default=["auto"], choices=["auto", "none", "flip", "crops"],
                   help="the default model's test-time augmentation(s), one row each (auto: the model's own)")
    p.add_argument("--candidates", nargs="*", default=[], help="more fer_keras models to score (one pass each)")
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--no-fer", action="store_true", help="skip the fer package")
    p.add_argument("--out", default=os.path.join(HERE, "results", "real_faces.json"))
    p.add_argument("--fer-offset", type=int, default=0,
                   help="fer's box padding in px (its default 10 pads a 48 px crop to 68 px with the border's "
                        "mean and scored 50.1%% vs 66.0%% with 0 on fer2013-test: 0 is fer's better protocol here)")
    p.add_argument("--worker-fer")
    a = p.parse_args(argv)
    if a.worker_fer:
        return worker_fer(a.worker_fer, a.fer_offset)
    from fer_keras.io_utils import atomic_write_text
    from fer_keras.pretrained import resolve_model

    model = resolve_model(a.model)
    sets = test_sets(a.config)
    if not sets:
        raise SystemExit(f"{a.config}: no source has a test split")
    results = {"command": "python benchmarks/bench_real_faces.py " + " ".join(argv or sys.argv[1:]),
               "model": os.path.relpath(model, ROOT), "baseline": os.path.relpath(a.baseline, ROOT),
               "config": os.path.relpath(a.config, ROOT), "date": time.strftime("%Y-%m-%d"), "sets": {}}
    # The baseline's row names it: the FER2013-only model by default, else its file (e.g. the previous default).
    default_baseline = os.path.join(ROOT, "fer_keras", "pretrained", "fer2013_customcnn.keras")
    baseline_label = ("fer_keras FER2013-only" if os.path.abspath(a.baseline) == default_baseline else
                      f"fer_keras {os.path.basename(a.baseline)}") + " (no views)"
    for name, (paths, labels, va) in sets.items():
        tools = {("fer_keras" if t == "auto" else f"fer_keras --tta {t}"): ours(model, paths, tta=t) for t in a.tta}
        tools[baseline_label] = ours(a.baseline, paths, tta="none")
        for c in a.candidates:
            tools[f"candidate {os.path.basename(os.path.normpath(c))} (no views)"] = ours(c, paths, tta="none")
        if not a.no_fer:
            tools["fer (pip)"] = fer_package(paths, a.fer_offset)
        presets = ["8", "7"] if any(n == "contempt" for n in labels) else ["7"]
        results["sets"][name] = {}
        for tool, pred in tools.items():
            for preset in presets:
                if preset == "8" and len(pred["class_names"]) < 8:
                    continue  # a 7-class tool cannot answer contempt
                results["sets"][name][f"{tool}, {preset}-class"] = score(pred, labels, va, preset, a.bootstrap)
            if "faces_per_s" in pred:
                results.setdefault("faces_per_s", {}).setdefault(name, {})[tool] = pred["faces_per_s"]
        atomic_write_text(a.out, json.dumps(results, indent=1))  # written as it goes
    # TTA cost on the largest set: faces/s of the default model per view count
    big = max(sets.values(), key=lambda s: len(s[0]))[0]
    results["tta_faces_per_s"] = {t: ours(model, big, tta=t)["faces_per_s"] for t in ("none", "flip", "crops")}
    atomic_write_text(a.out, json.dumps(results, indent=1))
    print(render(results))


def render(r: dict) -> str:
    def pct(v, ci=None):
        return "–" if v is None else f"{100 * v:.2f}" + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")

    def num(v, ci=None):
        return "–" if v is None else f"{v:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")

    lines = [f"Real faces, face crops (`{r['command']}`, {r['date']}; model `{r['model']}`)", "",
             "| set | tool, preset | n | accuracy % [95% CI] | UAR % | valence CCC | arousal CCC |",
             "|---|---|---|---|---|---|---|"]
    for s, rows in r["sets"].items():
        for tool, m in rows.items():
            lines.append(f"| {s} | {tool} | {m['n']} | {pct(m['accuracy'], m.get('accuracy_ci'))} | "
                         f"{pct(m['uar'])} | {num(m.get('valence_ccc'), m.get('valence_ccc_ci'))} | "
                         f"{num(m.get('arousal_ccc'), m.get('arousal_ccc_ci'))} |")
    if r.get("tta_faces_per_s"):
        lines += ["", "faces/s of the default model (batch 64, classification only): " + ", ".join(
            f"--tta {k}: {v:.0f}" for k, v in r["tta_faces_per_s"].items())]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
