"""Section 5: wall time to accuracy thresholds, from a FER2013 run's own history."""

from __future__ import annotations

import glob
import json
import os

from suite.common import ROOT


# === 5. Time to accuracy ===

def bench_time_to_accuracy(a) -> dict:
    import csv

    run = a.fer_run
    hist = os.path.join(run, "history.csv")
    if not os.path.isfile(hist):
        raise FileNotFoundError(f"{hist}: train it first (python train_model.py --config configs/fer2013.yaml "
                                f"--name {os.path.basename(run)})")
    with open(hist) as f:
        rows = list(csv.DictReader(f))
    with open(os.path.join(run, "runtime.json")) as f:
        rt = json.load(f)
    t, reached = 0.0, {}
    for r in rows:
        t += float(r["epoch_seconds"])
        acc = float(r["val_expression_accuracy"])
        for target in (0.55, 0.60, 0.63, 0.65, 0.66, 0.68):
            if acc >= target and target not in reached:
                reached[target] = {"epoch": int(r["epoch"]) + 1, "seconds": t}
    # The checkpoint's val accuracy with test-time augmentation, where `evaluate_model.py --tta ...` has scored it
    # (only evaluations of the run's own val split and preset: eval/ may also hold other data or presets).
    import yaml

    with open(os.path.join(run, "config.yaml")) as f:
        data_cfg = yaml.safe_load(f)["data"]
    tta = {}
    for path in sorted(glob.glob(os.path.join(run, "eval", "*", "metrics.json"))):
        with open(path) as f:
            m = json.load(f)
        info = m.get("info", {})
        if (info.get("tta", "none") != "none" and info.get("split") == "val" and info.get("data") == data_cfg["path"]
                and info.get("preset") == str(data_cfg["labels"])):
            tta[info["tta"]] = m["expression"]["accuracy"]
    return {"run": os.path.relpath(run, ROOT), "epochs": len(rows), "train_seconds": rt.get("train_seconds"),
            "best_val_accuracy": max(float(r["val_expression_accuracy"]) for r in rows), "tta_accuracy": tta,
            "reached": {f"{k:.2f}": v for k, v in reached.items()},
            "command": f"python train_model.py --config configs/fer2013.yaml --name {os.path.basename(run)}"}
