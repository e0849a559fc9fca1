"""Equal-budget short trainings of the default-model recipe: what each ingredient is worth, on the val splits.

    python benchmarks/recipe_ablation.py [--epochs 3 --steps 100] [--only imagenet,scratch,...]

Every variant is `configs/multitask_mobilenet.yaml` with a few `--set`s, trained for the same number of steps
(`--epochs` x `--steps` batches of 64, cosine schedule over them), one at a time (two trainings on 2 cores halve
each other). Reported per variant: the best epoch's val_score (mean over the sources of accuracy, and VA CCC for
AffectNet) and its per-source numbers, from the run's history.csv. Runs go to runs/ablation-<variant> (a finished
variant is read, not retrained). Writes benchmarks/results/recipe_ablation.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

VARIANTS = {
    "imagenet": [],  # the recipe: MobileNetV2 from ImageNet, 64 px, FER+ votes + AffectNet + ExpW
    "scratch": ["model.weights=none"],
    "hard-labels": ["train.soft_label_weight=0.0"],
    "no-expw": ["data.sources=[{name: ferplus, path: ../shared/data/ferplus, format: ferplus, weight: 0.7, "
                "heldout_test_fraction: 0.5}, {name: affectnet, path: ../shared/data/affectnet, format: affectnet, "
                "weight: 0.3, val_fraction: 0.1, test_fraction: 0.1}]"],
    "48px": ["data.image_size=48"],
    "96px": ["data.image_size=96"],
    "efficientnet-lite0": ["model.name=EfficientNetLite0"],
    "112px": ["data.image_size=112"],
    "efficientnet-lite0-96px": ["model.name=EfficientNetLite0", "data.image_size=96"],
    "efficientnet-lite0-112px": ["model.name=EfficientNetLite0", "data.image_size=112"],
}
KEYS = ("val_score", "val_ferplus_accuracy", "val_affectnet_accuracy", "val_affectnet_valence_ccc",
        "val_affectnet_arousal_ccc", "val_expw_accuracy")


def best_row(run: str) -> dict:
    with open(os.path.join(run, "history.csv")) as f:
        rows = list(csv.DictReader(f))
    best = max(rows, key=lambda r: float(r["val_score"]))
    out = {k: round(float(best[k]), 4) for k in KEYS if best.get(k) not in (None, "")}
    out["epoch"] = int(best["epoch"]) + 1
    out["seconds"] = round(sum(float(r["epoch_seconds"]) for r in rows), 1)
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--only", default=",".join(VARIANTS))
    p.add_argument("--out", default=os.path.join(HERE, "results", "recipe_ablation.json"))
    a = p.parse_args(argv)
    results = {}
    if os.path.isfile(a.out):
        with open(a.out) as f:
            results = json.load(f).get("variants", {})
    for name in a.only.split(","):
        run = os.path.join(ROOT, "runs", f"ablation-{name}")
        if not os.path.isfile(os.path.join(run, "labels.json")):
            cmd = [sys.executable, "train_model.py", "--config", "configs/multitask_mobilenet.yaml",
                   "--name", f"ablation-{name}", "--set", f"train.epochs={a.epochs}",
                   "--set", f"train.steps_per_epoch={a.steps}", "--set", "train.verbose=2",
                   "--set", "train.tensorboard=false"]
            for s in VARIANTS[name]:
                cmd += ["--set", s]
            t0 = time.time()
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"{name}: failed ({proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ''})")
                continue
            print(f"{name}: trained in {time.time() - t0:.0f} s", flush=True)
        results[name] = {"sets": VARIANTS[name], **best_row(run)}
        print(name, json.dumps(results[name]), flush=True)
        os.makedirs(os.path.dirname(a.out), exist_ok=True)
        with open(a.out, "w") as f:
            json.dump({"command": "python benchmarks/recipe_ablation.py " + " ".join(argv or sys.argv[1:]),
                       "budget": f"{a.epochs} epochs x {a.steps} steps x batch 64", "variants": results}, f,
                      indent=2)
    return results


if __name__ == "__main__":
    main()
