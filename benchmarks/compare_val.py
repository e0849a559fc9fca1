"""Two models on the val splits of two configs (the splits that pick checkpoints, never reported as tests):
the shipping decision of the default model.

    python benchmarks/compare_val.py --models fer_keras/pretrained/multitask_customcnn.keras runs/mobilenet-v1 \
        --configs configs/multitask.yaml configs/multitask_mobilenet.yaml [--tta none flip crops]

For every source of every config: its val split (as that config splits it), scored with each model in the config's
preset (accuracy, UAR, and valence/arousal CCC where the source has them). Each model saw one config's val split
while training (to pick its checkpoint): read the other config's rows as the fair ones. Writes
benchmarks/results/compare_val.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

from bench_real_faces import fer_package, ours, score  # noqa: E402


def val_sets(config: str) -> dict:
    from fer_keras.config import load_config
    from fer_keras.data.pipeline import read_source_splits
    from fer_keras.labels import preset_classes

    cfg = load_config(config)
    names = preset_classes(cfg.data.labels)
    out = {}
    for s in cfg.data.sources:
        b = read_source_splits(cfg.data, s)
        if b.val is not None:
            out[s.name] = (list(b.val.sources), [names[i] for i in b.val.expression], b.val.va, cfg.data.labels)
    return out


def val_domains(config: str) -> tuple:
    """({source: "in" | "out"}, train.out_of_domain_weight) of a config: how its val score weighs the sources."""
    from fer_keras.config import load_config

    cfg = load_config(config)
    return {s.name: s.domain for s in cfg.data.sources}, cfg.train.out_of_domain_weight


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", required=True, help="shipped names, .keras files or run folders")
    p.add_argument("--configs", nargs="+", required=True)
    p.add_argument("--bootstrap", type=int, default=500)
    p.add_argument("--tta", nargs="+", default=["none"], choices=["none", "flip", "crops"],
                   help="score each model with each of these test-time augmentations")
    p.add_argument("--sources", nargs="*", help="only these sources of the configs (default: all)")
    p.add_argument("--preset", help="score in this label preset instead of the config's (e.g. 7: without contempt)")
    p.add_argument("--fer", action="store_true",
                   help="add the `fer` package (requirements-bench.txt) as a row, scored in preset 7 (its classes)")
    p.add_argument("--out", default=os.path.join(HERE, "results", "compare_val.json"))
    a = p.parse_args(argv)
    from fer_keras.pretrained import resolve_model  # shipped names (default, compact, ...) as predict takes them

    res = {"command": "python benchmarks/compare_val.py " + " ".join(argv or sys.argv[1:]), "rows": []}
    for config in a.configs:
        for source, (paths, labels, va, preset) in val_sets(config).items():
            if a.sources and source not in a.sources:
                continue
            preset = a.preset or preset
            if a.fer:
                r = score(fer_package(paths, 0), labels, va, "7", a.bootstrap)
                res["rows"].append({"config": os.path.basename(config), "source": source, "model": "fer (pip)",
                                    "tta": "none", "preset": "7", **r})
                print(f"{os.path.basename(config):28s} {source:10s} {'fer (pip), preset 7':50s} n {r['n']:5d} acc "
                      f"{100 * r['accuracy']:.2f} UAR {100 * r['uar']:.2f}", flush=True)
            for model in a.models:
                for tta in a.tta:
                    r = score(ours(resolve_model(model), paths, tta=tta), labels, va, preset, a.bootstrap)
                    row = {"config": os.path.basename(config), "source": source, "model": model, "tta": tta,
                           "preset": preset, **r}
                    res["rows"].append(row)
                    vac = f" valence {r['valence_ccc']:.3f} arousal {r['arousal_ccc']:.3f}" \
                        if "valence_ccc" in r else ""
                    print(f"{os.path.basename(config):28s} {source:10s} {model:50s} tta {tta:5s} n {r['n']:5d} acc "
                          f"{100 * r['accuracy']:.2f} UAR {100 * r['uar']:.2f}{vac}", flush=True)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(res, f, indent=2, default=float)
    return res


if __name__ == "__main__":
    main()
