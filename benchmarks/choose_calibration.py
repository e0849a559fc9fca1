"""Choose a model's calibrated output prior on val splits and store it in the model's metadata.

    python benchmarks/choose_calibration.py --model fer_keras/pretrained/default_ensemble.keras \
        --config configs/default_v4.yaml [--tta auto] [--taus 0 1.5 0.05] [--write]

The model predicts every val source of the config as `predict --no-detect` runs it (LiteRT where it ships a TFLite
export, its own views), without calibration. The prior is the model's mean prediction over the in-domain val faces
(what it learnt to expect: FER+'s majority votes make neutral and happy common). Each `tau` of the grid is scored
by the config's val score (`metrics.source_scores`: in- and out-of-domain sources weighed by
`train.out_of_domain_weight`); the best is chosen, and with `--write` stored as the model's `"calibration"`
(fer_keras/calibration.py) in its sidecar `.json` or run `labels.json`. `--min-in-domain` keeps only taus whose
in-domain score stays within that much of the raw model's. Val splits choose; they are never reported as tests.
Writes benchmarks/results/choose_calibration.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

from bench_real_faces import ours  # noqa: E402
from compare_val import val_domains, val_sets  # noqa: E402


def val_predictions(model: str, config: str, tta: str) -> tuple:
    """({source: raw probs}, {source: (labels, va, preset)}, {source: VA predictions}, class names)."""
    probs, truth, va = {}, {}, {}
    names = None
    for source, (paths, labels, va_true, preset) in val_sets(config).items():
        o = ours(model, paths, tta=tta, calibration="none")
        probs[source], va[source], names = np.asarray(o["probs"], np.float64), np.asarray(o["va"]), o["class_names"]
        truth[source] = (labels, va_true, preset)
    return probs, truth, va, names


def score(probs, truth, va, names, domains, w_out, calibration=None) -> dict:
    """The config's val score of (optionally calibrated) predictions."""
    from fer_keras.metrics import source_scores

    ys, ps, vts, vps, ids, srcs = [], [], [], [], [], []
    for i, source in enumerate(probs):
        labels, va_true, _ = truth[source]
        ys.append(np.array([names.index(n) for n in labels]))
        ps.append(probs[source] if calibration is None else calibration.apply(probs[source]))
        vts.append(np.asarray(va_true, np.float64))
        vps.append(np.asarray(va[source], np.float64))
        ids.append(np.full(len(labels), i))
        srcs.append(source)
    return source_scores(np.concatenate(ys), np.concatenate(ps), np.concatenate(vts), np.nan_to_num(
        np.concatenate(vps)), np.concatenate(ids), srcs, [domains.get(s, "in") for s in srcs], w_out)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="a shipped name, .keras file or run folder")
    p.add_argument("--config", default=os.path.join(ROOT, "configs", "default_v4.yaml"),
                   help="its val sources (with domains) choose the prior's strength")
    p.add_argument("--tta", default="auto", choices=["auto", "none", "flip", "crops"])
    p.add_argument("--taus", nargs=3, type=float, default=[0.0, 1.5, 0.05], metavar=("FROM", "TO", "STEP"))
    p.add_argument("--min-in-domain", type=float, default=None, metavar="DROP",
                   help="only taus whose in-domain val score is at most DROP below the raw model's")
    p.add_argument("--write", action="store_true", help="store the chosen calibration in the model's metadata")
    p.add_argument("--out", default=os.path.join(HERE, "results", "choose_calibration.json"))
    a = p.parse_args(argv)
    from fer_keras.calibration import logit_adjustment
    from fer_keras.io_utils import atomic_write_text
    from fer_keras.model_info import write_calibration
    from fer_keras.pretrained import resolve_model

    model = resolve_model(a.model)
    domains, w_out = val_domains(a.config)
    probs, truth, va, names = val_predictions(model, a.config, a.tta)
    inside = [s for s in probs if domains.get(s, "in") == "in"]
    prior = np.concatenate([probs[s] for s in inside]).mean(axis=0)
    taus = np.round(np.arange(a.taus[0], a.taus[1] + a.taus[2] / 2, a.taus[2]), 4)
    rows = []
    for tau in taus:
        cal = logit_adjustment(prior, float(tau), names)
        rows.append({"tau": float(tau), **score(probs, truth, va, names, domains, w_out, cal)})
    raw = rows[0] if taus[0] == 0 else {"tau": 0.0, **score(probs, truth, va, names, domains, w_out)}
    allowed = [r for r in rows if a.min_in_domain is None or r.get("score_in", 0) >= raw["score_in"] - a.min_in_domain]
    best = max(allowed, key=lambda r: r["score"])
    for r in rows:
        keys = [k for k in r if k.endswith("_accuracy")]
        print(f"tau {r['tau']:.2f}: score {r['score']:.4f} (in {r.get('score_in', float('nan')):.4f}, out "
              f"{r.get('score_out', float('nan')):.4f}) | " + ", ".join(f"{k} {100 * r[k]:.2f}" for k in keys)
              + ("  <- chosen" if r is best else ""))
    how = (f"benchmarks/choose_calibration.py on the val splits of {os.path.relpath(a.config, ROOT)} "
           f"(tta {a.tta}): prior = mean prediction on the in-domain val faces ({', '.join(inside)}); tau chosen by "
           f"the val score (out-of-domain weight {w_out}): {best['score']:.4f} vs {raw['score']:.4f} raw")
    chosen = logit_adjustment(prior, best["tau"], names, chosen_on=how)
    res = {"command": "python benchmarks/choose_calibration.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "model": a.model, "config": a.config, "tta": a.tta, "class_names": names, "prior": prior.tolist(),
           "raw": raw, "chosen": best, "calibration": chosen.to_dict(), "rows": rows}
    if a.write:
        res["written_to"] = write_calibration(model, chosen if best["tau"] > 0 else None)
        print(f"wrote the calibration (tau {best['tau']}) into {res['written_to']}")
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    atomic_write_text(a.out, json.dumps(res, indent=2, default=float))
    return res


if __name__ == "__main__":
    main()
