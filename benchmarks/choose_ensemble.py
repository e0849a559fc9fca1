"""Choose an ensemble's weights on val splits: each member's predictions on every val source of a config, then a grid
of weights per output scored by the checkpoint monitor (`metrics.source_scores`' score: in- and out-of-domain sources weighed as the
config's `train.out_of_domain_weight` says).

    python benchmarks/choose_ensemble.py --members runs/default-v3-bn compact --config configs/default.yaml \
        [--tta flip] [--step 0.1]

Each member predicts as `predict --no-detect` runs it alone (its own input size and channels, LiteRT where it ships a
TFLite export), without its calibration (choose that for the built ensemble: benchmarks/choose_calibration.py);
members must share their class names. The expression weights only move accuracy and the
valence/arousal weights only move the CCCs, so the two grids are searched on their own and then joined. Val splits
pick weights and are never reported as tests: score the built ensemble (`python -m fer_keras.models.ensemble`) on
the test splits with `benchmarks/bench_real_faces.py`. Writes benchmarks/results/choose_ensemble.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

from bench_real_faces import ours  # noqa: E402
from choose_calibration import admitted_by, floors, search_class_bias  # noqa: E402
from compare_val import val_domains, val_sets  # noqa: E402


def weight_grid(n: int, step: float):
    """Every weight vector of `n` members on a grid of `step` that sums to 1."""
    k = int(round(1 / step))
    for combo in itertools.product(range(k + 1), repeat=n - 1):
        if sum(combo) <= k:
            yield tuple([(k - sum(combo)) / k] + [c / k for c in combo])


def scores_for(preds, truth, ew, vw, domains=None, out_of_domain_weight: float = 0.5, calibration=None) -> dict:
    """`source_scores` of the members' predictions mixed with expression weights `ew` and VA weights `vw`, the
    sources weighed by their `domains` ({source: "in" | "out"}) as the config's val score weighs them, after an
    optional `calibration` of the mixed probabilities."""
    from fer_keras.labels import preset_classes
    from fer_keras.metrics import source_scores

    ys, ps, vts, vps, ids, names = [], [], [], [], [], []
    for i, (source, (labels, va, preset)) in enumerate(truth.items()):
        classes = preset_classes(preset)
        member_probs = [p[source]["probs"] for p in preds]
        ys.append(np.array([classes.index(n) for n in labels]))
        mixed = sum(w * p for w, p in zip(ew, member_probs))
        ps.append(mixed if calibration is None else calibration.apply(mixed))
        vts.append(np.asarray(va, np.float64))
        vps.append(sum(w * p[source]["va"] for w, p in zip(vw, preds)))
        ids.append(np.full(len(labels), i))
        names.append(source)
    return source_scores(np.concatenate(ys), np.concatenate(ps), np.concatenate(vts), np.concatenate(vps),
                         np.concatenate(ids), names, [(domains or {}).get(n, "in") for n in names],
                         out_of_domain_weight)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--members", nargs="+", required=True, help="shipped names, .keras files or run folders")
    p.add_argument("--config", default=os.path.join(ROOT, "configs", "default.yaml"))
    p.add_argument("--tta", default="flip", choices=["none", "flip", "crops"])
    p.add_argument("--step", type=float, default=0.1)
    p.add_argument("--calibrate", action="store_true",
                   help="score each expression weighting after its own class_bias calibration (searched as "
                        "benchmarks/choose_calibration.py --method class_bias does), so the weights are chosen for the "
                        "calibrated ensemble; choose the built ensemble's calibration afterwards with that script")
    p.add_argument("--keep", action="append", default=[], metavar="KEY=FLOOR",
                   help="admit only weightings whose val number KEY (e.g. ferplus_accuracy) is at least FLOOR "
                        "(repeatable)")
    p.add_argument("--out", default=os.path.join(HERE, "results", "choose_ensemble.json"))
    a = p.parse_args(argv)
    if len(a.members) < 2:
        p.error("--members: at least two")
    from fer_keras.pretrained import resolve_model

    sets = val_sets(a.config)
    domains, w_out = val_domains(a.config)
    preds, truth = [], {}
    for m in map(resolve_model, a.members):
        per = {}
        for source, (paths, labels, va, preset) in sets.items():
            o = ours(m, paths, tta=a.tta, calibration="none")  # raw outputs: calibration is chosen afterwards
            if preds and o["class_names"] != preds[0]["class_names"]:
                p.error(f"--members: {m} predicts {o['class_names']}, the first member {preds[0]['class_names']}")
            per[source] = {"probs": np.asarray(o["probs"], np.float64), "va": np.asarray(o["va"], np.float64)}
            truth[source] = (labels, va, preset)
        per["class_names"] = o["class_names"]
        preds.append(per)
    n = len(a.members)
    only = [tuple(float(i == j) for j in range(n)) for i in range(n)]
    grid = list(weight_grid(n, a.step))
    # accuracy depends on the expression weights only, the CCCs on the VA weights only: two searches
    keep = floors(a.keep)
    admitted = admitted_by(keep)

    calibrations = {}

    def score(ew, vw):
        if not a.calibrate:
            return scores_for(preds, truth, ew, vw, domains, w_out)
        if ew not in calibrations:  # the class_bias search for this weighting (VA weights do not move it)
            names = preds[0]["class_names"]
            calibrations[ew] = search_class_bias(np.zeros(len(names)), names, lambda cal: scores_for(
                preds, truth, ew, only[0], domains, w_out, cal), 0.1, 2.0, 2, admitted)[0]
        return scores_for(preds, truth, ew, vw, domains, w_out, calibrations[ew])

    def best_of(candidates, key):
        ok = [c for c in candidates if admitted(key(c))]
        return max(ok or candidates, key=lambda c: key(c)["score"])

    best_e = best_of(grid, lambda w: score(w, only[0]))
    best_v = max(grid, key=lambda w: score(best_e, w)["score"])
    rows = [{"expression_weights": ew, "va_weights": vw, **score(ew, vw),
             **({"class_bias": [round(b, 3) for b in calibrations[ew].bias]} if a.calibrate else {})}
            for ew, vw in [(o, o) for o in only] + [(best_e, best_v)]]
    res = {"command": "python benchmarks/choose_ensemble.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "members": a.members, "tta": a.tta, "config": a.config, "keep": keep, "calibrated": a.calibrate,
           "chosen": rows[-1], "rows": rows}
    for r in rows:
        keys = [k for k in r if k.endswith(("_accuracy", "_ccc"))]
        print(f"expression {r['expression_weights']} va {r['va_weights']}: score {r['score']:.4f} (in "
              f"{r.get('score_in', float('nan')):.4f}, out {r.get('score_out', float('nan')):.4f}) | "
              + ", ".join(f"{k} {r[k]:.4f}" for k in keys))
    from fer_keras.io_utils import atomic_write_text

    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    atomic_write_text(a.out, json.dumps(res, indent=2, default=float))  # a half-written result never stays
    return res


if __name__ == "__main__":
    main()
