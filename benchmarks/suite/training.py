"""Section 1 and 1b: training images/s per model (XLA x precision), and every registered image backbone at 64 px."""

from __future__ import annotations

import datetime as _dt
import json
import os
import statistics

from suite import common as C
from suite.common import ROOT, interleaved_epochs, run_json, save

TRAIN_MODELS = ("CustomCNN", "VGG16", "ResNet50", "EfficientNetB0")


# === 1. Training throughput per model, XLA x precision ===

SETTINGS = [("off", "float32"), ("off", "mixed_bfloat16"), ("on", "float32"), ("on", "mixed_bfloat16")]


def worker_train(model_name: str, steps: int, repeats: int, size: str = "", settings: str = "all") -> dict:
    """All four XLA x precision settings of one model in one process, timed in interleaved rounds.

    Timing one setting after another let slow drifts of this shared VM's speed (seen: +-30% over minutes) decide
    the ranking; round-robin epochs (A B C D, A B C D, ...) and per-setting medians cancel most of that.
    `size` overrides the config's image size; `settings="xla_off"` times only float32 and bfloat16 without XLA
    (XLA is measured 3-7x slower for training on this CPU). A model without configs/<name>.yaml uses the defaults.
    """
    import keras
    import numpy as np
    import tensorflow as tf

    from fer_keras.config import load_config
    from fer_keras.models import build_model
    from fer_keras.expression.train import compile_model

    path = os.path.join(ROOT, "configs", f"{model_name.lower()}.yaml")
    cfg = load_config(path if os.path.isfile(path) else None, ["model.weights=none", f"model.name={model_name}"])
    size, batch = int(size) if size else cfg.data.image_size, 32
    settings_list = SETTINGS if settings == "all" else [s for s in SETTINGS if s[0] == "off"]
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (batch * 8, size, size, 3)).astype(np.float32)
    y = {"expression": rng.integers(0, 7, batch * 8).astype(np.int32),
         "valence_arousal": rng.uniform(-1, 1, (batch * 8, 2)).astype(np.float32)}
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).cache().repeat()
    models = {}
    for xla, precision in settings_list:
        keras.mixed_precision.set_global_policy(precision)  # captured by the layers built now
        m = build_model(cfg.model, 7, (size, size, 3))
        compile_model(m, cfg, 7, schedule_steps=1000, jit_compile=xla == "on")
        m.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)  # warm-up: tracing, XLA compilation
        models[(xla, precision)] = m
    keras.mixed_precision.set_global_policy("float32")
    times = interleaved_epochs({k: (m, ds) for k, m in models.items()}, steps, repeats)
    params = models[settings_list[0]].count_params()
    return {"cells": [{"model": model_name, "size": size, "xla": xla, "precision": prec, "params": params,
                       "img_s": steps * batch / statistics.median(times[(xla, prec)]),
                       "img_s_all": [steps * batch / t for t in times[(xla, prec)]]}
                      for xla, prec in settings_list]}


def bench_training(a) -> dict:
    from fer_keras.config import load_config
    from fer_keras.fitting import resolve_runtime

    steps = {"CustomCNN": 30, "VGG16": 10, "ResNet50": 6, "EfficientNetB0": 8}  # ~3-6 s per plain epoch here
    rows, verdicts = [], []
    for m in a.models.split(","):
        n = max(3, steps[m] * a.scale // 100)
        cells = run_json(["--worker", "train", m, str(n), str(a.repeats)])["cells"]
        for c in cells:
            c["command"] = f"python benchmarks/run_all.py --worker train {m} {n} {a.repeats}"
            print(f"training {m} xla={c['xla']} {c['precision']}: {c['img_s']:.1f} img/s", flush=True)
        rows.extend(cells)
        cfg = load_config(os.path.join(ROOT, "configs", f"{m.lower()}.yaml"))
        auto = resolve_runtime(cfg.train, m)
        chosen = next(c for c in cells if (c["xla"] == "on") == auto["xla"] and c["precision"] == auto["precision"])
        best = max(cells, key=lambda c: c["img_s"])
        verdicts.append({"model": m, "auto_xla": auto["xla"], "auto_precision": auto["precision"],
                         "auto_img_s": chosen["img_s"], "best": f"xla={best['xla']} {best['precision']}",
                         "best_img_s": best["img_s"], "ratio": chosen["img_s"] / best["img_s"],
                         "within_5pct": chosen["img_s"] >= 0.95 * best["img_s"],
                         "measured": _dt.datetime.now().isoformat(timespec="minutes")})
    # Models not measured this time keep their earlier rows (each verdict says when it was measured).
    old_path = os.path.join(C.RESULTS_DIR, "training.json")
    if os.path.isfile(old_path):
        with open(old_path) as f:
            old = json.load(f)
        done = set(a.models.split(","))
        rows += [r for r in old["rows"] if r["model"] not in done]
        verdicts += [dict(v, measured=v.get("measured", old["machine"]["date"][:16])) for v in old["auto"]
                     if v["model"] not in done]
    return {"rows": rows, "auto": verdicts, "repeats": a.repeats}


# === 1b. Every registered image backbone at 64 px ===

BACKBONE_SIZE = 64


def bench_backbones(a) -> dict:
    """Training img/s of every registered image model at 64 px (batch 32, synthetic in-memory data, XLA off),
    float32 vs mixed_bfloat16, and whether `precision=auto` picks the faster one."""
    from fer_keras.config import Config
    from fer_keras.models import MODELS
    from fer_keras.fitting import resolve_runtime

    names = [n for n in MODELS.names() if not getattr(MODELS.get(n), "temporal", False)]
    if a.models != ",".join(TRAIN_MODELS):
        names = a.models.split(",")
    rows = []
    for m in names:
        cells = run_json(["--worker", "train", m, str(a.backbone_steps), str(a.repeats), str(BACKBONE_SIZE),
                          "xla_off"], timeout=3600)["cells"]
        by = {c["precision"]: c for c in cells}
        auto = resolve_runtime(Config().train, m)["precision"]
        best = max(cells, key=lambda c: c["img_s"])["precision"]
        rows.append({"model": m, "size": BACKBONE_SIZE, "params": cells[0]["params"],
                     "float32_img_s": by["float32"]["img_s"], "bf16_img_s": by["mixed_bfloat16"]["img_s"],
                     "auto_precision": auto, "best_precision": best,
                     "auto_within_5pct": by[auto]["img_s"] >= 0.95 * by[best]["img_s"],
                     "command": f"python benchmarks/run_all.py --worker train {m} {a.backbone_steps} {a.repeats} "
                                f"{BACKBONE_SIZE} xla_off"})
        print(f"backbone {m}: float32 {by['float32']['img_s']:.1f}, bf16 {by['mixed_bfloat16']['img_s']:.1f} img/s "
              f"(auto {auto})", flush=True)
        save("backbones", {"rows": rows, "repeats": a.repeats})  # as it goes
    return {"rows": rows, "repeats": a.repeats}
